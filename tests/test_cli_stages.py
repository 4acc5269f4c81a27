"""Each stage from the command line, in order, on a real data home; and bad input at each step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from storage.settings import Settings
from tests.cli_helpers import run_cli


def test_stage_by_stage_from_the_cli(
    capsys: pytest.CaptureFixture[str], settings: Settings, corpus_dir: Path, prompts_file: Path
) -> None:
    home = ["--home", str(settings.home)]
    ingest = run_cli(capsys, *home, "ingest", str(corpus_dir))
    assert ingest.code == 0 and "documents 40" in ingest.out
    assert run_cli(capsys, *home, "clean").code == 0
    tokenize = run_cli(capsys, *home, "tokenize", "--vocab-size", "320", "--block-size", "32")
    assert tokenize.code == 0 and "train_blocks" in tokenize.out
    finetune = run_cli(capsys, *home, "finetune", "--max-steps", "2")
    assert finetune.code == 0 and "version v0001" in finetune.out
    generate = run_cli(capsys, *home, "generate", "--prompts", str(prompts_file), "--max-new-tokens", "4")
    assert generate.code == 0 and "queued 6" in generate.out
    status = json.loads(run_cli(capsys, *home, "status", "--json").out)
    assert sum(status["queue"].values()) == 6 and set(status["queue"]) <= {"pending", "flagged"}
    assert [v["name"] for v in status["model_versions"]] == ["v0001"]
    assert {r["kind"] for r in status["runs"]} == {"finetune", "generate"}


def test_generate_rerun_with_the_same_run_id_adds_nothing(
    capsys: pytest.CaptureFixture[str], settings: Settings, tiny_model: object, prompts_file: Path
) -> None:
    args = ["generate", "--prompts", str(prompts_file), "--max-new-tokens", "4", "--run-id", "night-7"]
    assert "drafts_new 6" in run_cli(capsys, *args).out
    again = run_cli(capsys, *args)
    assert again.code == 0 and "drafts_new 0" in again.out and "drafts_skipped 6" in again.out
    assert len(json.loads(run_cli(capsys, "review", "list", "--run", "night-7", "--json").out)) == 6
    from_db = run_cli(capsys, "generate", "--prompts-from-db", "--category", "news", "--max-new-tokens", "4")
    assert from_db.code == 0 and "drafts_new 2" in from_db.out  # the one 'news' prompt, 2 samples


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "/no/such/corpus"], "error: corpus path '/no/such/corpus' does not exist"),
        (["clean"], "error: raw corpus not found"),
        (["tokenize"], "error: clean corpus not found"),
        (["finetune"], "error: no tokenized corpus"),
        (["generate"], "error: no model version registered yet"),
        (["generate", "--prompts", "/no/prompts.jsonl"], "error: prompts file '/no/prompts.jsonl' does not exist"),
        (["run", "--corpus", "/no/such/corpus"], "error: corpus path '/no/such/corpus' does not exist"),
        (
            ["run", "--max-new-tokens", "0"],
            "error: invalid --max-new-tokens 0: Input should be greater than or equal to 1",
        ),
        (["ingest", "python-stdlib-docs", "--split", "bogus"], "error: invalid --split bogus"),
        (["finetune", "--max-steps", "0"], "error: invalid --max-steps 0: Input should be greater than or equal to 1"),
    ],
)
def test_missing_inputs_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], settings: Settings, args: list[str], message: str
) -> None:
    result = run_cli(capsys, *args)
    assert result.code == 1, result
    assert result.err.strip().startswith(message)
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_corpus_that_cleans_to_nothing(capsys: pytest.CaptureFixture[str], settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("This is far too short to keep.")
    (tmp_path / "c" / "b.bin").write_bytes(b"\x00\x01")
    assert run_cli(capsys, "ingest", str(tmp_path / "c")).code == 0
    result = run_cli(capsys, "clean", "--profile", "web")  # auto would clean a 7-word text as short-form
    assert result.code == 1
    assert result.err.strip().startswith(
        "error: no documents left after cleaning: all 1 were rejected (1 gopher_too_few_words)"
    )


def test_console_script_prints_one_line_without_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("draftflow")
    proc = subprocess.run(
        [str(exe), "--home", str(tmp_path), "ingest", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == f"error: corpus path '{tmp_path / 'missing'}' does not exist "
        "(give a file, a folder, or one of: python-stdlib-docs)"
    )
    assert proc.stdout == ""


def test_a_config_file_is_not_overridden_by_options_not_given(
    capsys: pytest.CaptureFixture[str], settings: Settings, corpus_dir: Path, tmp_path: Path
) -> None:
    for args in (["ingest", str(corpus_dir)], ["clean"], ["tokenize", "--vocab-size", "320", "--block-size", "32"]):
        assert run_cli(capsys, *args).code == 0
    config = tmp_path / "train.json"
    config.write_text(
        json.dumps(
            {
                "n_layer": 1,
                "n_embd": 32,
                "n_head": 2,
                "batch_size": 4,
                "max_steps": 5,
                "eval_interval": 5,
                "max_minutes": 2,
            }
        )
    )
    done = run_cli(capsys, "finetune", "--base-model", "scratch", "--config", str(config))
    assert done.code == 0 and "steps 5," in done.out  # the file's 5 steps, not the default 5,000
    given = run_cli(capsys, "finetune", "--base-model", "scratch", "--config", str(config), "--max-steps", "3")
    assert given.code == 0 and "steps 3," in given.out  # an option typed on the command line wins


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"max_step": 5}', "unknown key 'max_step' (did you mean 'max_steps'?)"),
        ('{"max_steps": 0}', "max_steps: Input should be greater than or equal to 1"),
        ('{"max_steps": 5,}', "is not JSON"),
        ("[5]", "must hold a JSON object"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_problem(
    capsys: pytest.CaptureFixture[str], settings: Settings, tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "train.json"
    config.write_text(content)
    result = run_cli(capsys, "finetune", "--config", str(config))
    assert result.code == 1 and message in result.err, result
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_a_misspelt_nested_key_names_the_key_and_its_neighbour(
    capsys: pytest.CaptureFixture[str], settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "clean.json"
    config.write_text(json.dumps({"thresholds": {"min_word": 5}}))
    result = run_cli(capsys, "clean", "--config", str(config))
    assert result.code == 1 and "unknown key 'thresholds.min_word' (did you mean 'min_words'?)" in result.err


def test_options_show_the_models_defaults_and_bounds(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.train.params import TrainParams

    monkeypatch.setenv("COLUMNS", "300")  # one help line per option
    shown = run_cli(capsys, "finetune", "--help").out
    assert f"default: {TrainParams().max_steps}" in shown and ">= 1" in shown


def test_generate_can_prompt_with_the_corpus(
    capsys: pytest.CaptureFixture[str], settings: Settings, tiny_model: object
) -> None:
    done = run_cli(capsys, "generate", "--from-corpus", "--max-new-tokens", "4", "--samples-per-prompt", "1")
    assert done.code == 0 and "prompts: the openings of" in done.out and "drafts_new" in done.out
