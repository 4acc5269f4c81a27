"""Clean: `corpus/raw` through the steps (tasks/clean/steps.py) into `corpus/clean` and `corpus/rejected/clean`.

Rejected documents keep their reason and a detail; the scores of kept documents are stored as
columns, so thresholds can be retuned without scoring again; every step's counts go to the manifest.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from storage.errors import DraftflowError
from storage.fingerprint import code_version, fingerprint
from storage.parquet_store import DatasetWriter, iter_batches, require_unchanged
from storage.refs import DatasetRef
from storage.schemas import CLEAN_SCHEMA, FLOAT_SCORES, INT_SCORES, REJECTED_SCHEMA
from storage.settings import Settings
from tasks.clean.guard import SourceTally, decimation_warnings
from tasks.clean.params import CleanParams
from tasks.clean.profiles import resolve_profiles
from tasks.clean.steps import Cleaner, Outcome

log = logging.getLogger("draftflow.clean")
STAGE = "clean"
CODE_VERSION = code_version(Path(__file__).parent, Path(__file__).parents[1] / "text.py")


def clean_corpus(raw: DatasetRef, settings: Settings, params: CleanParams | None = None) -> DatasetRef:
    """Clean `corpus/raw` into `corpus/clean` (+ `corpus/rejected/clean`); raise if nothing is left."""
    params = params or CleanParams()
    require_unchanged(settings.raw_dir, raw.fingerprint, "raw corpus", "run `draftflow ingest PATH...` again")
    resolved, profiles = resolve_profiles(params, settings.raw_dir)
    cleaner = Cleaner(resolved)
    outcomes = (
        (row, *cleaner.run(row))
        for batch in iter_batches(settings.raw_dir, batch_size=512)
        for row in batch.to_pylist()
    )
    return write_clean_outputs(raw, settings, params, cleaner, outcomes, profiles)


def clean_fingerprint(raw: DatasetRef, params: CleanParams) -> str:
    """The fingerprint of corpus/clean made from `raw` with `params` by this code version."""
    return fingerprint(raw.fingerprint, params.model_dump(), CODE_VERSION)


def write_clean_outputs(
    raw: DatasetRef,
    settings: Settings,
    params: CleanParams,
    cleaner: Cleaner,
    outcomes: Iterable[Outcome],
    profiles: dict[str, str],
) -> DatasetRef:
    """Write each (raw row, kept row or None, rejection verdict) to corpus/clean or corpus/rejected,
    then commit both with the counts, the step table, each source's profile and the decimation
    warnings. Shared by the in-process and the sharded clean (tasks/clean/shards.py), so their
    outputs cannot drift apart. With `params.strict`, a decimated source fails the stage and nothing
    is committed."""
    reasons: Counter[str] = Counter()
    tallies: dict[str, SourceTally] = defaultdict(SourceTally)
    pii: Counter[str] = Counter()  # replacements in the documents kept
    with (
        DatasetWriter(settings.clean_dir, CLEAN_SCHEMA) as clean,
        DatasetWriter(settings.rejected_dir(STAGE), REJECTED_SCHEMA) as rejected,
    ):
        for row, kept, verdict in outcomes:
            tallies[row["source"]].add(kept is not None, *(verdict or (None, None)))
            if kept is not None:
                clean.write_row(with_score_types(kept))
                pii.update({kind: kept[f"pii_{kind}"] for kind in ("email", "phone", "ip")})
            else:
                assert verdict is not None
                reasons[verdict[0]] += 1
                rejected.write_row({**row, "stage": STAGE, "reason": verdict[0], "detail": verdict[1]})
        stats = {
            "input": raw.rows,
            "kept": clean.rows_written,
            "rejected": rejected.rows_written,
            **{f"rejected_{r}": n for r, n in sorted(reasons.items())},
            **{f"pii_{k}": n for k, n in sorted(pii.items()) if n},
        }
        report = cleaner.report()
        warnings = decimation_warnings(tallies, params, profiles)
        if clean.rows_written == 0:
            rejected.commit({"stage": STAGE, "stats": stats, "steps": report, "profiles": profiles})
            remedy = f"; {warnings[0].split('; ', 1)[1].split('; --strict')[0]}" if warnings else ""
            raise DraftflowError(
                f"no documents left after cleaning: all {raw.rows} were rejected "
                f"({_reason_text(reasons)}); see corpus/rejected/clean{remedy}"
            )
        if warnings and params.strict:
            raise DraftflowError(f"{warnings[0]} ({len(warnings)} source(s) decimated; --strict is on)")
        fp = clean_fingerprint(raw, params)
        manifest = {
            "profiles": profiles,
            "warnings": warnings,
            "stage": STAGE,
            "fingerprint": fp,
            "input": raw.fingerprint,
            "params": params.model_dump(),
            "stats": stats,
            "steps": report,
        }
        rejected.commit({**manifest, "fingerprint": fp + "-rejected"})
        clean.commit(manifest)
    log.info("clean: kept %d of %d documents; rejected %s", stats["kept"], raw.rows, _reason_text(reasons))
    for source, profile in sorted(profiles.items()):
        log.info("clean: source %s cleaned as %s", source, profile)
    for warning in warnings:
        log.warning("clean: %s", warning)
    return DatasetRef(
        path=str(settings.clean_dir),
        fingerprint=fp,
        rows=stats["kept"],
        stats=stats,
        report=report,
        profiles=profiles,
        warnings=warnings,
    )


def with_score_types(row: dict[str, Any]) -> dict[str, Any]:
    for name in INT_SCORES:
        row[name] = int(row.get(name, 0))
    for name in FLOAT_SCORES:
        row[name] = float(row.get(name, 0.0))
    return row


def _reason_text(reasons: Counter[str]) -> str:
    return ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none"
