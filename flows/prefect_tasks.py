"""Every Prefect `@task` of the pipeline, in one place: thin wrappers over the stages in `tasks/`.

A wrapper adds only what Prefect is for: a task name, caching keyed on fingerprints, retries where
I/O may pass next time, tags (`gpu`), and artifacts for the UI. The stage functions it calls import
and run without Prefect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import (
    PrefectProgress,
    publish_clean,
    publish_evaluations,
    publish_generate_samples,
    publish_training_artifacts,
)
from flows.caching import CACHE_FOR, clean_key, ingest_key, tokenize_key
from storage.db import open_database
from storage.drafts import PromptRow
from storage.errors import DraftflowError
from storage.locations import location
from storage.refs import BaseModelSpec, ChatPairsRef, DatasetRef, ModelRef, TokenizerRef, TokensRef
from storage.settings import Settings
from tasks.clean.params import CleanParams
from tasks.clean.shards import CleanShardResult, clean_shard, merge_clean_shards
from tasks.clean.stage import clean_corpus
from tasks.evaluate.params import EvalParams
from tasks.generate.params import GenerationParams
from tasks.generate.stage import GenerateResult
from tasks.ingest.params import IngestOptions
from tasks.ingest.stage import ingest_corpus
from tasks.review.feedback import write_editor_source
from tasks.review.params import CheckParams
from tasks.review.shards import CheckedRange, DraftRange, build_index, check_range
from tasks.review.stage import QueueResult, corpus_index, queue_run, return_expired_leases
from tasks.shards import Shard, worker_logging
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.params import TokenizeParams
from tasks.tokenize.shards import EncodedShard, encode_shard, pack_shards
from tasks.tokenize.stage import prepare_and_tokenize
from tasks.train.params import TrainParams
from tasks.train.preference_params import PreferenceParams

if TYPE_CHECKING:  # torch and TRL: imported when a model stage runs, not with the flow
    from tasks.evaluate.stage import Promotion
    from tasks.train.preference import PreferenceOutcome


def retry_unless_user_error(_task: Any, _task_run: Any, state: Any) -> bool:
    """`retry_condition_fn`: retry what may pass next time, never a DraftflowError (bad path, empty corpus)."""
    return not isinstance(getattr(state, "data", None), DraftflowError)


# -- Prefect timeouts derived from the stages' budgets ------------------------------------------------------


def training_timeout(max_minutes: float) -> float:
    """Fine-tune's Prefect timeout: twice its budget plus half an hour to load, evaluate and save. A
    run past it is hung (a stalled GPU, a dead NCCL peer), and the night fails instead of waiting."""
    return max_minutes * 60 * 2 + 1800


def generation_timeout(max_minutes: float) -> float:
    """Generate's Prefect timeout: the budget stops it gracefully between batches; past twice the
    budget plus 10 minutes (to load the model) a batch is hung, and the task fails."""
    return max_minutes * 60 * 2 + 600


# -- corpus stages: cached on the fingerprints of what decides their output ---------------------------------


@task(
    name="ingest",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_user_error,
    cache_key_fn=ingest_key,
    cache_expiration=CACHE_FOR,
    persist_result=True,
)
def ingest(sources: list[str], settings: Settings, options: IngestOptions) -> DatasetRef:
    """Bring `corpus/raw` up to date (retried on I/O errors, never on a user error)."""
    return ingest_corpus(sources, settings, options)


@task(name="clean", cache_key_fn=clean_key, cache_expiration=CACHE_FOR, persist_result=True)
def clean(raw: DatasetRef, settings: Settings, params: CleanParams) -> DatasetRef:
    """`corpus/raw` -> `corpus/clean` + `corpus/rejected/clean`, with a per-step table."""
    ref = clean_corpus(raw, settings, params)
    publish_clean(ref)
    return ref


@task(name="tokenize", cache_key_fn=tokenize_key, cache_expiration=CACHE_FOR, persist_result=True)
def tokenize(clean: DatasetRef, base: BaseModelSpec, settings: Settings, params: TokenizeParams) -> TokensRef:
    """Tokenizer (trained or the base model's) + packed train/val blocks."""
    return prepare_and_tokenize(clean, base, settings, params)


# -- sharded corpus stages (flows/scaleout.py): the shard tasks run on Dask workers -------------------------


@task(name="clean-shard", task_run_name="clean-shard-{shard.index}", cache_policy=NO_CACHE)
def clean_shard_task(shard: Shard, params: CleanParams) -> CleanShardResult:
    """The per-document cleaning steps on one slice of the raw corpus (on a Dask worker)."""
    worker_logging()
    return clean_shard(shard, params)


@task(name="clean-merge", cache_policy=NO_CACHE)
def merge_clean_task(
    raw: DatasetRef, shards: list[CleanShardResult], settings: Settings, params: CleanParams, profiles: dict[str, str]
) -> DatasetRef:
    """Dedup in corpus order, then the atomic commit (in the flow's process)."""
    ref = merge_clean_shards(raw, shards, settings, params, profiles)
    publish_clean(ref, sharded=True)
    return ref


@task(name="tokenizer", cache_policy=NO_CACHE)
def tokenizer_task(clean: DatasetRef, base: BaseModelSpec, settings: Settings, params: TokenizeParams) -> TokenizerRef:
    """Train the BPE once before the shards start, or take the base model's tokenizer."""
    return prepare_tokenizer(clean, base, settings, params)


@task(name="tokenize-shard", task_run_name="tokenize-shard-{shard.index}", cache_policy=NO_CACHE)
def encode_shard_task(shard: Shard, tok: TokenizerRef, params: TokenizeParams) -> EncodedShard:
    """Encode one slice of the clean corpus (on a Dask worker)."""
    worker_logging()
    return encode_shard(shard, tok, params)


@task(name="tokenize-pack", cache_policy=NO_CACHE)
def pack_task(
    clean: DatasetRef, tok: TokenizerRef, shards: list[EncodedShard], settings: Settings, params: TokenizeParams
) -> TokensRef:
    """Pack the shard streams into blocks and commit them (in the flow's process)."""
    return pack_shards(clean, tok, shards, settings, params)


# -- model stages -------------------------------------------------------------------------------------------


@task(name="fine_tune", tags=["gpu"], cache_policy=NO_CACHE)
def fine_tune(
    tokens: TokensRef,
    base: BaseModelSpec,
    params: TrainParams,
    settings: Settings,
    run_id: str | None = None,
    pairs: ChatPairsRef | None = None,
    defer_promotion: bool = False,
) -> ModelRef:
    """Tag `gpu`. No retries: a restart of the same run resumes from its checkpoint instead."""
    from tasks.train.stage import train_model  # torch: imported when a training runs

    progress = PrefectProgress("fine-tune-progress", "Fine-tuning")
    ref = train_model(
        tokens,
        base,
        params,
        open_database(settings.database_url),
        settings,
        run_id=run_id,
        progress=progress,
        pairs=pairs,
        defer_promotion=defer_promotion,
    )
    publish_training_artifacts(ref)
    return ref


@task(name="preference_tune", tags=["gpu"], cache_policy=NO_CACHE)
def preference_tune(sft: ModelRef, params: PreferenceParams, settings: Settings, run_id: str) -> PreferenceOutcome:
    """Tag `gpu`. DPO on the editors' (prompt, chosen, rejected) pairs, with the night's version as
    reference; skipped with one line when the pairs are too few or do not fit the model."""
    from tasks.train.preference import preference_tune as tune
    from tasks.train.preference import write_preference_pairs

    db = open_database(settings.database_url)
    pairs_file = settings.home / "feedback" / "preferences.parquet"
    write_preference_pairs(db, pairs_file)
    outcome = tune(sft, pairs_file, params, db, settings, run_id, PrefectProgress("preference-progress", "DPO"))
    if outcome.model is not None:
        publish_training_artifacts(outcome.model)
    return outcome


@task(name="evaluate", tags=["gpu"], cache_policy=NO_CACHE)
def evaluate(
    candidates: list[ModelRef],
    clean: DatasetRef,
    prompts_file: str | None,
    prompts_corpus: DatasetRef | None,
    params: EvalParams,
    settings: Settings,
    val_fraction: float,
) -> Promotion:
    """Tag `gpu`. The night's versions and the latest, on the home's fixed evaluation set (made from
    this corpus and the night's prompts on first use); promotion follows the evaluation."""
    from pathlib import Path

    from tasks.evaluate.eval_set import freeze_eval_set
    from tasks.evaluate.stage import evaluate_and_promote

    prompts, _ = night_prompts(prompts_file, prompts_corpus, val_fraction)
    eval_set = freeze_eval_set(settings, Path(location(clean.path)), prompts, params, val_fraction)
    db = open_database(settings.database_url)
    promotion = evaluate_and_promote(
        db,
        candidates,
        eval_set,
        params,
        corpus_index(settings, clean),
        PrefectProgress("evaluate-progress", "Evaluating"),
    )
    publish_evaluations(promotion)
    return promotion


@task(name="generate", cache_policy=NO_CACHE)
def generate(
    model: ModelRef,
    prompts_file: str | None,
    params: GenerationParams,
    settings: Settings,
    run_id: str,
    corpus: DatasetRef | None = None,
    val_fraction: float = 0.05,
) -> GenerateResult:
    """Drafts for every prompt x sample of this run that is not there yet. Prompts come from the file,
    else from `corpus` (the openings of its held-out documents) when given, else the shipped ones."""
    from tasks.generate.stage import generate_drafts

    prompts, source = night_prompts(prompts_file, corpus, val_fraction)
    result = generate_drafts(
        model,
        prompts,
        params,
        open_database(settings.database_url),
        run_id,
        progress=PrefectProgress("generate-progress", "Generating drafts"),
    )
    result.prompts_source = source
    publish_generate_samples(result.samples, result.tokens_per_second, result.drafts_new)
    return result


def night_prompts(
    prompts_file: str | None, corpus: DatasetRef | None, val_fraction: float
) -> tuple[list[PromptRow], str]:
    """(prompts, where they came from): the file, else the openings of `corpus`'s held-out
    documents when given, else the shipped ones."""
    from tasks.generate.prompts import load_prompts, prompts_from_corpus

    if prompts_file or corpus is None:
        return load_prompts(prompts_file), f"the prompts file {prompts_file or '(shipped defaults)'}"
    return prompts_from_corpus(location(corpus.path), val_fraction=val_fraction)


# -- review -------------------------------------------------------------------------------------------------


@task(name="queue_for_review", cache_policy=NO_CACHE)
def queue_for_review(
    run_id: str, settings: Settings, clean: DatasetRef | None = None, params: CheckParams | None = None
) -> QueueResult:
    """This run's generated drafts are checked and enter the editors' queue."""
    return queue_run(open_database(settings.database_url), run_id, corpus_index(settings, clean), params)


@task(name="ngram-index", cache_policy=NO_CACHE)
def build_index_task(settings: Settings, clean: DatasetRef | None) -> bool:
    """The originality index, built once (in the flow's process) for every check shard to load."""
    return build_index(settings, clean)


@task(name="check-shard", task_run_name="check-shard-{part.index}", cache_policy=NO_CACHE)
def check_range_task(
    part: DraftRange, settings: Settings, clean: DatasetRef | None, params: CheckParams
) -> CheckedRange:
    """Check and queue one id range of the run's drafts (on a Dask worker)."""
    worker_logging()
    return check_range(part, settings, clean, params)


@task(name="sweep_leases", cache_policy=NO_CACHE)
def sweep_leases(settings: Settings) -> int:
    """Drafts whose editor's lease expired go back to their queue."""
    return return_expired_leases(open_database(settings.database_url))


@task(name="editor_feedback", cache_policy=NO_CACHE)
def editor_feedback(settings: Settings) -> str | None:
    """Export the approved drafts as the `editor-approved` corpus source."""
    return write_editor_source(settings)
