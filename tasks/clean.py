"""Clean: repair and normalize text, identify language, apply quality filters, scrub PII, deduplicate.

Each step either keeps a document or rejects it with a reason (datatrove's shape); rejected
documents go to `corpus/rejected/clean` with the reason and a detail, and every step counts the
documents, bytes and seconds it saw and what it dropped. Scores are stored as columns.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from pydantic import BaseModel, Field

from storage.errors import DraftflowError
from storage.fingerprint import code_version, fingerprint
from storage.parquet_store import DatasetWriter, iter_batches, require_dataset
from storage.refs import DatasetRef
from storage.schemas import CLEAN_SCHEMA, FLOAT_SCORES, INT_SCORES, REJECTED_SCHEMA
from storage.settings import Settings
from tasks.caching import CACHE_FOR, clean_key
from tasks.dedup import ExactDeduper, NearDeduper
from tasks.language import identify
from tasks.pii import scrub_pii
from tasks.quality import QualityThresholds, SourceThresholds, first_failure, score_document, short_form

log = logging.getLogger("draftflow.clean")
STAGE = "clean"
CODE_VERSION = code_version(*(__file__.replace("clean.py", n) for n in
                              ("clean.py", "quality.py", "pii.py", "dedup.py", "language.py")))
STEPS = ("normalize", "language", "quality", "pii", "exact_dedup", "near_dedup")

# C0/C1 control characters except tab and newline, which carry layout.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TRAILING_WS = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


class CleanParams(BaseModel):
    """Cleaning steps and thresholds; `per_source` overrides the defaults for named sources."""

    thresholds: QualityThresholds = Field(default_factory=QualityThresholds,
                                          description="Thresholds for sources not listed below (web-text values).")
    per_source: list[SourceThresholds] = Field(
        default_factory=lambda: [short_form("python-stdlib-docs")],
        description="Per-source thresholds; short-form sources must not get web thresholds.")
    fix_unicode: bool = Field(True, description="Repair mojibake with ftfy (conservative settings).")
    scrub_pii: bool = Field(True, description="Replace e-mails, phone numbers and public IPs with placeholders.")
    dedup_exact: bool = Field(True, description="Drop exact duplicates (normalized text).")
    dedup_near: bool = Field(True, description="Drop near duplicates (MinHash LSH, confirmed by Jaccard).")
    near_threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of word 5-grams.")
    num_perm: int = Field(112, ge=16, le=1024, description="MinHash permutations.")
    shingle_words: int = Field(5, ge=1, le=32, description="Words per shingle.")

    def for_source(self, source: str) -> QualityThresholds:
        return next((t for t in self.per_source if t.source == source), self.thresholds)


def normalize_text(text: str, fix_unicode: bool = True) -> str:
    """ftfy repair, NFC, no control characters, no trailing spaces, at most one blank line in a row."""
    if fix_unicode:
        text = _ftfy(text)
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_WS.sub("\n", text + "\n")
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _ftfy(text: str) -> str:
    import ftfy

    # datatrove's conservative settings: fix encoding mistakes, leave quotes, HTML and layout alone
    config = ftfy.TextFixerConfig(unescape_html=False, fix_latin_ligatures=False, fix_character_width=False,
                                  uncurl_quotes=False, fix_line_breaks=False, normalization=None,
                                  explain=False)
    return ftfy.fix_text(text, config=config)


@dataclass
class StepStats:
    documents: int = 0
    bytes: int = 0
    seconds: float = 0.0
    dropped: Counter[str] = field(default_factory=Counter)


class _Cleaner:
    """The per-document chain; each step returns (reason, detail) to reject, or None to go on."""

    def __init__(self, params: CleanParams) -> None:
        self.params = params
        self.steps = {name: StepStats() for name in STEPS}
        self.exact = ExactDeduper()
        self.near = NearDeduper(params.near_threshold, params.num_perm, params.shingle_words)

    def run(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, tuple[str, str | None] | None]:
        """(clean row, None) to keep, or (None, (reason, detail)) to reject."""
        doc: dict[str, Any] = {"text": row["text"]}
        verdict = self.run_steps(row, doc, STEPS)
        if verdict:
            return None, verdict
        return {**row, "text": doc["text"], "language": doc["language"], **doc["scores"]}, None

    def run_steps(self, row: dict[str, Any], doc: dict[str, Any],
                  steps: Iterable[str]) -> tuple[str, str | None] | None:
        """Some of the steps, in order, on one document (the sharded clean runs them in two parts),
        counted per step; the first rejection's (reason, detail), or None."""
        for name in steps:
            stats = self.steps[name]
            started = time.perf_counter()
            stats.documents += 1
            stats.bytes += len(doc["text"].encode("utf-8"))
            verdict = getattr(self, f"_{name}")(row, doc)
            stats.seconds += time.perf_counter() - started
            if verdict:
                stats.dropped[verdict[0]] += 1
                return verdict
        return None

    def _normalize(self, row: dict[str, Any], doc: dict[str, Any]) -> tuple[str, str] | None:
        doc["text"] = normalize_text(doc["text"], self.params.fix_unicode)
        return ("empty", "no text after normalization") if not doc["text"] else None

    def _language(self, row: dict[str, Any], doc: dict[str, Any]) -> tuple[str, str] | None:
        doc["language"], doc["language_score"] = identify(doc["text"])
        t = self.params.for_source(row["source"])
        if t.allowed_languages and doc["language"] not in t.allowed_languages:
            return "language", f"{doc['language']} ({doc['language_score']:.2f}) not in {t.allowed_languages}"
        if doc["language_score"] < t.min_language_score:
            return "language", f"{doc['language']} probability {doc['language_score']:.2f} < {t.min_language_score}"
        return None

    def _quality(self, row: dict[str, Any], doc: dict[str, Any]) -> tuple[str, str] | None:
        doc["scores"] = {**score_document(doc["text"]), "language_score": doc["language_score"]}
        return first_failure(doc["text"], doc["scores"], self.params.for_source(row["source"]))

    def _pii(self, row: dict[str, Any], doc: dict[str, Any]) -> None:
        counts: Counter[str] = Counter()
        if self.params.scrub_pii:
            doc["text"], counts = scrub_pii(doc["text"])
        doc["scores"].update({f"pii_{kind}": counts.get(kind, 0) for kind in ("email", "phone", "ip")})
        return None

    def _exact_dedup(self, row: dict[str, Any], doc: dict[str, Any]) -> tuple[str, str] | None:
        first = self.exact.check(row["doc_id"], doc["text"]) if self.params.dedup_exact else None
        return ("duplicate", f"duplicate of {first}") if first else None

    def _near_dedup(self, row: dict[str, Any], doc: dict[str, Any]) -> tuple[str, str] | None:
        match = self.near.check(row["doc_id"], doc["text"]) if self.params.dedup_near else None
        return ("near_duplicate", f"near-duplicate of {match[0]} (Jaccard {match[1]:.2f})") if match else None

    def report(self) -> list[dict[str, Any]]:
        """One row per step: what a Prefect table artifact and the run summary show."""
        return [{"step": name, "documents": s.documents, "megabytes": round(s.bytes / 1e6, 3),
                 "seconds": round(s.seconds, 3), "dropped": sum(s.dropped.values()),
                 "reasons": ", ".join(f"{r} {n}" for r, n in s.dropped.most_common())}
                for name, s in self.steps.items()]


