"""The `draftflow` command line: the whole nightly run, each stage alone, and the review queue.

Every option that sets a parameter takes its help, default and bounds from the pydantic model of
that parameter (flows/cli_options.py), and each stage command also takes `--config FILE` with the
same model as JSON: an option typed on the command line wins, a value in the file wins over the
default, and an option not typed never overrides the file.
"""

from __future__ import annotations

from flows.prefect_env import configure_prefect_env

configure_prefect_env()  # before anything imports Prefect

import os  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import typer  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from flows import console  # noqa: E402
from flows.cli_models import models_app  # noqa: E402
from flows.cli_options import build, option  # noqa: E402
from flows.cli_review import review_app  # noqa: E402
from flows.cli_review import serve as serve_desk  # noqa: E402
from flows.params import NightlyParams, ScaleParams  # noqa: E402
from storage.db import Database, open_database  # noqa: E402
from storage.errors import DraftflowError, environment_error  # noqa: E402
from storage.params import first_problem  # noqa: E402
from storage.settings import HOME_ENV, Settings  # noqa: E402
from tasks.clean.params import PROFILES, CleanParams, QualityThresholds  # noqa: E402
from tasks.generate.params import GenerationParams  # noqa: E402
from tasks.ingest.params import IngestOptions  # noqa: E402
from tasks.tokenize.params import TokenizeParams  # noqa: E402
from tasks.train.params import TrainParams  # noqa: E402

app = typer.Typer(
    help="draftflow: fine-tune a causal LM on your corpus, write drafts, review them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(review_app, name="review")
app.add_typer(models_app, name="models")
app.command("desk", help="Start the editors' web desk on 127.0.0.1 (same as `draftflow review serve`).")(serve_desk)

CorpusOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--corpus",
        "-c",
        help="File, folder, NAME=PATH or 'python-stdlib-docs' (repeatable) \\[default: python-stdlib-docs].",
    ),
]
BaseModelOpt = Annotated[
    str | None,
    typer.Option(
        "--base-model", help="'scratch', a version (v0003), a local folder or a hub id; default: latest version."
    ),
]


def _config(model: type) -> object:
    return typer.Option(help=f"JSON file with {model.__name__} fields; options given here win over it.")


@app.callback()
def _global(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help=f"Data home (corpora, models, default database); default ${HOME_ENV} or ~/.draftflow."
        ),
    ] = None,
) -> None:
    if home is not None:
        os.environ[HOME_ENV] = str(home.expanduser().resolve())


def _settings() -> Settings:
    return Settings.from_env()


def _db() -> Database:
    return open_database(_settings().database_url)


def _writing(what: str) -> Any:
    """The data home's writer lock for a stage command (one line naming the holder when it is taken)."""
    from storage.home_lock import home_lock

    return home_lock(_settings().home, what)


def _stage_logging() -> None:
    from flows.logs import stderr_logging

    stderr_logging()


