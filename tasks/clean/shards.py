"""Sharded clean: the per-document steps run in shards, dedup runs once over their outputs, in order.

Normalize, language, quality and PII look at one document at a time, so each shard runs them on its
slice of `corpus/raw` and writes every row with its verdict to a scratch dataset. Exact and near
dedup are global (the first occurrence in corpus order survives), so the merge step reads the shard
outputs in shard order, which is corpus order, and runs both with one index, exactly as the
in-process stage does. Kept and rejected documents, their order, counts and fingerprint are the
same as `tasks.clean.stage.clean_corpus`; only the per-step seconds differ (summed over the shards).

The steps are `Cleaner.run_steps` (tasks/clean/steps.py) in two parts, and the merge writes through
`write_clean_outputs` as `clean_corpus` does; tests/test_scaleout.py compares the two paths row by row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

from storage.parquet_store import DatasetWriter, iter_batches, iter_row_range, read_manifest
from storage.refs import DatasetRef
from storage.schemas import FLOAT_SCORES, INT_SCORES, RAW_SCHEMA
from storage.settings import Settings
from tasks.clean.params import CleanParams
from tasks.clean.stage import STAGE, clean_fingerprint, with_score_types, write_clean_outputs
from tasks.clean.steps import STEPS, Cleaner, Outcome, StepStats, Verdict
from tasks.shards import Shard, worker_id

log = logging.getLogger("draftflow.clean")
GLOBAL_STEPS = ("exact_dedup", "near_dedup")  # they need every earlier document: one ordered pass
PER_DOCUMENT_STEPS = STEPS[: -len(GLOBAL_STEPS)]  # normalize, language, quality, pii: shardable
if STEPS[-len(GLOBAL_STEPS) :] != GLOBAL_STEPS:
    raise ImportError(f"clean's steps {STEPS} no longer end with {GLOBAL_STEPS}: update tasks/clean/shards.py")

_RAW_FIELDS = RAW_SCHEMA.names
# A shard's output row: the raw row (its text is what a rejected row keeps), the cleaned text and
# scores of a document that passed, or the reason it was rejected.
SHARD_SCHEMA = pa.schema(
    [
        *RAW_SCHEMA,
        pa.field("clean_text", pa.large_string()),
        pa.field("language", pa.string()),
        *[pa.field(name, pa.int64()) for name in INT_SCORES],
        *[pa.field(name, pa.float64()) for name in FLOAT_SCORES],  # float64: the exact Python value
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ],
    metadata={"draftflow.dataset": "clean-shard"},
)


class CleanShardResult(BaseModel):
    """What a shard wrote (a reference) and its per-step counters."""

    index: int
    output: str
    rows: int
    kept: int
    seconds: float
    worker: str
    steps: dict[str, dict[str, Any]]


def clean_shard(shard: Shard, params: CleanParams) -> CleanShardResult:
    """Normalize, language, quality and PII on rows [start, stop) of the raw corpus."""
    started = time.perf_counter()
    cleaner = Cleaner(params)
    kept = 0
    with DatasetWriter(shard.output, SHARD_SCHEMA) as out:
        for batch in iter_row_range(shard.source, shard.start, shard.stop, batch_size=512):
            for row in batch.to_pylist():
                doc: dict[str, Any] = {"text": row["text"]}
                verdict = cleaner.run_steps(row, doc, PER_DOCUMENT_STEPS)
                out.write_row(_shard_row(row, doc, verdict))
                kept += verdict is None
        steps = {name: _stats_dict(cleaner.steps[name]) for name in PER_DOCUMENT_STEPS}
        out.commit({"stage": "clean-shard", "shard": shard.index, "steps": steps})
        rows = out.rows_written
    seconds = time.perf_counter() - started
    log.info(
        "clean %s: %d passed the per-document steps, %d rejected (%.1f s on %s)",
        shard.label,
        kept,
        rows - kept,
        seconds,
        worker_id(),
    )
    return CleanShardResult(
        index=shard.index, output=shard.output, rows=rows, kept=kept, seconds=seconds, worker=worker_id(), steps=steps
    )


def _shard_row(row: dict[str, Any], doc: dict[str, Any], verdict: Verdict | None) -> dict[str, Any]:
    if verdict is not None:
        return {**row, "reason": verdict[0], "detail": verdict[1]}
    scores = with_score_types(dict(doc["scores"]))  # the types the clean dataset stores
    return {
        **row,
        **{k: scores[k] for k in (*INT_SCORES, *FLOAT_SCORES)},
        "clean_text": doc["text"],
        "language": doc["language"],
    }


def _stats_dict(stats: StepStats) -> dict[str, Any]:
    return {
        "documents": stats.documents,
        "bytes": stats.bytes,
        "seconds": stats.seconds,
        "dropped": dict(stats.dropped),
    }


def _add_stats(stats: StepStats, counted: dict[str, Any]) -> None:
    stats.documents += counted["documents"]
    stats.bytes += counted["bytes"]
    stats.seconds += counted["seconds"]
    stats.dropped.update(counted["dropped"])


def committed_clean(raw: DatasetRef, settings: Settings, params: CleanParams) -> DatasetRef | None:
    """The clean corpus already on disk when it is exactly what this run would write, else None."""
    fp = clean_fingerprint(raw, params)
    manifest = read_manifest(settings.clean_dir) or {}
    rejected = read_manifest(settings.rejected_dir(STAGE)) or {}
    if manifest.get("fingerprint") != fp or rejected.get("fingerprint") != f"{fp}-rejected":
        return None
    return DatasetRef(
        path=str(settings.clean_dir),
        fingerprint=fp,
        rows=manifest["rows"],
        stats=manifest["stats"],
        report=manifest["steps"],
        profiles=manifest.get("profiles", {}),
        warnings=manifest.get("warnings", []),
    )


def merge_clean_shards(
    raw: DatasetRef,
    shards: list[CleanShardResult],
    settings: Settings,
    params: CleanParams,
    profiles: dict[str, str],
) -> DatasetRef:
    """Dedup over the shard outputs in corpus order; commit `corpus/clean` and `corpus/rejected/clean`.
    (The shards got the parameters with the sources' profiles resolved; `params` are the user's.)"""
    cleaner = Cleaner(params)
    for shard in shards:
        for name, counted in shard.steps.items():
            _add_stats(cleaner.steps[name], counted)
    started = time.perf_counter()
    ref = write_clean_outputs(raw, settings, params, cleaner, _deduplicated(cleaner, shards), profiles)
    log.info("clean: merged %d shards with exact and near dedup in %.1f s", len(shards), time.perf_counter() - started)
    return ref


def _deduplicated(cleaner: Cleaner, shards: list[CleanShardResult]) -> Iterator[Outcome]:
    """(raw row, clean row or None, verdict or None) for every document, in corpus order."""
    for shard in sorted(shards, key=lambda s: s.index):
        for batch in iter_batches(shard.output, batch_size=512):
            for row in batch.to_pylist():
                raw_row = {name: row[name] for name in _RAW_FIELDS}
                if row["reason"] is not None:
                    yield raw_row, None, (row["reason"], row["detail"])
                    continue
                scores = {name: row[name] for name in (*INT_SCORES, *FLOAT_SCORES)}
                doc = {"text": row["clean_text"], "language": row["language"], "scores": scores}
                verdict = cleaner.run_steps(raw_row, doc, GLOBAL_STEPS)
                kept = None if verdict else {**raw_row, "text": doc["text"], "language": doc["language"], **scores}
                yield raw_row, kept, verdict
