"""Quality scores and thresholds after Gopher (Rae et al. 2021), C4 (Raffel et al. 2020) and FineWeb.

`score_document` computes every score once; `first_failure` checks them against thresholds, so a
threshold can be retuned from the stored score columns without re-scoring. Any threshold set to
None is off. We implement the published rules here rather than use datatrove's filters, which need
spaCy/NLTK language models that cannot be fetched on an offline machine.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from tasks.clean.params import QualityThresholds

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})  # Gopher's list
BULLETS = ("•", "●", "○", "▪", "‣", "⁃", "◦", "-", "*", "–", "—")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", ":", ";", ")", "»", "…")
_PARAGRAPHS = re.compile(r"\n{2,}")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_SYMBOL_WORD = re.compile(r"^\W+$")


def _duplicates(items: Sequence[str]) -> tuple[int, int]:
    """(number of items that repeat an earlier one, characters in them)."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def _top_ngram_ratio(words: Sequence[str], n: int, total_chars: int) -> float:
    if len(words) < n or not total_chars:
        return 0.0
    counts = Counter(zip(*(words[i:] for i in range(n)), strict=False))
    gram, freq = counts.most_common(1)[0]
    return freq * sum(map(len, gram)) / total_chars if freq > 1 else 0.0


def _dup_ngram_ratio(words: Sequence[str], n: int, total_chars: int) -> float:
    """Characters covered by n-grams seen before (each word counted once), as Gopher defines it."""
    if len(words) < n or not total_chars:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            for j in range(i, i + n):
                covered[j] = True
        else:
            seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered, strict=True) if c) / total_chars


def score_document(text: str) -> dict[str, float | int]:
    """Every quality score of one (normalized) text."""
    words = text.split()
    content_words = [w for w in words if not _SYMBOL_WORD.match(w)]
    n_words = len(content_words)
    lines = [line.strip() for line in text.split("\n")]
    nonempty = [line for line in lines if line] or [""]
    paragraphs = [p.strip() for p in _PARAGRAPHS.split(text) if p.strip()] or [""]
    chars = len(text) or 1
    word_chars = sum(map(len, content_words)) or 1
    dup_lines, dup_line_chars = _duplicates(nonempty)
    dup_paras, dup_para_chars = _duplicates(paragraphs)
    lowered = [w.lower().strip(".,;:!?\"'()") for w in content_words]
    scores: dict[str, float | int] = {
        "n_chars": len(text), "n_words": n_words, "n_lines": len(nonempty),
        "mean_word_length": word_chars / n_words if n_words else 0.0,
        "symbol_word_ratio": (text.count("#") + text.count("...") + text.count("…")) / max(n_words, 1),
        "bullet_lines_ratio": sum(line.startswith(BULLETS) for line in nonempty) / len(nonempty),
        "ellipsis_lines_ratio": sum(line.endswith(("...", "…")) for line in nonempty) / len(nonempty),
        "alpha_words_ratio": sum(any(c.isalpha() for c in w) for w in words) / max(len(words), 1),
        "stop_words": sum(w in STOP_WORDS for w in lowered),
        "dup_line_ratio": dup_lines / len(nonempty), "dup_para_ratio": dup_paras / len(paragraphs),
        "dup_line_char_ratio": dup_line_chars / chars, "dup_para_char_ratio": dup_para_chars / chars,
        "line_punct_ratio": sum(line.endswith(TERMINAL_PUNCT) for line in nonempty) / len(nonempty),
        "short_line_ratio": sum(len(line) < 30 for line in nonempty) / len(nonempty),
        "char_dup_ratio": dup_line_chars / chars,
        "newline_ratio": text.count("\n") / max(n_words, 1),
    }
    for n in (2, 3, 4):
        scores[f"top_{n}gram_ratio"] = _top_ngram_ratio(lowered, n, word_chars)
    for n in range(5, 11):
        scores[f"dup_{n}gram_ratio"] = _dup_ngram_ratio(lowered, n, word_chars)
    return scores


# (reason, score, "min" | "max", threshold field): checked in this order, the first failure wins.
RULES: list[tuple[str, str, str, str]] = [
    ("gopher_too_few_words", "n_words", "min", "min_words"),
    ("gopher_too_many_words", "n_words", "max", "max_words"),
    ("gopher_short_words", "mean_word_length", "min", "min_mean_word_length"),
    ("gopher_long_words", "mean_word_length", "max", "max_mean_word_length"),
    ("gopher_symbols", "symbol_word_ratio", "max", "max_symbol_word_ratio"),
    ("gopher_bullet_lines", "bullet_lines_ratio", "max", "max_bullet_lines_ratio"),
    ("gopher_ellipsis_lines", "ellipsis_lines_ratio", "max", "max_ellipsis_lines_ratio"),
    ("gopher_non_alpha_words", "alpha_words_ratio", "min", "min_alpha_words_ratio"),
    ("gopher_few_stop_words", "stop_words", "min", "min_stop_words"),
    ("gopher_dup_lines", "dup_line_ratio", "max", "max_dup_line_ratio"),
    ("gopher_dup_paragraphs", "dup_para_ratio", "max", "max_dup_para_ratio"),
    ("gopher_dup_line_chars", "dup_line_char_ratio", "max", "max_dup_line_char_ratio"),
    ("gopher_dup_paragraph_chars", "dup_para_char_ratio", "max", "max_dup_para_char_ratio"),
    ("fineweb_line_punct", "line_punct_ratio", "min", "min_line_punct_ratio"),
    ("fineweb_short_lines", "short_line_ratio", "max", "max_short_line_ratio"),
    ("fineweb_char_dup", "char_dup_ratio", "max", "max_char_dup_ratio"),
    ("fineweb_list_like", "newline_ratio", "max", "max_newline_ratio"),
]


def first_failure(text: str, scores: dict[str, float | int], t: QualityThresholds) -> tuple[str, str] | None:
    """(reason, detail) of the first rule the document fails, or None to keep it."""
    for reason, score, kind, field_name in RULES:
        limit = getattr(t, field_name)
        value = scores[score]
        if limit is not None and (value < limit if kind == "min" else value > limit):
            return reason, f"{score} {value:.3g} {'<' if kind == 'min' else '>'} {limit}"
    for n, limit in zip((2, 3, 4), t.max_top_ngram_ratios, strict=False):
        value = scores[f"top_{n}gram_ratio"]
        if limit is not None and value > limit:
            return f"gopher_top_{n}gram", f"top_{n}gram_ratio {value:.3g} > {limit}"
    for n, limit in zip(range(5, 11), t.max_dup_ngram_ratios, strict=False):
        value = scores[f"dup_{n}gram_ratio"]
        if limit is not None and value > limit:
            return f"gopher_dup_{n}gram", f"dup_{n}gram_ratio {value:.3g} > {limit}"
    lowered = text.lower()
    if t.drop_lorem_ipsum and "lorem ipsum" in lowered:
        return "c4_lorem_ipsum", "contains 'lorem ipsum'"
    if t.drop_curly_braces and "{" in text:
        return "c4_curly_braces", "contains '{'"
    if t.min_sentences is not None and len(_SENTENCE_END.findall(text)) < t.min_sentences:
        return "c4_few_sentences", f"fewer than {t.min_sentences} sentences"
    return None
