"""The training loop: one readable function, nanoGPT-style, with the machinery a real run needs.

AdamW with warmup + cosine decay, gradient accumulation to a target tokens-per-step, gradient
clipping, a budget in steps / tokens / minutes (whichever ends first), periodic validation with
early stopping and the best weights kept, checkpoints to resume a killed run, and DDP when the
model is wrapped in DistributedDataParallel.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from tasks.progress import Progress, no_progress
from tasks.train.checkpoints import Checkpointer, LoopState
from tasks.train.params import TrainParams

log = logging.getLogger("draftflow.finetune")


def decay_progress(step: int, params: TrainParams, total_steps: int) -> float:
    """How far along the cosine `step` is when the run ends at `total_steps` (0 to 1)."""
    span = max(1, total_steps - params.warmup_steps)
    return min(1.0, max(0.0, (step - params.warmup_steps) / span))


def lr_at(step: int, params: TrainParams, total_steps: int, at_least: float = 0.0) -> float:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak at `total_steps`. `at_least` is
    the progress already reached: a plan that grows (a minutes budget re-estimated) never sends the
    rate back up."""
    peak = params.learning_rate
    if step < params.warmup_steps:
        return peak * (step + 1) / params.warmup_steps
    progress = max(at_least, decay_progress(step, params, total_steps))
    floor = peak * params.min_lr_ratio
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, params: TrainParams) -> torch.optim.AdamW:
    # Decay matrices only: biases and LayerNorm gains should not shrink towards zero.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused CUDA kernel updates every tensor in one launch; the CPU keeps the default (foreach)
    fused = bool(decay) and decay[0].is_cuda
    return torch.optim.AdamW(groups, lr=params.learning_rate, betas=(0.9, 0.95), fused=fused or None)


def autocast(device: torch.device) -> Any:
    # bf16 autocast on GPU; never on CPU, where bf16 matmuls ran ~100x slower here.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def evaluate(model: Any, blocks: np.ndarray, params: TrainParams, device: torch.device) -> float:
    """Mean loss over the first `eval_batches` validation batches (a fixed, comparable set)."""
    model.eval()
    losses = []
    for start in range(0, min(len(blocks), params.eval_batches * params.batch_size), params.batch_size):
        x = torch.from_numpy(blocks[start : start + params.batch_size].astype(np.int64)).to(device)
        with autocast(device):
            losses.append(model(input_ids=x, labels=x).loss.item())
    model.train()
    return float(np.mean(losses))


