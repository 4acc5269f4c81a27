"""The `draftflow` command line: the whole nightly run, each stage alone, and the review queue."""

from __future__ import annotations

from flows.prefect_env import configure_prefect_env

configure_prefect_env()  # before anything imports Prefect

import os  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, TypeVar  # noqa: E402

import typer  # noqa: E402
from pydantic import BaseModel, ValidationError  # noqa: E402

from flows import console  # noqa: E402
from flows.cli_review import review_app  # noqa: E402
from flows.cli_review import serve as serve_desk  # noqa: E402
from storage.db import Database, open_database  # noqa: E402
from storage.errors import DraftflowError  # noqa: E402
from storage.settings import HOME_ENV, Settings  # noqa: E402

M = TypeVar("M", bound=BaseModel)

app = typer.Typer(help="draftflow: fine-tune a causal LM on your corpus, write drafts, review them.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(review_app, name="review")
app.command("desk", help="Start the editors' web desk on 127.0.0.1 (same as `draftflow review serve`).")(serve_desk)

CorpusOpt = Annotated[list[str] | None, typer.Option(
    "--corpus", "-c", help="File, folder, NAME=PATH or 'python-stdlib-docs' (repeatable).")]
BaseModelOpt = Annotated[str | None, typer.Option(
    "--base-model", help="'scratch', a version (v0003), a local folder or a hub id; default: latest version.")]


@app.callback()
def _global(home: Annotated[Path | None, typer.Option(
        "--home", help=f"Data home (corpora, models, default database); default ${HOME_ENV} or ~/.draftflow.")] = None,
            ) -> None:
    if home is not None:
        os.environ[HOME_ENV] = str(home.expanduser().resolve())


def _settings() -> Settings:
    return Settings.from_env()


def _stage_logging() -> None:
    from flows.logs import stderr_logging

    stderr_logging()


def _db() -> Database:
    return open_database(_settings().database_url)


@app.command()
def run(
    corpus: CorpusOpt = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", "-p", help="Prompts file (lines or JSONL).")] = None,
    base_model: BaseModelOpt = None,
    max_train_minutes: Annotated[float, typer.Option(help="Training budget in minutes.")] = 3.0,
    max_train_steps: Annotated[int, typer.Option(help="Training budget in optimizer steps.")] = 5000,
    samples_per_prompt: Annotated[int, typer.Option(help="Drafts per prompt.")] = 2,
    max_new_tokens: Annotated[int, typer.Option(help="New tokens per draft at most.")] = 64,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.")] = 0.8,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed for training and sampling.")] = 1234,
    shards: Annotated[int, typer.Option(help="Shard clean, tokenize and the checks over Dask (1 = in process).")]
    = 1,
    dask_address: Annotated[str | None, typer.Option(help="An existing Dask scheduler; empty = a local cluster.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the whole nightly flow: ingest, clean, tokenize, fine-tune, generate, queue for review."""
    from flows.params import NightlyParams, ScaleParams
    from tasks.generate.params import GenerationParams
    from tasks.generate.prompts import load_prompts
    from tasks.ingest.sources import SourceSpec
    from tasks.train.params import TrainParams

    corpus = corpus or ["python-stdlib-docs"]
    for spec in corpus:  # fail on a bad path now, not minutes into the run
        SourceSpec.parse(spec)
    load_prompts(prompts)
    params = NightlyParams(
        corpus=corpus, prompts_file=str(prompts) if prompts else None, base_model=base_model,
        home=str(_settings().home),
        training=_validated(TrainParams, max_minutes=max_train_minutes, max_steps=max_train_steps, seed=seed),
        generation=_validated(GenerationParams, samples_per_prompt=samples_per_prompt, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, seed=seed),
        scale=_validated(ScaleParams, shards=shards, dask_address=dask_address))
    from flows.nightly import nightly
    from flows.prefect_env import hide_user_error_tracebacks

    hide_user_error_tracebacks()
    summary = nightly(params)
    if as_json:
        console.print_json(summary.model_dump(mode="json"))
        return
    console.out.print(console.summary_table(summary))
    console.out.print(f"\nData, models and the drafts database are in {summary.home}")
    console.out.print("Review the drafts:  [bold]draftflow review list --status pending[/]", highlight=False)


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders, NAME=PATH or 'python-stdlib-docs'.")],
    text_field: Annotated[str, typer.Option(help="Text field (JSON/JSONL) or column (CSV/Parquet).")] = "text",
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).")] = None,
    split: Annotated[str, typer.Option(help="Split .txt/.md/.rst files: none, headings or separator.")] = "none",
    separator: Annotated[str, typer.Option(help="Separator for --split separator.")] = "\n---\n",
) -> None:
    """Bring corpus/raw up to date: new and changed files are read, unchanged ones carried over."""
    _stage_logging()
    from tasks.ingest.params import IngestOptions
    from tasks.ingest.stage import ingest_corpus

    # the shell passes "\n" literally: turn the two common escapes into characters
    separator = separator.replace("\\n", "\n").replace("\\t", "\t")
    options = _validated(IngestOptions, text_field=text_field, include=include or [], exclude=exclude or [],
                         split=split, separator=separator)
    ref = ingest_corpus(paths, _settings(), options)
    _print_stats("ingest", ref.path, ref.stats)


