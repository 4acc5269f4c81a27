"""Generate: batched, left-padded sampling from a registered model; one draft row per sample.

Drafts are written after each batch, and (run, prompt, sample) is unique: a run started again
generates only the drafts it is missing and never duplicates one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field
from transformers import AutoConfig

from storage.db import Database
from storage.drafts import PromptRow, existing_samples, insert_drafts, upsert_prompts
from storage.fingerprint import fingerprint
from storage.refs import ModelRef
from storage.settings import Settings
from tasks.base_model import load_causal_lm, load_tokenizer
from tasks.finetune import pick_device
from tasks.progress import PrefectProgress, Progress, no_progress

log = logging.getLogger("draftflow.generate")


class GenerationParams(BaseModel):
    """Sampling parameters; every draft records the ones it was made with."""

    samples_per_prompt: int = Field(2, ge=1, le=100, description="Drafts per prompt.")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="New tokens per draft at most.")
    temperature: float = Field(0.8, ge=0, le=5, description="0 means greedy decoding.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    batch_size: int = Field(16, ge=1, le=1024, description="Prompts per generate call.")
    seed: int = Field(1234, description="Run seed; each batch's seed is derived from it.")

    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens}


@dataclass
class _Job:
    prompt: PromptRow
    prompt_id: int
    sample_index: int
    n_tokens: int


class GenerateResult(BaseModel):
    run_id: str
    model_version: str
    prompts: int
    drafts_new: int
    drafts_skipped: int
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


def batch_seed(run_seed: int, sample_index: int, keys: Sequence[str]) -> int:
    """A batch's seed from the run seed and what is in the batch (recorded on each draft)."""
    return int(fingerprint(run_seed, sample_index, list(keys))[:8], 16) & 0x7FFFFFFF


def generate_drafts(model_ref: ModelRef, prompts: Sequence[PromptRow], params: GenerationParams,
                    db: Database, run_id: str, progress: Progress = no_progress) -> GenerateResult:
    """Generate every missing (prompt, sample) draft for `run_id` and store it as `generated`."""
    started = time.perf_counter()
    device = pick_device()
    tokenizer = load_tokenizer(model_ref.path)
    tokenizer.padding_side = "left"  # decoder-only: pad on the left so new tokens follow the prompt
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = AutoConfig.from_pretrained(model_ref.path)
    context = getattr(config, "n_positions", None) or config.max_position_embeddings
    max_prompt = max(1, context - params.max_new_tokens - 1)

    ids = upsert_prompts(db, prompts)
    done = existing_samples(db, run_id)
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = {p.key: [start_id, *tokenizer(p.text, add_special_tokens=False)["input_ids"][-max_prompt:]]
               for p in prompts}
    jobs = [_Job(p, ids[p.key], s, len(encoded[p.key]))
            for s in range(params.samples_per_prompt) for p in prompts if (ids[p.key], s) not in done]
    skipped = len(prompts) * params.samples_per_prompt - len(jobs)
    # Deterministic plan: per sample index, prompts sorted by length so a batch pads little.
    jobs.sort(key=lambda j: (j.sample_index, j.n_tokens, j.prompt.key))
    new_drafts = new_tokens = 0
    model = load_causal_lm(model_ref.path).to(device).eval() if jobs else None
    for start in range(0, len(jobs), params.batch_size):
        batch = jobs[start:start + params.batch_size]
        rows, tokens = _generate_batch(model, tokenizer, batch, encoded, params, pad_id, device,
                                       run_id, model_ref.version_id)
        new_drafts += insert_drafts(db, rows)
        new_tokens += tokens
        progress(start + len(batch), len(jobs), f"{new_drafts} drafts")
    seconds = time.perf_counter() - started
    result = GenerateResult(run_id=run_id, model_version=model_ref.name, prompts=len(prompts),
                            drafts_new=new_drafts, drafts_skipped=skipped, new_tokens=new_tokens,
                            seconds=seconds)
    log.info("generated %d drafts (%d already there) with %s: %d new tokens, %.0f tokens/s",
             new_drafts, skipped, model_ref.name, new_tokens, result.tokens_per_second)
    return result


@torch.no_grad()
def _generate_batch(model: Any, tokenizer: Any, batch: list[_Job], encoded: dict[str, list[int]],
                    params: GenerationParams, pad_id: int, device: torch.device, run_id: str,
                    model_version_id: int) -> tuple[list[dict[str, Any]], int]:
    seqs = [encoded[j.prompt.key] for j in batch]
    width = max(map(len, seqs))
    input_ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in seqs], device=device)
    attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
    seed = batch_seed(params.seed, batch[0].sample_index, [j.prompt.key for j in batch])
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p} \
        if params.temperature > 0 else {"do_sample": False}
    output = model.generate(input_ids=input_ids, attention_mask=attention,
                            max_new_tokens=params.max_new_tokens, pad_token_id=pad_id,
                            eos_token_id=tokenizer.eos_token_id, **sampling)
    rows, total = [], 0
    for job, row in zip(batch, output[:, width:].tolist(), strict=True):
        stopped = tokenizer.eos_token_id in row
        new = row[: row.index(tokenizer.eos_token_id)] if stopped else row
        total += len(new)
        text = (job.prompt.text + tokenizer.decode(new, skip_special_tokens=True)).strip()
        rows.append({"run_id": run_id, "model_version_id": model_version_id, "prompt_id": job.prompt_id,
                     "sample_index": job.sample_index, "original_text": text, "current_text": text,
                     "params": params.sampling(), "seed": seed,
                     "scores": {"new_tokens": len(new), "prompt_tokens": job.n_tokens,
                                "stopped_at_eos": stopped}})
    return rows, total


@task(name="generate", cache_policy=NO_CACHE)
def generate(model: ModelRef, prompts_file: str | None, params: GenerationParams, settings: Settings,
             run_id: str) -> GenerateResult:
    """Prefect task: drafts for every prompt x sample of this run that is not there yet."""
    from storage.db import open_database
    from tasks.prompts import load_prompts

    prompts = load_prompts(Path(prompts_file) if prompts_file else None)
    return generate_drafts(model, prompts, params, open_database(settings.database_url), run_id,
                           progress=PrefectProgress("generate-progress", "Generating drafts"))
