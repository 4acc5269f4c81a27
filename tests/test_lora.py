"""LoRA with peft: an adapter over a frozen pretrained base, trained, registered, continued, generated
with, checkpointed and resumed after kill -9; its mistakes are one line and leave nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from storage.db import Database
from storage.drafts import PromptRow
from storage.errors import DraftflowError
from storage.models import ModelVersion
from storage.refs import BaseModelSpec, TokensRef
from storage.runs import start_run
from storage.settings import Settings
from tasks.adapters import adapter_base, is_adapter
from tasks.generate.stage import generate_drafts
from tasks.models import load_causal_lm, resolve_base_model
from tasks.train.stage import train_model
from testkit.tiny_models import save_tiny_causal_lm
from tests.cli_helpers import kill_when, run_cli
from tests.test_finetune import prepare
from tests.tiny import GENERATE, TRAIN

LORA = TRAIN.model_copy(update={"method": "lora", "lora_rank": 4, "learning_rate": 1e-2})


@pytest.fixture
def llama(tmp_path: Path) -> Path:
    return save_tiny_causal_lm("llama", tmp_path / "llama")


@pytest.fixture
def llama_tokens(settings: Settings, corpus_dir: Path, llama: Path) -> TokensRef:
    return prepare(settings, corpus_dir, BaseModelSpec(kind="pretrained", source=str(llama)))


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.glob("*.safetensors")))).hexdigest()


def test_lora_trains_an_adapter_over_a_frozen_base_and_writes_drafts(
    settings: Settings, db: Database, llama: Path, llama_tokens: TokensRef
) -> None:
    before = _digest(llama)
    base = BaseModelSpec(kind="pretrained", source=str(llama))
    version = train_model(llama_tokens, base, LORA, db, settings)
    folder = Path(version.path)
    # the version holds the adapter and its tokenizer, names its base, and the base is untouched
    assert is_adapter(str(folder)) and (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "model.safetensors").exists()
    assert adapter_base(str(folder)) == str(llama) and _digest(llama) == before
    with db.session() as s:
        row = s.scalars(sa.select(ModelVersion)).one()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert row.method == "lora" == metrics["method"]
    assert 0 < row.trainable_params == metrics["trainable_params"] < metrics["params"] / 5
    assert metrics["history"][0]["train_loss"] > metrics["train_loss"]  # the adapter learned something

    # base + adapter and the merged weights are the same model
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    merged = load_causal_lm(str(folder)).eval()
    adapted = load_causal_lm(str(folder), merge_adapter=False).eval()
    plain = load_causal_lm(str(llama)).eval()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)
        assert not torch.allclose(merged(ids).logits, plain(ids).logits, atol=1e-4)  # the adapter does something

    texts = ["The module", "Drafts"]
    prompts = [PromptRow(key=f"p{i}", text=t, category="docs", source="test") for i, t in enumerate(texts)]
    start_run(db, "lora-night", "generate", {})
    result = generate_drafts(version, prompts, GENERATE, db, run_id="lora-night")
    assert result.drafts_new == 4 and result.new_tokens > 0


def test_the_next_night_continues_the_same_adapter_and_full_training_merges_it(
    settings: Settings, db: Database, llama: Path, llama_tokens: TokensRef
) -> None:
    first = train_model(llama_tokens, BaseModelSpec(kind="pretrained", source=str(llama)), LORA, db, settings)
    continued = resolve_base_model(None, db)  # the latest promoted version: the LoRA one
    second = train_model(llama_tokens, continued, LORA, db, settings)
    # the same adapter trained on over the same base: adapters never stack on adapters
    assert adapter_base(second.path) == str(llama)
    assert "v0001" in second.promotion  # compared with the first on the same validation blocks
    full = train_model(llama_tokens, resolve_base_model(first.name, db), TRAIN, db, settings)
    assert Path(full.path, "model.safetensors").is_file() and not is_adapter(full.path)
    with db.session() as s:
        methods = s.scalars(sa.select(ModelVersion.method).order_by(ModelVersion.id)).all()
    assert methods == ["lora", "lora", "full"]


@pytest.mark.parametrize(
    ("update", "base_kind", "expected"),
    [
        ({"lora_target_modules": ["attn_dense"]}, "pretrained", "LoRA target modules ['attn_dense'] match no"),
        ({"quantize": "4bit"}, "pretrained", "4-bit QLoRA needs a CUDA GPU and bitsandbytes"),
        ({}, "scratch", "LoRA adapts a pretrained model"),
    ],
)
def test_lora_mistakes_are_one_line_and_register_nothing(
    settings: Settings,
    db: Database,
    llama: Path,
    llama_tokens: TokensRef,
    update: dict[str, object],
    base_kind: str,
    expected: str,
) -> None:
    base = BaseModelSpec(kind=base_kind, source=str(llama) if base_kind == "pretrained" else None)
    with pytest.raises(DraftflowError) as caught:
        train_model(llama_tokens, base, LORA.model_copy(update=update), db, settings)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) == 0
    assert not [p for p in settings.models_dir.glob("*")] if settings.models_dir.exists() else True


def test_the_unknown_target_names_the_layers_the_model_has(
    settings: Settings, db: Database, llama: Path, llama_tokens: TokensRef
) -> None:
    base = BaseModelSpec(kind="pretrained", source=str(llama))
    with pytest.raises(DraftflowError, match="q_proj") as caught:
        train_model(llama_tokens, base, LORA.model_copy(update={"lora_target_modules": ["qkv"]}), db, settings)
    assert "v_proj" in str(caught.value) and "lm_head" in str(caught.value)


def test_only_the_adapter_is_checkpointed(
    settings: Settings, db: Database, llama: Path, llama_tokens: TokensRef
) -> None:
    from safetensors import safe_open

    from tasks.train.checkpoints import Checkpointer

    class Keep(Checkpointer):
        def clear(self) -> None:  # keep the checkpoints to look at them
            pass

    import tasks.train.stage as stage

    start_run(db, "adapter-only", "finetune", {})
    original = stage.Checkpointer
    stage.Checkpointer = Keep  # type: ignore[misc]
    try:
        train_model(
            llama_tokens,
            BaseModelSpec(kind="pretrained", source=str(llama)),
            LORA.model_copy(update={"checkpoint_interval": 2}),
            db,
            settings,
            run_id="adapter-only",
        )
    finally:
        stage.Checkpointer = original  # type: ignore[misc]
    latest = sorted((settings.home / "checkpoints" / "adapter-only").glob("step-*"))[-1]
    with safe_open(str(latest / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert names and all("lora_" in n for n in names)


def _draftflow(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("draftflow")), *args]


@pytest.mark.slow
def test_a_lora_night_runs_from_the_cli(
    prefect_harness: None, settings: Settings, corpus_dir: Path, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    base = save_tiny_causal_lm("qwen2", tmp_path / "qwen2")
    config = tmp_path / "lora.json"
    config.write_text(json.dumps({"training": {"method": "lora", "lora_rank": 4, "learning_rate": 0.01}}))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DRAFTFLOW_HOME": str(settings.home)}
    command = ["run", "--corpus", str(corpus_dir), "--base-model", str(base), "--config", str(config), "--json"]
    budget = ["--block-size", "32", "--max-train-steps", "3", "--max-new-tokens", "8", "--samples-per-prompt", "1"]
    night = subprocess.run(_draftflow(*command, *budget), capture_output=True, text=True, env=env, timeout=600)
    assert night.returncode == 0, night.stderr[-3000:]
    summary = json.loads(night.stdout[night.stdout.index("{") :])
    assert summary["model_version"] == "v0001" and summary["drafts_generated"] > 0
    folder = settings.models_dir / "v0001"
    assert is_adapter(str(folder)) and adapter_base(str(folder)) == str(base)


@pytest.mark.slow
@pytest.mark.faults
def test_a_killed_lora_run_resumes_to_the_same_losses(
    capsys: pytest.CaptureFixture[str], settings: Settings, corpus_dir: Path, llama: Path, tmp_path: Path
) -> None:
    tokenize = ["tokenize", "--base-model", str(llama), "--block-size", "32"]
    for args in (["ingest", str(corpus_dir)], ["clean"], tokenize):
        assert run_cli(capsys, *args).code == 0
    config = tmp_path / "lora.json"
    config.write_text(
        LORA.model_copy(
            update={"log_interval": 1, "eval_interval": 10, "checkpoint_interval": 5, "max_minutes": 5}
        ).model_dump_json()
    )
    home, steps = settings.home, 40

    def finetune(run_id: str) -> list[str]:
        cli = [sys.executable, "-m", "flows.cli", "--home", str(home), "finetune", "--base-model", str(llama)]
        return [*cli, "--run-id", run_id, "--config", str(config), "--max-steps", str(steps)]

    straight = subprocess.run(finetune("straight"), capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    checkpoint = home / "checkpoints" / "killed" / "step-0000010"
    assert kill_when(finetune("killed"), checkpoint.is_dir), "the run ended before its step-10 checkpoint"
    resumed = subprocess.run(finetune("killed"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from the checkpoint at step" in resumed.stderr
    first, second = (json.loads((home / "models" / v / "metrics.json").read_text()) for v in ("v0001", "v0002"))
    assert first["steps"] == second["steps"] == steps and second["resumed_from"] >= 10
    losses = {h["step"]: h["train_loss"] for h in first["history"] if "train_loss" in h}
    resumed_from = second["resumed_from"]
    after = [(h["step"], h["train_loss"]) for h in second["history"] if "train_loss" in h and h["step"] > resumed_from]
    assert after and all(loss == pytest.approx(losses[step], rel=1e-4) for step, loss in after)
    assert is_adapter(str(home / "models" / "v0002"))


def test_a_version_that_fails_to_register_leaves_no_folder(
    settings: Settings, db: Database, llama: Path, llama_tokens: TokensRef
) -> None:
    """The registry insert fails (its run was never recorded): no row, and no staged or final folder."""
    base = BaseModelSpec(kind="pretrained", source=str(llama))
    with pytest.raises(sa.exc.IntegrityError):
        train_model(llama_tokens, base, LORA, db, settings, run_id="a-run-nobody-started")
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) == 0
    assert list(settings.models_dir.iterdir()) == []
    version = train_model(llama_tokens, base, LORA, db, settings)  # and the next one registers as usual
    assert version.name == "v0001" and json.loads(Path(version.path, "metrics.json").read_text())["adapter_of"]
