"""Ingest: read every source into `corpus/raw`, incrementally; unreadable input goes to `corpus/rejected/ingest`.

The raw corpus is a snapshot of the sources named in this run. A file whose content hash (plus the
options and reader code) is unchanged since the last run is not read again: its documents and
rejections are copied over from the previous snapshot. New and changed files are read; files that
are gone, or belong to sources not named this run, drop out. Every file and document is counted.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict, cast

import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import DraftflowError
from storage.fingerprint import code_version, fingerprint
from storage.locations import Location
from storage.parquet_store import DatasetWriter, iter_batches, read_sidecar
from storage.refs import DatasetRef
from storage.schemas import FILE_INDEX_SCHEMA, RAW_SCHEMA, REJECTED_SCHEMA
from storage.settings import Settings
from tasks.ingest.params import IngestOptions
from tasks.ingest.records import SourceRecord
from tasks.ingest.sources import SourceSpec, Unit, iter_units
from tasks.text import doc_id_for

log = logging.getLogger("draftflow.ingest")
STAGE = "ingest"
FILE_INDEX = "_files.parquet"
CODE_VERSION = code_version(Path(__file__).parent, Path(__file__).parents[1] / "text.py")


class FileEntry(TypedDict):
    """One row of the file index: a file's content hash and what it produced."""

    file: str
    source: str
    hash: str
    documents: int
    rejected: int


@dataclass
class _Tally:
    files: Counter[str] = field(default_factory=Counter)  # new / changed / unchanged / removed
    reasons: Counter[str] = field(default_factory=Counter)
    documents_read: int = 0
    index: dict[str, FileEntry] = field(default_factory=dict)  # file -> its FILE_INDEX row


def ingest_corpus(
    sources: Sequence[str], settings: Settings, options: IngestOptions | None = None, profile: str | None = None
) -> DatasetRef:
    """Bring `corpus/raw` up to date with the sources. Stats: seen = documents + rejected."""
    options = options or IngestOptions()
    if not sources:
        raise DraftflowError("no corpus given: pass at least one path or 'python-stdlib-docs'")
    specs = [SourceSpec.parse(s) for s in sources]  # every path is checked before anything is written
    previous = _previous_hashes(settings)
    now = datetime.now(UTC)
    tally = _Tally()
    plan = _plan(specs, options, previous, tally)
    carried = [file for file, (_, status) in plan.items() if status == "unchanged"]
    with (
        DatasetWriter(settings.raw_dir, RAW_SCHEMA) as raw,
        DatasetWriter(settings.rejected_dir(STAGE), REJECTED_SCHEMA) as rejected,
    ):
        _carry_over(settings.raw_dir, raw, carried)
        tally.reasons.update(_carry_over(settings.rejected_dir(STAGE), rejected, carried))
        for unit, status in plan.values():
            if status != "unchanged":
                _read_unit(unit, raw, rejected, now, tally)
        tally.index.update({row["file"]: row for row in _carried_index(settings, carried)})
        stats = _stats(raw.rows_written, rejected.rows_written, tally)
        # the cleaning profile a source was given here (NAME=PATH:profile, or --profile for all of them)
        profiles = {s.name: s.profile or profile for s in specs if s.profile or profile}
        fp = fingerprint(sorted((r["file"], r["hash"]) for r in tally.index.values()), profiles, CODE_VERSION)
        manifest = {
            "stage": STAGE,
            "fingerprint": fp,
            "sources": [s.name for s in specs],
            "profiles": profiles,
            "options": options.model_dump(),
            "created_at": now.isoformat(),
            "stats": stats,
        }
        raw.write_sidecar(FILE_INDEX, pa.Table.from_pylist(list(tally.index.values()), schema=FILE_INDEX_SCHEMA))
        rejected.commit({**manifest, "fingerprint": f"{fp}-rejected"})
        raw.commit(manifest)
    log.info(
        "ingest: %d documents, %d rejected; files new %d, changed %d, unchanged %d, removed %d",
        stats["documents"],
        stats["rejected"],
        stats["files_new"],
        stats["files_changed"],
        stats["files_unchanged"],
        stats["files_removed"],
    )
    return DatasetRef(path=str(settings.raw_dir), fingerprint=fp, rows=stats["documents"], stats=stats)


