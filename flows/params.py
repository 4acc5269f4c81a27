"""The nightly flow's one parameter model: the Prefect UI renders it as a form with defaults."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from storage.params import Params
from tasks.clean.params import CleanParams
from tasks.evaluate.params import EvalParams
from tasks.generate.params import GenerationParams
from tasks.ingest.params import IngestOptions
from tasks.review.params import CheckParams
from tasks.tokenize.params import TokenizeParams
from tasks.train.params import TrainParams
from tasks.train.preference_params import PreferenceParams

DEFAULT_CORPUS = "python-stdlib-docs"


class ScaleParams(Params):
    """Sharding of the CPU-heavy stages (clean, tokenize, draft checks) over a Dask cluster."""

    shards: int = Field(
        1, ge=1, le=4096, description="1 runs each stage in this process; more splits it into shards run on Dask."
    )
    dask_address: str | None = Field(
        None, description="An existing Dask scheduler (tcp://host:8786); empty = a local cluster when shards > 1."
    )
    workers: int | None = Field(None, ge=1, le=256, description="Workers of the local cluster; empty = one per core.")


class NightlyParams(Params):
    """Everything a nightly run needs; each section belongs to one stage."""

    corpus: list[str] = Field(
        default_factory=lambda: [DEFAULT_CORPUS],
        description="Files, folders (`NAME=PATH` names the source) or 'python-stdlib-docs'.",
    )
    ingest: IngestOptions = Field(default_factory=IngestOptions)
    learn_from_editors: bool = Field(
        True, description="Add the drafts editors approved on earlier nights to the corpus (source editor-approved)."
    )
    prompts_file: str | None = Field(
        None,
        description="Prompts file (lines or JSONL); empty = the openings of held-out documents of your corpus "
        "(the shipped prompts for the embedded corpus).",
    )
    base_model: str | None = Field(
        None,
        description="Empty: continue from the latest model version (scratch if none). "
        "'scratch', a version (v0003), a local folder or a hub id.",
    )
    home: str | None = Field(None, description="Data home; empty = DRAFTFLOW_HOME or ~/.draftflow.")
    run_id: str | None = Field(
        None,
        description="Start a killed run again under its id: fine-tune resumes from its checkpoint and only "
        "the missing drafts are written; empty = this flow run's id.",
    )
    clean: CleanParams = Field(default_factory=CleanParams)
    tokenize: TokenizeParams = Field(default_factory=TokenizeParams)
    training: TrainParams = Field(default_factory=TrainParams)
    preference: PreferenceParams = Field(default_factory=PreferenceParams)
    evaluation: EvalParams = Field(default_factory=EvalParams)
    generation: GenerationParams = Field(default_factory=GenerationParams)
    checks: CheckParams = Field(default_factory=CheckParams)
    scale: ScaleParams = Field(default_factory=ScaleParams)
    finetune_deployment: str | None = Field(
        None,
        description="Run fine-tuning as this deployment (e.g. draftflow-finetune/finetune-gpu, on the gpu "
        "work pool) and wait for it; empty = in this flow's process.",
    )


class RunSummary(BaseModel):
    """What a nightly run did, stage by stage (printed by the CLI, stored in `runs.summary`)."""

    model_config = ConfigDict(protected_namespaces=())  # fields named model_*: ours, not pydantic's

    run_id: str
    home: str
    documents_ingested: int
    documents_kept: int
    documents_rejected: int
    rejected_by_reason: dict[str, int]
    files: dict[str, int]  # new / changed / unchanged / removed since the last run
    editor_approved_source: str | None = None  # the editor-approved source ingested this night
    editor_chat_pairs: str | None = None  # or, for a chat model, the approved drafts trained as pairs
    recovered: dict[str, Any] = Field(default_factory=dict)  # what killed runs left, found and finished
    cached_stages: list[str] = Field(default_factory=list)  # corpus stages skipped: unchanged inputs
    sample_drafts: list[dict[str, str]] = Field(default_factory=list)  # a few (prompt, draft) pairs
    leases_expired: int = 0  # claims swept back to the queue at the start of the night
    clean_steps: list[dict[str, Any]]  # per cleaning step: documents, megabytes, seconds, drops
    profiles: dict[str, str] = Field(default_factory=dict)  # each source's cleaning profile, and why
    prompts: str = ""  # where the night's prompts came from
    warnings: list[str] = Field(default_factory=list)  # sources that lost most of their documents in cleaning
    corpus_fingerprint: str
    tokens: int
    train_blocks: int
    val_blocks: int
    val_split: str = "documents"  # "blocks" when the documents were too few to split by document
    tokenizer_id: str
    base_model: str
    model_version: str
    model_path: str
    train_steps: int
    model_promoted: bool
    promotion: str
    drafts_model_version: str = ""  # the version that wrote tonight's drafts: the promoted one
    preference: dict[str, Any] = Field(default_factory=dict)  # preference tuning: version, pairs, metrics or why not
    evaluation: dict[str, dict[str, Any]] = Field(default_factory=dict)  # version -> bits per byte, draft metrics
    train_loss: float | None
    val_loss: float | None
    perplexity: float | None
    drafts_generated: int
    drafts_queued: int
    drafts_flagged: int
    flags: dict[str, int]
    generate_tokens_per_second: float
    queue: dict[str, int]
    seconds: dict[str, float]
