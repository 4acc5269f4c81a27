"""The nightly loop's stage groups as flows of their own, so an operator can run one step from
the Prefect UI (each has its own deployment in deployments/prefect.yaml):

- `draftflow-prepare`: ingest → clean → tokenize (cached: unchanged inputs skip the work)
- `draftflow-finetune` (flows/finetune_flow.py): train on the latest tokens; the GPU pool's flow
- `draftflow-generate`: write drafts with a model version and queue them for review
- `draftflow-review-maintenance`: return expired leases, export the editors' approved drafts for
  the next night, and publish the desk's metrics as an artifact
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from flows.params import DEFAULT_CORPUS
from flows.prefect_env import run_name
from flows.prefect_tasks import clean, generate, generation_timeout, ingest, queue_for_review, sweep_leases, tokenize
from flows.run_guards import home_writer, start_flow, user_errors_not_retried
from storage.db import open_database
from storage.params import Params
from storage.refs import ModelRef
from storage.runs import finish_run, mark_dead_runs, start_run
from tasks.clean.params import CleanParams
from tasks.generate.params import GenerationParams
from tasks.ingest.params import IngestOptions
from tasks.models import resolve_base_model
from tasks.review.params import CheckParams
from tasks.tokenize.params import TokenizeParams

HomeField = Field(None, description="Data home; empty = DRAFTFLOW_HOME or ~/.draftflow.")


class PrepareParams(Params):
    corpus: list[str] = Field(
        default_factory=lambda: [DEFAULT_CORPUS], description="Files, folders (`NAME=PATH`) or 'python-stdlib-docs'."
    )
    ingest: IngestOptions = Field(default_factory=IngestOptions)
    base_model: str | None = Field(None, description="Decides the tokenizer: empty = the latest version's.")
    home: str | None = HomeField
    clean: CleanParams = Field(default_factory=CleanParams)
    tokenize: TokenizeParams = Field(default_factory=TokenizeParams)


class GenerateFlowParams(Params):
    model: str | None = Field(None, description="A model version (v0003); empty = the latest promoted one.")
    prompts_file: str | None = Field(None, description="Prompts file; empty = the shipped defaults.")
    home: str | None = HomeField
    generation: GenerationParams = Field(default_factory=GenerationParams)
    checks: CheckParams = Field(default_factory=CheckParams)


class MaintenanceParams(Params):
    home: str | None = HomeField


@flow(
    name="draftflow-prepare",
    description="Ingest, clean and tokenize the corpus (cached on fingerprints).",
    flow_run_name=run_name("prepare"),
)
def prepare_flow(params: PrepareParams | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from flows.nightly import _cached

    with user_errors_not_retried():
        params, settings = start_flow(params or PrepareParams(), overrides)
        db = open_database(settings.database_url)
        cached: list[str] = []
        with home_writer(settings, f"prepare flow run {flow_run.get_id()}"):
            raw = _cached(cached, "ingest", ingest, params.corpus, settings, params.ingest)
            cleaned = _cached(cached, "clean", clean, raw, settings, params.clean)
            base = resolve_base_model(params.base_model, db)
            tokens = _cached(cached, "tokenize", tokenize, cleaned, base, settings, params.tokenize)
    return {
        "documents": raw.stats.get("seen", raw.rows),
        "kept": cleaned.rows,
        "tokens": tokens.tokens,
        "tokenizer_id": tokens.tokenizer.tokenizer_id,
        "cached": cached,
    }


@flow(
    name="draftflow-generate",
    description="Write drafts with a model version and queue them for review.",
    flow_run_name=run_name("generate"),
)
def generate_flow(params: GenerateFlowParams | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from storage.registry import get_model_version, latest_model_version

    with user_errors_not_retried():
        params, settings = start_flow(params or GenerateFlowParams(), overrides)
        db = open_database(settings.database_url)
        info = get_model_version(db, params.model) if params.model else latest_model_version(db)
        if info is None:
            from storage.errors import DraftflowError

            raise DraftflowError("no model version yet: run draftflow-finetune (or the nightly flow) first")
        run_id = flow_run.get_id() or uuid.uuid4().hex
        with home_writer(settings, f"generate flow run {run_id}"):
            start_run(db, run_id, "generate", params.model_dump(mode="json"), prefect_flow_run_id=flow_run.get_id())
            model = ModelRef(version_id=info.id, name=info.name, path=info.path)
            timeout = generation_timeout(params.generation.max_minutes)
            generated = generate.with_options(timeout_seconds=timeout)(
                model, params.prompts_file, params.generation, settings, run_id
            )
            queued = queue_for_review(run_id, settings, None, params.checks)
    summary = {
        "model_version": info.name,
        "drafts": generated.drafts_new,
        "queued": queued.queued,
        "flagged": queued.flagged,
        "tokens_per_second": round(generated.tokens_per_second, 1),
    }
    finish_run(db, run_id, "completed", summary=summary)
    return summary


@flow(
    name="draftflow-review-maintenance",
    description="Return expired leases, export approved drafts for training, publish desk metrics.",
    flow_run_name=run_name("review-maintenance"),
)
def review_maintenance_flow(
    params: MaintenanceParams | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    from flows.prefect_tasks import editor_feedback
    from flows.slot_leaks import free_leaked_slots
    from tasks.review.metrics import desk_metrics

    params, settings = start_flow(params or MaintenanceParams(), overrides)
    mark_dead_runs(open_database(settings.database_url))  # runs whose process is gone: crashed
    leaked = free_leaked_slots()  # a slot whose holder is gone (a server restart lost its lease)
    swept = sweep_leases(settings)
    source = editor_feedback(settings)
    metrics = desk_metrics(open_database(settings.database_url))
    rate = metrics["approval_rate"]
    lines = [
        "# Review desk",
        "",
        "| | |",
        "|---|---|",
        *[f"| drafts {state} | {n} |" for state, n in sorted(metrics["states"].items())],
        f"| approval rate | {'-' if rate is None else f'{rate:.0%}'} |",
        f"| expired leases returned | {swept} |",
        f"| leaked concurrency slots freed | {sum(leaked.values())} |",
        f"| editor-approved source | {source or 'none yet'} |",
    ]
    create_markdown_artifact("\n".join(lines), key="review-desk", description="The review queue and its metrics")
    return {
        "leases_expired": swept,
        "editor_approved_source": source,
        "states": metrics["states"],
        "leaked_slots_freed": leaked,
    }
