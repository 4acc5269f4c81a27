"""The nightly flow: ingest -> clean -> tokenize -> fine_tune [gpu] -> generate -> queue_for_review.

Stages pass references (paths + fingerprints, version ids), never the data itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.caching import still_on_disk
from flows.params import DEFAULT_CORPUS, NightlyParams, RunSummary, ScaleParams
from flows.prefect_env import run_name
from flows.prefect_tasks import (
    clean,
    editor_feedback,
    evaluate,
    fine_tune,
    generate,
    generation_timeout,
    ingest,
    preference_tune,
    sweep_leases,
    tokenize,
    training_timeout,
)
from flows.run_guards import home_writer, start_flow, user_errors_not_retried
from flows.scaleout import clean_stage, queue_stage, shared_cluster, tokenize_stage
from storage.db import open_database
from storage.errors import DraftflowError
from storage.refs import ModelRef
from storage.runs import finish_run, start_run
from storage.settings import Settings
from tasks.models import resolve_base_model
from tasks.recovery import recover
from tasks.review.feedback import approved_file
from tasks.train.pairs import chat_pairs_for

T = TypeVar("T")


def _cached(cached: list[str], stage: str, task: Any, *args: Any) -> Any:
    """Run a cached corpus task; a cache hit counts only while its dataset is still on disk."""
    state = task(*args, return_state=True)
    ref = state.result()  # raises if the task failed
    if state.name != "Cached":
        return ref
    if still_on_disk(ref):
        cached.append(stage)
        return ref
    return task.with_options(refresh_cache=True)(*args)  # the output was removed or replaced: redo it


def _finetune_deployment(deployment: str, params: NightlyParams, settings: Settings, db: Any) -> ModelRef:
    """Fine-tune on the GPU pool: start the deployment, wait for it, read the version it registered."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from flows.finetune_flow import FinetuneParams
    from storage.models import Run

    job = FinetuneParams(base_model=params.base_model, home=str(settings.home), training=params.training)
    finished = run_deployment(deployment, parameters={"params": job.model_dump(mode="json")}, timeout=None)
    assert isinstance(finished, FlowRun)  # called from a sync flow: the sync variant
    if finished.state is None or not finished.state.is_completed():
        state = finished.state.name if finished.state else "unknown"
        raise DraftflowError(
            f"fine-tune deployment {deployment} ended {state} (flow run {finished.id}); see its logs in the Prefect UI"
        )
    with db.session() as session:
        run = session.get(Run, str(finished.id))
        if run is None or not run.summary:
            raise DraftflowError(f"fine-tune flow run {finished.id} registered no model version")
        return ModelRef.model_validate(run.summary)


