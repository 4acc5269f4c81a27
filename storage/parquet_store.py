"""Parquet datasets on disk: a folder of zstd `part-*.parquet` files plus a `_manifest.json`.

Writers stage into a hidden sibling folder and swap it in on commit, so a crash half-way leaves
the previous version of the dataset intact. Readers stream record batches: memory stays bounded
by the batch size, not the corpus size.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import NotFoundError

MANIFEST = "_manifest.json"
DEFAULT_ROWS_PER_FILE = 50_000
DEFAULT_READ_BATCH = 1_024


class DatasetWriter:
    """Write rows to a dataset folder in record batches; `commit()` publishes them atomically.

    Use as a context manager: leaving the block without `commit()` (an exception) discards
    the staged files and keeps the old dataset.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        buffer_rows: int = 2_048,
    ) -> None:
        self.directory = Path(directory)
        self.schema = schema
        self.rows_per_file = rows_per_file
        self.buffer_rows = buffer_rows
        self._rows_flushed = 0
        self._staging = self.directory.parent / f".{self.directory.name}.staging-{uuid.uuid4().hex[:8]}"
        self._staging.mkdir(parents=True)
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
        if len(self._buffer) >= self.buffer_rows:
            self._flush()

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self.write_row(row)

    def write_table(self, table: pa.Table) -> None:
        self._flush()
        self._write(table.cast(self.schema))

    def _flush(self) -> None:
        if self._buffer:
            self._write(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def _write(self, table: pa.Table) -> None:
        if self._writer is None or self._rows_in_file >= self.rows_per_file:
            self._close_file()
            path = self._staging / f"part-{self._files:05d}.parquet"
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
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
        pq.write_table(table, self._staging / name, compression="zstd")

    def commit(self, manifest: Mapping[str, Any]) -> Path:
        """Close the files, write the manifest and swap the staged folder into place."""
        self._flush()
        self._close_file()
        body = {"rows": self.rows_written, "files": self._files, **manifest}
        (self._staging / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True, default=str))
        old = self.directory.parent / f".{self.directory.name}.old-{uuid.uuid4().hex[:8]}"
        if self.directory.exists():
            self.directory.rename(old)
        self._staging.rename(self.directory)
        shutil.rmtree(old, ignore_errors=True)
        self._committed = True
        return self.directory

    def abort(self) -> None:
        self._close_file()
        shutil.rmtree(self._staging, ignore_errors=True)


def part_files(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("part-*.parquet"))


def require_dataset(directory: Path, what: str, fix: str) -> dict[str, Any]:
    """The manifest of a committed dataset, or a NotFoundError that says how to create it."""
    manifest = Path(directory) / MANIFEST
    if not manifest.is_file():
        raise NotFoundError(f"{what} not found at '{directory}': {fix}")
    return json.loads(manifest.read_text())


def read_manifest(directory: Path) -> dict[str, Any] | None:
    manifest = Path(directory) / MANIFEST
    return json.loads(manifest.read_text()) if manifest.is_file() else None


def iter_batches(
    directory: Path,
    columns: list[str] | None = None,
    batch_size: int = DEFAULT_READ_BATCH,
) -> Iterator[pa.RecordBatch]:
    """Stream a dataset's rows in file order, one record batch at a time."""
    for path in part_files(directory):
        parquet = pq.ParquetFile(path)
        yield from parquet.iter_batches(batch_size=batch_size, columns=columns)


def count_rows(directory: Path) -> int:
    """Row count from Parquet footers, without reading any data pages."""
    return sum(pq.ParquetFile(path).metadata.num_rows for path in part_files(directory))


def read_sidecar(directory: Path, name: str) -> pa.Table | None:
    path = Path(directory) / name
    return pq.read_table(path) if path.is_file() else None


def schema_metadata(directory: Path) -> dict[str, str]:
    files = part_files(directory)
    if not files:
        return {}
    raw = pq.read_schema(files[0]).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}
