"""The clean stage's parameters: which steps run, and each source's quality thresholds."""

from __future__ import annotations

from pydantic import Field

from storage.params import Params

PROFILES = ("web", "short-form", "dialogue", "long-form", "docs")  # tasks/clean/profiles.py: what each one means
PROFILE_PATTERN = f"^({'|'.join(PROFILES)})$"


class QualityThresholds(Params):
    """One source's thresholds; defaults are the published web-text values. None turns a rule off."""

    # Gopher quality
    min_words: int | None = Field(50, description="Gopher: minimum words (symbols not counted).")
    max_words: int | None = Field(100_000, description="Gopher: maximum words.")
    min_mean_word_length: float | None = Field(3.0, description="Gopher: minimum mean word length.")
    max_mean_word_length: float | None = Field(10.0, description="Gopher: maximum mean word length.")
    max_symbol_word_ratio: float | None = Field(
        0.1, description="Gopher: '#' per token, and ellipses per token (two rules, one threshold)."
    )
    max_bullet_lines_ratio: float | None = Field(0.9, description="Gopher: share of lines starting with '•' or '-'.")
    max_ellipsis_lines_ratio: float | None = Field(0.3, description="Gopher: share of lines ending with an ellipsis.")
    min_alpha_words_ratio: float | None = Field(0.8, description="Gopher: share of tokens with a letter.")
    min_stop_words: int | None = Field(
        2, description="Gopher: minimum distinct English stop words (the, be, to, of, and, that, have, with)."
    )
    # Gopher repetition
    max_dup_line_ratio: float | None = Field(0.3, description="Share of lines that repeat an earlier line.")
    max_dup_para_ratio: float | None = Field(0.3, description="Share of paragraphs that repeat one.")
    max_dup_line_char_ratio: float | None = Field(0.2, description="Share of characters in repeated lines.")
    max_dup_para_char_ratio: float | None = Field(0.2, description="Share of characters in repeated paragraphs.")
    max_top_ngram_ratios: list[float | None] = Field(
        default_factory=lambda: list[float | None]([0.20, 0.18, 0.16]),
        description="Share of characters in the most frequent 2-, 3-, 4-gram.",
    )
    max_dup_ngram_ratios: list[float | None] = Field(
        default_factory=lambda: list[float | None]([0.15, 0.14, 0.13, 0.12, 0.11, 0.10]),
        description="Share of characters in repeated 5- to 10-grams.",
    )
    # C4
    drop_lorem_ipsum: bool = Field(True, description="C4: drop documents with 'lorem ipsum' in a sentence line.")
    drop_curly_braces: bool = Field(
        False, description="C4: drop documents with '{' in a sentence line (off: code samples use them)."
    )
    min_sentences: int | None = Field(None, description="C4: minimum sentences in the lines C4 keeps.")
    # FineWeb
    min_line_punct_ratio: float | None = Field(0.12, description="FineWeb: share of lines ending in punctuation.")
    max_short_line_ratio: float | None = Field(0.67, description="FineWeb: share of lines of at most 30 characters.")
    max_char_dup_ratio: float | None = Field(0.01, description="FineWeb: share of characters in duplicated lines.")
    max_newline_ratio: float | None = Field(0.3, description="FineWeb: newlines per word (list-like pages).")
    # language
    allowed_languages: list[str] = Field(
        default_factory=lambda: ["en"], description="ISO 639-1 codes to keep; empty keeps every language."
    )
    min_language_score: float = Field(0.0, ge=0, le=1, description="Minimum language-ID probability.")

    def limit(self, name: str) -> float | None:
        """A threshold by name; `max_top_3gram_ratio` and `max_dup_7gram_ratio` index the n-gram lists."""
        for prefix, first, values in (
            ("max_top_", 2, self.max_top_ngram_ratios),
            ("max_dup_", 5, self.max_dup_ngram_ratios),
        ):
            if name.startswith(prefix) and name.endswith("gram_ratio"):
                index = int(name[len(prefix) : -len("gram_ratio")]) - first
                return values[index] if index < len(values) else None
        return getattr(self, name)


class SourceThresholds(QualityThresholds):
    """Thresholds for the documents of one source (matched by source name); the fields given override
    the source's profile, the others keep the profile's values."""

    source: str = Field(..., description="Source name, e.g. 'python-stdlib-docs' or the NAME of NAME=PATH.")


class SourceProfile(Params):
    """The cleaning profile of one source (matched by source name)."""

    source: str = Field(..., description="Source name, e.g. 'python-stdlib-docs' or the NAME of NAME=PATH.")
    profile: str = Field(..., pattern=PROFILE_PATTERN, description="web, short-form, dialogue, long-form or docs.")


class CleanParams(Params):
    """Cleaning steps and thresholds. A source's thresholds are, in order: its `per_source` entry, its
    entry in `profiles`, the profile its ingest named (`NAME=PATH:profile`), then `profile`."""

    profile: str = Field(
        "auto",
        pattern=f"^(auto|{PROFILE_PATTERN[2:-2]})$",
        description="Profile of sources without their own: auto (chosen per source from its documents), web, "
        "short-form, dialogue, long-form or docs.",
    )
    profiles: list[SourceProfile] = Field(
        default_factory=lambda: [SourceProfile(source="python-stdlib-docs", profile="short-form")],
        description="Profiles of named sources.",
    )
    thresholds: QualityThresholds = Field(
        default_factory=QualityThresholds, description="The web profile's thresholds (the published values)."
    )
    per_source: list[SourceThresholds] = Field(
        default_factory=list,
        description="Thresholds of named sources: the ones given override those of the source's profile.",
    )
    max_drop_share: float = Field(
        0.5, ge=0, le=1, description="Warn when cleaning drops more than this share of a source's documents."
    )
    strict: bool = Field(False, description="Fail the run instead of warning when a source is decimated.")
    fix_unicode: bool = Field(True, description="Repair mojibake with ftfy (conservative settings).")
    scrub_pii: bool = Field(True, description="Replace e-mails, phone numbers and public IPs with placeholders.")
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US"],
        description="Regions whose national phone formats are recognized (ISO 3166 codes, e.g. US, GB, DE); a "
        "number written with + is recognized in any.",
    )
    dedup_exact: bool = Field(True, description="Drop exact duplicates (normalized text).")
    dedup_near: bool = Field(True, description="Drop near duplicates (MinHash LSH, confirmed by Jaccard).")
    near_threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of word 5-grams.")
    num_perm: int = Field(112, ge=16, le=1024, description="MinHash permutations.")
    shingle_words: int = Field(5, ge=1, le=32, description="Words per shingle.")

    def for_source(self, source: str) -> QualityThresholds:
        return next((t for t in self.per_source if t.source == source), self.thresholds)
