"""Clean: repair and normalization, every quality rule, language, PII, exact and near dedup, counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import DraftflowError
from storage.parquet_store import iter_batches, read_manifest
from storage.settings import Settings
from tasks.clean.dedup import NearDeduper, simplify_text
from tasks.clean.language import identify
from tasks.clean.params import CleanParams, QualityThresholds, SourceProfile, SourceThresholds
from tasks.clean.pii import scrub_pii
from tasks.clean.profiles import thresholds_for
from tasks.clean.quality import first_failure, score_document
from tasks.clean.stage import clean_corpus
from tasks.clean.steps import normalize_text
from tasks.ingest.stage import ingest_corpus

GOOD = (
    "The library keeps a small cache of compiled patterns, so that a program which uses the same "
    "expression many times does not pay for compiling it again. Each entry is created on first use and "
    "stays until the cache is full, when the oldest entries are removed to make room for new ones.\n"
    "Most programs never notice this behaviour, but a service that builds thousands of different "
    "patterns from user input should compile them once and keep the objects itself, because the shared "
    "cache is small and would otherwise be emptied over and over again during a busy hour of traffic."
)
FRENCH = (
    "La bibliothèque conserve un petit cache des expressions compilées, afin qu'un programme qui "
    "utilise souvent la même expression ne paie pas deux fois sa compilation. Chaque entrée est créée "
    "lors de la première utilisation et reste jusqu'à ce que le cache soit plein."
)


def rows(directory: Path) -> list[dict]:
    return [r for b in iter_batches(directory) for r in b.to_pylist()]


def verdict(text: str, t: QualityThresholds | None = None) -> str | None:
    text = normalize_text(text)
    failure = first_failure(score_document(text), t or QualityThresholds())
    return failure[0] if failure else None


def test_normalize_text_repairs_unicode_and_removes_control_characters() -> None:
    assert normalize_text("a\x00b\x07c  \r\n\n\n\n\tindented\x9f  ", fix_unicode=False) == "abc\n\n\tindented"
    assert normalize_text("cafÃ© â€œquotedâ€\x9d") == "café “quoted”"  # ftfy repairs mojibake
    assert normalize_text("cafe\u0301") == "caf\u00e9"  # NFC


def test_a_good_document_passes_every_web_rule() -> None:
    assert verdict(GOOD) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Too short to be a page.", "gopher_too_few_words"),
        ((GOOD + " ") + " ".join(["a b c d e f g h"] * 20), "gopher_short_words"),
        (" ".join(f"internationalization{i} telecommunications" for i in range(40)) + " " + GOOD, "gopher_long_words"),
        (GOOD + " " + "# " * 30, "gopher_hashes"),
        (GOOD + " " + "... " * 30, "gopher_ellipses"),
        ("\n".join(f"- item {i} of the list, with the details" for i in range(40)), "gopher_bullet_lines"),
        ("\n".join(f"And then the story went on and on with line {i} ..." for i in range(30)), "gopher_ellipsis_lines"),
        (GOOD + " " + " ".join(["1234 5678 90"] * 40), "gopher_non_alpha_words"),
        (
            GOOD.replace(" the ", " a ")
            .replace("The ", "A ")
            .replace(" and ", " or ")
            .replace(" to ", " for ")
            .replace(" of ", " in ")
            .replace(" be ", " get ")
            .replace(" that ", " so "),
            "gopher_few_stop_words",
        ),
        (GOOD + "\n" + "\n".join(["Click here to subscribe to the newsletter of the shop."] * 12), "gopher_dup_lines"),
    ],
)
def test_gopher_rules_drop_with_their_reason(text: str, reason: str) -> None:
    assert verdict(text) == reason


def test_repetition_rules() -> None:
    looped = " ".join(["the cache of the cache of the program"] * 20) + ". " + GOOD
    assert verdict(looped, QualityThresholds(max_dup_line_ratio=None, max_dup_line_char_ratio=None)) in {
        "gopher_top_2gram",
        "gopher_top_3gram",
        "gopher_top_4gram",
    }
    repeated = GOOD + " " + GOOD.split("\n")[0] + " " + GOOD.split("\n")[0]
    assert verdict(repeated).startswith("gopher_dup_")  # a repeated passage: duplicated n-grams
    paragraphs = "\n\n".join([GOOD.split("\n")[0]] * 3 + [GOOD.split("\n")[1]])
    lines_off = QualityThresholds(max_dup_line_ratio=None, max_dup_line_char_ratio=None)
    assert verdict(paragraphs, lines_off) == "gopher_dup_paragraphs"


def test_c4_and_fineweb_rules() -> None:
    assert verdict(GOOD + " Lorem ipsum dolor sit amet.") == "c4_lorem_ipsum"
    assert verdict(GOOD + " Use {x} here.") is None  # off by default: code samples use braces
    assert verdict(GOOD + " Use {x} here.", QualityThresholds(drop_curly_braces=True)) == "c4_curly_braces"
    assert verdict(GOOD, QualityThresholds(min_sentences=10)) == "c4_few_sentences"
    unpunctuated = "\n".join(GOOD.replace(".", "").replace(",", "").split(" which "))
    no_punct = "\n".join(line for line in unpunctuated.split(" so ") for line in [line])
    assert verdict(no_punct + "\nsee more", QualityThresholds(max_short_line_ratio=None)) == "fineweb_line_punct"
    short_lines = GOOD + "\n" + "\n".join(f"Menu item {i}." for i in range(12))
    repetition_off = QualityThresholds(max_dup_line_ratio=None, max_top_ngram_ratios=[None] * 3)
    assert verdict(short_lines, repetition_off) == "fineweb_short_lines"
    dup_chars = GOOD + "\nShare this page.\nShare this page."
    assert verdict(dup_chars) == "fineweb_char_dup"


def test_short_form_thresholds_keep_what_web_thresholds_drop() -> None:
    docstring = "Return the number of items in the queue."
    assert verdict(docstring) == "gopher_too_few_words"
    assert verdict(docstring, thresholds_for("short-form")) is None


def test_language_identification() -> None:
    assert identify(GOOD)[0] == "en"
    language, probability = identify(FRENCH)
    assert language == "fr" and probability > 0.9


def test_pii_is_replaced_per_kind() -> None:
    text = (
        "Write to jane.doe@example.com or call +1 415 555 0100 or (020) 7946 0958. The server is 8.8.8.8; "
        "the router 192.168.1.1 and localhost 127.0.0.1 stay. Released 2026-11-28, version 3.11."
    )
    scrubbed, counts = scrub_pii(text, regions=["US", "GB"])  # (020) 7946 0958 is a national UK number
    assert counts == {"email": 1, "phone": 2, "ip": 1}
    assert "<EMAIL>" in scrubbed and scrubbed.count("<PHONE>") == 2 and "<IP_ADDRESS>" in scrubbed
    assert "192.168.1.1" in scrubbed and "127.0.0.1" in scrubbed and "2026-11-28" in scrubbed


def test_near_duplicates_are_confirmed_by_true_jaccard() -> None:
    near = NearDeduper(threshold=0.8)
    assert near.check("first", GOOD) is None
    edited = GOOD.replace("thousands", "hundreds")  # one word changed in ~90
    match = near.check("second", edited)
    assert match is not None and match[0] == "first" and 0.8 <= match[1] < 1.0
    assert near.check("third", FRENCH) is None
    assert near.check("fourth", GOOD.split("\n")[0]) is None  # half the text: Jaccard well below 0.8


def test_clean_stage_records_reasons_scores_and_step_counters(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "web"
    src.mkdir()
    (src / "a.txt").write_text(GOOD + " Contact jane@example.com for details.")
    (src / "b.txt").write_text(GOOD.upper().lower() + " Contact jane@example.com for details.  ")  # exact dup
    (src / "c.txt").write_text(GOOD.replace("thousands", "hundreds") + " Contact jane@example.com for details.")
    (src / "d.txt").write_text("This is far too short to keep.")
    (src / "e.txt").write_text(FRENCH + " " + FRENCH.replace("cache", "tampon"))
    (src / "f.txt").write_text(
        GOOD.replace("library", "module")
        .replace("cache", "table")
        .replace("patterns", "queries")
        .replace("program", "client")
        .replace("expression", "statement")
        .replace("entries", "rows")
        .replace("service", "server")
        .replace("objects", "results")
    )
    raw = ingest_corpus([str(src)], settings)
    ref = clean_corpus(raw, settings)

    kept, rejected = rows(settings.clean_dir), rows(settings.rejected_dir("clean"))
    assert ref.stats["input"] == raw.rows == ref.rows + len(rejected) == 6
    by_file = {Path(r["file"]).name: r for r in rejected}
    assert by_file["b.txt"]["reason"] == "duplicate"
    assert by_file["b.txt"]["detail"] == f"duplicate of {kept[0]['doc_id']}"
    assert by_file["c.txt"]["reason"] == "near_duplicate" and kept[0]["doc_id"] in by_file["c.txt"]["detail"]
    assert by_file["d.txt"]["reason"] == "gopher_too_few_words"
    assert by_file["d.txt"]["detail"] == "n_words 7 < 50"
    assert by_file["e.txt"]["reason"] == "language" and by_file["e.txt"]["detail"].startswith("fr ")
    assert sorted(Path(r["file"]).name for r in kept) == ["a.txt", "f.txt"]
    first = kept[0]
    assert "<EMAIL>" in first["text"] and first["pii_email"] == 1 and ref.stats["pii_email"] == 1
    assert first["language"] == "en" and first["n_words"] > 50 and 0 < first["alpha_words_ratio"] <= 1
    steps = {s["step"]: s for s in ref.report}
    assert list(steps) == ["normalize", "language", "quality", "pii", "exact_dedup", "near_dedup"]
    assert steps["normalize"]["documents"] == 6 and steps["language"]["dropped"] == 1
    assert steps["quality"]["dropped"] == 1 and steps["exact_dedup"]["dropped"] == 1
    assert steps["near_dedup"]["dropped"] == 1 and steps["near_dedup"]["documents"] == 3
    assert all(s["megabytes"] > 0 and s["seconds"] >= 0 for s in ref.report)
    assert read_manifest(settings.clean_dir)["steps"] == ref.report


def test_thresholds_are_set_per_source(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "blurbs").mkdir()
    (tmp_path / "blurbs" / "a.txt").write_text("A compact kettle that boils a litre in two minutes.")
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "b.txt").write_text("A compact kettle that boils water in two minutes.")
    raw = ingest_corpus([str(tmp_path / "blurbs"), str(tmp_path / "pages")], settings)
    params = CleanParams(profile="web", profiles=[SourceProfile(source="blurbs", profile="short-form")])
    ref = clean_corpus(raw, settings, params.model_copy(update={"dedup_near": False}))
    assert [r["source"] for r in rows(settings.clean_dir)] == ["blurbs"]
    assert ref.stats["rejected_gopher_too_few_words"] == 1
    assert ref.profiles == {"blurbs": "short-form (set in profiles)", "pages": "web (set by --profile)"}
    # a per_source entry overrides the thresholds it names, on top of the source's profile
    strict_blurbs = CleanParams(
        profile="web",
        profiles=[SourceProfile(source="blurbs", profile="short-form")],
        per_source=[SourceThresholds(source="blurbs", min_words=20)],
    )
    with pytest.raises(DraftflowError, match=r"all 2 were rejected \(2 gopher_too_few_words\)"):
        clean_corpus(raw, settings, strict_blurbs.model_copy(update={"dedup_near": False}))


def test_empty_corpus_after_cleaning_is_a_user_error(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("tiny")
    (tmp_path / "b.txt").write_text("also tiny")
    raw = ingest_corpus([str(tmp_path)], settings)
    with pytest.raises(
        DraftflowError, match=r"no documents left after cleaning: all 2 were rejected \(.*gopher_too_few_words"
    ):
        clean_corpus(raw, settings)
    assert len(rows(settings.rejected_dir("clean"))) == 2  # the reasons are still on disk


def test_clean_without_ingest_says_what_to_run(settings: Settings) -> None:
    from storage.refs import DatasetRef

    with pytest.raises(DraftflowError, match="draftflow ingest"):
        clean_corpus(DatasetRef(path=str(settings.raw_dir), fingerprint="x", rows=0), settings)


def test_the_three_rules_that_had_drifted_from_the_published_ones() -> None:
    # stop words are counted as distinct words, matched as written: "the" ten times is one stop word
    assert score_document(" ".join(["the"] * 10 + ["cat"] * 10))["stop_words"] == 1
    assert score_document("The cat and the dog")["stop_words"] == 2  # "the" and "and"; "The" is not "the"
    # hashes and ellipses are two ratios, each against the threshold (not one summed ratio)
    marked = GOOD + " #" * 8 + " ..." * 8 + " The end."  # the last line ends with a sentence, not an ellipsis
    scores = score_document(marked)
    assert scores["hash_ratio"] < 0.1 and scores["ellipsis_ratio"] < 0.1
    assert scores["hash_ratio"] + scores["ellipsis_ratio"] > 0.1
    assert verdict(marked) is None
    # a line of exactly 30 characters is a short line
    assert score_document("x" * 30 + "\n" + "y" * 31)["short_line_ratio"] == 0.5


def test_near_dedup_compares_text_as_datatrove_simplifies_it() -> None:
    """Two copies of a quotation that differ only in quote marks, dashes, case and indentation."""
    first = (
        "“To be, or not to be: that is the question.”\n    Whether ’tis nobler in the mind to suffer the slings "
        "and arrows of outrageous fortune, or to take arms against a sea of troubles."
    )
    second = (
        '"TO BE OR NOT TO BE -- that is the question"\nWhether \'tis nobler in the mind to suffer\n  the slings '
        "and arrows of outrageous fortune -- or to take arms against a sea of troubles..."
    )
    deduper = NearDeduper()
    assert deduper.check("first", first) is None
    assert deduper.check("second", second) == ("first", 1.0)
    assert simplify_text("Café 3.14, and 2,000 items — in 1999!") == "cafe 0 and 0 items in 0"
