"""Evaluate a model version on the home's fixed evaluation set, and promote by the evaluation.

A version is evaluated once per evaluation set (the result is stored, table model_evaluations, and
read back), so the latest version a candidate is compared with is not measured again each night.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from storage.db import Database
from storage.evaluations import evaluation_of, save_evaluation
from storage.refs import ModelRef
from storage.registry import ModelInfo, get_model_version, latest_model_version, set_promoted
from tasks.evaluate.bits_per_byte import Likelihood, text_likelihood
from tasks.evaluate.drafts import draft_metrics, write_eval_drafts
from tasks.evaluate.eval_set import EvalSet
from tasks.evaluate.params import EvalParams
from tasks.evaluate.promotion import Scored, decide
from tasks.models import context_length, load_causal_lm, load_config, load_tokenizer, pick_device, weights_dtype
from tasks.progress import Progress, no_progress
from tasks.review.checks import NgramIndex

log = logging.getLogger("draftflow.evaluate")

MAX_WINDOW = 1024  # tokens scored at once: the context of small models, a bounded cost for large ones


@dataclass
class Evaluation:
    version: str
    version_id: int
    eval_set: str
    bits_per_byte: float | None
    by_source: dict[str, Any]
    draft_metrics: dict[str, Any]
    seconds: float

    def scored(self, preference_tuned: bool = False) -> Scored:
        return Scored(self.version, self.bits_per_byte, self.draft_metrics, preference_tuned)


def evaluate_version(
    db: Database,
    version: ModelInfo,
    eval_set: EvalSet,
    index: NgramIndex | None = None,
    progress: Progress = no_progress,
    again: bool = False,
) -> Evaluation:
    """The version's evaluation on this set: the stored one, or measured now and stored."""
    stored = evaluation_of(db, version.id)
    if stored is not None and stored.eval_set == eval_set.fingerprint and not again:
        return Evaluation(
            version.name,
            version.id,
            stored.eval_set,
            stored.bits_per_byte,
            stored.by_source,
            stored.draft_metrics,
            stored.seconds,
        )
    started = time.perf_counter()
    device = pick_device()
    model = load_causal_lm(version.path, dtype=weights_dtype("auto", device, frozen=True)).to(device).eval()
    tokenizer = load_tokenizer(version.path)
    context = context_length(load_config(version.path))
    window = min(context or MAX_WINDOW, MAX_WINDOW)
    by_source: dict[str, Any] = {}
    total = Likelihood(0.0, 0, 0, 0)
    steps = len(eval_set.sources) + 1
    for i, source in enumerate(eval_set.sources):
        texts = [d.text for d in eval_set.documents if d.source == source]
        scored = text_likelihood(model, tokenizer, texts, window, device)
        total += scored
        by_source[source] = {
            "bits_per_byte": _round(scored.bits_per_byte),
            "documents": scored.documents,
            "bytes": scored.bytes,
            "tokens": scored.tokens,
        }
        progress(i + 1, steps, f"bits per byte of {source}")
    drafts = write_eval_drafts(model, tokenizer, version.name, version.path, eval_set, context, device)
    metrics = draft_metrics(drafts, index)
    progress(steps, steps, f"{len(drafts)} evaluation drafts")
    seconds = round(time.perf_counter() - started, 2)
    save_evaluation(
        db,
        version.id,
        eval_set.fingerprint,
        _round(total.bits_per_byte),
        by_source,
        metrics,
        seconds,
        [
            {
                "prompt_key": d.prompt_key,
                "prompt": d.prompt,
                "seed": d.seed,
                "text": d.text,
                "new_tokens": d.new_tokens,
                "stopped": d.stopped,
            }
            for d in drafts
        ],
    )
    log.info(
        "evaluated %s in %.1f s: %s bits per byte on %d held-out documents, %d drafts (repetition %s, echo %s)",
        version.name,
        seconds,
        _round(total.bits_per_byte),
        total.documents,
        len(drafts),
        metrics.get("repetition"),
        metrics.get("echo_rate"),
    )
    return Evaluation(
        version.name, version.id, eval_set.fingerprint, _round(total.bits_per_byte), by_source, metrics, seconds
    )


@dataclass
class Promotion:
    promoted: ModelRef | None  # the night's version that became latest, None when the latest stays
    note: str  # why, in one line a candidate
    evaluations: list[Evaluation]


def evaluate_and_promote(
    db: Database,
    candidates: list[ModelRef],
    eval_set: EvalSet,
    params: EvalParams,
    index: NgramIndex | None = None,
    progress: Progress = no_progress,
) -> Promotion:
    """Evaluate the night's versions (best first: a preference-tuned version, then its supervised
    one) and the current latest; promote the first candidate that passes, none when none does."""
    incumbent_info = latest_model_version(db, excluding=[c.version_id for c in candidates])
    incumbent = evaluate_version(db, incumbent_info, eval_set, index) if incumbent_info else None
    notes, done = [], []
    promoted: ModelRef | None = None
    for candidate in candidates:
        evaluation = evaluate_version(db, get_model_version(db, candidate.version_id), eval_set, index, progress)
        done.append(evaluation)
        ok, note = (
            (False, "not promoted: an earlier candidate was")
            if promoted
            else decide(
                evaluation.scored(_preference_tuned(db, candidate.version_id)),
                incumbent.scored() if incumbent else None,
                params,
            )
        )
        set_promoted(db, candidate.version_id, ok)
        notes.append(f"{candidate.name}: {note}")
        log.info("promotion of %s: %s", candidate.name, note)
        if ok:
            promoted = candidate
    return Promotion(promoted, "; ".join(notes), done)


def _preference_tuned(db: Database, version_id: int) -> bool:
    from storage.models import ModelVersion

    with db.session() as session:
        row = session.get(ModelVersion, version_id)
        return bool(row is not None and row.preference)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
