"""Generate: batched sampling with a KV cache from a registered model; one draft row per sample.

Prompts are bucketed by length, finished sequences leave the batch (tasks/generate/sampling.py), and each
draft samples with its own seed derived from the run seed, the prompt and the sample index, so a
stored draft can be regenerated from its recorded parameters. Drafts are written after each
batch and (run, prompt, sample) is unique: a run started again makes only the missing drafts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from storage.db import Database
from storage.drafts import PromptRow, existing_samples, insert_drafts, upsert_prompts
from storage.errors import DraftflowError
from storage.fingerprint import fingerprint
from storage.refs import ModelRef
from tasks.chat import end_of_turn_ids, render_chat, use_chat
from tasks.generate.engines import Engine, TorchEngine, VllmEngine, pick_engine
from tasks.generate.params import OVERRIDABLE, GenerationParams, SampleSettings
from tasks.generate.sampling import Output, Request
from tasks.models import (
    context_length,
    load_causal_lm,
    load_config,
    load_tokenizer,
    pick_device,
    weights_dtype,
)
from tasks.progress import Progress, no_progress

log = logging.getLogger("draftflow.generate")


def draft_seed(run_seed: int, prompt_key: str, sample_index: int) -> int:
    """The seed of one draft: the same run seed, prompt and sample always sample the same way."""
    return int(fingerprint(run_seed, prompt_key, sample_index)[:8], 16) & 0x7FFFFFFF


@dataclass
class _Job:
    prompt: PromptRow
    prompt_id: int
    sample_index: int
    input_ids: list[int]
    max_new_tokens: int
    fitted: str = ""  # "clamped" or "truncated" when the prompt and the new tokens did not fit the context


MIN_NEW_TOKENS = 16  # below this, a draft's room is not worth clamping to: the prompt's head is cut instead


def fit_to_context(ids: list[int], max_new_tokens: int, context: int | None) -> tuple[list[int], int, str]:
    """(prompt ids, new tokens, what was done) so that prompt + new tokens fit the model's context.

    A prompt that leaves too little room has its new tokens clamped to the room left (down to
    MIN_NEW_TOKENS); a prompt longer than that keeps its tail. Nothing is cut silently: the caller
    records and reports the third value ("", "clamped" or "truncated").
    """
    if context is None or len(ids) + max_new_tokens <= context:
        return ids, max_new_tokens, ""
    room = context - len(ids)
    if room >= MIN_NEW_TOKENS:
        return ids, room, "clamped"
    new = min(max_new_tokens, MIN_NEW_TOKENS)
    return ids[len(ids) - (context - new) :], new, "truncated"


class GenerateResult(BaseModel):
    model_config = ConfigDict(protected_namespaces=())  # fields named model_*: ours, not pydantic's

    run_id: str
    model_version: str
    prompts: int
    drafts_new: int
    drafts_skipped: int
    new_tokens: int
    seconds: float
    samples: list[dict[str, Any]] = Field(default_factory=list)  # a few drafts for the run report
    prompts_source: str = ""  # where the prompts came from, for the run summary
    clamped: int = 0  # drafts whose new tokens were clamped to the room the prompt left in the context
    truncated: int = 0  # drafts whose prompt lost its head to fit the context
    left_at_budget: int = 0  # drafts not written because generation reached its max_minutes

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


def render_input(template: str, prompt: PromptRow) -> str:
    return template.format(text=prompt.text, category=prompt.category or "text")


def generate_drafts(
    model_ref: ModelRef,
    prompts: Sequence[PromptRow],
    params: GenerationParams,
    db: Database,
    run_id: str,
    progress: Progress = no_progress,
    model: Any = None,
) -> GenerateResult:
    """Generate every missing (prompt, sample) draft for `run_id` and store it as `generated`.

    `model` may be the version's model already loaded (a caller generating several runs); by
    default it is loaded from the registry folder.
    """
    started = time.perf_counter()
    device = pick_device() if model is None else next(model.parameters()).device
    tokenizer = load_tokenizer(model_ref.path)
    config = load_config(model_ref.path)
    context = context_length(config)
    check_room(params, prompts, context, model_ref.name)
    engine_name = "torch" if model is not None else pick_engine(params.engine, device.type == "cuda")
    chat = use_chat(tokenizer, params.chat, model_ref.name)
    end_ids = end_of_turn_ids(tokenizer, model_ref.path) if chat else frozenset()
    ids = upsert_prompts(db, prompts)
    done = existing_samples(db, run_id)
    jobs = []
    for s in range(params.samples_per_prompt):
        for p in prompts:
            if (ids[p.key], s) not in done:
                input_ids = encode_prompt(
                    tokenizer, params.template, p, system=params.system_for(p), chat=chat, model_name=model_ref.name
                )
                fitted = fit_to_context(input_ids, params.settings_for(p).max_new_tokens, context)
                jobs.append(_Job(p, ids[p.key], s, *fitted))
    skipped = len(prompts) * params.samples_per_prompt - len(jobs)
    fits = Counter(j.fitted for j in jobs if j.fitted)
    if fits:
        log.warning(
            "%d drafts had their new tokens clamped and %d their prompt's head cut to fit %s's context of %d tokens",
            fits["clamped"],
            fits["truncated"],
            model_ref.name,
            context,
        )
    # Bucketing: jobs sorted by prompt length, so a batch pads little; the order is deterministic.
    jobs.sort(key=lambda j: (len(j.input_ids), j.prompt.key, j.sample_index))
    engine = _engine(engine_name, model_ref.path, tokenizer, params, device, model) if jobs else None
    new_drafts = new_tokens = 0
    samples: list[dict[str, Any]] = []
    default_batch = 1024 if engine and engine.name == "vllm" else 128 if device.type == "cuda" else 32
    batch_size = params.batch_size or default_batch
    deadline = time.monotonic() + params.max_minutes * 60
    left = 0
    for start in range(0, len(jobs), batch_size):
        if time.monotonic() > deadline:
            left = len(jobs) - start
            log.warning(
                "generation stopped at its budget of %g minutes with %d drafts left: start the run again under its "
                "id to write them",
                params.max_minutes,
                left,
            )
            break
        batch = jobs[start : start + batch_size]
        assert engine is not None
        rows, tokens = _generate_batch(engine, tokenizer, batch, params, run_id, model_ref.version_id, chat, end_ids)
        new_drafts += insert_drafts(db, rows)
        new_tokens += tokens
        if rows:
            samples.append({"prompt": batch[0].prompt.text[:60], "draft": rows[0]["current_text"][:160]})
        progress(start + len(batch), len(jobs), f"{new_drafts} drafts")
    seconds = time.perf_counter() - started
    result = GenerateResult(
        run_id=run_id,
        model_version=model_ref.name,
        prompts=len(prompts),
        drafts_new=new_drafts,
        drafts_skipped=skipped,
        new_tokens=new_tokens,
        seconds=seconds,
        samples=samples[:8],
        clamped=fits["clamped"],
        truncated=fits["truncated"],
        left_at_budget=left,
    )
    log.info(
        "generated %d drafts (%d already there) with %s: %d new tokens, %.0f tokens/s",
        new_drafts,
        skipped,
        model_ref.name,
        new_tokens,
        result.tokens_per_second,
    )
    return result


def _engine(name: str, path: str, tokenizer: Any, params: GenerationParams, device: Any, model: Any = None) -> Engine:
    """The engine named (pick_engine checked it can run here); a model the caller loaded runs on torch."""
    if name == "vllm":
        return VllmEngine(path, tokenizer, params.seed)
    if model is None:
        frozen = weights_dtype("auto", device, frozen=True)  # bf16 on a GPU that has it: nothing trains here
        model = load_causal_lm(path, dtype=frozen, merge_adapter=params.merge_lora).to(device).eval()
    return TorchEngine(model, tokenizer, device)


def _generate_batch(
    engine: Engine,
    tokenizer: Any,
    batch: list[_Job],
    params: GenerationParams,
    run_id: str,
    model_version_id: int,
    chat: bool,
    end_ids: frozenset[int],
) -> tuple[list[dict[str, Any]], int]:
    requests = [
        Request(
            j.input_ids,
            replace(params.settings_for(j.prompt), max_new_tokens=j.max_new_tokens),
            draft_seed(params.seed, j.prompt.key, j.sample_index),
        )
        for j in batch
    ]
    outputs = engine.decode(requests, end_ids)
    # The batch is part of the record: on a GPU, batched matmuls round differently from single
    # ones, so a draft regenerates exactly only in its own batch (regenerate_draft replays it).
    batch_id = fingerprint(run_id, [(j.prompt.key, j.sample_index) for j in batch])[:16]
    rows, total = [], 0
    for position, (job, request, out) in enumerate(zip(batch, requests, outputs, strict=True)):
        new = out.ids[:-1] if out.stopped == "eos" else out.ids
        total += len(out.ids)
        text = draft_text(tokenizer, "" if chat else job.prompt.text, out, request.settings.stop)
        settings = request.settings
        rows.append(
            {
                "run_id": run_id,
                "model_version_id": model_version_id,
                "prompt_id": job.prompt_id,
                "category": job.prompt.category,
                "sample_index": job.sample_index,
                "original_text": text,
                "current_text": text,
                "params": {k: getattr(settings, k) for k in OVERRIDABLE}
                | {"template": params.template, "batch": {"id": batch_id, "position": position}}
                | ({"chat": True, "system": params.system_for(job.prompt)} if chat else {}),
                "seed": request.seed,
                "engine": engine.name,
                "scores": {
                    "new_tokens": len(new),
                    "prompt_tokens": len(job.input_ids),
                    "stopped": out.stopped,
                    "stopped_at_eos": out.stopped == "eos",
                    **({"fitted_to_context": job.fitted} if job.fitted else {}),
                },
            }
        )
    return rows, total


def encode_prompt(
    tokenizer: Any,
    template: str,
    prompt: PromptRow,
    system: str | None = None,
    chat: bool = False,
    model_name: str = "the model",
) -> list[int]:
    """Model input ids for the templated prompt (fit_to_context fits them).

    With `chat`, the prompt is the user's turn of the chat template (after `system`, if any). Otherwise
    it starts as a training document does: tokenize encodes each document with the tokenizer's special
    tokens and ends it with EOS, so a prompt is encoded the same way, without a closing EOS, after the
    EOS that ended the document before it. A tokenizer that adds BOS (Llama, Mistral) gives BOS + prompt."""
    if chat:
        return render_chat(tokenizer, render_input(template, prompt), system, model_name)
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    ids = list(tokenizer(render_input(template, prompt), add_special_tokens=True)["input_ids"])
    if len(ids) > 1 and ids[-1] == eos:  # a post-processor that closes every text with EOS
        ids = ids[:-1]
    if bos is not None and bos != eos and ids and ids[0] == bos:
        return ids
    return [eos, *ids]


def check_room(params: GenerationParams, prompts: Sequence[PromptRow], context: int | None, model: str) -> None:
    """A max_new_tokens that leaves no room for any prompt is the user's mistake: one line, not a silent cut."""
    if context is None:
        return
    for prompt in prompts:
        wanted = params.settings_for(prompt).max_new_tokens
        if wanted >= context:
            raise DraftflowError(
                f"--max-new-tokens {wanted} leaves no room for the prompt: {model} reads at most {context} tokens "
                f"(prompt and draft together); ask for at most {context - MIN_NEW_TOKENS} "
                f"(generation.max_new_tokens in a --config file)"
            )


