"""Training as a system: accumulation and budgets, early stopping, promotion, reports, kill -9 + resume, DDP."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.db import Database
from storage.refs import BaseModelSpec, TokensRef
from storage.registry import ModelInfo, latest_model_version
from storage.settings import Settings
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.stage import tokenize_corpus
from tasks.train.promotion import decide_promotion
from tasks.train.stage import train_model
from tests.cli_helpers import kill_when, run_cli
from tests.tiny import TOKENIZE, TRAIN

SCRATCH = BaseModelSpec(kind="scratch")


@pytest.fixture
def tokens(settings: Settings, corpus_dir: Path) -> TokensRef:
    cleaned = clean_corpus(ingest_corpus([str(corpus_dir)], settings), settings)
    return tokenize_corpus(cleaned, prepare_tokenizer(cleaned, SCRATCH, settings, TOKENIZE), settings, TOKENIZE)


def metrics_of(path: str) -> dict:
    return json.loads((Path(path) / "metrics.json").read_text())


def test_gradient_accumulation_and_token_budget(settings: Settings, db: Database, tokens: TokensRef) -> None:
    micro = TRAIN.batch_size * tokens.block_size
    params = TRAIN.model_copy(update={"tokens_per_step": 2 * micro, "max_tokens": 5 * 2 * micro, "max_steps": 100})
    model = train_model(tokens, SCRATCH, params, db, settings)
    metrics = metrics_of(model.path)
    assert model.steps == 5 and metrics["tokens_seen"] == 5 * 2 * micro
    assert metrics["stopped_by"] == "max_tokens"


def test_early_stopping_keeps_the_best_weights(settings: Settings, db: Database, tokens: TokensRef) -> None:
    # a learning rate too small to move the loss: no evaluation improves on the first one
    params = TRAIN.model_copy(update={"learning_rate": 1e-9, "max_steps": 100, "eval_interval": 2, "patience": 2})
    model = train_model(tokens, SCRATCH, params, db, settings)
    metrics = metrics_of(model.path)
    assert metrics["stopped_by"] == "early_stopping" and model.steps == 6  # evals at 2 (best), 4, 6
    assert metrics["best_step"] == 2
    assert model.val_loss == pytest.approx(min(h["val_loss"] for h in metrics["history"] if "val_loss" in h))


@pytest.mark.slow
def test_torch_compile_trains_checkpoints_and_keeps_the_best(
    settings: Settings, db: Database, tokens: TokensRef
) -> None:
    params = TRAIN.model_copy(update={"compile": True, "checkpoint_interval": 2, "eval_interval": 2})
    model = train_model(tokens, SCRATCH, params, db, settings)
    metrics = metrics_of(model.path)
    assert model.steps == TRAIN.max_steps and metrics["best_step"] in {2, 4, 6}
    assert model.val_loss == pytest.approx(min(h["val_loss"] for h in metrics["history"] if "val_loss" in h))


def test_training_leaves_a_loss_curve_and_tensorboard_events(
    settings: Settings, db: Database, tokens: TokensRef
) -> None:
    model = train_model(tokens, SCRATCH, TRAIN, db, settings)
    png = Path(model.path) / "loss_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    events = list((Path(model.path) / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100


def test_promotion_rule() -> None:
    latest = ModelInfo(
        id=1,
        name="v0001",
        path="/m/v0001",
        tokenizer_id="tok",
        val_loss=2.0,
        perplexity=7.39,
        train_loss=2.0,
        parent_id=None,
    )
    assert decide_promotion(3.0, "tok", None, lambda p: 2.0, 0.02) == (True, "first model version")
    promote, note = decide_promotion(2.01, "tok", latest, lambda p: 2.0, 0.02)  # 1% worse: within tolerance
    assert promote and note.startswith("promoted: perplexity 7.46 vs 7.39 for v0001")
    promote, note = decide_promotion(2.1, "tok", latest, lambda p: 2.0, 0.02)  # 10.5% worse
    assert not promote and note.startswith("kept but not promoted")
    promote, note = decide_promotion(9.0, "other", latest, lambda p: 2.0, 0.02)
    assert promote and "tokenizer differs" in note


def test_a_worse_version_is_registered_but_not_promoted(settings: Settings, db: Database, tokens: TokensRef) -> None:
    good = train_model(tokens, SCRATCH, TRAIN.model_copy(update={"max_steps": 30}), db, settings)
    worse = train_model(tokens, SCRATCH, TRAIN.model_copy(update={"max_steps": 1, "learning_rate": 1e-6}), db, settings)
    assert good.promoted and not worse.promoted
    assert worse.promotion.startswith("kept but not promoted") and "v0001" in worse.promotion
    assert latest_model_version(db).name == "v0001" == good.name  # the next run continues from the good one
    assert Path(worse.path, "config.json").is_file()  # kept in the registry all the same


def _finetune_command(home: Path, run_id: str, config: Path, steps: int) -> list[str]:
    # `python -m flows.cli`: the same entry point, also where the console script is not installed
    return [
        sys.executable,
        "-m",
        "flows.cli",
        "--home",
        str(home),
        "finetune",
        "--base-model",
        "scratch",
        "--run-id",
        run_id,
        "--config",
        str(config),
        "--max-steps",
        str(steps),
    ]


@pytest.fixture
def cli_tokens(capsys: pytest.CaptureFixture[str], settings: Settings, corpus_dir: Path, tmp_path: Path) -> Path:
    """A data home prepared through the CLI, and a tiny training config for subprocesses."""
    for args in (["ingest", str(corpus_dir)], ["clean"], ["tokenize", "--vocab-size", "320", "--block-size", "32"]):
        assert run_cli(capsys, *args).code == 0
    config = tmp_path / "train.json"
    config.write_text(
        TRAIN.model_copy(
            update={"log_interval": 1, "eval_interval": 10, "checkpoint_interval": 5, "max_minutes": 5}
        ).model_dump_json()
    )
    return config


@pytest.mark.slow
@pytest.mark.faults
def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_step_count(
    settings: Settings, db: Database, cli_tokens: Path
) -> None:
    home, steps = settings.home, 60
    straight = subprocess.run(
        _finetune_command(home, "straight", cli_tokens, steps), capture_output=True, text=True, timeout=300
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    checkpoint = home / "checkpoints" / "killed" / "step-0000010"
    killed = kill_when(_finetune_command(home, "killed", cli_tokens, steps), checkpoint.is_dir)
    assert killed, "the run ended before its step-10 checkpoint"
    kept = sorted(p.name for p in checkpoint.parent.glob("step-*"))
    assert len(kept) <= 2 and kept[-1] >= "step-0000010"  # only the newest keep_checkpoints=2 stay
    assert latest_model_version(db).name == "v0001"  # the killed run registered nothing

    resumed = subprocess.run(
        _finetune_command(home, "killed", cli_tokens, steps), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from the checkpoint at step" in resumed.stderr
    first, second = (metrics_of(str(home / "models" / v)) for v in ("v0001", "v0002"))
    assert first["steps"] == second["steps"] == steps
    assert second["resumed_from"] is not None and second["resumed_from"] >= 10
    # the loss continues where it was: the resumed curve matches the uninterrupted one step for step
    losses = {h["step"]: h["train_loss"] for h in first["history"] if "train_loss" in h}
    after = [
        (h["step"], h["train_loss"])
        for h in second["history"]
        if "train_loss" in h and h["step"] > second["resumed_from"]
    ]
    assert after and all(loss == pytest.approx(losses[step], rel=1e-4) for step, loss in after)
    assert not (home / "checkpoints" / "killed").exists()  # cleared once registered


@pytest.mark.slow
def test_ddp_on_gloo_with_two_processes(settings: Settings, db: Database, cli_tokens: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "flows.cli",
        "--home",
        str(settings.home),
        "finetune",
        "--base-model",
        "scratch",
        "--run-id",
        "ddp",
        "--config",
        str(cli_tokens),
        "--max-steps",
        "6",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (version,) = [latest_model_version(db)]
    metrics = metrics_of(version.path)
    assert metrics["world_size"] == 2 and metrics["steps"] == 6
    micro = TRAIN.batch_size * 32
    assert metrics["tokens_seen"] == 6 * micro * 2  # both ranks trained on their own batches
    assert proc.stdout.count("version v0001") == 1  # only rank 0 reports


@pytest.mark.slow
def test_ddp_ranks_stop_together_on_a_minutes_budget(settings: Settings, db: Database, cli_tokens: Path) -> None:
    """Each rank's clock says something else: rank 0's plan and any rank's deadline hold for all, so
    both stop at the same step (no hang in the next all-reduce) with the same learning rates."""
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "flows.cli", "--home", str(settings.home)]
    cmd += ["finetune", "--base-model", "scratch", "--run-id", "ddp-minutes", "--config", str(cli_tokens)]
    cmd += ["--max-steps", "100000", "--max-minutes", "0.1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = metrics_of(latest_model_version(db).path)
    assert metrics["world_size"] == 2 and metrics["stopped_by"] == "max_minutes"
    lrs = [h["lr"] for h in metrics["history"] if "lr" in h and h["step"] > TRAIN.warmup_steps]
    assert lrs and all(later <= earlier for earlier, later in itertools.pairwise(lrs))


def test_a_minutes_budget_never_sends_the_learning_rate_back_up(
    settings: Settings, db: Database, tokens: TokensRef
) -> None:
    """The plan is re-estimated from the clock while the run goes (and the clock restarts at each
    checkpoint): after warmup, the rate only goes down, step by step."""
    params = TRAIN.model_copy(
        update={
            "max_steps": 100_000,
            "max_minutes": 0.08,
            "log_interval": 1,
            "checkpoint_interval": 7,
            "eval_interval": 5,
        }
    )
    version = train_model(tokens, SCRATCH, params, db, settings, run_id=None)
    metrics = metrics_of(version.path)
    assert metrics["stopped_by"] == "max_minutes" and metrics["steps"] > 20
    lrs = [h["lr"] for h in metrics["history"] if "lr" in h and h["step"] > params.warmup_steps]
    rises = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(lrs)) if b > a]
    assert rises == []
    assert lrs[-1] < 0.5 * params.learning_rate  # and it did come down towards the floor by the deadline


def test_a_run_id_registers_at_most_one_version(
    capsys: pytest.CaptureFixture[str], settings: Settings, db: Database, cli_tokens: Path
) -> None:
    """A retried run (Prefect's retry, or the same command again) finds its version and trains no second one."""
    from sqlalchemy import func, select

    from storage.models import ModelVersion

    for _ in range(2):
        assert (
            run_cli(capsys, "finetune", "--run-id", "night-7", "--config", str(cli_tokens), "--max-steps", "2").code
            == 0
        )
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 1


def test_a_stage_refuses_a_dataset_another_run_replaced(settings: Settings, corpus_dir: Path, tmp_path: Path) -> None:
    from storage.errors import DraftflowError

    first = ingest_corpus([str(corpus_dir)], settings)
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("A different corpus, written by another run on the same home, with words.\n")
    ingest_corpus([str(other)], settings)  # replaces corpus/raw
    with pytest.raises(DraftflowError, match="changed after this run read it"):
        clean_corpus(first, settings)
