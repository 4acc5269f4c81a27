"""Scale-out: clean, tokenize and the draft checks, sharded over a Dask cluster when asked.

`scale.shards == 1` calls each stage's usual task in this process: same results, same caching.
With more shards a stage runs as a subflow whose task runner is a `prefect_dask.DaskTaskRunner`
(a local cluster of worker processes, or an existing scheduler at `scale.dask_address`): its
parallel part is a task mapped over the shards, and its global part (dedup, block packing, the
queue counts) runs once in this process over the shard outputs, in order. The outputs are the same
as in-process and are committed the same atomic way, so a failed shard leaves the previous
datasets untouched. A sharded clean or tokenize whose output is already committed with the
fingerprint this run would give returns it without starting any worker (in-process, Prefect's
cache does the same for the usual tasks).

Workers receive references only (dataset paths or URLs, row or id ranges, parameters). Workers of an
existing cluster must therefore reach the same corpus (a shared folder or `DRAFTFLOW_CORPUS_URL`),
the same data home (tokenizers, the n-gram index cache) and the same database (PostgreSQL).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prefect import flow, unmapped
from prefect.futures import PrefectFuture, as_completed

from flows.artifacts import PrefectProgress
from flows.params import ScaleParams
from flows.prefect_tasks import (
    build_index_task,
    check_range_task,
    clean,
    clean_shard_task,
    encode_shard_task,
    merge_clean_task,
    pack_task,
    queue_for_review,
    tokenize,
    tokenizer_task,
)
from storage.db import open_database
from storage.parquet_store import count_rows, remove_tree, require_dataset
from storage.refs import BaseModelSpec, DatasetRef, TokensRef
from storage.settings import Settings
from tasks.clean.params import CleanParams
from tasks.clean.profiles import resolve_profiles
from tasks.clean.shards import committed_clean
from tasks.review.params import CheckParams
from tasks.review.shards import merge_ranges, plan_ranges
from tasks.review.stage import QueueResult
from tasks.shards import new_scratch, plan
from tasks.tokenize.params import TokenizeParams
from tasks.tokenize.stage import committed_tokens

log = logging.getLogger("draftflow.scaleout")


def clean_stage(raw: DatasetRef, settings: Settings, params: CleanParams, scale: ScaleParams) -> DatasetRef:
    """`corpus/raw` -> `corpus/clean` + `corpus/rejected/clean`, in this process or in shards."""
    if scale.shards == 1:
        return clean(raw, settings, params)
    reused = committed_clean(raw, settings, params)
    if reused is not None:
        log.info("clean: corpus/clean already holds fingerprint %s for this input: nothing to do", reused.fingerprint)
        return reused
    return clean_sharded.with_options(task_runner=dask_runner(scale))(raw, settings, params, scale.shards)


def tokenize_stage(
    cleaned: DatasetRef, base: BaseModelSpec, settings: Settings, params: TokenizeParams, scale: ScaleParams
) -> TokensRef:
    """Tokenizer + packed train/val blocks, in this process or with the encoding in shards."""
    if scale.shards == 1:
        return tokenize(cleaned, base, settings, params)
    return tokenize_sharded.with_options(task_runner=dask_runner(scale))(cleaned, base, settings, params, scale.shards)


def queue_stage(
    run_id: str, settings: Settings, cleaned: DatasetRef | None, checks: CheckParams, scale: ScaleParams
) -> QueueResult:
    """Check the run's generated drafts and queue them, in this process or in id-range shards."""
    if scale.shards == 1:
        return queue_for_review(run_id, settings, cleaned, checks)
    return queue_sharded.with_options(task_runner=dask_runner(scale))(run_id, settings, cleaned, checks, scale.shards)


def dask_runner(scale: ScaleParams) -> Any:
    """The subflow's task runner: the scheduler at `dask_address`, or a local cluster of processes."""
    from prefect_dask import DaskTaskRunner

    if scale.dask_address:
        log.info("sharding over the Dask scheduler at %s", scale.dask_address)
        return DaskTaskRunner(address=scale.dask_address)
    kwargs = local_cluster_kwargs(scale)
    log.info("sharding over a local Dask cluster of %d worker processes", kwargs["n_workers"])
    return DaskTaskRunner(cluster_kwargs=kwargs)


