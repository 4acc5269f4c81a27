"""Cleaning profiles: thresholds that fit the kind of text a source holds, and the choice of one per source.

The published web-text rules (Gopher, FineWeb, C4) assume web pages of 50+ words in prose lines. Other
text breaks them on purpose: a saying has 8 words, a play names its speaker on every line, verse has
short lines without full stops, reference docs have code, lists and headings. Each profile turns off
or widens exactly the rules its kind of text breaks by design, and keeps the rest:

- `web`: the published values (`CleanParams.thresholds`, tunable).
- `short-form`: sayings, product blurbs, docstrings, posts (under ~50 words): no minimum of 50 words
  (3), no stop-word rule (a 5-word line may have none), no line- or n-gram-share rules (a short text's
  single line or single 2-gram is a large share by construction), any language (language ID is unsure
  on a few words).
- `dialogue`: plays, transcripts, interviews: speaker cues repeat on every line (FineWeb's duplicated
  characters, Gopher's duplicated lines and top n-grams) and are short lines without full stops; cues
  and short turns are punctuation-heavy (alphabetic words 0.6, not 0.8) and exchanges repeat.
- `long-form`: books, long essays, verse: no maximum word count (a book part has 100k+ words),
  short unpunctuated lines allowed (verse), headings and refrains may repeat.
- `docs`: reference pages, READMEs, manuals, changelogs: code, lists and headings (hashes, bullets,
  symbols, short lines, lines without full stops) are normal, and API phrases repeat.

`auto` (the default) picks a profile per source from a sample of its own documents (the median word
count, speaker cues, short and unpunctuated lines, code and list lines) and says which and why.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable

from storage.locations import Location
from storage.parquet_store import iter_batches, read_manifest
from tasks.clean.params import PROFILES, CleanParams, QualityThresholds, SourceThresholds

SAMPLE = 300  # documents per source the choice looks at
# Each sampled text is cut to this many characters: enough to see 5,000+ words (long-form) and the
# line structure, without holding 300 book-sized documents in memory.
SAMPLE_CHARS = 64_000
_SPEAKER = re.compile(r"^(?:[A-Z][A-Z .'\-]{1,30}[.:]|[A-Z][\w .'\-]{0,30}:\s.+)$")
_CODE_OR_LIST = re.compile(r"^\s*(?:#|[-*•]\s|>>>|\d+\.\s|```|\$ )|[{}();=]\s*$|^\s{4,}\S")
_END = (".", "!", "?", '"', "'", "”", "’", ":", ";", ")")


def thresholds_for(profile: str, web: QualityThresholds | None = None) -> QualityThresholds:
    """The thresholds of a named profile (`web` is the given web thresholds, the published ones by default)."""
    base = web or QualityThresholds()
    if profile == "web":
        return base
    off = {"max_top_ngram_ratios": [None, None, None]}
    changes: dict[str, dict[str, object]] = {
        "short-form": {
            "min_words": 3,
            "min_mean_word_length": 2.0,
            "max_mean_word_length": 15.0,
            "max_symbol_word_ratio": 0.5,
            "min_alpha_words_ratio": 0.5,
            "min_stop_words": None,
            "max_dup_line_char_ratio": 0.3,
            "min_line_punct_ratio": None,
            "max_short_line_ratio": None,
            "max_char_dup_ratio": None,
            "max_newline_ratio": None,
            "max_dup_ngram_ratios": [0.25, 0.24, 0.23, 0.22, 0.21, 0.20],
            "allowed_languages": [],
            **off,
        },
        "dialogue": {
            "max_dup_line_ratio": None,
            "max_dup_line_char_ratio": None,
            "max_dup_para_ratio": None,
            "max_dup_para_char_ratio": None,
            "max_bullet_lines_ratio": None,
            "max_ellipsis_lines_ratio": None,
            "min_line_punct_ratio": None,
            "max_short_line_ratio": None,
            "max_char_dup_ratio": None,
            "max_newline_ratio": None,
            "max_symbol_word_ratio": 0.3,
            # every cue adds a ':' or '.' token and short turns end in '?' or '!': measured 0.77-0.86
            # on real transcripts, where web prose is above 0.9
            "min_alpha_words_ratio": 0.6,
            "max_dup_ngram_ratios": [0.25, 0.24, 0.23, 0.22, 0.21, 0.20],  # refrains, "Q: ... A: No."
            **off,
        },
        "long-form": {
            "max_words": None,
            "max_short_line_ratio": None,
            "min_line_punct_ratio": None,
            "max_char_dup_ratio": 0.2,
            "max_newline_ratio": None,
            "max_dup_line_ratio": 0.5,
            "max_dup_line_char_ratio": 0.3,
            "max_ellipsis_lines_ratio": None,
        },
        "docs": {
            "min_words": 20,
            "max_symbol_word_ratio": 0.5,
            "max_bullet_lines_ratio": None,
            # code and version numbers split into symbol tokens: measured median 0.66 on Sphinx API
            # pages and 0.54 on Debian changelogs, against 0.9+ for prose
            "min_alpha_words_ratio": 0.5,
            "min_stop_words": 1,
            "min_line_punct_ratio": None,
            "max_short_line_ratio": None,
            "max_char_dup_ratio": 0.1,
            "max_newline_ratio": None,
            "max_mean_word_length": 15.0,
            "max_top_ngram_ratios": [0.3, 0.25, 0.2],
            # signatures, "Return the ..." and "Parameters" repeat by design: measured 5-gram share
            # median 0.13, 90th percentile 0.26 on API pages (Gopher's web limit is 0.15)
            "max_dup_ngram_ratios": [0.35, 0.34, 0.33, 0.32, 0.31, 0.30],
        },
    }
    if profile not in changes:
        raise ValueError(f"unknown profile {profile!r} (one of: {', '.join(PROFILES)})")
    return base.model_copy(update=changes[profile])


def choose_profile(texts: Iterable[str]) -> tuple[str, str]:
    """(profile, why) for a source, from a sample of its documents."""
    sample = [t for t in texts if t and t.strip()][:SAMPLE]
    if not sample:
        return "web", "no documents to look at"
    words = statistics.median(len(t.split()) for t in sample)
    lines = [line.strip() for t in sample for line in t.splitlines() if line.strip()]
    share = lambda hits: sum(hits) / len(lines)  # noqa: E731 - a one-line ratio over the sample's lines
    speakers = share(bool(_SPEAKER.match(line)) for line in lines)
    code = share(bool(_CODE_OR_LIST.search(line)) for line in lines)
    short = share(len(line) <= 30 for line in lines)
    ended = share(line.endswith(_END) for line in lines)
    if speakers >= 0.15 and words >= 50:
        return "dialogue", f"{speakers:.0%} of lines are speaker cues (NAME. or NAME: ...)"
    if words < 50:
        return "short-form", f"median {words:.0f} words per document; the web rules need 50"
    if code >= 0.15:
        return "docs", f"{code:.0%} of lines are code, list items or headings"
    if words >= 5000 or (short >= 0.5 and ended < 0.5):
        why = (
            f"median {words:.0f} words per document"
            if words >= 5000
            else (f"{short:.0%} of lines are short and {1 - ended:.0%} end without punctuation (verse)")
        )
        return "long-form", why
    return "web", f"median {words:.0f} words, {ended:.0%} of lines end a sentence: prose"


def resolve_profiles(params: CleanParams, raw_dir: Location) -> tuple[CleanParams, dict[str, str]]:
    """The parameters with every source's thresholds spelled out in `per_source`, and for each source
    the profile it got and why ({"sayings": "short-form (auto: median 8 words per document ...)"}).

    A source's profile comes from `profiles`, else the profile its ingest named, else `--profile`, else
    the choice made from its documents; its `per_source` entry then overrides the thresholds it sets.
    """
    manifest = read_manifest(raw_dir) or {}
    named_at_ingest: dict[str, str] = manifest.get("profiles", {})
    explicit = {p.source: p.profile for p in params.profiles}
    chosen: dict[str, tuple[str, str]] = {}
    to_sample = []
    for source in manifest.get("sources", []):
        if source in explicit:
            chosen[source] = (explicit[source], "set in profiles")
        elif source in named_at_ingest:
            chosen[source] = (named_at_ingest[source], "named at ingest")
        elif params.profile != "auto":
            chosen[source] = (params.profile, "set by --profile")
        else:
            to_sample.append(source)
    for source, texts in _samples(raw_dir, to_sample).items():
        profile, why = choose_profile(texts)
        chosen[source] = (profile, f"auto: {why}")
    overrides = {t.source: {k: getattr(t, k) for k in t.model_fields_set - {"source"}} for t in params.per_source}
    resolved, labels = [], {}
    for source, (profile, why) in sorted(chosen.items()):
        base = thresholds_for(profile, params.thresholds).model_dump()
        resolved.append(SourceThresholds(source=source, **{**base, **overrides.get(source, {})}))
        labels[source] = f"{profile} ({why}{', with per_source overrides' if source in overrides else ''})"
    return params.model_copy(update={"per_source": resolved}), labels


def _samples(raw_dir: Location, sources: list[str]) -> dict[str, list[str]]:
    """Up to SAMPLE texts of each source, in corpus order (one pass, stopping once every source has its)."""
    wanted: dict[str, list[str]] = {source: [] for source in sources}
    if not wanted:
        return wanted
    for batch in iter_batches(raw_dir, columns=["source", "text"], batch_size=2048):
        for source, text in zip(batch.column("source").to_pylist(), batch.column("text").to_pylist(), strict=True):
            if source in wanted and len(wanted[source]) < SAMPLE:
                wanted[source].append((text or "")[:SAMPLE_CHARS])  # choose_profile skips empty texts
        if all(len(texts) >= SAMPLE for texts in wanted.values()):
            break
    return wanted