@app.command()
def clean(
    config: Annotated[Path | None, typer.Option(help="JSON file with CleanParams (thresholds, per_source, ...).")]
    = None,
    min_words: Annotated[int | None, typer.Option(help="Override the default min_words threshold.")] = None,
    languages: Annotated[str | None, typer.Option(help="Allowed languages for the default thresholds, "
                                                       "comma-separated (empty = any).")] = None,
    near_dedup: Annotated[bool, typer.Option(help="MinHash near-duplicate removal.")] = True,
) -> None:
    """Repair, filter (Gopher/C4/FineWeb), scrub PII and deduplicate corpus/raw into corpus/clean."""
    _stage_logging()
    from storage.refs import dataset_ref
    from tasks.clean.params import CleanParams
    from tasks.clean.stage import clean_corpus

    settings = _settings()
    params = _load_json_model(CleanParams, config) if config else CleanParams()
    thresholds = params.thresholds.model_copy(update={
        **({"min_words": min_words} if min_words is not None else {}),
        **({"allowed_languages": [x for x in languages.split(",") if x]} if languages is not None else {})})
    params = params.model_copy(update={"thresholds": thresholds, "dedup_near": near_dedup and params.dedup_near})
    raw = dataset_ref(settings.raw_dir, "raw corpus", "run `draftflow ingest PATH...` first")
    ref = clean_corpus(raw, settings, params)
    _print_stats("clean", ref.path, ref.stats)
    for row in ref.report:
        console.out.print(f"  {row['step']:<12} {row['documents']:>7} docs {row['megabytes']:>8} MB "
                          f"{row['seconds']:>7.2f} s  dropped {row['dropped']}  {row['reasons']}",
                          highlight=False, soft_wrap=True)


@app.command()
def tokenize(
    base_model: BaseModelOpt = None,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size (scratch).")] = 8192,
    block_size: Annotated[int, typer.Option(help="Tokens per training block.")] = 256,
) -> None:
    """Train (or reuse the base model's) tokenizer and pack corpus/clean into token blocks."""
    _stage_logging()
    from storage.refs import dataset_ref
    from tasks.models import resolve_base_model
    from tasks.tokenize.params import TokenizeParams
    from tasks.tokenize.stage import prepare_and_tokenize

    settings = _settings()
    cleaned = dataset_ref(settings.clean_dir, "clean corpus", "run `draftflow clean` first")
    base = resolve_base_model(base_model, _db())
    ref = prepare_and_tokenize(cleaned, base, settings, TokenizeParams(vocab_size=vocab_size, block_size=block_size))
    _print_stats("tokenize", ref.path, {"tokens": ref.tokens, "train_blocks": ref.train_blocks,
                                        "val_blocks": ref.val_blocks, "vocab_size": ref.tokenizer.vocab_size})