def draft_text(tokenizer: Any, prompt_text: str, out: Output, stop: list[str]) -> str:
    """The draft as editors see it: the prompt (none for a chat answer), then the continuation cut at
    EOS (or end-of-turn) or a stop string."""
    new = out.ids[:-1] if out.stopped == "eos" else out.ids
    return (prompt_text + _trim_stop(tokenizer.decode(new, skip_special_tokens=True), stop)).strip()


def regenerate_draft(db: Database, draft_id: int, alone: bool = False) -> str:
    """Generate a stored draft again from its recorded model version, prompt, parameters and seed.

    By default the draft's whole original batch is replayed (same drafts, same order), which gives
    the same text on a GPU too; `alone=True` generates only this draft, which is exact on a CPU.
    """
    from storage.drafts import batch_members, get_draft
    from storage.registry import get_model_version

    draft, _, _ = get_draft(db, draft_id)
    batch = draft.params.get("batch")
    members = batch_members(db, draft.run_id, batch["id"]) if batch and not alone else []
    if not any(d.id == draft_id for d, _ in members):  # drafts written before batches were recorded
        members = [(draft, get_draft(db, draft_id)[1])]
    version = get_model_version(db, draft.model_version_id)
    tokenizer = load_tokenizer(version.path)
    context = context_length(load_config(version.path))
    requests = []
    for member, prompt in members:
        settings = SampleSettings(**{k: v for k, v in member.params.items() if k in OVERRIDABLE})
        row = PromptRow(key="", text=prompt.text, category=prompt.category, source=prompt.source)
        # the recorded max_new_tokens is the fitted one: fitting again gives the same prompt ids
        chat = bool(member.params.get("chat"))
        encoded = encode_prompt(
            tokenizer, member.params.get("template", "{text}"), row, member.params.get("system"), chat, version.name
        )
        ids, _, _ = fit_to_context(encoded, settings.max_new_tokens, context)
        requests.append(Request(ids, settings, member.seed))
    device = pick_device()
    name = pick_engine(draft.engine, device.type == "cuda")  # the engine that wrote it, or one line why not
    engine = _engine(name, version.path, tokenizer, GenerationParams(), device)
    chat = bool(draft.params.get("chat"))
    end_ids = end_of_turn_ids(tokenizer, version.path) if chat else frozenset()
    outputs = engine.decode(requests, end_ids)
    index = next(i for i, (member, _) in enumerate(members) if member.id == draft_id)
    prompt_text = "" if chat else members[index][1].text
    return draft_text(tokenizer, prompt_text, outputs[index], requests[index].settings.stop)


def _trim_stop(text: str, stops: list[str]) -> str:
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text
