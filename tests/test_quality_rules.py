"""Our quality rules decide as datatrove's filters do: both run on real documents, rule by rule.

The documents are real text nobody here wrote: the embedded stdlib docs (docstrings and the language
reference topics) and the README/description of every package installed in this environment
(their METADATA), normalized as the clean stage does. For each rule, our thresholds with only that
rule on and the datatrove filter with only that rule on must keep or drop every document alike.
"""

from __future__ import annotations

import email
import sysconfig
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from tasks.clean.params import QualityThresholds
from tasks.clean.quality import first_failure, score_document, surely_too_many_words, words_lower_bound
from tasks.clean.steps import normalize_text
from tasks.ingest.stdlib_docs import iter_stdlib_units

datatrove = pytest.importorskip("datatrove", reason="datatrove is a dev dependency: `pip install -e .[dev]`")
from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)

# Keyword arguments that turn every rule of a datatrove filter off (its checks test truthiness or a
# bound no ratio reaches).
GOPHER_OFF: dict[str, Any] = {
    k: None
    for k in (
        "min_doc_words",
        "max_doc_words",
        "min_avg_word_length",
        "max_avg_word_length",
        "max_symbol_word_ratio",
        "max_bullet_lines_ratio",
        "max_ellipsis_lines_ratio",
        "max_non_alpha_words_ratio",
        "min_stop_words",
    )
}
REPETITION_OFF: dict[str, Any] = {
    "dup_line_frac": None,
    "dup_para_frac": None,
    "dup_line_char_frac": None,
    "dup_para_char_frac": None,
    "top_n_grams": (),
    "dup_n_grams": (),
}
FINEWEB_OFF: dict[str, Any] = {
    "line_punct_thr": -1.0,
    "short_line_thr": 2.0,
    "char_duplicates_ratio": 2.0,
    "new_line_ratio": 1e12,
}
C4_OFF: dict[str, Any] = {"filter_lorem_ipsum": False, "filter_curly_bracket": False, "min_num_sentences": -1}

# rule: (our thresholds that turn only it on, the datatrove filter with only it on)
RULES: dict[str, tuple[dict[str, Any], Callable[[], Any]]] = {
    "min_words": ({"min_words": 50}, lambda: GopherQualityFilter(**{**GOPHER_OFF, "min_doc_words": 50})),
    "max_words": ({"max_words": 300}, lambda: GopherQualityFilter(**{**GOPHER_OFF, "max_doc_words": 300})),
    "min_mean_word_length": (
        {"min_mean_word_length": 3},
        lambda: GopherQualityFilter(**{**GOPHER_OFF, "min_avg_word_length": 3}),
    ),
    "max_mean_word_length": (
        {"max_mean_word_length": 7},
        lambda: GopherQualityFilter(**{**GOPHER_OFF, "max_avg_word_length": 7}),
    ),
    "symbols": (
        {"max_symbol_word_ratio": 0.02},
        lambda: GopherQualityFilter(**{**GOPHER_OFF, "max_symbol_word_ratio": 0.02}),
    ),
    "bullet_lines": (
        {"max_bullet_lines_ratio": 0.1},
        lambda: GopherQualityFilter(**{**GOPHER_OFF, "max_bullet_lines_ratio": 0.1}),
    ),
    "ellipsis_lines": (
        {"max_ellipsis_lines_ratio": 0.05},
        lambda: GopherQualityFilter(**{**GOPHER_OFF, "max_ellipsis_lines_ratio": 0.05}),
    ),
    "alpha_words": (
        {"min_alpha_words_ratio": 0.8},
        lambda: GopherQualityFilter(**{**GOPHER_OFF, "max_non_alpha_words_ratio": 0.8}),
    ),
    "stop_words": ({"min_stop_words": 2}, lambda: GopherQualityFilter(**{**GOPHER_OFF, "min_stop_words": 2})),
    "dup_paragraphs": (
        {"max_dup_para_ratio": 0.1},
        lambda: GopherRepetitionFilter(**{**REPETITION_OFF, "dup_para_frac": 0.1}),
    ),
    "dup_paragraph_chars": (
        {"max_dup_para_char_ratio": 0.05},
        lambda: GopherRepetitionFilter(**{**REPETITION_OFF, "dup_para_char_frac": 0.05}),
    ),
    "dup_lines": (
        {"max_dup_line_ratio": 0.1},
        lambda: GopherRepetitionFilter(**{**REPETITION_OFF, "dup_line_frac": 0.1}),
    ),
    "dup_line_chars": (
        {"max_dup_line_char_ratio": 0.05},
        lambda: GopherRepetitionFilter(**{**REPETITION_OFF, "dup_line_char_frac": 0.05}),
    ),
    **{
        f"top_{n}gram": (
            {"max_top_ngram_ratios": [limit if i == n - 2 else None for i in range(3)]},
            lambda n=n, limit=limit: GopherRepetitionFilter(**{**REPETITION_OFF, "top_n_grams": ((n, limit),)}),
        )
        for n, limit in ((2, 0.2), (3, 0.18), (4, 0.16))
    },
    **{
        f"dup_{n}gram": (
            {"max_dup_ngram_ratios": [limit if i == n - 5 else None for i in range(6)]},
            lambda n=n, limit=limit: GopherRepetitionFilter(**{**REPETITION_OFF, "dup_n_grams": ((n, limit),)}),
        )
        for n, limit in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    },
    "line_punct": (
        {"min_line_punct_ratio": 0.12},
        lambda: FineWebQualityFilter(**{**FINEWEB_OFF, "line_punct_thr": 0.12}),
    ),
    "short_lines": (
        {"max_short_line_ratio": 0.67},
        lambda: FineWebQualityFilter(**{**FINEWEB_OFF, "short_line_thr": 0.67}),
    ),
    "char_dup": (
        {"max_char_dup_ratio": 0.01},
        lambda: FineWebQualityFilter(**{**FINEWEB_OFF, "char_duplicates_ratio": 0.01}),
    ),
    "list_like": ({"max_newline_ratio": 0.3}, lambda: FineWebQualityFilter(**{**FINEWEB_OFF, "new_line_ratio": 0.3})),
    "lorem_ipsum": ({"drop_lorem_ipsum": True}, lambda: C4QualityFilter(**{**C4_OFF, "filter_lorem_ipsum": True})),
    "curly_braces": ({"drop_curly_braces": True}, lambda: C4QualityFilter(**{**C4_OFF, "filter_curly_bracket": True})),
    "min_sentences": ({"min_sentences": 5}, lambda: C4QualityFilter(**{**C4_OFF, "min_num_sentences": 5})),
}