def local_cluster_kwargs(scale: ScaleParams) -> dict[str, Any]:
    """`distributed.LocalCluster` arguments for `scale` (`workers`, else one per core)."""
    # One single-threaded process per core: the stages are pure-Python CPU work that holds the GIL,
    # so threads would not run in parallel; never more workers than shards. The scheduler's HTTP
    # server takes a free port, so two clusters on one machine never fight over 8787.
    workers = min(scale.workers or len(os.sched_getaffinity(0)), scale.shards)
    return {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}


@contextmanager
def shared_cluster(scale: ScaleParams) -> Iterator[ScaleParams]:
    """One local cluster for every sharded stage of a run: `scale` with its address filled in.

    Each stage would otherwise start and stop its own, and a fresh worker pays ~5 s on 2 cores to
    start, import the stages and load their models. Unchanged when `shards == 1` or an address is set.
    """
    if scale.shards == 1 or scale.dask_address:
        yield scale
        return
    from distributed import LocalCluster

    kwargs = local_cluster_kwargs(scale)
    with LocalCluster(**kwargs) as cluster:
        log.info("started a local Dask cluster of %d worker processes for this run", kwargs["n_workers"])
        yield scale.model_copy(update={"dask_address": cluster.scheduler_address})


def gather(stage: str, futures: Sequence[PrefectFuture[Any]]) -> list[Any]:
    """Every shard's result in shard order, after all have ended; the first failure is raised then.

    Waiting for all before raising keeps a failing night from deleting the scratch space while other
    shards still write to it.
    """
    progress = PrefectProgress(key=f"{stage}-shards", description=f"{stage}: shards done")
    for done, _ in enumerate(as_completed(list(futures)), start=1):
        progress(done, len(futures), f"{done} of {len(futures)} shards")
    return [future.result() for future in futures]


@flow(name="clean-sharded", description="Clean in shards on Dask; dedup in one ordered pass; atomic commit.")
def clean_sharded(raw: DatasetRef, settings: Settings, params: CleanParams, shards: int) -> DatasetRef:
    """Per-document steps mapped over row ranges of `corpus/raw`, then exact + near dedup here."""
    require_dataset(settings.raw_dir, "raw corpus", "run `draftflow ingest PATH...` first")
    rows = count_rows(settings.raw_dir)  # what the readers will read: the files, not the manifest's word
    scratch = new_scratch(settings, "clean")
    try:
        parts = plan(str(settings.raw_dir), rows, shards, scratch, "clean")
        log.info("clean: %d documents in %d shards", rows, len(parts))
        resolved, profiles = resolve_profiles(params, settings.raw_dir)  # once, before the shards
        results = gather("clean", clean_shard_task.map(parts, unmapped(resolved)))
        return merge_clean_task(raw, results, settings, params, profiles)
    finally:
        remove_tree(scratch)


@flow(name="tokenize-sharded", description="Train the tokenizer once, encode in shards on Dask, pack blocks here.")
def tokenize_sharded(
    cleaned: DatasetRef, base: BaseModelSpec, settings: Settings, params: TokenizeParams, shards: int
) -> TokensRef:
    """The tokenizer first (before any worker starts, so it has every core), then sharded encoding."""
    tok = tokenizer_task(cleaned, base, settings, params)
    reused = committed_tokens(cleaned, tok, settings, params)
    if reused is not None:
        log.info("tokenize: the blocks for fingerprint %s are already written: nothing to do", reused.fingerprint)
        return reused
    require_dataset(cleaned.path, "clean corpus", "run `draftflow clean` first")
    rows = count_rows(cleaned.path)
    scratch = new_scratch(settings, "tokenize")
    try:
        parts = plan(cleaned.path, rows, shards, scratch, "tokenize")
        log.info("tokenize: %d documents in %d shards", rows, len(parts))
        results = gather("tokenize", encode_shard_task.map(parts, unmapped(tok), unmapped(params)))
        return pack_task(cleaned, tok, results, settings, params)
    finally:
        remove_tree(scratch)


@flow(name="queue-sharded", description="Check a run's drafts in id-range shards on Dask and queue them.")
def queue_sharded(
    run_id: str, settings: Settings, cleaned: DatasetRef | None, checks: CheckParams, shards: int
) -> QueueResult:
    """The n-gram index is built once here; each shard loads it from the on-disk cache."""
    build_index_task(settings, cleaned)
    parts = plan_ranges(open_database(settings.database_url), run_id, shards)
    log.info("queue_for_review: %d id ranges of run %s", len(parts), run_id)
    results = (
        gather("check", check_range_task.map(parts, unmapped(settings), unmapped(cleaned), unmapped(checks)))
        if parts
        else []
    )
    return merge_ranges(run_id, settings, results)
