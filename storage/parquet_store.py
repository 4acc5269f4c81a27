"""Parquet datasets: a folder of zstd `part-*.parquet` files plus a `_manifest.json`, on a local disk or at a URL.

A dataset is named by a local path or by any fsspec URL (`s3://bucket/corpus/clean`, `file:///data/clean`);
`storage/locations.py` tells them apart. Every function here takes either.

Local folders: writers stage into a hidden sibling folder and swap it in on commit (two renames), so
a crash half-way leaves the previous version of the dataset intact.

URLs: object stores cannot rename a folder, so a writer puts its files under a fresh version prefix
inside the dataset (`<url>/v-<id>/part-*.parquet`) and publishes them with the manifest, which lists
the version's files: readers read only what the manifest lists. The manifest is written under the
version prefix and then moved over `<url>/_manifest.json` (one object copy on S3/GCS, a rename on a
disk), so a reader sees the old manifest or the new one, never half of one; older version prefixes
are deleted after the switch. A crash before the switch leaves the old manifest and its files (the
next commit sweeps them). As on a local disk, one writer per dataset at a time.

Readers stream record batches: memory stays bounded by the batch size, not the corpus size.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import DraftflowError, NotFoundError
from storage.locations import Location, StoreURL, location

MANIFEST = "_manifest.json"
DEFAULT_ROWS_PER_FILE = 50_000
DEFAULT_READ_BATCH = 1_024
# A record batch holds at most about this many bytes of (uncompressed) data, whatever its row count:
# 512 rows of 1 MB documents would otherwise be half a gigabyte in one batch.
MAX_BATCH_BYTES = 8_000_000
VERSION_PREFIX = "v-"  # URL datasets: one prefix per committed version

PathOrURL = str | os.PathLike[str]


class _LocalStage:
    """A hidden sibling folder, renamed into place on publish."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory.parent / f".{directory.name}.staging-{uuid.uuid4().hex[:8]}"
        self.path.mkdir(parents=True)

    def target(self, name: str) -> tuple[Any, None]:
        return self.path / name, None

    def publish(self, body: dict[str, Any]) -> None:
        (self.path / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True, default=str))
        old = self.directory.parent / f".{self.directory.name}.old-{uuid.uuid4().hex[:8]}"
        if self.directory.exists():
            self.directory.rename(old)
        self.path.rename(self.directory)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class _URLStage:
    """A version prefix inside the dataset, published by moving its manifest over the current one."""

    def __init__(self, directory: StoreURL) -> None:
        self.fs, self.root = directory.filesystem()
        self.arrow_fs, _ = directory.arrow()
        self.version = f"{VERSION_PREFIX}{uuid.uuid4().hex[:12]}"
        self.prefix = f"{self.root}/{self.version}"
        self.fs.makedirs(self.prefix, exist_ok=True)  # a no-op on object stores; a folder for file://
        self.sidecars: dict[str, str] = {}

    def target(self, name: str) -> tuple[str, Any]:
        return f"{self.prefix}/{name}", self.arrow_fs

    def publish(self, body: dict[str, Any]) -> None:
        body = {
            **body,
            "version": self.version,
            "sidecars": self.sidecars,
            "parts": [f"{self.version}/part-{i:05d}.parquet" for i in range(body["files"])],
        }
        staged = f"{self.prefix}/{MANIFEST}"
        self.fs.pipe_file(staged, json.dumps(body, indent=2, sort_keys=True, default=str).encode())
        self.fs.mv(staged, f"{self.root}/{MANIFEST}")  # the switch: readers now see this version
        for entry in self.fs.ls(self.root, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(VERSION_PREFIX) and name != self.version:
                self.fs.rm(entry, recursive=True)  # older versions, and any a crashed writer left

    def discard(self) -> None:
        if self.fs.exists(self.prefix):
            self.fs.rm(self.prefix, recursive=True)


class DatasetWriter:
    """Write rows to a dataset (a folder or a URL) in record batches; `commit()` publishes them atomically.

    Use as a context manager: leaving the block without `commit()` (an exception) discards
    the staged files and keeps the old dataset.
    """

    def __init__(
        self,
        directory: PathOrURL,
        schema: pa.Schema,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        buffer_rows: int = 2_048,
        buffer_chars: int = 8_000_000,
    ) -> None:
        self.directory: Location = location(directory)
        self.schema = schema
        self.rows_per_file = rows_per_file
        self.buffer_rows = buffer_rows
        self.buffer_chars = buffer_chars  # long documents: flush by size too, so memory stays bounded
        self._buffered_chars = 0
        self._rows_flushed = 0
        self._stage = _LocalStage(self.directory) if isinstance(self.directory, Path) else _URLStage(self.directory)
        self._buffer: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self._files = 0
        self._committed = False

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not self._committed:
            self.abort()

    @property
    def rows_written(self) -> int:
        """Rows accepted so far, buffered ones included."""
        return self._rows_flushed + len(self._buffer)

    def write_row(self, row: Mapping[str, Any]) -> None:
        self._buffer.append(dict(row))
        self._buffered_chars += sum(len(value) for value in row.values() if isinstance(value, str))
        if len(self._buffer) >= self.buffer_rows or self._buffered_chars >= self.buffer_chars:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        self._flush()
        self._write(table.cast(self.schema))

    def _flush(self) -> None:
        if self._buffer:
            self._write(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []
            self._buffered_chars = 0

    def _write(self, table: pa.Table) -> None:
        if self._writer is None or self._rows_in_file >= self.rows_per_file:
            self._close_file()
            where, filesystem = self._stage.target(f"part-{self._files:05d}.parquet")
            self._writer = pq.ParquetWriter(where, self.schema, filesystem=filesystem, compression="zstd")
            self._files += 1
        self._writer.write_table(table)
        self._rows_in_file += table.num_rows
        self._rows_flushed += table.num_rows

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._rows_in_file = 0

    def write_sidecar(self, name: str, table: pa.Table) -> None:
        """A small extra file (e.g. an index) published atomically with the dataset."""
        where, filesystem = self._stage.target(name)
        pq.write_table(table, where, filesystem=filesystem, compression="zstd")
        if isinstance(self._stage, _URLStage):
            self._stage.sidecars[name] = f"{self._stage.version}/{name}"

    def commit(self, manifest: Mapping[str, Any]) -> Location:
        """Close the files, write the manifest and publish the staged version in one step."""
        self._flush()
        self._close_file()
        self._stage.publish({"rows": self.rows_written, "files": self._files, **manifest})
        self._committed = True
        return self.directory

    def abort(self) -> None:
        self._close_file()
        self._stage.discard()


def part_files(directory: PathOrURL) -> list[Location]:
    """The data files in read order: globbed in a folder, listed by the manifest at a URL."""
    where = location(directory)
    if isinstance(where, Path):
        return list(sorted(where.glob("part-*.parquet")))
    manifest = read_manifest(where)
    return [where / part for part in manifest.get("parts", [])] if manifest else []


def require_dataset(directory: PathOrURL, what: str, fix: str) -> dict[str, Any]:
    """The manifest of a committed dataset, or a NotFoundError that says how to create it."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise NotFoundError(f"{what} not found at '{directory}': {fix}")
    return manifest


def require_unchanged(directory: PathOrURL, fingerprint: str, what: str, fix: str) -> dict[str, Any]:
    """The manifest of the dataset a stage was handed, checked to be the same dataset: another run
    on the same home may have replaced it since the reference was made."""
    manifest = require_dataset(directory, what, fix)
    if manifest.get("fingerprint") != fingerprint:
        raise DraftflowError(
            f"the {what} at '{directory}' changed after this run read it (fingerprint {fingerprint[:12]}, now "
            f"{str(manifest.get('fingerprint'))[:12]}): another run wrote it; {fix}"
        )
    return manifest


def read_manifest(directory: PathOrURL) -> dict[str, Any] | None:
    where = location(directory)
    if isinstance(where, Path):
        manifest = where / MANIFEST
        return json.loads(manifest.read_text()) if manifest.is_file() else None
    fs, path = where.filesystem()
    try:
        return json.loads(fs.cat_file(f"{path}/{MANIFEST}"))
    except FileNotFoundError:
        return None


def _parquet_file(path: Location) -> pq.ParquetFile:
    if isinstance(path, Path):
        return pq.ParquetFile(path)
    filesystem, inner = path.arrow()
    return pq.ParquetFile(inner, filesystem=filesystem)


def iter_batches(
    directory: PathOrURL,
    columns: list[str] | None = None,
    batch_size: int = DEFAULT_READ_BATCH,
) -> Iterator[pa.RecordBatch]:
    """Stream a dataset's rows in file order, one record batch at a time: at most `batch_size` rows
    and, for long texts, about `MAX_BATCH_BYTES` of data."""
    for path in part_files(directory):
        parquet = _parquet_file(path)
        yield from bounded_batches(parquet, range(parquet.metadata.num_row_groups), batch_size, columns)


def bounded_batches(
    parquet: pq.ParquetFile, groups: Iterable[int], batch_size: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The record batches of some row groups, each of at most `batch_size` rows and about
    `MAX_BATCH_BYTES`: the rows per batch come from each row group's own uncompressed size."""
    for group in groups:
        meta = parquet.metadata.row_group(group)
        if not meta.num_rows:
            continue
        per_row = max(1, meta.total_byte_size) / meta.num_rows
        rows = max(1, min(batch_size, int(MAX_BATCH_BYTES / per_row)))
        yield from parquet.iter_batches(batch_size=rows, columns=columns, row_groups=[group])


def iter_row_range(
    directory: PathOrURL,
    start: int,
    stop: int,
    columns: list[str] | None = None,
    batch_size: int = DEFAULT_READ_BATCH,
) -> Iterator[pa.RecordBatch]:
    """Rows [start, stop) of a dataset in file order, reading only the row groups that hold them.

    This is how a shard reads its slice: row-group statistics in the footers say where each row
    lives, so N shards read the dataset about once in total, not N times.
    """
    offset = 0
    for path in part_files(directory):
        if offset >= stop:
            return
        parquet = _parquet_file(path)
        groups, first = [], None
        for group in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if offset + rows > start and offset < stop:
                first = offset if first is None else first
                groups.append(group)
            offset += rows
        if first is None:
            continue
        position = first  # the selected row groups are contiguous, so batches follow row order
        for batch in bounded_batches(parquet, groups, batch_size, columns):
            lo, hi = max(start - position, 0), min(stop - position, batch.num_rows)
            if hi > lo:
                yield batch.slice(lo, hi - lo)
            position += batch.num_rows


def count_rows(directory: PathOrURL) -> int:
    """Row count from Parquet footers, without reading any data pages."""
    return sum(_parquet_file(path).metadata.num_rows for path in part_files(directory))


def read_sidecar(directory: PathOrURL, name: str) -> pa.Table | None:
    where = location(directory)
    if isinstance(where, Path):
        path = where / name
        return pq.read_table(path) if path.is_file() else None
    manifest = read_manifest(where)
    stored = (manifest or {}).get("sidecars", {}).get(name)
    if stored is None:
        return None
    filesystem, inner = (where / stored).arrow()
    return pq.read_table(inner, filesystem=filesystem)


def schema_metadata(directory: PathOrURL) -> dict[str, str]:
    files = part_files(directory)
    if not files:
        return {}
    if isinstance(files[0], Path):
        raw = pq.read_schema(files[0]).metadata or {}
    else:
        filesystem, inner = files[0].arrow()
        raw = pq.read_schema(inner, filesystem=filesystem).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}


def remove_tree(directory: PathOrURL) -> None:
    """Delete a folder or URL prefix and everything under it (scratch space); missing is fine."""
    where = location(directory)
    if isinstance(where, Path):
        shutil.rmtree(where, ignore_errors=True)
        return
    fs, path = where.filesystem()
    if fs.exists(path):
        fs.rm(path, recursive=True)