def _timed(seconds: dict[str, float], stage: str, call: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return call()
    finally:
        seconds[stage] = round(time.perf_counter() - started, 2)


@flow(
    name="draftflow-nightly",
    description="Fine-tune on the latest corpus and queue fresh drafts for review.",
    flow_run_name=run_name("nightly"),
    # A retry resumes: the corpus stages hit their cache, fine-tune resumes from the run's checkpoint
    # (the run id is the flow run's, kept across retries) and registers at most one version per run
    # id, and generate writes only the missing drafts. The CLI runs it with retries=0.
    retries=1,
    retry_delay_seconds=120,
)
def nightly(params: NightlyParams | None = None, overrides: dict[str, Any] | None = None) -> RunSummary:
    """Walk the whole loop once; the run and its summary are recorded in the `runs` table. `overrides`
    is merged key by key into `params` (a deployment's defaults keep what the operator leaves out)."""
    with user_errors_not_retried():
        params, settings = start_flow(params or NightlyParams(), overrides)
        db = open_database(settings.database_url)
        run_id = params.run_id or flow_run.get_id() or uuid.uuid4().hex
        with home_writer(settings, f"nightly run {run_id}"):  # one writer per data home: a second waits or is refused
            start_run(db, run_id, "nightly", params.model_dump(mode="json"), prefect_flow_run_id=flow_run.get_id())
            seconds: dict[str, float] = {}
            try:
                recovered = _timed(seconds, "recover", lambda: recover(db, settings))
                with shared_cluster(params.scale) as scale:  # one local Dask cluster for the night (none for 1 shard)
                    summary = _run_stages(params, settings, db, run_id, seconds, scale)
                summary.recovered = asdict(recovered)
            except BaseException as exc:
                finish_run(db, run_id, "failed", summary={"seconds": seconds}, error=f"{type(exc).__name__}: {exc}")
                raise
            finish_run(
                db,
                run_id,
                "completed",
                summary=summary.model_dump(mode="json"),
                corpus_fingerprint=summary.corpus_fingerprint,
            )
    create_markdown_artifact(
        render_markdown(summary), key="nightly-summary", description="What this nightly run did, stage by stage"
    )
    return summary


def _run_stages(
    params: NightlyParams, settings: Settings, db: Any, run_id: str, seconds: dict[str, float], scale: ScaleParams
) -> RunSummary:
    swept = _timed(seconds, "sweep_leases", lambda: sweep_leases(settings))
    feedback = (
        _timed(seconds, "editor_feedback", lambda: editor_feedback(settings)) if params.learn_from_editors else None
    )
    base = resolve_base_model(params.base_model, db)
    # a chat model learns from editors' approved answers as (prompt -> answer) pairs, not as documents
    pairs = (
        chat_pairs_for(
            base,
            approved_file(settings),
            params.generation.chat,
            params.generation.system_prompt,
            params.generation.system_prompts,
        )
        if feedback and not params.finetune_deployment
        else None
    )
    sources = [*params.corpus, *([feedback] if feedback and pairs is None else [])]
    cached: list[str] = []
    raw = _timed(seconds, "ingest", lambda: _cached(cached, "ingest", ingest, sources, settings, params.ingest))
    cleaned = _timed(
        seconds,
        "clean",
        lambda: (
            _cached(cached, "clean", clean, raw, settings, params.clean)
            if scale.shards == 1
            else clean_stage(raw, settings, params.clean, scale)
        ),
    )
    tokens = _timed(
        seconds,
        "tokenize",
        lambda: (
            _cached(cached, "tokenize", tokenize, cleaned, base, settings, params.tokenize)
            if scale.shards == 1
            else tokenize_stage(cleaned, base, settings, params.tokenize, scale)
        ),
    )
    deployment = params.finetune_deployment
    model = _timed(
        seconds,
        "fine_tune",
        lambda: (
            _finetune_deployment(deployment, params, settings, db)
            if deployment
            else fine_tune.with_options(timeout_seconds=training_timeout(params.training.max_minutes))(
                tokens, base, params.training, settings, run_id, pairs, defer_promotion=params.evaluation.enabled
            )
        ),
    )
    prompts_corpus = cleaned if params.corpus != [DEFAULT_CORPUS] else None  # drafts about the user's corpus
    candidates, preference = [model], _preference_tuning(params, settings, run_id, model, seconds)
    if preference.get("model"):
        candidates.insert(0, preference.pop("model"))  # the preference-tuned version is tried first
    drafts_model, promotion, evaluation = model, model.promotion, {}
    if params.evaluation.enabled:
        promoted = _timed(
            seconds,
            "evaluate",
            lambda: evaluate(
                candidates,
                cleaned,
                params.prompts_file,
                prompts_corpus,
                params.evaluation,
                settings,
                params.tokenize.val_fraction,
            ),
        )
        drafts_model, promotion = promoted.promoted or _latest_ref(db, model), promoted.note
        evaluation = {e.version: _evaluation_row(e) for e in promoted.evaluations}
    generated = _timed(
        seconds,
        "generate",
        lambda: generate.with_options(timeout_seconds=generation_timeout(params.generation.max_minutes))(
            drafts_model,
            params.prompts_file,
            params.generation,
            settings,
            run_id,
            corpus=prompts_corpus,
            val_fraction=params.tokenize.val_fraction,
        ),
    )
    queued = _timed(seconds, "queue_for_review", lambda: queue_stage(run_id, settings, cleaned, params.checks, scale))
    reasons = {
        k.removeprefix("rejected_"): v
        for stats in (raw.stats, cleaned.stats)
        for k, v in stats.items()
        if k.startswith("rejected_")
    }
    return RunSummary(
        run_id=run_id,
        home=str(settings.home),
        documents_ingested=raw.stats["seen"],
        documents_kept=cleaned.rows,
        documents_rejected=raw.stats["rejected"] + cleaned.stats["rejected"],
        rejected_by_reason=reasons,
        files=_files(raw.stats, cached="ingest" in cached),
        cached_stages=cached,
        editor_approved_source=feedback if pairs is None else None,
        editor_chat_pairs=pairs.path if pairs else None,
        leases_expired=swept,
        sample_drafts=generated.samples[:5],
        clean_steps=cleaned.report,
        prompts=generated.prompts_source,
        profiles=cleaned.profiles,
        warnings=cleaned.warnings,
        corpus_fingerprint=cleaned.fingerprint,
        tokens=tokens.tokens,
        train_blocks=tokens.train_blocks,
        val_blocks=tokens.val_blocks,
        val_split=tokens.val_split,
        tokenizer_id=tokens.tokenizer.tokenizer_id,
        base_model=base.label,
        model_version=model.name,
        model_path=model.path,
        train_steps=model.steps,
        model_promoted=_is_promoted(db, model.version_id),
        promotion=promotion,
        drafts_model_version=drafts_model.name,
        preference=preference,
        evaluation=evaluation,
        train_loss=model.train_loss,
        val_loss=model.val_loss,
        perplexity=model.perplexity,
        drafts_generated=generated.drafts_new,
        drafts_queued=queued.queued,
        drafts_flagged=queued.flagged,
        flags=queued.flags,
        generate_tokens_per_second=round(generated.tokens_per_second, 1),
        queue=queued.queue,
        seconds=seconds,
    )


def _preference_tuning(
    params: NightlyParams, settings: Settings, run_id: str, sft: ModelRef, seconds: dict[str, float]
) -> dict[str, Any]:
    """DPO after the night's fine-tune when it is on and enough new pairs exist: what it did, or why not.
    The "model" key holds the new version's reference, for the caller to take out."""
    if not params.preference.enabled:
        return {"skipped": "preference tuning is off (preference.enabled)"}
    if params.finetune_deployment:
        return {"skipped": "preference tuning runs in this flow's process: not with a fine-tune deployment"}
    outcome = _timed(
        seconds,
        "preference_tune",
        lambda: preference_tune.with_options(timeout_seconds=training_timeout(params.preference.max_minutes))(
            sft, params.preference, settings, run_id
        ),
    )
    done: dict[str, Any] = {"pairs": outcome.pairs, "metrics": outcome.metrics}
    if outcome.model is None:
        return done | {"skipped": outcome.skipped}
    return done | {"version": outcome.model.name, "model": outcome.model}


def _latest_ref(db: Any, fallback: ModelRef) -> ModelRef:
    """The latest promoted version as a reference (the night's own version when there is none)."""
    from storage.registry import latest_model_version

    latest = latest_model_version(db)
    if latest is None or latest.id == fallback.version_id:
        return fallback
    return ModelRef(
        version_id=latest.id,
        name=latest.name,
        path=latest.path,
        train_loss=latest.train_loss,
        val_loss=latest.val_loss,
        perplexity=latest.perplexity,
    )


def _is_promoted(db: Any, version_id: int) -> bool:
    from storage.models import ModelVersion

    with db.session() as session:
        row = session.get(ModelVersion, version_id)
        return bool(row and row.promoted)


def _evaluation_row(e: Any) -> dict[str, Any]:
    return {"bits_per_byte": e.bits_per_byte, "by_source": e.by_source, **e.draft_metrics}


def _files(stats: dict[str, int], cached: bool) -> dict[str, int]:
    files = {k.removeprefix("files_"): v for k, v in stats.items() if k.startswith("files_")}
    if cached:  # the stored reference counts the night it ran; tonight nothing changed
        files = {
            "new": 0,
            "changed": 0,
            "unchanged": files.get("new", 0) + files.get("changed", 0) + files.get("unchanged", 0),
            "removed": 0,
        }
    return files


def render_markdown(s: RunSummary) -> str:
    files = ", ".join(f"{k} {v}" for k, v in s.files.items())
    rows = [
        ("Leases expired", s.leases_expired),
        ("Editor-approved drafts", _editor_feedback(s)),
        ("Files", files),
        ("Documents ingested", s.documents_ingested),
        ("Documents kept", s.documents_kept),
        ("Documents rejected", s.documents_rejected),
        ("Tokens (train + val)", s.tokens),
        (
            "Validation split",
            "by block (too few documents to split by document)" if s.val_split == "blocks" else "by document",
        ),
        ("Base model", s.base_model),
        ("Model version", s.model_version),
        ("Preference tuning", _cell(s.preference.get("version") or s.preference.get("skipped") or "-")),
        ("Promotion", _cell(s.promotion)),
        ("Drafts written by", s.drafts_model_version or s.model_version),
        ("Train steps", s.train_steps),
        ("Train loss", _fmt(s.train_loss)),
        ("Validation loss", _fmt(s.val_loss)),
        ("Perplexity", _fmt(s.perplexity)),
        ("Drafts queued", s.drafts_queued),
        ("Drafts flagged", s.drafts_flagged),
        ("Prompts", _cell(s.prompts) or "-"),
        ("Generation tokens/s", s.generate_tokens_per_second),
    ]
    lines = [
        "# Nightly run",
        "",
        *[f"**Warning:** {_cell(warning)}\n" for warning in s.warnings],
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "## Evaluation on the fixed set",
        "",
        "| version | bits per byte | repetition | echo rate | empty rate | distinct-2 |",
        "|---|---|---|---|---|---|",
        *[
            f"| {v} | {e.get('bits_per_byte')} | {e.get('repetition')} | {e.get('echo_rate')} | "
            f"{e.get('empty_rate')} | {e.get('distinct_2')} |"
            for v, e in s.evaluation.items()
        ],
        "",
        "## Sources and their cleaning profiles",
        "",
        "| source | profile |",
        "|---|---|",
        *[f"| {_cell(source)} | {_cell(profile)} |" for source, profile in sorted(s.profiles.items())],
        "",
        "## Rejected by reason",
        "",
        "| reason | documents |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(s.rejected_by_reason.items())],
        "",
        "## Cleaning steps",
        "",
        "| step | documents | MB | seconds | dropped |",
        "|---|---|---|---|---|",
        *[
            f"| {r['step']} | {r['documents']} | {r['megabytes']} | {r['seconds']} | {r['dropped']} |"
            for r in s.clean_steps
        ],
        "",
        "## Stage timings (s)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v}{' (cached)' if k in s.cached_stages else ''} |" for k, v in s.seconds.items()],
        "",
        "## Review queue",
        "",
        "| state | drafts |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(s.queue.items())],
        "",
        "## Sample drafts",
        "",
        "| prompt | draft |",
        "|---|---|",
        *[f"| {_cell(d.get('prompt', ''))} | {_cell(d.get('draft', ''))} |" for d in s.sample_drafts],
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Generated text in a markdown table cell: one line, no table breaks, no links or markup."""
    flat = " ".join(str(text).split())[:200]
    for char in "\\|[]()<>*_`#!:.":  # ':' and '.' too: no autolinks from "http://" or "www."
        flat = flat.replace(char, "\\" + char)
    return flat


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _editor_feedback(s: RunSummary) -> str:
    if s.editor_chat_pairs:
        return f"trained as chat pairs, loss on the approved answer only ({s.editor_chat_pairs})"
    return s.editor_approved_source or "none yet"