def clean_corpus(raw: DatasetRef, settings: Settings, params: CleanParams | None = None) -> DatasetRef:
    """Clean `corpus/raw` into `corpus/clean` (+ `corpus/rejected/clean`); raise if nothing is left."""
    params = params or CleanParams()
    require_dataset(settings.raw_dir, "raw corpus", "run `draftflow ingest PATH...` first")
    cleaner = _Cleaner(params)
    outcomes = ((row, *cleaner.run(row)) for batch in iter_batches(settings.raw_dir, batch_size=512)
                for row in batch.to_pylist())
    return write_clean_outputs(raw, settings, params, cleaner, outcomes)


def clean_fingerprint(raw: DatasetRef, params: CleanParams) -> str:
    """The fingerprint of corpus/clean made from `raw` with `params` by this code version."""
    return fingerprint(raw.fingerprint, params.model_dump(), CODE_VERSION)


Outcome = tuple[dict[str, Any], "dict[str, Any] | None", "tuple[str, str] | None"]


def write_clean_outputs(raw: DatasetRef, settings: Settings, params: CleanParams, cleaner: _Cleaner,
                        outcomes: Iterable[Outcome]) -> DatasetRef:
    """Write each (raw row, kept row or None, rejection verdict) to corpus/clean or corpus/rejected,
    then commit both with the counts and the step table. Shared by the in-process and the sharded
    clean (tasks/clean_shards.py), so their outputs cannot drift apart."""
    reasons: Counter[str] = Counter()
    pii: Counter[str] = Counter()  # replacements in the documents kept
    with DatasetWriter(settings.clean_dir, CLEAN_SCHEMA) as clean, \
            DatasetWriter(settings.rejected_dir(STAGE), REJECTED_SCHEMA) as rejected:
        for row, kept, verdict in outcomes:
            if kept is not None:
                clean.write_row(_with_score_types(kept))
                pii.update({kind: kept[f"pii_{kind}"] for kind in ("email", "phone", "ip")})
            else:
                assert verdict is not None
                reasons[verdict[0]] += 1
                rejected.write_row({**row, "stage": STAGE, "reason": verdict[0], "detail": verdict[1]})
        stats = {"input": raw.rows, "kept": clean.rows_written, "rejected": rejected.rows_written,
                 **{f"rejected_{r}": n for r, n in sorted(reasons.items())},
                 **{f"pii_{k}": n for k, n in sorted(pii.items()) if n}}
        report = cleaner.report()
        if clean.rows_written == 0:
            rejected.commit({"stage": STAGE, "stats": stats, "steps": report})
            raise DraftflowError(
                f"no documents left after cleaning: all {raw.rows} were rejected "
                f"({_reason_text(reasons)}); see corpus/rejected/clean or relax the thresholds")
        fp = clean_fingerprint(raw, params)
        manifest = {"stage": STAGE, "fingerprint": fp, "input": raw.fingerprint, "params": params.model_dump(),
                    "stats": stats, "steps": report}
        rejected.commit({**manifest, "fingerprint": fp + "-rejected"})
        clean.commit(manifest)
    log.info("clean: kept %d of %d documents; rejected %s", stats["kept"], raw.rows, _reason_text(reasons))
    return DatasetRef(path=str(settings.clean_dir), fingerprint=fp, rows=stats["kept"], stats=stats, report=report)


def _with_score_types(row: dict[str, Any]) -> dict[str, Any]:
    for name in INT_SCORES:
        row[name] = int(row.get(name, 0))
    for name in FLOAT_SCORES:
        row[name] = float(row.get(name, 0.0))
    return row


def _reason_text(reasons: Counter[str]) -> str:
    return ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none"


@task(name="clean", cache_key_fn=clean_key, cache_expiration=CACHE_FOR, persist_result=True)
def clean(raw: DatasetRef, settings: Settings, params: CleanParams) -> DatasetRef:
    """Prefect task: `corpus/raw` -> `corpus/clean` + `corpus/rejected/clean`, with a per-step table."""
    from prefect.artifacts import create_table_artifact

    ref = clean_corpus(raw, settings, params)
    create_table_artifact(ref.report, key="clean-steps", description="Cleaning: documents, MB, seconds and "
                          "drops per step")
    return ref
