"""Ingest: read every source into `corpus/raw`; what cannot be read goes to `corpus/rejected/ingest`."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from storage.errors import DraftflowError
from storage.fingerprint import code_version
from storage.parquet_store import DatasetWriter
from storage.refs import DatasetRef
from storage.schemas import RAW_SCHEMA, REJECTED_SCHEMA
from storage.settings import Settings
from tasks.sources import SourceRecord, SourceSpec, read_source
from tasks.text import doc_id_for

log = logging.getLogger("draftflow.ingest")
STAGE = "ingest"
CODE_VERSION = code_version(__file__, __file__.replace("ingest.py", "sources.py"),
                            __file__.replace("ingest.py", "stdlib_docs.py"))


def ingest_corpus(sources: Sequence[str], settings: Settings, text_field: str = "text") -> DatasetRef:
    """Read all sources into the raw corpus. Stats: seen = documents + rejected."""
    if not sources:
        raise DraftflowError("no corpus given: pass at least one path or 'python-stdlib-docs'")
    specs = [SourceSpec.parse(s) for s in sources]  # every path is checked before anything is written
    now = datetime.now(UTC)
    reasons: Counter[str] = Counter()
    digest = hashlib.sha256(CODE_VERSION.encode())
    with DatasetWriter(settings.raw_dir, RAW_SCHEMA) as raw, \
            DatasetWriter(settings.rejected_dir(STAGE), REJECTED_SCHEMA) as rejected:
        for spec in specs:
            for record in read_source(spec, text_field=text_field):
                if record.reason:
                    reasons[record.reason] += 1
                    rejected.write_row(_rejected_row(record, now))
                    continue
                row = _raw_row(record, now)
                digest.update(row["doc_id"].encode())
                raw.write_row(row)
        stats = {"documents": raw.rows_written, "rejected": rejected.rows_written,
                 "seen": raw.rows_written + rejected.rows_written,
                 **{f"rejected_{reason}": n for reason, n in sorted(reasons.items())}}
        fp = digest.hexdigest()[:16]
        manifest = {"stage": STAGE, "fingerprint": fp, "sources": [s.name for s in specs],
                    "created_at": now.isoformat(), "stats": stats}
        rejected.commit({**manifest, "fingerprint": f"{fp}-rejected"})
        raw.commit(manifest)
    log.info("ingested %d documents from %d source(s), %d rejected %s",
             stats["documents"], len(specs), stats["rejected"], dict(reasons) or "")
    return DatasetRef(path=str(settings.raw_dir), fingerprint=fp, rows=stats["documents"], stats=stats)


def _raw_row(record: SourceRecord, now: datetime) -> dict[str, object]:
    assert record.text is not None
    return {"doc_id": doc_id_for(record.text), "source": record.source, "uri": record.uri,
            "title": record.title, "text": record.text, "meta": json.dumps(record.meta, default=str),
            "ingested_at": now}


def _rejected_row(record: SourceRecord, now: datetime) -> dict[str, object]:
    return {"doc_id": doc_id_for(record.text) if record.text else None, "source": record.source,
            "uri": record.uri, "title": record.title, "text": record.text,
            "meta": json.dumps(record.meta, default=str), "ingested_at": now, "stage": STAGE,
            "reason": record.reason, "detail": record.detail}


@task(name="ingest", cache_policy=NO_CACHE)
def ingest(sources: list[str], settings: Settings, text_field: str = "text") -> DatasetRef:
    """Prefect task: read the sources into `corpus/raw`."""
    return ingest_corpus(sources, settings, text_field=text_field)