@app.command()
def run(
    corpus: CorpusOpt = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", "-p", help="Prompts file (lines or JSONL).")] = None,
    base_model: BaseModelOpt = None,
    config: Annotated[Path | None, _config(NightlyParams)] = None,
    clean_config: Annotated[
        Path | None, typer.Option(help="JSON file with CleanParams fields: the clean section of the night.")
    ] = None,
    profile: Annotated[str | None, option(CleanParams, "profile")] = None,
    strict: Annotated[bool | None, option(CleanParams, "strict", "--strict/--no-strict")] = None,
    run_id: Annotated[str | None, option(NightlyParams, "run_id", "--run-id")] = None,
    max_train_minutes: Annotated[float | None, option(TrainParams, "max_minutes", "--max-train-minutes")] = None,
    max_train_steps: Annotated[int | None, option(TrainParams, "max_steps", "--max-train-steps")] = None,
    samples_per_prompt: Annotated[int | None, option(GenerationParams, "samples_per_prompt")] = None,
    max_new_tokens: Annotated[int | None, option(GenerationParams, "max_new_tokens")] = None,
    temperature: Annotated[float | None, option(GenerationParams, "temperature")] = None,
    top_p: Annotated[float | None, option(GenerationParams, "top_p")] = None,
    seed: Annotated[int | None, option(TrainParams, "seed", help="Seed for training and sampling.")] = None,
    vocab_size: Annotated[int | None, option(TokenizeParams, "vocab_size")] = None,
    block_size: Annotated[int | None, option(TokenizeParams, "block_size")] = None,
    shards: Annotated[int | None, option(ScaleParams, "shards")] = None,
    dask_address: Annotated[str | None, option(ScaleParams, "dask_address")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the whole nightly flow: ingest, clean, tokenize, fine-tune, generate, queue for review."""
    from tasks.generate.prompts import load_prompts
    from tasks.ingest.sources import SourceSpec

    params = build(
        NightlyParams,
        config,
        {"clean": clean_config},
        corpus=("--corpus", corpus or None),
        prompts_file=("--prompts", str(prompts) if prompts else None),
        base_model=("--base-model", base_model),
        run_id=("--run-id", run_id),
        home=("--home", str(_settings().home)),
        **{
            "training.max_minutes": ("--max-train-minutes", max_train_minutes),
            "training.max_steps": ("--max-train-steps", max_train_steps),
            "training.seed": ("--seed", seed),
            "generation.seed": ("--seed", seed),
            "generation.samples_per_prompt": ("--samples-per-prompt", samples_per_prompt),
            "generation.max_new_tokens": ("--max-new-tokens", max_new_tokens),
            "generation.temperature": ("--temperature", temperature),
            "generation.top_p": ("--top-p", top_p),
            "clean.profile": ("--profile", profile),
            "clean.strict": ("--strict", strict),
            "tokenize.vocab_size": ("--vocab-size", vocab_size),
            "tokenize.block_size": ("--block-size", block_size),
            "scale.shards": ("--shards", shards),
            "scale.dask_address": ("--dask-address", dask_address),
        },
    )
    for spec in params.corpus:  # fail on a bad path now, not minutes into the run
        SourceSpec.parse(spec)
    load_prompts(params.prompts_file)
    from flows.nightly import nightly
    from flows.prefect_env import hide_user_error_tracebacks

    hide_user_error_tracebacks()
    from flows.server_reaper import watch_this_process

    watch_this_process()  # Prefect's temporary server ends with this run, kill -9 included
    # the home's lock before Prefect starts: a second run is refused at once, not after a server start
    with _writing(f"nightly run {params.run_id or '(draftflow run)'}"):
        # a flow retry would repeat an error after two minutes; here the user runs it again
        summary = nightly.with_options(retries=0)(params)
    if as_json:
        console.print_json(summary.model_dump(mode="json"))
        return
    console.out.print(console.summary_table(summary))
    console.print_sources({}, summary.warnings)
    console.out.print(f"\nData, models and the drafts database are in {summary.home}", markup=False)
    console.out.print(f"Review the drafts:  {console.command('review list --status pending')}", markup=False)


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders, NAME=PATH or 'python-stdlib-docs'.")],
    config: Annotated[Path | None, _config(IngestOptions)] = None,
    text_field: Annotated[str | None, option(IngestOptions, "text_field")] = None,
    include: Annotated[
        list[str] | None, option(IngestOptions, "include", help="Only files matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, option(IngestOptions, "exclude", help="Skip files matching this glob (repeatable).")
    ] = None,
    split: Annotated[str | None, option(IngestOptions, "split")] = None,
    separator: Annotated[str | None, option(IngestOptions, "separator")] = None,
    max_chars: Annotated[int | None, option(IngestOptions, "max_chars")] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Cleaning profile of these sources (web, short-form, dialogue, long-form, docs); "
            "NAME=PATH:PROFILE sets one source's."
        ),
    ] = None,
) -> None:
    """Bring corpus/raw up to date: new and changed files are read, unchanged ones carried over."""
    _stage_logging()
    from tasks.ingest.stage import ingest_corpus

    if separator is not None:  # the shell passes "\n" literally: turn the two common escapes into characters
        separator = separator.replace("\\n", "\n").replace("\\t", "\t")
    options = build(
        IngestOptions,
        config,
        text_field=("--text-field", text_field),
        include=("--include", include or None),
        exclude=("--exclude", exclude or None),
        split=("--split", split),
        separator=("--separator", separator),
        max_chars=("--max-chars", max_chars),
    )
    if profile is not None and profile not in PROFILES:
        raise DraftflowError(f"invalid --profile {profile}: one of {', '.join(PROFILES)}")
    with _writing("ingest"):
        ref = ingest_corpus(paths, _settings(), options, profile=profile)
    _print_stats("ingest", ref.path, ref.stats)


@app.command()
def clean(
    config: Annotated[Path | None, _config(CleanParams)] = None,
    min_words: Annotated[
        int | None,
        option(QualityThresholds, "min_words", help="Gopher: minimum words, for sources without their own thresholds."),
    ] = None,
    languages: Annotated[
        str | None,
        typer.Option(
            help="Allowed languages for sources without their own thresholds,"
            " comma-separated; empty keeps any \\[default: en]."
        ),
    ] = None,
    near_dedup: Annotated[bool | None, option(CleanParams, "dedup_near", "--near-dedup/--no-near-dedup")] = None,
    profile: Annotated[str | None, option(CleanParams, "profile")] = None,
    strict: Annotated[bool | None, option(CleanParams, "strict", "--strict/--no-strict")] = None,
) -> None:
    """Repair, filter (Gopher/C4/FineWeb), scrub PII and deduplicate corpus/raw into corpus/clean."""
    _stage_logging()
    from storage.refs import dataset_ref
    from tasks.clean.stage import clean_corpus

    settings = _settings()
    allowed = [x.strip() for x in languages.split(",") if x.strip()] if languages is not None else None
    params = build(
        CleanParams,
        config,
        dedup_near=("--near-dedup", near_dedup),
        profile=("--profile", profile),
        strict=("--strict", strict),
        **{
            "thresholds.min_words": ("--min-words", min_words),
            "thresholds.allowed_languages": ("--languages", allowed),
        },
    )
    raw = dataset_ref(settings.raw_dir, "raw corpus", "run `draftflow ingest PATH...` first")
    with _writing("clean"):
        ref = clean_corpus(raw, settings, params)
    _print_stats("clean", ref.path, ref.stats)
    for row in ref.report:
        console.out.print(
            f"  {row['step']:<12} {row['documents']:>7} docs {row['megabytes']:>8} MB "
            f"{row['seconds']:>7.2f} s  dropped {row['dropped']}  {row['reasons']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    console.print_sources(ref.profiles, ref.warnings)


@app.command()
def tokenize(
    base_model: BaseModelOpt = None,
    config: Annotated[Path | None, _config(TokenizeParams)] = None,
    vocab_size: Annotated[int | None, option(TokenizeParams, "vocab_size")] = None,
    block_size: Annotated[int | None, option(TokenizeParams, "block_size")] = None,
) -> None:
    """Train (or reuse the base model's) tokenizer and pack corpus/clean into token blocks."""
    _stage_logging()
    from storage.refs import dataset_ref
    from tasks.models import resolve_base_model
    from tasks.tokenize.stage import prepare_and_tokenize

    settings = _settings()
    params = build(
        TokenizeParams, config, vocab_size=("--vocab-size", vocab_size), block_size=("--block-size", block_size)
    )
    cleaned = dataset_ref(settings.clean_dir, "clean corpus", "run `draftflow clean` first")
    with _writing("tokenize"):
        ref = prepare_and_tokenize(cleaned, resolve_base_model(base_model, _db()), settings, params)
    _print_stats(
        "tokenize",
        ref.path,
        {
            "tokens": ref.tokens,
            "train_blocks": ref.train_blocks,
            "val_blocks": ref.val_blocks,
            "vocab_size": ref.tokenizer.vocab_size,
        },
    )


@app.command()
def finetune(
    base_model: BaseModelOpt = None,
    run_id: Annotated[str | None, typer.Option(help="Resume this run from its last checkpoint.")] = None,
    config: Annotated[Path | None, _config(TrainParams)] = None,
    max_minutes: Annotated[float | None, option(TrainParams, "max_minutes")] = None,
    max_steps: Annotated[int | None, option(TrainParams, "max_steps")] = None,
    batch_size: Annotated[int | None, option(TrainParams, "batch_size")] = None,
    method: Annotated[str | None, option(TrainParams, "method", help="full or lora.")] = None,
    lora_rank: Annotated[int | None, option(TrainParams, "lora_rank")] = None,
    seed: Annotated[int | None, option(TrainParams, "seed")] = None,
) -> None:
    """Train on the latest tokenized corpus and register a new model version (torchrun-ready)."""
    _stage_logging()
    from storage.runs import failed_on_error, finish_run, start_run
    from tasks.models import resolve_base_model
    from tasks.tokenize.stage import latest_tokens
    from tasks.train.distributed import TorchrunEnv
    from tasks.train.stage import train_model

    settings, db = _settings(), _db()
    params = build(
        TrainParams,
        config,
        max_minutes=("--max-minutes", max_minutes),
        max_steps=("--max-steps", max_steps),
        batch_size=("--batch-size", batch_size),
        method=("--method", method),
        lora_rank=("--lora-rank", lora_rank),
        seed=("--seed", seed),
    )
    tokens = latest_tokens(settings)
    base = resolve_base_model(base_model, db)
    run_id = run_id or uuid.uuid4().hex
    lead = TorchrunEnv().rank == 0  # under torchrun only rank 0 records, prints and holds the home
    with _writing(f"finetune run {run_id}") if lead else nullcontext():
        if lead:
            start_run(db, run_id, "finetune", params.model_dump())
        with failed_on_error(db, run_id, record=lead), console.progress_bar("fine-tune") as progress:
            model = train_model(tokens, base, params, db, settings, run_id=run_id, progress=progress)
    if lead:
        finish_run(db, run_id, "completed", summary=model.model_dump())
        _print_stats(
            "finetune",
            model.path,
            {
                "version": model.name,
                "steps": model.steps,
                "train_loss": round(model.train_loss or 0, 4),
                "val_loss": round(model.val_loss or 0, 4),
                "promoted": model.promoted,
            },
        )
        console.out.print(model.promotion, markup=False, highlight=False)


@app.command()
def generate(
    prompts: Annotated[
        Path | None, typer.Option("--prompts", "-p", help="Prompts file (lines, JSONL, CSV, Parquet).")
    ] = None,
    prompts_from_db: Annotated[bool, typer.Option(help="Use the prompts table instead of a file.")] = False,
    from_corpus: Annotated[
        bool, typer.Option(help="Prompt with the openings of held-out documents of the clean corpus.")
    ] = False,
    category: Annotated[str | None, typer.Option(help="With --prompts-from-db: only this category.")] = None,
    model: Annotated[str | None, typer.Option(help="Model version (v0003); default: the latest.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Resume this run: only missing drafts are made.")] = None,
    config: Annotated[Path | None, _config(GenerationParams)] = None,
    samples_per_prompt: Annotated[int | None, option(GenerationParams, "samples_per_prompt")] = None,
    max_new_tokens: Annotated[int | None, option(GenerationParams, "max_new_tokens")] = None,
    batch_size: Annotated[int | None, option(GenerationParams, "batch_size")] = None,
    engine: Annotated[str | None, option(GenerationParams, "engine", help="auto, torch or vllm.")] = None,
    chat: Annotated[str | None, option(GenerationParams, "chat", help="auto, on or off.")] = None,
    temperature: Annotated[float | None, option(GenerationParams, "temperature")] = None,
    top_p: Annotated[float | None, option(GenerationParams, "top_p")] = None,
    seed: Annotated[int | None, option(GenerationParams, "seed")] = None,
) -> None:
    """Write drafts for every prompt with a registered model and put them in the review queue."""
    _stage_logging()
    from storage.refs import ModelRef
    from storage.registry import get_model_version, latest_model_version
    from storage.runs import failed_on_error, finish_run, start_run
    from tasks.generate.prompts import load_prompts, prompts_from_corpus, prompts_from_table
    from tasks.generate.stage import generate_drafts
    from tasks.review.stage import corpus_index, queue_run

    db = _db()
    params = build(
        GenerationParams,
        config,
        samples_per_prompt=("--samples-per-prompt", samples_per_prompt),
        max_new_tokens=("--max-new-tokens", max_new_tokens),
        batch_size=("--batch-size", batch_size),
        engine=("--engine", engine),
        chat=("--chat", chat),
        temperature=("--temperature", temperature),
        top_p=("--top-p", top_p),
        seed=("--seed", seed),
    )
    if from_corpus:
        rows, where = prompts_from_corpus(_settings().clean_dir)
        console.out.print(f"prompts: {where}", markup=False, highlight=False)
    else:
        rows = prompts_from_table(db, category) if prompts_from_db else load_prompts(prompts)
    info = get_model_version(db, model) if model else latest_model_version(db)
    if info is None:
        raise DraftflowError("no model version registered yet: run `draftflow finetune` (or `draftflow run`) first")
    run_id = run_id or uuid.uuid4().hex
    with _writing(f"generate run {run_id}"):
        start_run(db, run_id, "generate", params.model_dump())
        model_ref = ModelRef(version_id=info.id, name=info.name, path=info.path)
        with failed_on_error(db, run_id):
            with console.progress_bar("generate") as progress:
                result = generate_drafts(model_ref, rows, params, db, run_id, progress=progress)
            queued = queue_run(db, run_id, corpus_index(_settings(), None))
        finish_run(db, run_id, "completed", summary=result.model_dump())
    _print_stats(
        "generate",
        f"run {run_id}",
        {
            "drafts_new": result.drafts_new,
            "drafts_skipped": result.drafts_skipped,
            "queued": queued.queued,
            "flagged": queued.flagged,
            "tokens_per_second": round(result.tokens_per_second),
        },
    )
    console.out.print(f"Review them:  {console.command('review list --status pending')}", markup=False)


@app.command()
def setup(gpu_slots: Annotated[int, typer.Option(min=1, help="Fine-tunes that may run at once.")] = 1) -> None:
    """Migrate the drafts database and create the Prefect `gpu` concurrency limit."""
    from flows.prefect_env import hide_user_error_tracebacks
    from flows.setup import setup_all

    hide_user_error_tracebacks()
    done = setup_all(_settings(), gpu_slots)
    console.out.print(f"database ready: {done['database']}", markup=False, highlight=False)
    limit = done["gpu_limit"]
    console.out.print(
        f"Prefect concurrency limit on tag '{limit['tag']}': {limit['concurrency_limit']} ({limit['api']})",
        markup=False,
        highlight=False,
    )


@app.command("serve")
def serve_prefect(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the Prefect server (127.0.0.1).")] = 4200,
    gpu_slots: Annotated[int, typer.Option(min=1, help="Fine-tunes that may run at once.")] = 1,
    no_workers: Annotated[bool, typer.Option("--no-workers", help="Register only; start no workers.")] = False,
    notify_url: Annotated[
        str | None,
        typer.Option(
            envvar="DRAFTFLOW_NOTIFY_URL",
            help="Webhook (e.g. a Slack incoming webhook) told when a night fails, crashes, times out, is late "
            "or overdue.",
        ),
    ] = None,
    overdue_hours: Annotated[
        float, typer.Option(min=0.05, help="A night still running after this many hours is reported overdue.")
    ] = 6.0,
) -> None:
    """Start a local Prefect server, work pools, deployments (with schedules) and workers."""
    from flows.serve import serve

    if notify_url and not notify_url.startswith(("http://", "https://")):
        raise DraftflowError(f"--notify-url must be an http(s) URL, got {notify_url!r}")
    done = serve(
        _settings(),
        port=port,
        gpu_slots=gpu_slots,
        workers=not no_workers,
        notify_url=notify_url,
        overdue_hours=overdue_hours,
    )
    out = console.out
    out.print(f"Prefect UI: {done['ui']}  (API {done['api']})", markup=False, highlight=False)
    out.print("deployments: " + ", ".join(done["deployments"]), markup=False, highlight=False)
    out.print(f"logs and pids: {done['state']}; `draftflow stop` ends them", markup=False, highlight=False)
    out.print(
        "trigger a night now: PREFECT_API_URL=" + done["api"] + " .venv/bin/prefect deployment run "
        'draftflow-nightly/nightly --param overrides=\'{"training": {"max_minutes": 1}}\'',
        markup=False,
        highlight=False,
    )
    out.print(
        "notifications: " + (done["notifications"] or "none (pass --notify-url to be told of failed or late nights)"),
        markup=False,
        highlight=False,
    )


@app.command("stop")
def stop_prefect() -> None:
    """Stop the server and workers that `draftflow serve` started."""
    from flows.serve import stop

    stopped = stop(_settings())
    console.out.print("stopped " + (", ".join(stopped) if stopped else "nothing (none was running)"), markup=False)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the last runs, the model versions and the review queue (a run whose process died is marked crashed)."""
    from flows.status import print_status
    from storage.runs import mark_dead_runs

    db = _db()
    mark_dead_runs(db)
    print_status(db, as_json)


@app.command()
def recover() -> None:
    """Finish what killed runs left: mark their runs crashed, remove half-written files, queue their drafts."""
    _stage_logging()
    from tasks.recovery import recover as recover_home

    with _writing("recover"):
        done = recover_home(_db(), _settings())
    console.out.print(
        f"recover: {len(done.crashed_runs)} runs marked crashed, {len(done.debris)} half-written files or folders "
        f"removed, {done.drafts_queued} drafts checked and queued",
        markup=False,
        soft_wrap=True,
    )


def _print_stats(stage: str, where: str, stats: Mapping[str, object]) -> None:
    body = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in stats.items())
    console.out.print(f"{stage} → {where}: {body}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry: user errors become one line on stderr and exit code 1."""
    try:
        app()
    except DraftflowError as exc:
        console.fail(str(exc))
    except ValidationError as exc:  # a parameter out of its bounds, wherever it was checked
        console.fail(f"invalid {first_problem(exc)}")
    except KeyboardInterrupt:
        console.fail("interrupted", code=130)
    except Exception as exc:  # the machine refused: a full disk, a read-only home, no database server
        message = environment_error(exc)
        if message is None:
            raise
        console.fail(message)


if __name__ == "__main__":
    main()
