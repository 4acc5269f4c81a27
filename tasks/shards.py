"""Shards: a stage's input cut into contiguous ranges that separate processes work on, merged back in order.

A shard is a reference (which dataset, which rows, where to write), never the rows themselves: Prefect
and Dask carry a few hundred bytes per shard to a worker. Shard outputs are scratch
datasets under `Settings.shards_dir`, beside the corpus so that workers of a remote cluster reach
them too; the merge step reads them in shard order and commits the stage's real outputs.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from pydantic import BaseModel

from storage.locations import Location
from storage.settings import Settings


class Shard(BaseModel):
    """Rows [start, stop) of `source`, written by this shard to `output`."""

    index: int
    count: int
    start: int
    stop: int
    source: str
    output: str

    @property
    def label(self) -> str:
        return f"shard {self.index + 1}/{self.count} (rows {self.start:,}-{self.stop:,})"


def row_ranges(total: int, shards: int) -> list[tuple[int, int]]:
    """At most `shards` contiguous ranges of near-equal size covering [0, total); never an empty one
    (except the single range of an empty input)."""
    count = max(1, min(shards, total))
    return [(total * i // count, total * (i + 1) // count) for i in range(count)]


def plan(source: str, total: int, shards: int, scratch: Location, stage: str) -> list[Shard]:
    """The shards of a dataset of `total` rows, each with its own output folder in `scratch`."""
    ranges = row_ranges(total, shards)
    return [
        Shard(
            index=i, count=len(ranges), start=start, stop=stop, source=source, output=str(scratch / f"{stage}-{i:05d}")
        )
        for i, (start, stop) in enumerate(ranges)
    ]


def new_scratch(settings: Settings, stage: str) -> Location:
    """A fresh scratch folder for one sharded run of a stage (removed by the stage when it ends)."""
    return settings.shards_dir / f"{stage}-{uuid.uuid4().hex[:12]}"


def worker_id() -> str:
    """host:pid of the process running a shard (the shard results carry it, for the logs and tests)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_logging() -> None:
    """A Dask worker is a fresh process: give the stage loggers the level the flow's process uses."""
    logging.getLogger("draftflow").setLevel(Settings().log_level)