def _previous_hashes(settings: Settings) -> dict[str, str]:
    table = read_sidecar(settings.raw_dir, FILE_INDEX)
    if table is None:
        return {}
    return dict(zip(table.column("file").to_pylist(), table.column("hash").to_pylist(), strict=True))


def _plan(
    specs: Sequence[SourceSpec], options: IngestOptions, previous: dict[str, str], tally: _Tally
) -> dict[str, tuple[Unit, str]]:
    """Hash every unit and decide: new, changed or unchanged (and count the removed)."""
    plan: dict[str, tuple[Unit, str]] = {}
    for spec in specs:
        for unit in iter_units(spec, options):
            if unit.file in plan:
                continue  # the same file named twice (e.g. a folder and a file inside it)
            try:
                digest = fingerprint(unit.content_hash(), CODE_VERSION)
            except OSError:
                digest = ""  # unreadable: read() reports it, and it is retried next run
            status = (
                "new"
                if unit.file not in previous
                else ("unchanged" if digest and previous[unit.file] == digest else "changed")
            )
            plan[unit.file] = (unit, status)
            tally.files[status] += 1
            if status != "unchanged":
                tally.index[unit.file] = {
                    "file": unit.file,
                    "source": unit.source,
                    "hash": digest,
                    "documents": 0,
                    "rejected": 0,
                }
    tally.files["removed"] = len(set(previous) - set(plan))
    return plan


def _carry_over(old_dir: Location, writer: DatasetWriter, files: list[str]) -> Counter[str]:
    """Copy the previous snapshot's rows of unchanged files, batch by batch (Arrow, no Python rows).

    Returns the carried rows' rejection reasons (when the dataset has them), for the snapshot counts.
    """
    reasons: Counter[str] = Counter()
    if not files or not old_dir.exists():
        return reasons
    keep = pa.array(files, type=pa.string())
    for batch in iter_batches(old_dir, batch_size=8192):
        selected = batch.filter(pc.is_in(batch.column("file"), value_set=keep))
        if selected.num_rows:
            writer.write_table(pa.Table.from_batches([selected]))
            if "reason" in selected.schema.names:
                reasons.update(selected.column("reason").to_pylist())
    return reasons


def _carried_index(settings: Settings, files: list[str]) -> list[FileEntry]:
    table = read_sidecar(settings.raw_dir, FILE_INDEX)
    if table is None or not files:
        return []
    rows = table.filter(pc.is_in(table.column("file"), value_set=pa.array(files))).to_pylist()
    return [cast(FileEntry, row) for row in rows]  # the rows of FILE_INDEX_SCHEMA


def _read_unit(unit: Unit, raw: DatasetWriter, rejected: DatasetWriter, now: datetime, tally: _Tally) -> None:
    entry = tally.index[unit.file]
    for record in unit.read():
        if record.reason:
            tally.reasons[record.reason] += 1
            rejected.write_row(_rejected_row(record, now))
            entry["rejected"] += 1
        else:
            raw.write_row(_raw_row(record, now))
            tally.documents_read += 1
            entry["documents"] += 1


def _stats(documents: int, rejected: int, tally: _Tally) -> dict[str, int]:
    """Counts over the whole snapshot (carried rows included), so they always add up."""
    return {
        "documents": documents,
        "rejected": rejected,
        "seen": documents + rejected,
        "documents_read": tally.documents_read,
        **{f"files_{k}": tally.files.get(k, 0) for k in ("new", "changed", "unchanged", "removed")},
        **{f"rejected_{reason}": n for reason, n in sorted(tally.reasons.items())},
    }


def _raw_row(record: SourceRecord, now: datetime) -> dict[str, object]:
    assert record.text is not None
    return {
        "doc_id": doc_id_for(record.text),
        "source": record.source,
        "file": record.file,
        "uri": record.uri,
        "title": record.title,
        "text": record.text,
        "meta": json.dumps(record.meta, default=str),
        "ingested_at": now,
    }


def _rejected_row(record: SourceRecord, now: datetime) -> dict[str, object]:
    return {
        "doc_id": doc_id_for(record.text) if record.text else None,
        "source": record.source,
        "file": record.file,
        "uri": record.uri,
        "title": record.title,
        "text": record.text,
        "meta": json.dumps(record.meta, default=str),
        "ingested_at": now,
        "stage": STAGE,
        "reason": record.reason,
        "detail": record.detail,
    }