def only(**on: Any) -> QualityThresholds:
    """Thresholds with every rule off but the ones given."""
    off: dict[str, Any] = {
        name: None
        for name, field in QualityThresholds.model_fields.items()
        if field.annotation in (int | None, float | None)
    }
    off.update(
        max_top_ngram_ratios=[None] * 3,
        max_dup_ngram_ratios=[None] * 6,
        drop_lorem_ipsum=False,
        drop_curly_braces=False,
        allowed_languages=[],
    )
    return QualityThresholds(**{**off, **on})


@lru_cache(maxsize=1)
def real_documents() -> tuple[str, ...]:
    """A few thousand documents from what is installed here, normalized as the clean stage does."""
    texts = [
        record.text for record in (record for unit in iter_stdlib_units() for record in unit.read()) if record.text
    ]
    for metadata in sorted(Path(sysconfig.get_paths()["purelib"]).glob("*.dist-info/METADATA")):
        body = email.message_from_string(metadata.read_text(encoding="utf-8", errors="replace")).get_payload()
        if isinstance(body, str) and body.strip():
            texts.append(body)
    # a few made-up pages, so that rules real docs never trip (lorem ipsum, ellipsis lines) are exercised too
    texts += [
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Sed do eiusmod tempor.\n" * 3,
        "\n".join(f"And the story went on and on with line {i}..." for i in range(12)),
        "\n".join(f"• item {i}" for i in range(20)),
    ]
    normalized = (normalize_text(text) for text in texts)
    return tuple(text for text in normalized if text)


def test_the_sample_is_a_few_thousand_real_documents() -> None:
    docs = real_documents()
    assert len(docs) >= 3000
    assert sum(len(d) for d in docs) > 2_000_000


@lru_cache(maxsize=1)
def scored() -> tuple[dict[str, float | int], ...]:
    return tuple(score_document(text) for text in real_documents())


@lru_cache(maxsize=1)
def decisions() -> dict[str, list[tuple[bool, bool]]]:
    """(ours drops, datatrove drops) per rule and document. Document by document, so datatrove's own
    cache of the last few tokenized texts serves all of its filters for one document."""
    filters = {rule: make() for rule, (_, make) in RULES.items()}
    thresholds = {rule: only(**on) for rule, (on, _) in RULES.items()}
    table: dict[str, list[tuple[bool, bool]]] = {rule: [] for rule in RULES}
    for i, (text, scores) in enumerate(zip(real_documents(), scored(), strict=True)):
        for rule in RULES:
            theirs = filters[rule].filter(Document(text=text, id=str(i))) is not True
            table[rule].append((first_failure(scores, thresholds[rule]) is not None, theirs))
    return table


@pytest.mark.slow  # scores 5,547 real documents with both implementations (~35 s): make test and CI run it
@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_keeps_and_drops_what_datatrove_does(rule: str) -> None:
    pairs = decisions()[rule]
    disagree = [
        (i, "ours drops" if ours else "datatrove drops", real_documents()[i][:80])
        for i, (ours, theirs) in enumerate(pairs)
        if ours != theirs
    ]
    assert not disagree, f"{len(disagree)} of {len(pairs)} decisions differ, e.g. {disagree[:3]}"
    assert any(theirs for _, theirs in pairs), f"rule {rule} dropped no document: the comparison would prove nothing"


def test_the_early_word_count_never_overcounts_and_decides_as_the_full_scoring() -> None:
    """Clean rejects a text early when even a lower bound of its words is over `max_words`: the bound
    must never exceed the count the full scoring makes, on any real document."""
    bounds = [words_lower_bound(text) for text in real_documents()]
    counts = [int(scores["n_words"]) for scores in scored()]
    over = [(b, c, text[:60]) for b, c, text in zip(bounds, counts, real_documents(), strict=True) if b > c]
    assert not over, over[:3]
    assert sum(bounds) >= 0.7 * sum(counts)  # close enough to catch what is far over the limit
    long_text = " ".join(real_documents()[:400])
    thresholds = only(max_words=len(long_text.split()) // 4)
    early = surely_too_many_words(long_text, thresholds)
    assert early and early[0] == "gopher_too_many_words"
    assert first_failure(score_document(long_text), thresholds)[0] == early[0]  # type: ignore[index]
    assert surely_too_many_words(real_documents()[0], QualityThresholds()) is None
