"""How versions are evaluated and which one is promoted."""

from __future__ import annotations

from pydantic import Field

from storage.params import Params


class EvalParams(Params):
    """The evaluation set's size (fixed when it is first made) and the promotion guards."""

    enabled: bool = Field(True, description="Evaluate each new version and promote by the evaluation.")
    documents: int = Field(
        64, ge=1, le=10_000, description="Held-out documents in the evaluation set (fixed on first use)."
    )
    max_bytes: int = Field(
        131_072, ge=1024, description="Text of the held-out documents at most, in bytes (fixed on first use)."
    )
    prompts: int = Field(12, ge=1, le=1000, description="Evaluation prompts (fixed on first use).")
    seeds: int = Field(2, ge=1, le=16, description="Drafts per evaluation prompt, each with its own fixed seed.")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="New tokens per evaluation draft.")
    bpb_tolerance: float = Field(
        0.02, ge=0, description="Promote unless bits per byte is worse than the latest's by more than this share."
    )
    preference_bpb_tolerance: float = Field(
        0.05,
        ge=0,
        description="The same for a preference-tuned version, which trades some likelihood of the corpus for "
        "what editors prefer.",
    )
    max_repetition_rise: float = Field(
        0.05, ge=0, description="Not promoted if the drafts' repetition rises by more than this (absolute)."
    )
    max_echo_rise: float = Field(
        0.10, ge=0, description="Not promoted if the share of drafts that echo their prompt rises by more."
    )
    max_empty_rise: float = Field(
        0.10, ge=0, description="Not promoted if the share of empty drafts rises by more than this."
    )
