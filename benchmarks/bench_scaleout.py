"""Scale-out: clean and tokenize of the embedded corpus in-process vs 2 shards on a Dask LocalCluster.

Run: .venv/bin/python -m benchmarks.bench_scaleout
Prints wall seconds and the ratio in-process / sharded (above 1: sharding is faster) for:
- the stage as the nightly flow calls it with `ScaleParams(shards=2, workers=2)`: it starts its own
  LocalCluster of 2 worker processes (start-up, imports and model loads in the workers included);
- the same stage on a cluster that is already running (`dask_address`): the steady state.
It also prints the serial part of clean (exact + near dedup run once, in corpus order), which bounds
the gain (Amdahl). Sharded and in-process outputs are checked equal before anything is timed.
On a 2-core box two shards can at best halve the per-document work; expect well under 2x.
Target: clean on a running cluster is not slower than in-process (>= 1.0x); the other rows are
measurements of what a fresh cluster and an already parallel tokenizer cost.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

# Quiet flow-run and cluster chatter (here and in the spawned workers): the figures are the output.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

from benchmarks.common import Targets, fresh_settings
from flows.params import ScaleParams
from storage.parquet_store import iter_batches, remove_tree
from storage.refs import BaseModelSpec, DatasetRef
from storage.settings import Settings
from tasks.clean.params import CleanParams
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.params import TokenizeParams
from tasks.tokenize.stage import tokenize_corpus

RUNS = 3
SCRATCH = BaseModelSpec(kind="scratch")


def _timed(fn: Callable[[], object], before: Callable[[], None] = lambda: None) -> float:
    """Best of RUNS wall times; `before` runs untimed ahead of each (it clears committed outputs,
    which the sharded stages would otherwise reuse)."""
    times = []
    for _ in range(RUNS):
        before()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _rows(ref: DatasetRef) -> list[dict[str, object]]:
    return [r for b in iter_batches(ref.path) for r in b.to_pylist()]


def _forget_clean(settings: Settings) -> Callable[[], None]:
    return lambda: remove_tree(settings.clean_dir)


def _forget_tokens(settings: Settings, tokenizer_id: str) -> Callable[[], None]:
    return lambda: remove_tree(settings.token_blocks_dir / tokenizer_id / "train")


def main() -> None:
    from prefect.testing.utilities import prefect_test_harness

    # One temporary Prefect server for the whole run, as a nightly flow has one for all its stages;
    # without it every top-level flow call starts and stops its own (5-10 s, which would be timed).
    with prefect_test_harness(server_startup_timeout=120):
        compare()


def compare() -> None:
    from distributed import LocalCluster

    from flows.scaleout import clean_stage, tokenize_stage

    local, sharded = fresh_settings("scaleout-local"), fresh_settings("scaleout-sharded")
    raw = ingest_corpus(["python-stdlib-docs"], local)
    shutil.copytree(Path(local.raw_dir), Path(sharded.raw_dir))
    params, tok_params = CleanParams(), TokenizeParams()

    # Correctness first (and the warm-up: imports, language model, Prefect's temporary server).
    expected = clean_corpus(raw, local, params)
    fresh = ScaleParams(shards=2, workers=2)
    got = clean_stage(raw, sharded, params, fresh)
    assert got.fingerprint == expected.fingerprint and _rows(got) == _rows(expected), "sharded clean differs"
    expected_tokens = tokenize_corpus(
        expected, prepare_tokenizer(expected, SCRATCH, local, tok_params), local, tok_params
    )
    got_tokens = tokenize_stage(got, SCRATCH, sharded, tok_params, fresh)
    assert got_tokens.fingerprint == expected_tokens.fingerprint, "sharded tokenize differs"

    report = {step["step"]: step["seconds"] for step in expected.report}
    serial = report["exact_dedup"] + report["near_dedup"]
    share = serial / sum(report.values())
    print(
        f"corpus: {raw.rows} documents, {expected.report[0]['megabytes']:.2f} MB; kept {expected.rows}; "
        f"{expected_tokens.tokens:,} tokens; best of {RUNS}"
    )
    print(
        f"clean's serial part (exact + near dedup, one ordered pass): {serial:.2f} s of "
        f"{sum(report.values()):.2f} s in-process = {share:.0%} -> at most {1 / (share + (1 - share) / 2):.2f}x "
        "with 2 shards (Amdahl)"
    )

    forget_tokens = _forget_tokens(sharded, got_tokens.tokenizer.tokenizer_id)
    results: dict[str, tuple[float, float]] = {}
    results["clean, fresh local cluster"] = (
        _timed(lambda: clean_corpus(raw, local, params)),
        _timed(lambda: clean_stage(raw, sharded, params, fresh), _forget_clean(sharded)),
    )
    results["tokenize (BPE training included), fresh local cluster"] = (
        _timed(
            lambda: tokenize_corpus(
                expected, prepare_tokenizer(expected, SCRATCH, local, tok_params), local, tok_params
            )
        ),
        _timed(lambda: tokenize_stage(got, SCRATCH, sharded, tok_params, fresh), forget_tokens),
    )
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        warm = ScaleParams(shards=2, dask_address=cluster.scheduler_address)
        _forget_clean(sharded)()
        clean_stage(raw, sharded, params, warm)  # the workers import the stages and load their models once
        results["clean, running cluster"] = (
            results["clean, fresh local cluster"][0],
            _timed(lambda: clean_stage(raw, sharded, params, warm), _forget_clean(sharded)),
        )
        results["tokenize, running cluster"] = (
            results["tokenize (BPE training included), fresh local cluster"][0],
            _timed(lambda: tokenize_stage(got, SCRATCH, sharded, tok_params, warm), forget_tokens),
        )

    print(f"  {'stage':<55} {'in-process':>10} {'2 shards':>9} {'ratio':>6}")
    for name, (inline, shards) in results.items():
        print(f"  {name:<55} {inline:>9.2f}s {shards:>8.2f}s {inline / shards:>5.2f}x")
    print("  (ratio = in-process / sharded wall time; in-process tokenize already encodes on both cores)")
    targets = Targets()
    targets.check(
        "clean on a running cluster, in-process / 2 shards",
        results["clean, running cluster"][0] / results["clean, running cluster"][1],
        ">=",
        1.0,
    )
    targets.finish()


if __name__ == "__main__":
    main()
