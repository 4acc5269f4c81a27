"""Sources and their units: what ingest reads, one file (a "unit") at a time.

A source is a file, a folder (recursive, filtered by include/exclude globs) or the embedded
`python-stdlib-docs`. Each unit has a content hash, so a nightly run can skip what did not change.
Reading never raises for bad content: it yields records with a reason instead. Nothing vanishes and
nothing hangs: a FIFO, socket or device is a rejected row and is never opened (reading a FIFO blocks
forever); a broken link, an unreadable folder and a symlink loop are rejected rows too; a symlinked
folder is followed once. Sizes are bounded by `max_chars` (tasks/ingest/limits.py).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from storage.errors import DraftflowError
from storage.fingerprint import fingerprint
from tasks.clean.params import PROFILES as PROFILE_NAMES
from tasks.ingest import formats
from tasks.ingest.limits import BoundedLines, looks_binary, split_record, text_parts
from tasks.ingest.params import IngestOptions
from tasks.ingest.records import SourceRecord

TEXT_SUFFIXES = {".txt", ".md", ".rst"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | {".html", ".htm", ".jsonl", ".json", ".csv", ".parquet"}
BUILTIN_SOURCES = {"python-stdlib-docs"}
_SNIFF_BYTES = 8192
_CHUNK = 1 << 20
_MARKUP_FACTOR = 4  # bytes of HTML, JSON or CSV a document of max_chars characters may take


@dataclass(frozen=True)
class SourceSpec:
    """`NAME=PATH`, a plain path (named after its stem) or a built-in source name, each optionally with
    `:PROFILE`, the cleaning profile of the source (`sayings=quotes.jsonl:short-form`)."""

    name: str
    path: Path | None  # None for built-in sources
    profile: str | None = None

    @classmethod
    def parse(cls, spec: str) -> SourceSpec:
        spec, profile = _profile_suffix(spec)
        if spec in BUILTIN_SOURCES:
            return cls(name=spec, path=None, profile=profile)
        name, sep, raw_path = spec.partition("=")
        if not sep or "/" in name or not name:
            name, raw_path = "", spec
        path = Path(raw_path).expanduser()
        if not path.exists():
            raise DraftflowError(
                f"corpus path '{raw_path}' does not exist "
                f"(give a file, a folder, or one of: {', '.join(sorted(BUILTIN_SOURCES))})"
            )
        resolved = path.resolve()
        stem = resolved.name.split(".")[0] if resolved.is_file() else resolved.name
        return cls(name=name or stem or "corpus", path=resolved, profile=profile)


def _profile_suffix(spec: str) -> tuple[str, str | None]:
    """`PATH:short-form` -> (`PATH`, `short-form`); a colon that names no profile is part of the path."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail in PROFILE_NAMES:
        return head, tail
    if sep and tail and not Path(spec).exists() and "/" not in tail and tail.islower() and len(tail) < 20:
        raise DraftflowError(f"unknown profile '{tail}' in '{spec}' (one of: {', '.join(PROFILE_NAMES)})")
    return spec, None


@dataclass(frozen=True)
class Unit:
    """One file of a source: hashed to detect change, read into records."""

    source: str
    file: str
    path: Path
    read: Callable[[], Iterator[SourceRecord]]
    options_key: str = ""
    fixed_hash: str | None = None  # a unit that is a rejection: its hash, without opening the path

    def content_hash(self) -> str:
        """sha256 of the bytes (streamed: constant memory) plus the options that shape parsing."""
        if self.fixed_hash is not None:
            return self.fixed_hash
        digest = hashlib.sha256(self.options_key.encode())
        with self.path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()[:32]


