"""What the Prefect UI shows of a stage: progress artifacts while it runs, tables and markdown after."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from storage.refs import DatasetRef, ModelRef

if TYPE_CHECKING:
    from tasks.evaluate.stage import Promotion

log = logging.getLogger("draftflow.progress")


class PrefectProgress:
    """A stage's `progress(done, total, message)` as a progress artifact, updated at most every `interval_s`."""

    def __init__(self, key: str, description: str, interval_s: float = 2.0) -> None:
        self.key, self.description, self.interval_s = key, description, interval_s
        self._artifact: UUID | None = None
        self._last = 0.0
        self._failed = False

    def __call__(self, done: int, total: int, message: str) -> None:
        """Best effort: a Prefect API that is down (a server restart) must not end a training."""
        try:
            self._update(done, total, message)
        except Exception as exc:
            if not self._failed:
                log.warning("progress artifact %s not updated (the Prefect API did not answer): %s", self.key, exc)
            self._failed = True

    def _update(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        percent = min(100.0, 100.0 * done / total) if total else 100.0
        if self._artifact is None:
            created = create_progress_artifact(percent, key=self.key, description=self.description)
            assert isinstance(created, UUID)  # called from sync code: the sync variant, not a coroutine
            self._artifact = created
        elif now - self._last >= self.interval_s or done >= total:
            update_progress_artifact(self._artifact, percent, description=f"{self.description}: {message}")
        else:
            return
        self._last = now


def publish_clean(ref: DatasetRef, sharded: bool = False) -> None:
    """The per-step table of a clean run (documents, MB, seconds, drops), and each source's profile
    with the decimation warnings, loud, at the top."""
    publish_clean_steps(ref.report, sharded)
    lines = ["# Cleaning by source", ""]
    lines += [f"**Warning:** {_md(warning)}" + "\n" for warning in ref.warnings]
    lines += [
        "| source | profile |",
        "|---|---|",
        *[f"| {_md(s)} | {_md(p)} |" for s, p in sorted(ref.profiles.items())],
    ]
    create_markdown_artifact("\n".join(lines), key="clean-sources", description="Each source's profile; warnings")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def publish_clean_steps(report: list[dict[str, Any]], sharded: bool = False) -> None:
    """The per-step table of a clean run: documents, MB, seconds and drops."""
    note = " (seconds summed over the shards)" if sharded else ""
    create_table_artifact(
        report, key="clean-steps", description=f"Cleaning: documents, MB, seconds and drops per step{note}"
    )


def publish_training_artifacts(ref: ModelRef) -> None:
    """A markdown artifact with the loss curve (embedded) and a table of the metrics."""
    png = Path(ref.path) / "loss_curve.png"
    image = base64.b64encode(png.read_bytes()).decode() if png.is_file() else ""
    create_markdown_artifact(
        f"# Model version {ref.name}\n\n![loss curve](data:image/png;base64,{image})\n\n"
        f"Saved at `{ref.path}` (loss_curve.png, tensorboard/ beside the weights).\n\n{ref.promotion}",
        key="fine-tune-loss-curve",
        description=f"Loss curve of {ref.name}",
    )
    metrics = json.loads((Path(ref.path) / "metrics.json").read_text())
    create_table_artifact(
        [{"metric": k, "value": v} for k, v in metrics.items() if k != "history"],
        key="fine-tune-metrics",
        description=f"Training metrics of {ref.name}",
    )


def publish_generate_samples(samples: list[dict[str, Any]], tokens_per_second: float, drafts: int) -> None:
    throughput = {"prompt": "(throughput)", "draft": f"{tokens_per_second:.0f} new tokens/s, {drafts} drafts"}
    create_table_artifact(
        [*samples, throughput], key="generate-samples", description="Sample drafts and generation throughput"
    )


def publish_evaluations(promotion: Promotion) -> None:
    """One table artifact a version (key model-<version>-evaluation): bits per byte overall and by
    source, the draft metrics, and the promotion decision; the same figures each night, comparable."""
    for evaluation in promotion.evaluations:
        rows = [
            {"metric": "bits_per_byte", "value": evaluation.bits_per_byte},
            *[
                {"metric": f"bits_per_byte[{source}]", "value": figures["bits_per_byte"]}
                for source, figures in sorted(evaluation.by_source.items())
            ],
            *[{"metric": k, "value": v} for k, v in evaluation.draft_metrics.items()],
            {"metric": "promotion", "value": promotion.note},
        ]
        create_table_artifact(
            rows,
            key=f"model-{evaluation.version.lower()}-evaluation",
            description=f"Evaluation of model version {evaluation.version} on the fixed evaluation set",
        )
