"""Readers that turn a source (a file, a folder, the embedded stdlib docs) into records.

A reader never raises for bad content: an unreadable file, a binary file, a bad JSONL line or a
missing column becomes a record with a `reason`, which ingest writes to `corpus/rejected`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from storage.errors import DraftflowError

TEXT_SUFFIXES = {".txt", ".md"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | {".jsonl", ".parquet"}
BUILTIN_SOURCES = {"python-stdlib-docs"}
_SNIFF_BYTES = 8192


@dataclass
class SourceRecord:
    """One document read from a source, or one rejection (when `reason` is set)."""

    source: str
    uri: str
    text: str | None
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """`NAME=PATH`, a plain path (named after its stem) or a built-in source name."""

    name: str
    path: Path | None  # None for built-in sources

    @classmethod
    def parse(cls, spec: str) -> SourceSpec:
        if spec in BUILTIN_SOURCES:
            return cls(name=spec, path=None)
        name, sep, raw_path = spec.partition("=")
        if not sep or "/" in name or not name:
            name, raw_path = "", spec
        path = Path(raw_path).expanduser()
        if not path.exists():
            raise DraftflowError(f"corpus path '{raw_path}' does not exist "
                                 f"(give a file, a folder, or one of: {', '.join(sorted(BUILTIN_SOURCES))})")
        return cls(name=name or path.resolve().stem or "corpus", path=path.resolve())


def read_source(spec: SourceSpec, text_field: str = "text") -> Iterator[SourceRecord]:
    """All records of one source, in a deterministic order."""
    if spec.path is None:
        from tasks.stdlib_docs import iter_stdlib_docs

        yield from iter_stdlib_docs(spec.name)
    elif spec.path.is_dir():
        yield from _read_directory(spec.name, spec.path, text_field)
    else:
        yield from read_file(spec.name, spec.path, text_field)


def _read_directory(source: str, root: Path, text_field: str) -> Iterator[SourceRecord]:
    for dirpath, dirnames, filenames in os.walk(root):
        # hidden folders and files (.git, .DS_Store) are tooling, not content: not read at all
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield from read_file(source, Path(dirpath) / name, text_field)


def read_file(source: str, path: Path, text_field: str = "text") -> Iterator[SourceRecord]:
    suffix = path.suffix.lower()
    uri = path.as_posix()
    if suffix not in SUPPORTED_SUFFIXES:
        yield SourceRecord(source, uri, None, reason="unsupported_type",
                           detail=f"'{suffix or path.name}' is not one of {sorted(SUPPORTED_SUFFIXES)}")
    elif suffix == ".parquet":
        yield from _read_parquet(source, path, text_field)
    else:
        text, problem = _read_text(path)
        if text is None:
            yield SourceRecord(source, uri, None, reason=problem[0], detail=problem[1])
        elif suffix == ".jsonl":
            yield from _read_jsonl(source, uri, text, text_field)
        else:
            yield _text_record(source, uri, text, title=_title_of(path, text))


def _read_text(path: Path) -> tuple[str | None, tuple[str, str]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, ("unreadable", exc.strerror or str(exc))
    if b"\x00" in data[:_SNIFF_BYTES]:
        return None, ("binary", "NUL bytes in the first 8 KiB: not a text file")
    try:
        return data.decode("utf-8-sig"), ("", "")
    except UnicodeDecodeError as exc:
        return None, ("not_utf8", f"byte {exc.start}: {exc.reason}")


def _title_of(path: Path, text: str) -> str:
    for line in text.splitlines()[:20]:
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def _text_record(source: str, uri: str, text: str, title: str | None = None,
                 meta: dict[str, Any] | None = None) -> SourceRecord:
    if not text.strip():
        return SourceRecord(source, uri, None, title=title, meta=meta or {}, reason="empty",
                            detail="no text")
    return SourceRecord(source, uri, text, title=title, meta=meta or {})


def _read_jsonl(source: str, uri: str, content: str, text_field: str) -> Iterator[SourceRecord]:
    lines = 0
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        lines += 1
        where = f"{uri}#L{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield SourceRecord(source, where, None, reason="bad_json", detail=f"line {number}: {exc.msg}")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
            yield SourceRecord(source, where, None, reason="missing_field",
                               detail=f"line {number}: no string field '{text_field}'")
            continue
        meta = {k: v for k, v in obj.items() if k not in (text_field, "title")}
        title = obj.get("title") if isinstance(obj.get("title"), str) else None
        yield _text_record(source, where, obj[text_field], title=title, meta=meta)
    if lines == 0:
        yield SourceRecord(source, uri, None, reason="empty", detail="no JSON lines")


def _read_parquet(source: str, path: Path, text_field: str) -> Iterator[SourceRecord]:
    uri = path.as_posix()
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt or non-Parquet file
        yield SourceRecord(source, uri, None, reason="unreadable", detail=f"not a Parquet file: {exc}")
        return
    names = parquet.schema_arrow.names
    if text_field not in names:
        yield SourceRecord(source, uri, None, reason="missing_column",
                           detail=f"no column '{text_field}' (columns: {', '.join(names)})")
        return
    columns = [text_field] + (["title"] if "title" in names else [])
    row = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=1024):
        for values in batch.to_pylist():
            text, where = values[text_field], f"{uri}#row{row}"
            row += 1
            if not isinstance(text, str):
                yield SourceRecord(source, where, None, reason="empty", detail=f"row {row - 1}: no text")
            else:
                yield _text_record(source, where, text, title=values.get("title"))
