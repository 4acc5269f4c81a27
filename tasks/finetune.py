"""Fine-tune: one readable PyTorch training loop over packed token blocks.

GPT-2 from a config (scratch) or any causal LM loaded with `from_pretrained` (a registered
version or a hub id / path); AdamW with warmup + cosine decay; a budget in steps and minutes,
whichever ends first; validation loss at intervals; saved with `save_pretrained` (safetensors)
and registered in `model_versions`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from storage.db import Database
from storage.errors import DraftflowError
from storage.parquet_store import count_rows, iter_batches
from storage.refs import BaseModelSpec, ModelRef, TokensRef
from storage.registry import register_model_version
from storage.settings import Settings
from tasks.base_model import load_causal_lm, load_tokenizer, quiet_transformers, tokenizer_id_of
from tasks.progress import PrefectProgress, Progress, no_progress

log = logging.getLogger("draftflow.finetune")


class TrainParams(BaseModel):
    """Model size (scratch only), optimizer and budget."""

    n_layer: int = Field(4, ge=1, le=48, description="Transformer layers (scratch).")
    n_embd: int = Field(256, ge=16, le=4096, description="Hidden size (scratch); divisible by n_head.")
    n_head: int = Field(4, ge=1, le=64, description="Attention heads (scratch).")
    batch_size: int = Field(8, ge=1, le=1024, description="Blocks per optimizer step.")
    learning_rate: float = Field(1e-3, gt=0, le=1, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine floor as a share of the peak.")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (matrices only).")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip.")
    max_steps: int = Field(5000, ge=1, description="Budget: optimizer steps.")
    max_minutes: float = Field(3.0, gt=0, description="Budget: wall-clock minutes.")
    eval_interval: int = Field(100, ge=1, description="Steps between validation evaluations.")
    eval_batches: int = Field(10, ge=1, description="Validation batches per evaluation.")
    log_interval: int = Field(10, ge=1, description="Steps between log lines.")
    seed: int = Field(1234, description="Seed for initialisation and batch sampling.")


def pick_device() -> torch.device:
    # CPU threads: one per core; two torch jobs on the same cores slow each other ~7x.
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def read_blocks(directory: Path) -> np.ndarray:
    """All blocks of a token dataset as one (n, block) array, filled batch by batch.

    Token ids are 2-4 bytes each, so this is ~3x smaller than the text it came from.
    """
    rows, arrays = count_rows(directory), []
    for batch in iter_batches(directory, columns=["input_ids"], batch_size=4096):
        column = batch.column(0)
        arrays.append(column.values.to_numpy().reshape(len(column), column.type.list_size))
    blocks = np.concatenate(arrays) if arrays else np.empty((0, 0), dtype=np.uint16)
    assert len(blocks) == rows
    return blocks


def build_model(base: BaseModelSpec, tokens: TokensRef, params: TrainParams) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    if base.kind == "scratch":
        if params.n_embd % params.n_head:
            raise DraftflowError(f"n_embd {params.n_embd} is not divisible by n_head {params.n_head}")
        eos = tokens.tokenizer.eos_id
        config = GPT2Config(vocab_size=tokens.tokenizer.vocab_size, n_positions=tokens.block_size,
                            n_embd=params.n_embd, n_layer=params.n_layer, n_head=params.n_head,
                            bos_token_id=eos, eos_token_id=eos)
        torch.manual_seed(params.seed)
        return GPT2LMHeadModel(config)
    assert base.source is not None
    base_tok = tokenizer_id_of(load_tokenizer(base.source))
    if base_tok != tokens.tokenizer.tokenizer_id:
        raise DraftflowError(f"the tokens were made with tokenizer {tokens.tokenizer.tokenizer_id}, but base model "
                             f"'{base.label}' uses {base_tok}: run `draftflow tokenize` with the same --base-model")
    model = load_causal_lm(base.source)
    max_positions = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None)
    if max_positions and tokens.block_size > max_positions:
        raise DraftflowError(f"block size {tokens.block_size} exceeds the base model's context of "
                             f"{max_positions} tokens: re-tokenize with --block-size {max_positions}")
    if tokens.tokenizer.vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(tokens.tokenizer.vocab_size)
    return model


def lr_at(step: int, params: TrainParams, total_steps: int) -> float:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak at `total_steps`."""
    peak = params.learning_rate
    if step < params.warmup_steps:
        return peak * (step + 1) / params.warmup_steps
    span = max(1, total_steps - params.warmup_steps)
    progress = min(1.0, (step - params.warmup_steps) / span)
    floor = peak * params.min_lr_ratio
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, params: TrainParams) -> torch.optim.AdamW:
    # Decay matrices only: biases and LayerNorm gains should not shrink towards zero.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": params.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=params.learning_rate, betas=(0.9, 0.95))


@torch.no_grad()
def evaluate(model: Any, blocks: np.ndarray, params: TrainParams, device: torch.device) -> float:
    """Mean loss over the first `eval_batches` validation batches (a fixed, comparable set)."""
    model.eval()
    losses = []
    for start in range(0, min(len(blocks), params.eval_batches * params.batch_size), params.batch_size):
        x = torch.from_numpy(blocks[start:start + params.batch_size].astype(np.int64)).to(device)
        with _autocast(device):
            losses.append(model(input_ids=x, labels=x).loss.item())
    model.train()
    return float(np.mean(losses))


