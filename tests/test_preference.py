"""Preference tuning (DPO through TRL) on editors' real decisions: a tiny SFT version learns to prefer
what editors chose; LoRA versions stay adapters; too few new pairs, deleted drafts and a missing
adapter base skip with one line; a retried run registers no second version."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import torch

from storage.db import Database
from storage.drafts import PromptRow, insert_drafts, upsert_prompts
from storage.models import Comment, Draft, DraftRevision, ModelVersion, ReviewEvent
from storage.refs import BaseModelSpec, ModelRef
from storage.runs import start_run
from storage.settings import Settings
from tasks.adapters import adapter_base, is_adapter
from tasks.models import load_causal_lm, load_tokenizer
from tasks.review import actions as editor
from tasks.train.preference import preference_tune, write_preference_pairs
from tasks.train.preference_params import PreferenceParams
from tasks.train.stage import train_model
from testkit.tiny_models import save_tiny_causal_lm
from tests.cli_helpers import run_cli
from tests.test_chat import CHATML
from tests.test_finetune import prepare
from tests.tiny import TRAIN

PREFS = PreferenceParams(min_new_pairs=4, max_steps=8, batch_size=4, learning_rate=2e-3, log_interval=2, max_length=64)
GOOD = " returns a value for each key in the mapping."
EDITED = " returns a value for each key and raises an error when it is not found."
BAD = " the the to to of of with with the the."


def _seed_decisions(db: Database, model: ModelRef, run_id: str, prompts: range, *, edit: bool = True) -> list[int]:
    """Two drafts per prompt, decided through the desk's actions: the good one approved (every other
    one edited first), the bad one rejected. Each prompt gives 1 or 2 pairs; the draft ids returned."""
    start_run(db, run_id, "test", {})
    rows = [PromptRow(key=f"p{i}", text=f"Prompt {i}: the module", category="docs", source="test") for i in prompts]
    ids = upsert_prompts(db, rows)
    drafts = [
        {
            "run_id": run_id,
            "model_version_id": model.version_id,
            "prompt_id": ids[row.key],
            "category": row.category,
            "sample_index": sample,
            "original_text": row.text + text,
            "current_text": row.text + text,
            "params": {"template": "{text}"},
            "seed": sample,
            "status": "pending",
        }
        for row in rows
        for sample, text in enumerate((GOOD, BAD))
    ]
    insert_drafts(db, drafts)
    with db.session() as s:
        made = list(s.scalars(sa.select(Draft.id).where(Draft.run_id == run_id).order_by(Draft.id)))
    for n, (good, bad) in enumerate(zip(made[::2], made[1::2], strict=True)):
        if edit and n % 2 == 0:
            editor.edit(db, good, "ann", f"Prompt {prompts[n]}: the module{EDITED}")
        editor.approve(db, good, "ann")
        editor.reject(db, bad, "bob", "low_quality")
    return made


def _versions(db: Database) -> list[ModelVersion]:
    with db.session() as s:
        return list(s.scalars(sa.select(ModelVersion).order_by(ModelVersion.id)))


def _digest(folder: str) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(folder).glob("*.safetensors")))).hexdigest()


def _logp(model: Any, tokenizer: Any, prompt: str, answer: str) -> float:
    """Sum of the log-probabilities of the answer's tokens after the prompt (within the model's context,
    as training saw them)."""
    context = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    asked = tokenizer(prompt)["input_ids"]
    ids = torch.tensor([(asked + tokenizer(answer, add_special_tokens=False)["input_ids"])[:context]])
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[0, :-1], dim=-1)
    targets = ids[0, 1:]
    return float(logps[torch.arange(len(targets)), targets][len(asked) - 1 :].sum())


def _margin(policy: Any, reference: Any, tokenizer: Any, prompts: range) -> float:
    """DPO's implicit reward margin, chosen minus rejected, averaged over the prompts' pairs."""
    total = 0.0
    for i in prompts:
        prompt = f"Prompt {i}: the module"
        chosen = [_logp(m, tokenizer, prompt, GOOD) for m in (policy, reference)]
        rejected = [_logp(m, tokenizer, prompt, BAD) for m in (policy, reference)]
        total += (chosen[0] - chosen[1]) - (rejected[0] - rejected[1])
    return total / len(prompts)


def test_dpo_on_exported_decisions_registers_a_child_that_prefers_the_chosen(
    settings: Settings, db: Database, tiny_model: ModelRef, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _seed_decisions(db, tiny_model, "night-1", range(6))
    pairs_file = tmp_path / "prefs.parquet"
    assert write_preference_pairs(db, pairs_file) == 9  # 6 approved-vs-rejected, 3 edited-vs-model
    start_run(db, "night-2", "nightly", {})
    with caplog.at_level(logging.INFO, logger="draftflow.finetune"):
        out = preference_tune(tiny_model, pairs_file, PREFS, db, settings, run_id="night-2")
    assert out.skipped is None and out.model is not None and out.pairs == 9
    assert {"loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"} <= set(out.metrics)
    sft, dpo = _versions(db)
    assert dpo.id == out.model.version_id and dpo.parent_id == sft.id and dpo.run_id == "night-2"
    assert (dpo.base, dpo.method, dpo.promoted) == (f"version:{sft.id}", "full", False)
    assert (dpo.tokenizer_id, dpo.tokens_fingerprint) == (sft.tokenizer_id, sft.tokens_fingerprint)
    assert dpo.hyperparams["preference"]["beta"] == PREFS.beta and dpo.hyperparams["n_layer"] == TRAIN.n_layer
    record = dpo.preference
    assert record is not None
    assert (record["method"], record["loss_type"], record["pairs"], record["new_pairs"]) == ("dpo", "sigmoid", 9, 9)
    assert record["steps"] == PREFS.max_steps and record["metrics"] == out.metrics
    assert _digest(dpo.path) != _digest(sft.path)  # the weights moved
    assert any("preference step" in r.getMessage() for r in caplog.records)

    # under the tuned model, the chosen answers gained on the rejected ones relative to the SFT model
    tokenizer = load_tokenizer(dpo.path)
    policy, reference = load_causal_lm(dpo.path).eval(), load_causal_lm(sft.path).eval()
    assert _margin(policy, reference, tokenizer, range(6)) > 0
    assert out.metrics["rewards/margins"] > 0


def test_a_lora_sft_version_is_tuned_as_the_same_adapter_and_a_missing_base_skips(
    settings: Settings, db: Database, corpus_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    llama = save_tiny_causal_lm("llama", tmp_path / "llama", chat_template=CHATML)
    base = BaseModelSpec(kind="pretrained", source=str(llama))
    lora = TRAIN.model_copy(update={"method": "lora", "lora_rank": 4, "learning_rate": 1e-2})
    sft = train_model(prepare(settings, corpus_dir, base), base, lora, db, settings)
    _seed_decisions(db, sft, "night-1", range(4))
    pairs_file = tmp_path / "prefs.parquet"
    write_preference_pairs(db, pairs_file)
    start_run(db, "night-2", "nightly", {})
    out = preference_tune(sft, pairs_file, PREFS, db, settings, run_id="night-2")
    assert out.model is not None and out.pairs == 6
    # again an adapter over the same base, loadable like any LoRA version, and a different one
    assert is_adapter(out.model.path) and not Path(out.model.path, "model.safetensors").exists()
    assert adapter_base(out.model.path) == adapter_base(sft.path) == str(llama)
    assert not Path(out.model.path, "ref").exists()  # only the trained adapter is saved
    assert _versions(db)[-1].method == "lora"
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad():
        tuned, before = load_causal_lm(out.model.path).eval()(ids).logits, load_causal_lm(sft.path).eval()(ids).logits
    assert not torch.allclose(tuned, before, atol=1e-5)

    # the base the adapters name is gone: the next night skips with one line, and registers nothing
    _seed_decisions(db, sft, "night-3", range(4, 8))
    write_preference_pairs(db, pairs_file)
    shutil.rmtree(llama)
    start_run(db, "night-4", "nightly", {})
    with caplog.at_level(logging.INFO, logger="draftflow.finetune"):
        skipped = preference_tune(sft, pairs_file, PREFS, db, settings, run_id="night-4")
    assert skipped.model is None and skipped.skipped is not None and "\n" not in skipped.skipped
    line = f"preference tuning skipped: {sft.name} (a LoRA adapter over '{llama}'): that base is not there any more"
    assert skipped.skipped == line and line in caplog.messages

    # a different model in its place: the adapter does not fit it
    save_tiny_causal_lm("gpt2", llama)
    mismatched = preference_tune(sft, pairs_file, PREFS, db, settings, run_id="night-4")
    assert mismatched.skipped is not None and "\n" not in mismatched.skipped, mismatched.skipped
    assert mismatched.skipped.startswith(f"preference tuning skipped: {sft.name} (a LoRA adapter over '{llama}')")
    assert len(_versions(db)) == 2


def test_too_few_new_pairs_skip_until_editors_decide_more_and_deleted_drafts_are_dropped(
    settings: Settings,
    db: Database,
    tiny_model: ModelRef,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = preference_tune(tiny_model, tmp_path / "none.parquet", PREFS, db, settings)
    assert missing.skipped == f"preference tuning skipped: no preference pairs file at '{tmp_path / 'none.parquet'}'"

    _seed_decisions(db, tiny_model, "night-1", range(2))  # 3 pairs
    pairs_file = tmp_path / "prefs.jsonl"  # the CLI's export, as JSONL
    assert run_cli(capsys, "review", "export", "--out", str(pairs_file), "--format", "jsonl", "--preferences").code == 0
    with caplog.at_level(logging.INFO, logger="draftflow.finetune"):
        few = preference_tune(tiny_model, pairs_file, PREFS, db, settings)
    line = "preference tuning skipped: 3 new preference pairs, 4 needed (preference.min_new_pairs)"
    assert (few.model, few.skipped, few.pairs) == (None, line, 0) and line in caplog.messages
    assert len(_versions(db)) == 1

    # editors decide more; one prompt's drafts and another prompt are deleted after the export
    later = _seed_decisions(db, tiny_model, "night-2", range(2, 8))  # 9 more pairs: 3 edited, 6 approved > rejected
    assert run_cli(capsys, "review", "export", "--out", str(pairs_file), "--format", "jsonl", "--preferences").code == 0
    _delete_drafts(db, later[:2])  # prompt 2's two drafts: its 2 pairs
    _delete_drafts(db, later[2:4], prompt=True)  # prompt 3 and its drafts: 1 pair
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="draftflow.finetune"):
        out = preference_tune(tiny_model, pairs_file, PREFS, db, settings)
    assert "preference pairs: 9 of 12 usable, 3 dropped (3 draft or prompt deleted)" in caplog.messages
    assert out.model is not None and out.pairs == 9  # the first night's pairs too: none was trained on yet
    assert out.model.version_id == _versions(db)[-1].id
    record = _versions(db)[-1].preference
    assert record is not None and (record["pairs"], record["new_pairs"]) == (9, 9)
    assert record["used"]["pairs"] == 9 and record["dropped"] == {"draft or prompt deleted": 3}

    # nothing decided since: nothing new to learn from
    again = preference_tune(tiny_model, pairs_file, PREFS, db, settings)
    assert again.skipped == "preference tuning skipped: 0 new preference pairs, 4 needed (preference.min_new_pairs)"
    assert len(_versions(db)) == 2


def _delete_drafts(db: Database, ids: list[int], prompt: bool = False) -> None:
    with db.transaction() as s:
        prompt_ids = set(s.scalars(sa.select(Draft.prompt_id).where(Draft.id.in_(ids))))
        for table in (ReviewEvent, DraftRevision, Comment):
            s.execute(sa.delete(table).where(table.draft_id.in_(ids)))
        s.execute(sa.delete(Draft).where(Draft.id.in_(ids)))
        if prompt:
            from storage.models import Prompt

            s.execute(sa.delete(Prompt).where(Prompt.id.in_(prompt_ids)))


def test_a_retried_run_registers_no_second_version(
    settings: Settings, db: Database, tiny_model: ModelRef, tmp_path: Path
) -> None:
    _seed_decisions(db, tiny_model, "night-1", range(4))
    pairs_file = tmp_path / "prefs.parquet"
    write_preference_pairs(db, pairs_file)
    start_run(db, "night-2", "nightly", {})
    ipo = PREFS.model_copy(update={"loss_type": "ipo", "max_steps": 2})  # a close relative of DPO
    first = preference_tune(tiny_model, pairs_file, ipo, db, settings, run_id="night-2")
    assert first.model is not None and _versions(db)[-1].preference["loss_type"] == "ipo"  # type: ignore[index]
    _seed_decisions(db, tiny_model, "night-3", range(4, 8))  # new pairs: a fresh run would train
    write_preference_pairs(db, pairs_file)
    retried = preference_tune(tiny_model, pairs_file, ipo, db, settings, run_id="night-2")
    assert retried.model is not None and retried.model.version_id == first.model.version_id
    assert (retried.pairs, retried.metrics) == (first.pairs, first.metrics)
    assert "before it was retried" in retried.model.promotion
    assert len(_versions(db)) == 2
    assert not (settings.home / "checkpoints" / "night-2" / "preference").exists()