def iter_units(spec: SourceSpec, options: IngestOptions) -> Iterator[Unit]:
    """Every unit of a source, in a deterministic order."""
    if spec.path is None:
        from tasks.ingest.stdlib_docs import iter_stdlib_units

        yield from iter_stdlib_units(spec.name)
        return
    key = fingerprint(options.model_dump())
    if not spec.path.is_dir():
        yield _file_unit(spec.name, spec.path, options, key)
        return
    errors: list[OSError] = []
    seen = {_identity(spec.path)}
    for dirpath, dirnames, filenames in os.walk(spec.path, onerror=errors.append, followlinks=True):
        yield from (_rejection(spec.name, Path(e.filename or dirpath), "unreadable", _why(e)) for e in errors)
        errors.clear()
        # hidden folders and files (.git, .DS_Store) are tooling, not content: not read at all
        kept = []
        # real folders first: a symlink to a folder that is also here under its own name is the duplicate
        names = sorted((d for d in dirnames if not d.startswith(".")), key=lambda d: (Path(dirpath, d).is_symlink(), d))
        for name in names:
            folder = Path(dirpath) / name
            identity = _identity(folder)
            if identity in seen:  # a symlink back to a folder already walked: a loop, or the same folder twice
                yield _rejection(spec.name, folder, "symlink_loop", f"links to {folder.resolve()}, read already")
                continue
            seen.add(identity)
            kept.append(name)
        dirnames[:] = sorted(kept)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(spec.path).as_posix()
            if name.startswith(".") or not _selected(rel, options):
                continue
            yield _file_unit(spec.name, path, options, key)
    yield from (_rejection(spec.name, Path(e.filename or spec.path), "unreadable", _why(e)) for e in errors)


def _identity(folder: Path) -> tuple[int, int]:
    stat = folder.stat()
    return stat.st_dev, stat.st_ino


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _rejection(source: str, path: Path, reason: str, detail: str) -> Unit:
    """A unit that reads as one rejected row, and never opens its path."""
    file = path.as_posix()
    record = SourceRecord(source, file, file, None, reason=reason, detail=detail)
    return Unit(source, file, path, lambda: iter([record]), fixed_hash=fingerprint("rejected", reason, detail))


def _selected(rel: str, options: IngestOptions) -> bool:
    if options.include and not any(
        fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(Path(rel).name, g) for g in options.include
    ):
        return False
    return not any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(Path(rel).name, g) for g in options.exclude)


def _file_unit(source: str, path: Path, options: IngestOptions, key: str) -> Unit:
    try:
        mode = path.stat().st_mode  # follows a link: a link to a FIFO is a FIFO
    except FileNotFoundError:
        return _rejection(source, path, "broken_link", f"points to {os.readlink(path) if path.is_symlink() else path}")
    except OSError as exc:
        return _rejection(source, path, "unreadable", _why(exc))
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device or special file"
        return _rejection(source, path, "not_a_file", f"{kind}, not a regular file: never opened")
    return Unit(source, path.as_posix(), path, lambda: read_file(source, path, options), options_key=key)