@app.command()
def finetune(
    base_model: BaseModelOpt = None,
    max_minutes: Annotated[float, typer.Option(help="Training budget in minutes.")] = 3.0,
    max_steps: Annotated[int, typer.Option(help="Training budget in optimizer steps.")] = 5000,
    run_id: Annotated[str | None, typer.Option(help="Resume this run from its last checkpoint.")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file with TrainParams (size, schedule, budget).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and batches.")] = 1234,
) -> None:
    """Train on the latest tokenized corpus and register a new model version (torchrun-ready)."""
    _stage_logging()
    from storage.runs import finish_run, start_run
    from tasks.models import resolve_base_model
    from tasks.tokenize.stage import latest_tokens
    from tasks.train.params import TrainParams
    from tasks.train.stage import train_model

    settings, db = _settings(), _db()
    tokens = latest_tokens(settings)
    base = resolve_base_model(base_model, db)
    run_id = run_id or uuid.uuid4().hex
    loaded = _load_json_model(TrainParams, config) if config else TrainParams()
    params = _validated(TrainParams, **{**loaded.model_dump(), "max_minutes": max_minutes, "max_steps": max_steps,
                                        "seed": seed})
    lead = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 records and prints
    if lead:
        start_run(db, run_id, "finetune", params.model_dump())
    with console.progress_bar("fine-tune") as progress:
        model = train_model(tokens, base, params, db, settings, run_id=run_id, progress=progress)
    if lead:
        finish_run(db, run_id, "completed", summary=model.model_dump())
        _print_stats("finetune", model.path, {"version": model.name, "steps": model.steps,
                                              "train_loss": round(model.train_loss or 0, 4),
                                              "val_loss": round(model.val_loss or 0, 4),
                                              "promoted": model.promoted})
        console.out.print(model.promotion, highlight=False)


@app.command()
def generate(
    prompts: Annotated[Path | None, typer.Option("--prompts", "-p", help="Prompts file (lines, JSONL, CSV, Parquet).")]
    = None,
    prompts_from_db: Annotated[bool, typer.Option(help="Use the prompts table instead of a file.")] = False,
    category: Annotated[str | None, typer.Option(help="With --prompts-from-db: only this category.")] = None,
    model: Annotated[str | None, typer.Option(help="Model version (v0003); default: the latest.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Resume this run: only missing drafts are made.")] = None,
    samples_per_prompt: Annotated[int, typer.Option(help="Drafts per prompt.")] = 2,
    max_new_tokens: Annotated[int, typer.Option(help="New tokens per draft at most.")] = 64,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.")] = 0.8,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Run seed.")] = 1234,
) -> None:
    """Write drafts for every prompt with a registered model and put them in the review queue."""
    _stage_logging()
    from storage.refs import ModelRef
    from storage.registry import get_model_version, latest_model_version
    from storage.runs import finish_run, start_run
    from tasks.generate.params import GenerationParams
    from tasks.generate.prompts import load_prompts, prompts_from_table
    from tasks.generate.stage import generate_drafts
    from tasks.review.stage import corpus_index, queue_run

    db = _db()
    rows = prompts_from_table(db, category) if prompts_from_db else load_prompts(prompts)
    info = get_model_version(db, model) if model else latest_model_version(db)
    if info is None:
        raise DraftflowError("no model version registered yet: run `draftflow finetune` (or `draftflow run`) first")
    params = _validated(GenerationParams, samples_per_prompt=samples_per_prompt, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p, seed=seed)
    run_id = run_id or uuid.uuid4().hex
    start_run(db, run_id, "generate", params.model_dump())
    with console.progress_bar("generate") as progress:
        result = generate_drafts(ModelRef(version_id=info.id, name=info.name, path=info.path), rows, params,
                                 db, run_id, progress=progress)
    queued = queue_run(db, run_id, corpus_index(_settings(), None))
    finish_run(db, run_id, "completed", summary=result.model_dump())
    _print_stats("generate", f"run {run_id}", {"drafts_new": result.drafts_new,
                                               "drafts_skipped": result.drafts_skipped,
                                               "queued": queued.queued, "flagged": queued.flagged,
                                               "tokens_per_second": round(result.tokens_per_second)})
    console.out.print("Review them:  [bold]draftflow review list --status pending[/]")