def _autocast(device: torch.device) -> Any:
    # bf16 autocast on GPU; never on CPU, where bf16 matmuls ran ~100x slower here.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_model(tokens: TokensRef, base: BaseModelSpec, params: TrainParams, db: Database,
                settings: Settings, run_id: str | None = None,
                progress: Progress = no_progress) -> ModelRef:
    """Train within the budget, save with `save_pretrained`, register a model version."""
    device = pick_device()
    train_blocks = read_blocks(Path(tokens.path) / "train")
    val_blocks = read_blocks(Path(tokens.path) / "val")
    model = build_model(base, tokens, params).to(device)
    model.train()
    optimizer = make_optimizer(model, params)
    sampler = torch.Generator().manual_seed(params.seed)
    tokens_per_step = params.batch_size * tokens.block_size
    n_params = sum(p.numel() for p in model.parameters())
    log.info("training %s (%.2fM params) on %s: %d train / %d val blocks of %d, budget %d steps or "
             "%.1f min", base.label, n_params / 1e6, device, len(train_blocks), len(val_blocks),
             tokens.block_size, params.max_steps, params.max_minutes)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    deadline = started + params.max_minutes * 60
    step, window_loss, window_start = 0, torch.zeros((), device=device), time.perf_counter()
    last_train_loss = float("nan")
    planned_steps = params.max_steps  # re-estimated from measured step time: see below
    while step < params.max_steps and time.perf_counter() < deadline:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, params, planned_steps)
        idx = torch.randint(len(train_blocks), (params.batch_size,), generator=sampler).numpy()
        x = torch.from_numpy(train_blocks[idx].astype(np.int64)).to(device)
        with _autocast(device):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        window_loss += loss.detach()
        step += 1
        if step % params.log_interval == 0 or step == params.max_steps:
            # .item() is a device sync point: only once per logging interval
            n = params.log_interval if step % params.log_interval == 0 else step % params.log_interval
            last_train_loss = window_loss.item() / n
            elapsed = time.perf_counter() - window_start
            log.info("step %d | loss %.4f | lr %.2e | %.0f tokens/s | %.0f ms/step", step,
                     last_train_loss, optimizer.param_groups[0]["lr"], n * tokens_per_step / elapsed,
                     1000 * elapsed / n)
            history.append({"step": step, "train_loss": last_train_loss,
                            "lr": optimizer.param_groups[0]["lr"]})
            window_loss, window_start = torch.zeros((), device=device), time.perf_counter()
            # When minutes, not steps, end the run, let the cosine reach its floor at the deadline.
            per_step = (window_start - started) / step
            planned_steps = min(params.max_steps, step + int((deadline - window_start) / per_step))
        if step % params.eval_interval == 0:
            val = evaluate(model, val_blocks, params, device)
            history.append({"step": step, "val_loss": val})
            log.info("step %d | val loss %.4f | perplexity %.1f", step, val, math.exp(min(val, 50)))
        progress(step, params.max_steps, f"step {step}, loss {last_train_loss:.3f}")
    if step % params.log_interval:  # the unlogged tail of the last window
        last_train_loss = window_loss.item() / (step % params.log_interval)
    wall = time.perf_counter() - started
    val_loss = evaluate(model, val_blocks, params, device)
    stopped = "max_steps" if step >= params.max_steps else "max_minutes"
    progress(params.max_steps, params.max_steps, f"done after {step} steps ({stopped})")
    metrics = {"steps": step, "stopped_by": stopped, "train_loss": last_train_loss,
               "val_loss": val_loss, "perplexity": math.exp(min(val_loss, 50)),
               "tokens_seen": step * tokens_per_step, "wall_seconds": wall,
               "tokens_per_second": step * tokens_per_step / wall if wall else 0.0,
               "params": n_params, "device": device.type, "history": history}
    log.info("finished %d steps in %.0f s: train loss %.4f, val loss %.4f (perplexity %.1f)",
             step, wall, last_train_loss, val_loss, metrics["perplexity"])
    return _save_and_register(model, tokens, base, params, metrics, db, settings, run_id)


def _save_and_register(model: Any, tokens: TokensRef, base: BaseModelSpec, params: TrainParams,
                       metrics: dict[str, Any], db: Database, settings: Settings,
                       run_id: str | None) -> ModelRef:
    staged = settings.models_dir / f".staging-{uuid.uuid4().hex[:8]}"
    quiet_transformers()
    model.save_pretrained(staged)  # safetensors by default
    load_tokenizer(tokens.tokenizer.path).save_pretrained(staged)
    (staged / "metrics.json").write_text(json.dumps(metrics, indent=2))
    info = register_model_version(
        db, staged, settings.models_dir, base=base.label, parent_id=base.version_id, run_id=run_id,
        tokenizer_id=tokens.tokenizer.tokenizer_id, corpus_fingerprint=tokens.corpus_fingerprint,
        tokens_fingerprint=tokens.fingerprint, hyperparams=params.model_dump(),
        train_loss=metrics["train_loss"], val_loss=metrics["val_loss"],
        perplexity=metrics["perplexity"], tokens_seen=metrics["tokens_seen"],
        wall_seconds=metrics["wall_seconds"], promoted=True)
    log.info("registered model version %s at %s", info.name, info.path)
    return ModelRef(version_id=info.id, name=info.name, path=info.path,
                    train_loss=metrics["train_loss"], val_loss=metrics["val_loss"],
                    perplexity=metrics["perplexity"], tokens_seen=metrics["tokens_seen"],
                    steps=metrics["steps"], wall_seconds=metrics["wall_seconds"])


@task(name="fine_tune", tags=["gpu"], cache_policy=NO_CACHE)
def fine_tune(tokens: TokensRef, base: BaseModelSpec, params: TrainParams, settings: Settings,
              run_id: str | None = None) -> ModelRef:
    """Prefect task (tag `gpu`; no retries: a retry would restart training from zero)."""
    from storage.db import open_database

    progress = PrefectProgress("fine-tune-progress", "Fine-tuning")
    return train_model(tokens, base, params, open_database(settings.database_url), settings,
                       run_id=run_id, progress=progress)