def train_loop(
    model: Any,
    train_blocks: np.ndarray,
    val_blocks: np.ndarray,
    params: TrainParams,
    device: torch.device,
    checkpoints: Checkpointer | None = None,
    progress: Progress = no_progress,
    rank: int = 0,
    train_masks: np.ndarray | None = None,
) -> tuple[LoopState, str]:
    """Train until a budget ends or early stopping; return the final state and what stopped it.

    `train_masks` (the shape of `train_blocks`, 1 where the loss counts) leaves tokens out of the loss:
    the prompt of a chat pair. Without it every token counts."""
    block_size = train_blocks.shape[1]
    accumulation = params.accumulation(block_size)
    tokens_per_step = params.batch_size * block_size * accumulation
    max_steps = params.max_steps
    if params.max_tokens:
        max_steps = min(max_steps, math.ceil(params.max_tokens / tokens_per_step))
    optimizer = make_optimizer(model, params)
    sampler = torch.Generator().manual_seed(params.seed + rank)  # each DDP rank draws its own batches
    state = (checkpoints.restore(model, optimizer, sampler) if checkpoints else None) or LoopState()
    if state.resumed_from is not None:
        log.info("resuming from the checkpoint at step %d (%.0f s trained before)", state.step, state.elapsed)
    state.planned_steps = state.planned_steps or max_steps
    started = time.perf_counter()
    deadline = started + params.max_minutes * 60 - state.elapsed
    window_loss, window_start, window_steps = torch.zeros((), device=device), time.perf_counter(), 0
    stopped = ""
    while not stopped:
        if state.step >= max_steps:
            stopped = "max_tokens" if max_steps < params.max_steps else "max_steps"
            break
        if _agreed(time.perf_counter() >= deadline, device):  # every rank stops at the same step
            stopped = "max_minutes"
            break
        lr = lr_at(state.step, params, state.planned_steps, state.decay_progress)
        if state.step >= params.warmup_steps:
            state.decay_progress = max(state.decay_progress, decay_progress(state.step, params, state.planned_steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        for micro in range(accumulation):
            idx = torch.randint(len(train_blocks), (params.batch_size,), generator=sampler).numpy()
            x = torch.from_numpy(train_blocks[idx].astype(np.int64)).to(device)
            labels = x
            if train_masks is not None:  # -100: the label cross-entropy ignores
                labels = x.masked_fill(torch.from_numpy(train_masks[idx] == 0).to(device), -100)
            # DDP: all-reduce gradients only on the last micro-batch of a step
            sync = nullcontext() if micro == accumulation - 1 or not hasattr(model, "no_sync") else model.no_sync()
            with sync, autocast(device):
                loss = model(input_ids=x, labels=labels).loss / accumulation
                loss.backward()
            window_loss += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens_seen += tokens_per_step
        window_steps += 1
        if state.step % params.log_interval == 0 or state.step == max_steps:
            # .item() is a device sync point: only once per logging interval
            state.last_train_loss = window_loss.item() / window_steps
            elapsed = time.perf_counter() - window_start
            log.info(
                "step %d | loss %.4f | lr %.2e | %.0f tokens/s | %.0f ms/step",
                state.step,
                state.last_train_loss,
                lr,
                window_steps * tokens_per_step / elapsed,
                1000 * elapsed / window_steps,
            )
            state.history.append({"step": state.step, "train_loss": state.last_train_loss, "lr": lr})
            window_loss, window_start, window_steps = torch.zeros((), device=device), time.perf_counter(), 0
            # When minutes, not steps, end the run, let the cosine reach its floor at the deadline: the
            # steps that fit, from the mean step time of the whole run (earlier processes included).
            # Rank 0's plan is every rank's, so the learning rates agree.
            per_step = (state.elapsed + window_start - started) / max(1, state.step)
            planned = min(max_steps, state.step + int((deadline - window_start) / max(per_step, 1e-9)))
            state.planned_steps = _from_rank0(planned, device)
        if state.step % params.eval_interval == 0:
            stopped = _evaluate_and_maybe_stop(model, val_blocks, params, device, state, checkpoints, rank)
        if checkpoints and state.step % params.checkpoint_interval == 0 and state.step < max_steps:
            state.elapsed += time.perf_counter() - started
            started = time.perf_counter()
            checkpoints.save(model, optimizer, sampler, state)
        progress(state.step, max_steps, f"step {state.step}, loss {state.last_train_loss:.3f}")
    if window_steps:  # the unlogged tail of the last window
        state.last_train_loss = window_loss.item() / window_steps
    state.elapsed += time.perf_counter() - started
    return state, stopped


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _agreed(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (one tiny all-reduce per step under DDP): ranks that
    decided on their own clocks would stop at different steps and hang in the next all-reduce."""
    if not _distributed():
        return flag
    value = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def _from_rank0(value: int, device: torch.device) -> int:
    if not _distributed():
        return value
    shared = torch.tensor([value], device=device)
    torch.distributed.broadcast(shared, src=0)
    return int(shared.item())


def _evaluate_and_maybe_stop(
    model: Any,
    val_blocks: np.ndarray,
    params: TrainParams,
    device: torch.device,
    state: LoopState,
    checkpoints: Checkpointer | None,
    rank: int,
) -> str:
    val = evaluate(model, val_blocks, params, device)
    state.history.append({"step": state.step, "val_loss": val})
    log.info("step %d | val loss %.4f | perplexity %.1f", state.step, val, math.exp(min(val, 50)))
    if val < state.best_val - 1e-4:
        state.best_val, state.best_step, state.evals_without_improvement = val, state.step, 0
        if checkpoints and rank == 0:
            checkpoints.save_best(model)
        return ""
    state.evals_without_improvement += 1
    if params.patience and state.evals_without_improvement >= params.patience:
        log.info(
            "early stopping: no improvement in %d evaluations (best %.4f at step %d)",
            state.evals_without_improvement,
            state.best_val,
            state.best_step,
        )
        return "early_stopping"
    return ""
