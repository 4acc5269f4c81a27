"""Cleaning profiles: chosen per source from its own documents, named by the user, and the loud guard
against a source losing most of its documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from storage.errors import DraftflowError
from storage.settings import Settings
from tasks.clean.params import CleanParams
from tasks.clean.profiles import choose_profile
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tests.cli_helpers import run_cli
from tests.conftest import paragraph

SAYINGS = [
    "Know thyself.",
    "Less is more.",
    "Time and tide wait for no man.",
    "A stitch in time saves nine.",
    "Fortune favours the bold.",
    "Actions speak louder than words.",
    "The pen is mightier than the sword.",
    "Still waters run deep.",
    "Where there is smoke there is fire.",
    "Practice makes perfect.",
    "Rome was not built in a day.",
    "Every cloud has a silver lining.",
    "Haste makes waste.",
    "Better late than never.",
    "Two heads are better than one.",
    "Look before you leap.",
]


def play(rng: random.Random, speakers: tuple[str, ...] = ("HAMLET", "HORATIO", "MARCELLUS")) -> str:
    """A scene: a speaker's name alone on a line, then a speech, speaker after speaker."""
    return "\n".join(f"{rng.choice(speakers)}.\n{paragraph(rng, 2)}" for _ in range(12))


def verse(rng: random.Random) -> str:
    words = paragraph(rng, 12).replace(".", "").split()
    return "\n".join(" ".join(words[i : i + 5]) for i in range(0, len(words), 5))


def docs_page(rng: random.Random) -> str:
    return "\n".join(
        [
            "# The module",
            "",
            paragraph(rng, 2),
            "",
            "```python",
            "value = compute(key)",
            "print(value)",
            "```",
            "",
            "- returns the value",
            "- raises KeyError",
            "",
            "## Options",
            "",
            paragraph(rng, 2),
        ]
    )


def test_a_profile_is_chosen_from_the_sources_own_documents() -> None:
    rng = random.Random(0)
    assert choose_profile(SAYINGS)[0] == "short-form"
    assert choose_profile([play(rng) for _ in range(5)])[0] == "dialogue"
    assert choose_profile([verse(rng) for _ in range(5)])[0] == "long-form"
    assert choose_profile([docs_page(rng) for _ in range(5)])[0] == "docs"
    assert choose_profile([paragraph(rng, 8) for _ in range(5)])[0] == "web"
    _, why = choose_profile(SAYINGS)
    assert "median" in why and "words per document" in why


def _write(folder: Path, texts: list[str], suffix: str = ".txt") -> Path:
    folder.mkdir(parents=True)
    for i, text in enumerate(texts):
        (folder / f"doc{i:03d}{suffix}").write_text(text)
    return folder


def test_auto_keeps_what_the_web_rules_would_decimate_and_names_each_choice(settings: Settings, tmp_path: Path) -> None:
    rng = random.Random(1)
    sayings = _write(tmp_path / "sayings", SAYINGS)
    plays = _write(tmp_path / "plays", [play(rng) for _ in range(8)])
    pages = _write(tmp_path / "pages", [paragraph(rng, 8) for _ in range(4)])
    raw = ingest_corpus([str(sayings), str(plays), str(pages)], settings)
    web = clean_corpus(raw, settings, CleanParams(profile="web", dedup_near=False))
    assert web.rows <= 6  # the published web rules drop short sayings and speaker cues, keep the pages
    assert {w.split("'")[1] for w in web.warnings} == {"sayings", "plays"}
    auto = clean_corpus(raw, settings, CleanParams(dedup_near=False))
    assert auto.rows >= 0.9 * raw.rows and not auto.warnings
    assert auto.profiles["sayings"].startswith("short-form (auto: median")
    assert auto.profiles["plays"].startswith("dialogue (auto:")


def test_the_warning_names_the_reasons_and_the_setting_that_keeps_them(settings: Settings, tmp_path: Path) -> None:
    rng = random.Random(2)
    sayings = _write(tmp_path / "sayings", SAYINGS)
    pages = _write(tmp_path / "pages", [paragraph(rng, 8) for _ in range(4)])
    raw = ingest_corpus([str(sayings), str(pages)], settings)
    (warning,) = clean_corpus(raw, settings, CleanParams(profile="web", dedup_near=False)).warnings
    assert warning.startswith("source 'sayings' lost 100% of its 16 documents in cleaning (gopher_too_few_words")
    assert "clean it as short-form (`sayings=PATH:short-form`" in warning
    snippet = warning.split("or set min_words to ")[1]
    assert json.loads(snippet.split(" for it (")[1].split(" in --clean-config")[0]) == {
        "per_source": [{"source": "sayings", "min_words": int(snippet.split(" ")[0])}]
    }
    with pytest.raises(DraftflowError, match=r"source .sayings. lost 100%.*--strict is on"):
        clean_corpus(raw, settings, CleanParams(profile="web", strict=True, max_drop_share=0.5))


def test_profiles_from_the_command_line_and_the_guard_is_loud(
    capsys: pytest.CaptureFixture[str], settings: Settings, tmp_path: Path
) -> None:
    sayings = _write(tmp_path / "sayings", SAYINGS)
    rng = random.Random(3)
    pages = _write(tmp_path / "pages", [paragraph(rng, 8) for _ in range(4)])
    assert run_cli(capsys, "ingest", f"sayings={sayings}:web").code == 0
    loud = run_cli(capsys, "clean", "--no-near-dedup")
    assert loud.code == 1 and "no documents left" in loud.err  # web, as the ingest named it
    assert "to keep them, clean it as short-form" in loud.err  # and what would keep them
    assert run_cli(capsys, "ingest", f"sayings={sayings}:short-form").code == 0
    kept = run_cli(capsys, "clean", "--no-near-dedup")
    assert kept.code == 0 and "source sayings: cleaned as short-form (named at ingest)" in kept.out
    assert run_cli(capsys, "ingest", str(sayings), "--profile", "bogus").err.startswith("error: invalid --profile")
    config = tmp_path / "clean.json"
    config.write_text(json.dumps({"max_drop_share": 0.1, "profiles": [{"source": "sayings", "profile": "web"}]}))
    assert run_cli(capsys, "ingest", str(sayings), str(pages)).code == 0
    warned = run_cli(capsys, "clean", "--config", str(config))
    assert warned.code == 0 and "warning: source 'sayings' lost 100%" in warned.err
    strict = run_cli(capsys, "clean", "--config", str(config), "--strict")
    assert strict.code == 1 and "lost 100%" in strict.err and "--strict is on" in strict.err
