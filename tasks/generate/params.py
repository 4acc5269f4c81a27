"""The generate stage's parameters: run defaults that a prompt file may override per prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from storage.drafts import PromptRow
from storage.params import Params


@dataclass
class SampleSettings:
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0  # CTRL-style: > 1 discourages tokens already in the sequence
    max_new_tokens: int = 64
    min_new_tokens: int = 0  # EOS is suppressed until this many tokens exist
    stop: list[str] = field(default_factory=list)


OVERRIDABLE = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "min_new_tokens", "stop")


class GenerationParams(Params):
    """Run defaults; a prompt file's fields of the same names override them per prompt."""

    samples_per_prompt: int = Field(2, ge=1, le=100, description="Drafts per prompt.")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="New tokens per draft at most.")
    min_new_tokens: int = Field(0, ge=0, le=4096, description="EOS is not allowed before this many tokens.")
    temperature: float = Field(0.8, ge=0, le=5, description="0 means greedy decoding.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Sample among the k likeliest tokens; 0 is off.")
    repetition_penalty: float = Field(1.0, ge=1, le=5, description="> 1 discourages repeating tokens.")
    stop: list[str] = Field(default_factory=list, description="Stop strings: generation ends there, trimmed.")
    template: str = Field("{text}", description="Model input built from the prompt: {text} and {category}.")
    chat: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Render prompts through the tokenizer's chat template (auto: when it has one); the draft "
        "is the assistant's answer, ended at the template's end-of-turn token.",
    )
    system_prompt: str = Field("", description="With chat: the system turn before every prompt (empty: none).")
    system_prompts: dict[str, str] = Field(
        default_factory=dict, description="With chat: a system turn per prompt category, over system_prompt."
    )
    engine: Literal["auto", "torch", "vllm"] = Field(
        "auto",
        description="torch: our KV-cache loop (exact replays); vllm: vLLM on a CUDA GPU (the vllm extra); "
        "auto: vllm where CUDA and vLLM are, torch otherwise.",
    )
    merge_lora: bool = Field(
        True, description="Torch engine, LoRA version: merge the adapter into the base weights (faster to run)."
    )
    batch_size: int | None = Field(
        None, ge=1, le=4096, description="Prompts per batch; empty = 32 on CPU, 128 on a GPU, 1024 with vLLM."
    )
    max_minutes: float = Field(
        120,
        gt=0,
        le=7 * 24 * 60,
        description="Generation stops after this many minutes; the drafts written are kept and a run started "
        "again under its id writes the rest. Prefect times the task out at twice this plus 10 minutes.",
    )
    seed: int = Field(1234, description="Run seed; each draft's seed derives from it, the prompt and the sample.")

    def system_for(self, prompt: PromptRow) -> str | None:
        return self.system_prompts.get(prompt.category or "", self.system_prompt) or None

    def settings_for(self, prompt: PromptRow) -> SampleSettings:
        values = {k: getattr(self, k) for k in OVERRIDABLE} | {
            k: v for k, v in prompt.params.items() if k in OVERRIDABLE
        }
        return SampleSettings(**values)
