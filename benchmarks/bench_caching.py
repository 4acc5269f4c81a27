"""Prefect caching of the corpus stages: the prepare time of a night with unchanged inputs vs the
first night's (target: <= 0.2x).

Runs the `draftflow-prepare` flow (ingest → clean → tokenize) on the embedded corpus twice, in a
fresh data home, on Prefect's temporary server (started and warmed up first, outside the timings).
Run: .venv/bin/python -m benchmarks.bench_caching
"""

from __future__ import annotations

import time

from prefect import flow

from benchmarks.common import Targets, fresh_settings
from flows.stages import PrepareParams, prepare_flow


@flow
def _warm_up() -> None:
    """Start the temporary server before timing anything."""


def main() -> None:
    settings = fresh_settings("caching")
    _warm_up()
    params = PrepareParams(home=str(settings.home))
    timings = []
    for night in ("first", "second"):
        started = time.perf_counter()
        result = prepare_flow(params)
        timings.append(time.perf_counter() - started)
        print(f"{night} night: prepare took {timings[-1]:.2f} s; cached stages: {result['cached'] or 'none'}")
    targets = Targets()
    targets.check("second night's prepare / first night's", timings[1] / timings[0], "<=", 0.2)
    if result["cached"] != ["ingest", "clean", "tokenize"]:
        targets.missed.append(f"cached stages {result['cached']}")
    targets.finish()


if __name__ == "__main__":
    main()
