"""Clean: normalize text, apply quality filters and exact dedup; rejected documents keep a reason.

Filters follow datatrove's shape: each takes the scored document and returns None (keep) or a
reason string. Scores are stored as columns so thresholds can be retuned without re-scoring.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from storage.errors import DraftflowError
from storage.fingerprint import code_version
from storage.parquet_store import DatasetWriter, iter_batches, require_dataset
from storage.refs import DatasetRef
from storage.schemas import CLEAN_SCHEMA, REJECTED_SCHEMA
from storage.settings import Settings
from tasks.text import normalize_for_hash

log = logging.getLogger("draftflow.clean")
STAGE = "clean"
CODE_VERSION = code_version(__file__)

# C0/C1 control characters except tab and newline, which carry layout.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TRAILING_WS = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


class CleanParams(BaseModel):
    """Quality thresholds (the defaults suit short technical texts such as docstrings)."""

    min_words: int = Field(5, ge=0, description="Documents with fewer words are rejected (too_short).")
    max_words: int = Field(100_000, ge=1, description="Documents with more words are rejected (too_long).")
    min_alpha_ratio: float = Field(
        0.5, ge=0, le=1, description="Minimum share of letters among non-space characters (symbol_heavy).")
    dedup: bool = Field(True, description="Drop exact duplicates (normalized text); the first survives.")


def normalize_text(text: str) -> str:
    """NFC, no control characters, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_WS.sub("\n", text + "\n")
    return _BLANK_RUNS.sub("\n\n", text).strip()


@dataclass
class Scored:
    text: str
    n_chars: int
    n_words: int
    mean_word_length: float
    alpha_ratio: float

    @classmethod
    def of(cls, text: str) -> Scored:
        words = text.split()
        visible = sum(1 for c in text if not c.isspace())
        letters = sum(1 for c in text if c.isalpha())
        return cls(text=text, n_chars=len(text), n_words=len(words),
                   mean_word_length=sum(map(len, words)) / len(words) if words else 0.0,
                   alpha_ratio=letters / visible if visible else 0.0)


Filter = Callable[[Scored], str | None]


def quality_filters(params: CleanParams) -> list[Filter]:
    """The ordered filter chain; the first reason wins."""
    return [
        lambda d: "empty" if d.n_words == 0 else None,
        lambda d: "too_short" if d.n_words < params.min_words else None,
        lambda d: "too_long" if d.n_words > params.max_words else None,
        lambda d: "symbol_heavy" if d.alpha_ratio < params.min_alpha_ratio else None,
    ]


def clean_corpus(raw: DatasetRef, settings: Settings, params: CleanParams | None = None) -> DatasetRef:
    """Normalize and filter `corpus/raw` into `corpus/clean`; raise if nothing is left."""
    params = params or CleanParams()
    require_dataset(settings.raw_dir, "raw corpus", "run `draftflow ingest PATH...` first")
    filters = quality_filters(params)
    reasons: Counter[str] = Counter()
    seen: dict[str, str] = {}  # dedup key -> first doc_id (32 bytes a doc: fine to millions)
    with DatasetWriter(settings.clean_dir, CLEAN_SCHEMA) as clean, \
            DatasetWriter(settings.rejected_dir(STAGE), REJECTED_SCHEMA) as rejected:
        for batch in iter_batches(settings.raw_dir):
            for row in batch.to_pylist():
                scored = Scored.of(normalize_text(row["text"]))
                reason, detail = _first_reason(filters, scored), None
                if reason is None and params.dedup:
                    key = hashlib.sha256(normalize_for_hash(scored.text).encode()).hexdigest()
                    if key in seen:
                        reason, detail = "duplicate", f"duplicate of {seen[key]}"
                    else:
                        seen[key] = row["doc_id"]
                if reason:
                    reasons[reason] += 1
                    rejected.write_row({**row, "text": row["text"], "stage": STAGE,
                                        "reason": reason, "detail": detail})
                else:
                    clean.write_row(_clean_row(row, scored))
        stats = _stats(raw.rows, clean.rows_written, reasons)
        if clean.rows_written == 0:
            rejected.commit({"stage": STAGE, "stats": stats})
            raise DraftflowError(
                f"no documents left after cleaning: all {raw.rows} were rejected "
                f"({_reason_text(reasons)}); see corpus/rejected/clean or relax the thresholds")
        fp = hashlib.sha256(f"{raw.fingerprint}|{params.model_dump_json()}|{CODE_VERSION}".encode())
        manifest = {"stage": STAGE, "fingerprint": fp.hexdigest()[:16], "input": raw.fingerprint,
                    "params": params.model_dump(), "stats": stats}
        rejected.commit({**manifest, "fingerprint": manifest["fingerprint"] + "-rejected"})
        clean.commit(manifest)
    log.info("kept %d of %d documents; rejected %s", stats["kept"], raw.rows, _reason_text(reasons))
    return DatasetRef(path=str(settings.clean_dir), fingerprint=manifest["fingerprint"],
                      rows=stats["kept"], stats=stats)


def _first_reason(filters: list[Filter], doc: Scored) -> str | None:
    for check in filters:
        reason = check(doc)
        if reason:
            return reason
    return None


def _clean_row(row: dict[str, Any], doc: Scored) -> dict[str, Any]:
    return {**row, "text": doc.text, "n_chars": doc.n_chars, "n_words": doc.n_words,
            "mean_word_length": doc.mean_word_length, "alpha_ratio": doc.alpha_ratio}


def _stats(total: int, kept: int, reasons: Counter[str]) -> dict[str, int]:
    return {"input": total, "kept": kept, "rejected": sum(reasons.values()),
            **{f"rejected_{r}": n for r, n in sorted(reasons.items())}}


def _reason_text(reasons: Counter[str]) -> str:
    return ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none"


@task(name="clean", cache_policy=NO_CACHE)
def clean(raw: DatasetRef, settings: Settings, params: CleanParams) -> DatasetRef:
    """Prefect task: `corpus/raw` -> `corpus/clean` + `corpus/rejected/clean`."""
    return clean_corpus(raw, settings, params)
