"""Quality scores and rules of Gopher (Rae et al. 2021), C4 (Raffel et al. 2020) and FineWeb, as datatrove has them.

`score_document` computes every score once; `first_failure` checks them against one source's
thresholds, so a threshold can be retuned from the stored score columns without scoring again. A
threshold of None turns its rule off. Each rule decides exactly as the datatrove filter it comes
from (`GopherQualityFilter`, `GopherRepetitionFilter`, `FineWebQualityFilter`, `C4QualityFilter`)
with the same value; tests/test_quality_rules.py runs both on real documents and compares every
decision. Words are spaCy tokens (tasks/clean/words.py); ratios are over the characters of the text.

One difference on purpose: C4's filter also deletes lines (no terminal punctuation, under 3 words,
"javascript", cookie notices); draftflow keeps the text as it is and applies C4's document-level
rules only: lorem ipsum or a curly bracket in a line C4 would keep, and too few sentences in them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from tasks.clean.params import QualityThresholds
from tasks.clean.punctuation import PUNCTUATION_SET, TERMINAL_PUNCTUATION
from tasks.clean.words import count_sentences, split_words

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})  # Gopher's, matched case-sensitively
BULLETS = ("•", "-")
ELLIPSES = ("...", "…")
TERMINAL = tuple(TERMINAL_PUNCTUATION)
SHORT_LINE = 30  # FineWeb: a line of at most this many characters is short
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
# C4's line filters, at datatrove's defaults: a line counts only if it ends a sentence, has 3+ words,
# no word over 1000 characters; wiki citations are removed first; "javascript" and policy lines are skipped.
_C4_END = (".", "?", "!", '"', "'")
_C4_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


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


def _top_ngram_chars(words: Sequence[str], n: int) -> int:
    """Characters of the most frequent word n-gram (space-joined) times its count; 0 without any n-gram."""
    if len(words) < n:
        return 0
    gram, count = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1)).most_common(1)[0]
    return len(gram) * count


def _repeated_ngram_chars(words: Sequence[str], n: int) -> int:
    """Characters in n-grams (joined without spaces) that repeat an earlier one; a repeat skips its n words."""
    seen: set[str] = set()
    chars, i = 0, 0
    while i < len(words) - n + 1:
        gram = "".join(words[i : i + n])
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


def _c4_lines(text: str) -> tuple[int, int, int]:
    """(lines with "lorem ipsum", lines with "{", sentences) among the lines C4 keeps."""
    lorem = curly = sentences = 0
    for raw in text.splitlines():
        line = raw.strip()
        words = line.split()
        if any(len(word) > 1000 for word in words):
            continue
        line = _C4_CITATION.sub("", line)
        if not line.endswith(_C4_END) or line.endswith("...") or len(words) < 3:
            continue
        lowered = line.lower()
        lorem += "lorem ipsum" in lowered
        if "javascript" in lowered:
            continue
        curly += "{" in line
        if any(p in lowered for p in _C4_POLICY):
            continue
        sentences += count_sentences(line)
    return lorem, curly, sentences


def score_document(text: str) -> dict[str, float | int]:
    """Every quality score of one (normalized, non-empty) text."""
    chars = len(text) or 1
    tokens = split_words(text)
    n_tokens = len(tokens) or 1
    words = [t for t in tokens if any(c not in PUNCTUATION_SET for c in t)]  # symbols are not words
    all_lines = text.splitlines() or [""]
    lines = [line for line in text.split("\n") if line.strip()] or [""]
    paragraphs = _PARAGRAPHS.split(text.strip())
    dup_paras, dup_para_chars = _duplicates(paragraphs)
    rep_lines = _LINES.split(text)
    dup_lines, dup_line_chars = _duplicates(rep_lines)
    lorem, curly, sentences = _c4_lines(text)
    scores: dict[str, float | int] = {
        "n_chars": len(text),
        "n_words": len(words),
        "n_tokens": len(tokens),
        "n_lines": len(lines),
        "mean_word_length": sum(map(len, words)) / len(words) if words else math.nan,
        "hash_ratio": text.count("#") / n_tokens,
        "ellipsis_ratio": sum(text.count(e) for e in ELLIPSES) / n_tokens,
        "bullet_lines_ratio": sum(line.lstrip().startswith(BULLETS) for line in all_lines) / len(all_lines),
        "ellipsis_lines_ratio": sum(line.rstrip().endswith(ELLIPSES) for line in all_lines) / len(all_lines),
        "alpha_words_ratio": sum(any(c.isalpha() for c in t) for t in tokens) / n_tokens,
        "stop_words": len(STOP_WORDS.intersection(tokens)),
        "dup_para_ratio": dup_paras / len(paragraphs),
        "dup_para_char_ratio": dup_para_chars / chars,
        "dup_line_ratio": dup_lines / len(rep_lines),
        "dup_line_char_ratio": dup_line_chars / chars,
        "line_punct_ratio": sum(line.endswith(TERMINAL) for line in lines) / len(lines),
        "short_line_ratio": sum(len(line) <= SHORT_LINE for line in lines) / len(lines),
        "char_dup_ratio": _duplicates(lines)[1] / (len(text.replace("\n", "")) or 1),
        "newline_ratio": text.count("\n") / n_tokens,
        "c4_lorem_lines": lorem,
        "c4_curly_lines": curly,
        "c4_sentences": sentences,
    }
    for n in (2, 3, 4):
        scores[f"top_{n}gram_ratio"] = _top_ngram_chars(tokens, n) / chars
    for n in range(5, 11):
        scores[f"dup_{n}gram_ratio"] = _repeated_ngram_chars(tokens, n) / chars
    return scores


# (reason, score, "min" | "max", threshold field): checked in this order, the first failure wins.
RULES: list[tuple[str, str, str, str]] = [
    ("gopher_too_few_words", "n_words", "min", "min_words"),
    ("gopher_too_many_words", "n_words", "max", "max_words"),
    ("gopher_short_words", "mean_word_length", "min", "min_mean_word_length"),
    ("gopher_long_words", "mean_word_length", "max", "max_mean_word_length"),
    ("gopher_hashes", "hash_ratio", "max", "max_symbol_word_ratio"),
    ("gopher_ellipses", "ellipsis_ratio", "max", "max_symbol_word_ratio"),
    ("gopher_bullet_lines", "bullet_lines_ratio", "max", "max_bullet_lines_ratio"),
    ("gopher_ellipsis_lines", "ellipsis_lines_ratio", "max", "max_ellipsis_lines_ratio"),
    ("gopher_non_alpha_words", "alpha_words_ratio", "min", "min_alpha_words_ratio"),
    ("gopher_few_stop_words", "stop_words", "min", "min_stop_words"),
    ("gopher_dup_paragraphs", "dup_para_ratio", "max", "max_dup_para_ratio"),
    ("gopher_dup_paragraph_chars", "dup_para_char_ratio", "max", "max_dup_para_char_ratio"),
    ("gopher_dup_lines", "dup_line_ratio", "max", "max_dup_line_ratio"),
    ("gopher_dup_line_chars", "dup_line_char_ratio", "max", "max_dup_line_char_ratio"),
    *[(f"gopher_top_{n}gram", f"top_{n}gram_ratio", "max", f"max_top_{n}gram_ratio") for n in (2, 3, 4)],
    *[(f"gopher_dup_{n}gram", f"dup_{n}gram_ratio", "max", f"max_dup_{n}gram_ratio") for n in range(5, 11)],
    ("fineweb_line_punct", "line_punct_ratio", "min", "min_line_punct_ratio"),
    ("fineweb_short_lines", "short_line_ratio", "max", "max_short_line_ratio"),
    ("fineweb_char_dup", "char_dup_ratio", "max", "max_char_dup_ratio"),
    ("fineweb_list_like", "newline_ratio", "max", "max_newline_ratio"),
    ("c4_few_sentences", "c4_sentences", "min", "min_sentences"),
]


def words_lower_bound(text: str) -> int:
    """Space-separated chunks with a character that is neither whitespace nor punctuation: each one
    holds at least one of the words `score_document` counts."""
    return sum(1 for chunk in text.split(" ") if any(not c.isspace() and c not in PUNCTUATION_SET for c in chunk))


def surely_too_many_words(text: str, t: QualityThresholds) -> tuple[str, str] | None:
    """Gopher's too-many-words verdict without tokenizing, for texts that fail it by a margin.

    spaCy never joins text across a space, so `words_lower_bound` is a lower bound of `n_words`. When
    the bound is already over `max_words`, the full scoring (hundreds of MB and
    seconds for a 1M-character part) would only confirm the rejection.
    """
    limit = t.limit("max_words")
    if limit is None or len(text) <= 2 * limit:  # a word and its space take 2+ characters
        return None
    words = words_lower_bound(text)
    if words <= limit:
        return None
    return "gopher_too_many_words", f"n_words >= {words:.3g} > {limit:g} (counted before tokenizing)"


def first_failure(scores: dict[str, float | int], t: QualityThresholds) -> tuple[str, str] | None:
    """(reason, detail) of the first rule the document fails, or None to keep it.

    A NaN score (the mean length of no words) fails no rule, as in datatrove.
    """
    for reason, score, kind, field_name in RULES:
        limit = t.limit(field_name)
        value = scores[score]
        if limit is not None and (value < limit if kind == "min" else value > limit):
            return reason, f"{score} {value:.3g} {'<' if kind == 'min' else '>'} {limit}"
    if t.drop_lorem_ipsum and scores["c4_lorem_lines"]:
        return "c4_lorem_ipsum", "a line contains 'lorem ipsum'"
    if t.drop_curly_braces and scores["c4_curly_lines"]:
        return "c4_curly_braces", "a line contains '{'"
    return None
