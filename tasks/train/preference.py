"""Preference tuning: DPO (TRL's DPOTrainer) on what editors chose over what they rejected.

After the night's supervised fine-tune (SFT), the SFT version is tuned further on (prompt, chosen,
rejected) pairs from the review desk (`draftflow review export --preferences`): an edited draft
beats the model's text, an approved draft beats a rejected one for the same prompt. The policy
starts from the SFT version and the reference is the SFT version itself, frozen. A LoRA SFT
version trains on as the same adapter over the same base, so the result is again a LoRA version.

The result is registered as a new, unpromoted version (the caller decides promotion) whose
`preference` record says how it was made and which decisions it used: the next night trains only
when editors decided enough pairs since.

What goes wrong with the data (too few new pairs, pairs whose drafts were deleted, an adapter whose
base is gone) skips the stage with one line; the night goes on without it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select

from storage.db import Database
from storage.drafts import PromptRow
from storage.errors import DraftflowError, NotFoundError, first_line
from storage.models import Draft, DraftStatus, ModelVersion, Prompt, ReviewEvent
from storage.refs import ModelRef
from storage.registry import register_model_version
from storage.settings import Settings
from tasks.adapters import adapter_base, is_adapter, trainable_parameters
from tasks.models import (
    context_length,
    load_causal_lm,
    load_tokenizer,
    out_of_memory_is_one_line,
    pick_device,
    quiet_transformers,
    weights_dtype,
)
from tasks.progress import Progress, no_progress
from tasks.review.export import export_drafts
from tasks.train.preference_params import PreferenceParams

log = logging.getLogger("draftflow.finetune")
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "chosen_draft_id", "rejected_draft_id")
DECISIONS = ("approve", "reject")
_CHUNK = 500  # ids per IN (...) query: well under SQLite's bound-parameter limit
# DPOConfig fields that only TRL 0.x has (1.x truncates prompt + answer together, to max_length)
_OLD_TRL_ONLY = frozenset({"max_prompt_length", "max_completion_length"})


@dataclass
class PreferenceOutcome:
    model: ModelRef | None  # the new registered version, None when skipped
    skipped: str | None  # one readable line saying why it was skipped (None when trained)
    pairs: int  # pairs trained on
    metrics: dict[str, float] = field(default_factory=dict)  # what TRL reported over the last logged steps


@dataclass(frozen=True)
class Pair:
    """One usable preference pair, as the model sees it."""

    prompt: str  # the model's input: the prompt through the generation template
    chosen: str  # the answer editors preferred (the prompt's text not repeated)
    rejected: str
    system: str | None  # the chat system turn the draft was generated with
    decided: int  # the newest decision (review event id) behind the pair: what makes it new


@dataclass(frozen=True)
class _DraftFacts:
    status: str
    params: dict[str, Any]
    prompt: str
    category: str | None
    decided: int  # the draft's last approve/reject event id (0: none)


def write_preference_pairs(db: Database, path: Path) -> int:
    """The database's current preference pairs as a Parquet file (what `review export --preferences`
    writes); returns the number of pairs."""
    return export_drafts(db, path, fmt="parquet", kind="preferences")


def preference_tune(
    sft: ModelRef,
    pairs_file: Path,
    params: PreferenceParams,
    db: Database,
    settings: Settings,
    run_id: str | None = None,
    progress: Progress = no_progress,
) -> PreferenceOutcome:
    """DPO-tune the SFT version `sft` on the pairs in `pairs_file` (Parquet or JSONL) and register the
    result, or skip with one line saying why. A retry of `run_id` returns the version it registered."""
    if not params.enabled:
        return _skip("off (preference.enabled is false)")
    if run_id is not None and (done := _registered_by_run(db, sft, run_id)) is not None:
        return done
    if not pairs_file.is_file():
        return _skip(f"no preference pairs file at '{pairs_file}'")
    try:
        rows = read_pairs_file(pairs_file)
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        return _skip(f"cannot read the preference pairs in '{pairs_file}' ({first_line(exc)})")
    pairs, dropped = usable_pairs(db, rows)
    if dropped:
        reasons = ", ".join(f"{n} {why}" for why, n in dropped.most_common())
        log.info("preference pairs: %d of %d usable, %d dropped (%s)", len(pairs), len(rows), dropped.total(), reasons)
    through = _used_through(db)
    new = sum(p.decided > through for p in pairs)
    if new < params.min_new_pairs:
        return _skip(f"{new} new preference pairs, {params.min_new_pairs} needed (preference.min_new_pairs)")
    loaded = _load_models(sft, params)
    if isinstance(loaded, str):
        return _skip(loaded)
    policy, reference, tokenizer = loaded
    output_dir = settings.home / "checkpoints" / (run_id or uuid.uuid4().hex) / "preference"
    try:
        trained = _train(policy, reference, tokenizer, pairs, params, output_dir, progress)
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)  # nothing in it is kept: the version is saved below
    record = {
        "method": "dpo",
        "loss_type": params.loss_type,
        "beta": params.beta,
        "learning_rate": params.learning_rate,
        "pairs": len(pairs),
        "new_pairs": new,
        "dropped": dict(dropped),
        "steps": trained.steps,
        "stopped_by": trained.stopped_by,
        "reference": sft.name,
        "metrics": trained.metrics,
        # what the next night counts new pairs from: decisions after this review event
        "used": {"pairs": len(pairs), "through_event": max(p.decided for p in pairs)},
    }
    model = _save_and_register(policy, sft, params, record, trained, db, settings, run_id)
    progress(1, 1, f"preference-tuned {model.name} on {len(pairs)} pairs")
    return PreferenceOutcome(model=model, skipped=None, pairs=len(pairs), metrics=trained.metrics)


def _skip(reason: str) -> PreferenceOutcome:
    line = f"preference tuning skipped: {reason}"
    log.info(line)
    return PreferenceOutcome(model=None, skipped=line, pairs=0, metrics={})


# --- the pairs -------------------------------------------------------------------------------------


def read_pairs_file(path: Path) -> list[dict[str, Any]]:
    """The rows of an export: JSONL by its suffix, Parquet otherwise; the columns training needs."""
    if path.suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as f:
            return [{c: row[c] for c in PAIR_COLUMNS} for row in map(json.loads, filter(str.strip, f))]
    rows: list[dict[str, Any]] = pq.read_table(path, columns=list(PAIR_COLUMNS)).to_pylist()
    return rows


def usable_pairs(db: Database, rows: list[dict[str, Any]]) -> tuple[list[Pair], Counter[str]]:
    """The pairs whose drafts, prompt and decisions still stand in the database, with texts to learn
    from; and how many were dropped, by reason."""
    ids = {int(r[k]) for r in rows for k in ("chosen_draft_id", "rejected_draft_id") if r[k] is not None}
    facts = _draft_facts(db, ids)
    pairs, dropped = [], Counter[str]()
    for row in rows:
        pair = _pair(row, facts)
        if isinstance(pair, str):
            dropped[pair] += 1
        else:
            pairs.append(pair)
    return pairs, dropped


def _pair(row: dict[str, Any], facts: dict[int, _DraftFacts]) -> Pair | str:
    """The pair, or why it is dropped."""
    chosen_id, rejected_id = row["chosen_draft_id"], row["rejected_draft_id"]
    chosen, rejected = facts.get(chosen_id), facts.get(rejected_id)
    if chosen is None or rejected is None:
        return "draft or prompt deleted"
    # an edit pair is one approved draft (its edit beats its model text); otherwise approved beats rejected
    expected = DraftStatus.APPROVED.value if chosen_id == rejected_id else DraftStatus.REJECTED.value
    if chosen.status != DraftStatus.APPROVED.value or rejected.status != expected:
        return "decision reopened since"
    better, worse = _answer(row["chosen"] or "", chosen.prompt), _answer(row["rejected"] or "", chosen.prompt)
    if not better.strip() or not worse.strip():
        return "empty text"
    if better.strip() == worse.strip():
        return "chosen same as rejected"
    template = str(chosen.params.get("template") or "{text}")
    prompt = _render(template, chosen.prompt, chosen.category)
    if prompt is None:
        return "unknown generation template"
    system = chosen.params.get("system")
    return Pair(
        prompt, better, worse, system if isinstance(system, str) else None, max(chosen.decided, rejected.decided)
    )


def _answer(text: str, prompt: str) -> str:
    """The part of a draft the model wrote: a draft of a base model holds its prompt, then the
    continuation (kept with its leading space, as the model generated it); a chat answer is all answer."""
    return text[len(prompt) :].rstrip() if prompt and text.startswith(prompt) else text.strip()


def _render(template: str, prompt: str, category: str | None) -> str | None:
    from tasks.generate.stage import render_input

    try:
        return render_input(template, PromptRow(key="", text=prompt, category=category, source=""))
    except (KeyError, IndexError, ValueError):
        return None


def _draft_facts(db: Database, ids: Iterable[int]) -> dict[int, _DraftFacts]:
    """Status, generation parameters, prompt and last decision of the drafts that still exist (with
    their prompt row)."""
    found: dict[int, _DraftFacts] = {}
    for chunk in _chunks(sorted(ids)):
        with db.session() as session:
            decided = dict(
                session.execute(
                    select(ReviewEvent.draft_id, func.max(ReviewEvent.id))
                    .where(ReviewEvent.draft_id.in_(chunk), ReviewEvent.action.in_(DECISIONS))
                    .group_by(ReviewEvent.draft_id)
                ).all()
            )
            rows = session.execute(
                select(Draft.id, Draft.status, Draft.params, Prompt.text, Prompt.category)
                .join(Prompt, Prompt.id == Draft.prompt_id)
                .where(Draft.id.in_(chunk))
            ).all()
        for draft_id, status, params, text, category in rows:
            found[draft_id] = _DraftFacts(status, params or {}, text, category, decided.get(draft_id, 0))
    return found


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


# --- the registry: what earlier versions used, and retries -------------------------------------


def _used_through(db: Database) -> int:
    """The newest decision the latest preference-tuned version trained on (0: none yet); pairs decided
    after it are new."""
    with db.session() as session:
        record = session.scalars(
            select(ModelVersion.preference)
            .where(ModelVersion.preference.is_not(None))
            .order_by(ModelVersion.id.desc())
            .limit(1)
        ).first()
    return int((record or {}).get("used", {}).get("through_event", 0))


def _registered_by_run(db: Database, sft: ModelRef, run_id: str) -> PreferenceOutcome | None:
    """The preference version this run registered over `sft` already: a retry registers no second one."""
    with db.session() as session:
        row = session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.run_id == run_id,
                ModelVersion.parent_id == sft.version_id,
                ModelVersion.preference.is_not(None),
            )
            .limit(1)
        ).first()
        if row is None:
            return None
        record = dict(row.preference or {})
        ref = ModelRef(
            version_id=row.id,
            name=row.name,
            path=row.path,
            steps=int(record.get("steps", 0)),
            wall_seconds=row.wall_seconds,
            promoted=row.promoted,
            promotion=f"registered by this run before it was retried: {row.name}",
            stopped_by=str(record.get("stopped_by", "")),
        )
    log.info("run %s preference-tuned %s into %s already: not training it again", run_id, sft.name, ref.name)
    return PreferenceOutcome(
        model=ref, skipped=None, pairs=int(record.get("pairs", 0)), metrics=record.get("metrics", {})
    )


# --- the models --------------------------------------------------------------------------------


def _load_models(sft: ModelRef, params: PreferenceParams) -> tuple[Any, Any, Any] | str:
    """(policy, reference, tokenizer) for `sft`, or why they cannot be loaded. The policy is the SFT
    version to train (a LoRA version: its own adapter, trainable, over the frozen base); the reference
    is the same version frozen (a LoRA version's adapter merged into a copy of the base)."""
    import transformers

    device = pick_device()
    lora = is_adapter(sft.path)
    transformers.set_seed(params.seed)
    try:
        base = adapter_base(sft.path) if lora else None
    except DraftflowError as exc:
        return str(exc)
    label = f"{sft.name} (a LoRA adapter over '{base}')" if lora else sft.name
    if base is not None and base.startswith(("/", ".", "~")) and not Path(base).expanduser().exists():
        return f"{label}: that base is not there any more"
    try:
        tokenizer = load_tokenizer(sft.path)
        policy = load_causal_lm(
            sft.path,
            dtype=weights_dtype("auto", device, frozen=lora),
            trainable_adapter=lora,  # the same adapter trains on; full training updates every weight
            merge_adapter=not lora,
        )
        reference = load_causal_lm(sft.path, dtype=weights_dtype("auto", device, frozen=True))
    except DraftflowError as exc:
        return f"cannot load {label}: {exc}"
    except (RuntimeError, ValueError) as exc:  # peft: layers the adapter names are missing, or of other shapes
        if not lora:
            raise
        return f"{label} does not fit that base ({first_line(exc)[:160]})"
    embeddings = policy.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings:
        return f"the tokenizer of {sft.name} has {len(tokenizer)} tokens, its model embeds {embeddings}"
    if not lora:
        policy.requires_grad_(True)
    reference.requires_grad_(False)
    reference.eval()
    if tokenizer.pad_token is None:  # scratch and most base tokenizers have none; padding is masked out
        tokenizer.pad_token = tokenizer.eos_token
    return policy, reference, tokenizer


@dataclass
class _Trained:
    steps: int
    stopped_by: str
    seconds: float
    metrics: dict[str, float]
    history: list[dict[str, Any]]


def _train(
    policy: Any,
    reference: Any,
    tokenizer: Any,
    pairs: list[Pair],
    params: PreferenceParams,
    output_dir: Path,
    progress: Progress,
) -> _Trained:
    from transformers import PrinterCallback
    from trl import DPOTrainer

    quiet_transformers()
    _quiet_datasets()
    config = _dpo_config(params, output_dir, context_length(policy.config))
    budget = _budget_callback(params, progress)
    chat = bool(getattr(tokenizer, "chat_template", None))
    log.info(
        "preference-tuning (%s, beta %g) on %d pairs as %s, %s trainable params: budget %d steps of %d pairs / "
        "%.1f min",
        params.loss_type,
        params.beta,
        len(pairs),
        "conversations" if chat else "text",
        f"{trainable_parameters(policy):,}",
        params.max_steps,
        params.batch_size,
        params.max_minutes,
    )
    trainer = DPOTrainer(
        model=policy,
        ref_model=reference,
        args=config,
        train_dataset=_dataset(pairs, chat),
        processing_class=tokenizer,
        callbacks=[budget],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; the budget logs a line
    started = time.monotonic()
    with (
        out_of_memory_is_one_line("preference tuning", "preference.batch_size or preference.max_length"),
        warnings.catch_warnings(),
    ):
        # peft calls a transformers method that transformers 5 deprecated: a warning for peft's authors
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        output = trainer.train()
    history = [dict(entry) for entry in trainer.state.log_history]
    metrics = _reported(history)
    if math.isfinite(output.training_loss):
        metrics["train_loss"] = float(output.training_loss)  # the mean over every step
    stopped_by = getattr(budget, "stopped_by", "max_steps")
    trained = _Trained(trainer.state.global_step, stopped_by, time.monotonic() - started, metrics, history)
    log.info(
        "preference-tuned %d steps (%s) in %.0f s: loss %.4f, reward margin %.4f, accuracy %.2f",
        trained.steps,
        stopped_by,
        trained.seconds,
        metrics.get("loss", math.nan),
        metrics.get("rewards/margins", math.nan),
        metrics.get("rewards/accuracies", math.nan),
    )
    return trained


def _dataset(pairs: list[Pair], chat: bool) -> Any:
    """TRL's preference format: plain text (prompt, then each answer continues it), or for a model
    with a chat template, conversations (the template renders the turns, as generation did)."""
    from datasets import Dataset

    if not chat:
        texts = [
            {"prompt": p.prompt, "chosen": _continuation(p.chosen), "rejected": _continuation(p.rejected)}
            for p in pairs
        ]
        return Dataset.from_list(texts)
    conversations = [
        {
            "prompt": ([{"role": "system", "content": p.system}] if p.system else [])
            + [{"role": "user", "content": p.prompt}],
            "chosen": [{"role": "assistant", "content": p.chosen.strip()}],
            "rejected": [{"role": "assistant", "content": p.rejected.strip()}],
        }
        for p in pairs
    ]
    return Dataset.from_list(conversations)


def _continuation(answer: str) -> str:
    """A continuation starts with the space that separates it from the prompt, as generated text does
    (byte-level vocabularies encode ' word' and 'word' differently)."""
    return answer if answer[:1].isspace() else " " + answer


def _dpo_config(params: PreferenceParams, output_dir: Path, context: int | None) -> Any:
    import dataclasses

    import torch
    from trl import DPOConfig

    max_length = min(params.max_length, context) if context else params.max_length
    wanted: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": params.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": params.learning_rate,
        "max_steps": params.max_steps,
        "beta": params.beta,
        "loss_type": params.loss_type,
        "max_length": max_length,
        "max_prompt_length": max_length // 2,  # TRL 0.x cuts the prompt and the answer apart
        "max_completion_length": max_length - max_length // 2,
        "logging_steps": params.log_interval,
        "save_strategy": "no",  # the stage saves the version itself; a retry starts over
        "report_to": "none",
        "seed": params.seed,
        "data_seed": params.seed,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),  # never on a CPU
        "fp16": False,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    known = {f.name for f in dataclasses.fields(DPOConfig)}
    # transformers 5 renamed it (the old name warns); TRL turns it on by default, draftflow when asked
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"
    wanted[checkpointing] = params.gradient_checkpointing
    return DPOConfig(**{k: v for k, v in wanted.items() if k in known or k not in _OLD_TRL_ONLY})


def _budget_callback(params: PreferenceParams, progress: Progress) -> Any:
    """A TrainerCallback that stops at the wall-clock budget, logs the last step (so its metrics are
    reported) and reports progress."""
    from transformers import TrainerCallback

    class Budget(TrainerCallback):
        stopped_by = "max_steps"

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.deadline = time.monotonic() + params.max_minutes * 60

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            progress(state.global_step, state.max_steps, f"preference step {state.global_step}/{state.max_steps}")
            if time.monotonic() >= self.deadline and state.global_step < state.max_steps:
                self.stopped_by = "max_minutes"
                control.should_training_stop = True
            if control.should_training_stop or state.global_step >= state.max_steps:
                control.should_log = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "rewards/margins" in logs:
                log.info(
                    "preference step %d: loss %.4f, reward margin %.4f, accuracy %.2f",
                    state.global_step,
                    logs.get("loss", math.nan),
                    logs["rewards/margins"],
                    logs.get("rewards/accuracies", math.nan),
                )

    return Budget()


def _reported(history: list[dict[str, Any]]) -> dict[str, float]:
    """The preference metrics TRL logged last (averaged over the last logging interval); finite numbers
    only, as JSON on PostgreSQL has no NaN."""
    for entry in reversed(history):
        if "rewards/margins" in entry:
            numbers = {
                k: float(v) for k, v in entry.items() if isinstance(v, int | float) and k not in ("epoch", "step")
            }
            return {k: v for k, v in numbers.items() if math.isfinite(v)}
    return {}


def _quiet_datasets() -> None:
    """No progress bars from the datasets library's map (as quiet_transformers does for transformers)."""
    import datasets

    datasets.disable_progress_bars()


# --- saving ------------------------------------------------------------------------------------


def _save_and_register(
    policy: Any,
    sft: ModelRef,
    params: PreferenceParams,
    record: dict[str, Any],
    trained: _Trained,
    db: Database,
    settings: Settings,
    run_id: str | None,
) -> ModelRef:
    """Save the policy (a LoRA policy: its adapter only) with the SFT version's tokenizer and register
    it as a child of the SFT version, unpromoted; a version is its row and its folder, or nothing."""
    with db.session() as session:
        parent = session.get(ModelVersion, sft.version_id)
        if parent is None:
            raise NotFoundError(f"model version {sft.name} is not in the registry")
        inherited = {
            "tokenizer_id": parent.tokenizer_id,
            "corpus_fingerprint": parent.corpus_fingerprint,
            "tokens_fingerprint": parent.tokens_fingerprint,
            "hyperparams": {**parent.hyperparams, "preference": params.model_dump()},
            "method": parent.method,
        }
    metrics = {**record, "history": trained.history, "wall_seconds": trained.seconds}
    staged = settings.models_dir / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        quiet_transformers()
        policy.save_pretrained(staged)  # safetensors; a LoRA model writes its adapter only
        if is_adapter(str(staged)):
            metrics["adapter_of"] = adapter_base(str(staged))
        load_tokenizer(sft.path).save_pretrained(staged)  # as saved, without the pad token set for training
        (staged / "metrics.json").write_text(json.dumps(metrics, indent=2))
        info = register_model_version(
            db,
            staged,
            settings.models_dir,
            base=f"version:{sft.version_id}",  # as a fine-tune from a version records it
            parent_id=sft.version_id,
            run_id=run_id,
            wall_seconds=trained.seconds,
            promoted=False,
            trainable_params=trainable_parameters(policy),
            preference=record,
            **inherited,
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    log.info("registered preference-tuned version %s (from %s) at %s", info.name, sft.name, info.path)
    return ModelRef(
        version_id=info.id,
        name=info.name,
        path=info.path,
        steps=trained.steps,
        wall_seconds=trained.seconds,
        promoted=False,
        promotion=f"preference-tuned from {sft.name}: promotion decided later",
        stopped_by=trained.stopped_by,
    )