def format_of(path: Path) -> tuple[str, bool]:
    """The format suffix and whether the file is gzip-compressed (`notes.md.gz` -> `.md`, True)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        return (suffixes[-2] if len(suffixes) > 1 else ""), True
    return (suffixes[-1] if suffixes else ""), False


def read_file(source: str, path: Path, options: IngestOptions) -> Iterator[SourceRecord]:
    """Every record of one file; no document longer than `max_chars` (longer ones are cut into parts)."""
    for record in _read_file(source, path, options):
        yield from split_record(record, options.max_chars)


def _read_file(source: str, path: Path, options: IngestOptions) -> Iterator[SourceRecord]:
    file = path.as_posix()
    kind, compressed = format_of(path)
    if kind not in SUPPORTED_SUFFIXES:
        shown = kind or path.name
        yield SourceRecord(
            source,
            file,
            file,
            None,
            reason="unsupported_type",
            detail=f"'{shown}' is not one of {sorted(SUPPORTED_SUFFIXES)} (optionally .gz)",
        )
        return
    try:
        if kind == ".parquet":
            with _open_binary(path, compressed) as handle:
                data = handle.read() if compressed else None
            yield from formats.parse_parquet(
                source, file, io.BytesIO(data) if data is not None else path, options.text_field
            )
        elif kind in (".jsonl", ".csv"):
            yield from _read_streamed(source, file, path, compressed, kind, options)
        elif kind in TEXT_SUFFIXES:
            yield from _read_text_file(source, file, path, compressed, kind, options)
        else:
            # HTML and JSON are parsed whole: a file over the limit (markup included) is rejected unread
            text, problem = _read_text(path, compressed, limit=_MARKUP_FACTOR * options.max_chars)
            if text is None:
                yield SourceRecord(source, file, file, None, reason=problem[0], detail=problem[1])
            elif kind in (".html", ".htm"):
                yield from formats.parse_html(source, file, text)
            else:
                yield from formats.parse_json(source, file, text, options.text_field)
    except PermissionError as exc:
        yield SourceRecord(source, file, file, None, reason="unreadable", detail=exc.strerror or str(exc))


def _open_binary(path: Path, compressed: bool) -> gzip.GzipFile | io.BufferedReader:
    return gzip.GzipFile(path, "rb") if compressed else path.open("rb")


def _read_text(path: Path, compressed: bool, limit: int) -> tuple[str | None, tuple[str, str]]:
    """The whole file as text, when it has at most `limit` bytes (read no further than that)."""
    try:
        with _open_binary(path, compressed) as handle:
            data = handle.read(limit + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        return None, ("bad_gzip", f"truncated or corrupt gzip: {exc}")
    except OSError as exc:
        return None, ("unreadable", exc.strerror or str(exc))
    if len(data) > limit:
        return None, ("too_large", f"over {limit:,} bytes: raise max_chars to read it")
    if looks_binary(data[:_SNIFF_BYTES]):
        return None, ("binary", "NUL bytes in the first 8 KiB: not a text file")
    try:
        return data.decode("utf-8-sig"), ("", "")
    except UnicodeDecodeError as exc:
        return None, ("not_utf8", f"byte {exc.start}: {exc.reason}")


def _read_text_file(
    source: str, file: str, path: Path, compressed: bool, kind: str, options: IngestOptions
) -> Iterator[SourceRecord]:
    """Text, Markdown or reST, decoded as it is read; a file over `max_chars` is split into parts
    (`file#part2`) without ever holding more than two parts in memory."""
    title = path.name.split(".")[0]
    done = 0
    try:
        with _open_binary(path, compressed) as handle:
            if looks_binary(handle.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]):
                yield SourceRecord(
                    source, file, file, None, reason="binary", detail="NUL bytes in the first 8 KiB: not a text file"
                )
                return
            parts = text_parts(handle, options.max_chars)
            current, following = next(parts, None), next(parts, None)
            if following is None:  # the usual case: the file is one part
                if current is not None:
                    yield from formats.parse_text(
                        source, file, current, kind, options.split, options.separator, default_title=title
                    )
                return
            while current is not None:
                done += 1
                part_file = f"{file}#part{done}"
                for record in formats.parse_text(
                    source, file, current, kind, options.split, options.separator, default_title=title
                ):
                    yield replace(
                        record, uri=record.uri.replace(file, part_file, 1), meta={**record.meta, "part": done}
                    )
                current, following = following, next(parts, None)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        yield SourceRecord(source, file, file, None, reason="bad_gzip", detail=f"truncated or corrupt gzip: {exc}")
    except UnicodeDecodeError as exc:
        where = f" after part {done}" if done else ""
        yield SourceRecord(source, file, file, None, reason="not_utf8", detail=f"{exc.reason}{where}")
    except OSError as exc:
        yield SourceRecord(source, file, file, None, reason="unreadable", detail=exc.strerror or str(exc))


def _read_streamed(
    source: str, file: str, path: Path, compressed: bool, kind: str, options: IngestOptions
) -> Iterator[SourceRecord]:
    """JSONL and CSV line by line, so a large file never sits in memory whole."""
    try:
        with _open_binary(path, compressed) as raw:
            head = raw.peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if hasattr(raw, "peek") else b""
            if looks_binary(head):
                yield SourceRecord(
                    source, file, file, None, reason="binary", detail="NUL bytes in the first 8 KiB: not a text file"
                )
                return
            stream = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="" if kind == ".csv" else None)
            # a JSON or CSV line holds its text plus quoting and escapes: room for both
            lines = BoundedLines(stream, _MARKUP_FACTOR * options.max_chars)
            if kind == ".csv":
                yield from formats.parse_csv(source, file, lines, options.text_field)
            else:
                yield from formats.parse_jsonl(source, file, lines, options.text_field)
    except UnicodeDecodeError as exc:
        yield SourceRecord(
            source,
            file,
            file,
            None,
            reason="not_utf8",
            detail=f"byte {exc.start} of a chunk: {exc.reason}; records before it were kept",
        )
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        yield SourceRecord(
            source,
            file,
            file,
            None,
            reason="bad_gzip",
            detail=f"truncated or corrupt gzip: {exc}; records before it were kept",
        )
    except OSError as exc:
        yield SourceRecord(source, file, file, None, reason="unreadable", detail=exc.strerror or str(exc))