@app.command()
def setup(gpu_slots: Annotated[int, typer.Option(min=1, help="Fine-tunes that may run at once.")] = 1) -> None:
    """Migrate the drafts database and create the Prefect `gpu` concurrency limit."""
    from flows.prefect_env import hide_user_error_tracebacks
    from flows.setup import setup_all

    hide_user_error_tracebacks()
    done = setup_all(_settings(), gpu_slots)
    console.out.print(f"database ready: {done['database']}", highlight=False)
    limit = done["gpu_limit"]
    console.out.print(f"Prefect concurrency limit on tag '{limit['tag']}': {limit['concurrency_limit']} "
                      f"({limit['api']})", highlight=False)


@app.command("serve")
def serve_prefect(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the Prefect server (127.0.0.1).")] = 4200,
    gpu_slots: Annotated[int, typer.Option(min=1, help="Fine-tunes that may run at once.")] = 1,
    no_workers: Annotated[bool, typer.Option("--no-workers", help="Register only; start no workers.")] = False,
) -> None:
    """Start a local Prefect server, work pools, deployments (with schedules) and workers."""
    from flows.serve import serve

    done = serve(_settings(), port=port, gpu_slots=gpu_slots, workers=not no_workers)
    out = console.out
    out.print(f"Prefect UI: {done['ui']}  (API {done['api']})", highlight=False)
    out.print("deployments: " + ", ".join(done["deployments"]), highlight=False)
    out.print(f"logs and pids: {done['state']}; `draftflow stop` ends them", highlight=False)
    out.print("trigger a night now: PREFECT_API_URL=" + done["api"] + " .venv/bin/prefect deployment run "
              "draftflow-nightly/nightly --param params='{\"training\": {\"max_minutes\": 1}}'", highlight=False)


@app.command("stop")
def stop_prefect() -> None:
    """Stop the server and workers that `draftflow serve` started."""
    from flows.serve import stop

    stopped = stop(_settings())
    console.out.print("stopped " + (", ".join(stopped) if stopped else "nothing (none was running)"))


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the last runs, the model versions and the review queue."""
    from flows.status import print_status

    print_status(_db(), as_json)


def _validated(model: type[M], **values: object) -> M:
    """Build a parameter model; a bad value is a one-line user error, not a pydantic traceback."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise DraftflowError(f"invalid {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    """`field.path: message` of the first problem pydantic found."""
    first = exc.errors()[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"


def _load_json_model(model: type[M], path: Path) -> M:
    try:
        return model.model_validate_json(path.read_text())
    except OSError as exc:
        raise DraftflowError(f"cannot read '{path}': {exc.strerror}") from None
    except ValidationError as exc:
        raise DraftflowError(f"'{path}': {_first_error(exc)}") from None


def _print_stats(stage: str, where: str, stats: dict[str, object]) -> None:
    body = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in stats.items())
    console.out.print(f"[bold]{stage}[/] → {where}: {body}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry: user errors become one line on stderr and exit code 1."""
    try:
        app()
    except DraftflowError as exc:
        console.fail(str(exc))
    except ValidationError as exc:  # a parameter out of its bounds, wherever it was checked
        console.fail(f"invalid {_first_error(exc)}")
    except KeyboardInterrupt:
        console.fail("interrupted", code=130)


if __name__ == "__main__":
    main()
