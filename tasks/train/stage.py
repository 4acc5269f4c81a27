"""Fine-tune: build or load the model, run the training loop (tasks/train/loop.py), register the version.

GPT-2 from a config (scratch) or any causal LM loaded with `from_pretrained` (a registered version
or a hub id / path); the best weights are kept, saved with `save_pretrained` (safetensors) beside a
loss curve and TensorBoard events, and registered in `model_versions` with the promotion decision.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storage.db import Database
from storage.errors import DraftflowError
from storage.parquet_store import count_rows, iter_batches, schema_metadata
from storage.refs import BaseModelSpec, ChatPairsRef, ModelRef, TokensRef
from storage.registry import ModelInfo, latest_model_version, register_model_version, version_of_run
from storage.settings import Settings
from tasks.adapters import (
    adapter_base,
    add_lora,
    is_adapter,
    is_peft_model,
    quantized_base_options,
    trainable_parameters,
)
from tasks.models import (
    context_length,
    load_causal_lm,
    load_tokenizer,
    out_of_memory_is_one_line,
    quiet_transformers,
    tokenizer_id_of,
    weights_dtype,
)
from tasks.progress import Progress, no_progress
from tasks.train.checkpoints import Checkpointer
from tasks.train.distributed import barrier, distributed_setup, share_from_rank0, wrap_ddp
from tasks.train.loop import evaluate, train_loop
from tasks.train.params import TrainParams
from tasks.train.promotion import decide_promotion
from tasks.train.report import write_loss_curve, write_tensorboard

log = logging.getLogger("draftflow.finetune")


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


def check_blocks(tokens: TokensRef) -> None:
    """The blocks on disk are the ones the reference names: the same tokenizer and block size (a later
    tokenize with other settings may have replaced them since the reference was made)."""
    for split in ("train", "val"):
        meta = schema_metadata(Path(tokens.path) / split)
        found = (meta.get("tokenizer_id"), meta.get("block_size"))
        if found != (tokens.tokenizer.tokenizer_id, str(tokens.block_size)):
            raise DraftflowError(
                f"the {split} blocks in '{tokens.path}' were made by tokenizer {found[0]} with block size {found[1]}, "
                f"not {tokens.tokenizer.tokenizer_id} with {tokens.block_size}: run `draftflow tokenize` again"
            )


def build_model(base: BaseModelSpec, tokens: TokensRef, params: TrainParams, device: torch.device) -> Any:
    """The model to train: GPT-2 from a config (scratch), or a pretrained model (hub id, folder or
    version) with, for method lora, a new LoRA adapter, or its own adapter when it is a LoRA version."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if params.quantize != "none" and params.method != "lora":
        raise DraftflowError('training.quantize 4bit is QLoRA: it needs "method": "lora" (a 4-bit base cannot train)')
    if base.kind == "scratch":
        if params.method == "lora":
            raise DraftflowError(
                "LoRA adapts a pretrained model, and this run starts from scratch: give --base-model "
                '(a hub id, a folder or a version), or train the scratch model with "method": "full"'
            )
        if params.n_embd % params.n_head:
            raise DraftflowError(f"n_embd {params.n_embd} is not divisible by n_head {params.n_head}")
        eos = tokens.tokenizer.eos_id
        config = GPT2Config(
            vocab_size=tokens.tokenizer.vocab_size,
            n_positions=tokens.block_size,
            n_embd=params.n_embd,
            n_layer=params.n_layer,
            n_head=params.n_head,
            bos_token_id=eos,
            eos_token_id=eos,
        )
        torch.manual_seed(params.seed)
        scratch: Any = GPT2LMHeadModel(config)
        return scratch.to(device)
    assert base.source is not None
    base_tok = tokenizer_id_of(load_tokenizer(base.source))
    if base_tok != tokens.tokenizer.tokenizer_id:
        raise DraftflowError(
            f"the tokens were made with tokenizer {tokens.tokenizer.tokenizer_id}, but base model "
            f"'{base.label}' uses {base_tok}: run `draftflow tokenize` with the same --base-model"
        )
    lora = params.method == "lora"
    options = quantized_base_options(device) | {"device_map": {"": device}} if params.quantize == "4bit" else {}
    model = load_causal_lm(
        base.source,
        dtype=weights_dtype(params.weights, device, frozen=lora),
        trainable_adapter=lora,  # a LoRA version trains on as the same adapter; full training merges it
        merge_adapter=not lora,
        **options,
    )
    max_positions = context_length(model.config)
    if max_positions and tokens.block_size > max_positions:
        raise DraftflowError(
            f"block size {tokens.block_size} exceeds the base model's context of "
            f"{max_positions} tokens: re-tokenize with --block-size {max_positions}"
        )
    if tokens.tokenizer.vocab_size > model.get_input_embeddings().num_embeddings:
        if lora:
            raise DraftflowError(
                f"the tokenizer has {tokens.tokenizer.vocab_size} tokens but '{base.label}' embeds "
                f"{model.get_input_embeddings().num_embeddings}: LoRA cannot grow the embeddings; train with "
                '"method": "full"'
            )
        model.resize_token_embeddings(tokens.tokenizer.vocab_size)
    if not lora:
        model.requires_grad_(True)  # a merged LoRA version comes back with its base weights frozen
    if not options:  # a 4-bit model is placed by device_map and refuses .to()
        model = model.to(device)
    if lora and not is_peft_model(model):
        if params.quantize == "4bit":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing)
        torch.manual_seed(params.seed)  # the adapter's initial weights: the same run starts the same way
        model = add_lora(model, params)
    return model


def train_model(
    tokens: TokensRef,
    base: BaseModelSpec,
    params: TrainParams,
    db: Database,
    settings: Settings,
    run_id: str | None = None,
    progress: Progress = no_progress,
    pairs: ChatPairsRef | None = None,
    defer_promotion: bool = False,
) -> ModelRef:
    """Train within the budget (resuming this run's checkpoint if there is one), keep the best
    weights, save with `save_pretrained` and register a model version.

    Under `torchrun` (WORLD_SIZE > 1) the same loop runs with DistributedDataParallel: gloo on CPU,
    NCCL on GPUs; rank 0 saves and registers, and every rank returns the registered version.
    `pairs`: editor-approved drafts of a chat model, trained beside the corpus with the loss on the
    approved answers only. `defer_promotion`: register the version unpromoted, for an evaluation
    that decides after it (the nightly flow's).
    """
    registered = version_of_run(db, run_id) if run_id else None
    if registered is not None:  # a retry of a run that got as far as registering: at most one version per run
        log.info("run %s registered %s already: not training it again", run_id, registered.name)
        note = f"registered by this run before it was retried: {registered.name}"
        return ModelRef(**_ref_fields(registered), promotion=note)
    device, rank, world = distributed_setup()
    check_blocks(tokens)
    train_blocks = read_blocks(Path(tokens.path) / "train")
    train_masks, n_pairs = None, 0
    if pairs is not None:
        train_blocks, train_masks, n_pairs = _with_pairs(train_blocks, tokens, pairs)
    val_blocks = read_blocks(Path(tokens.path) / "val")
    model = build_model(base, tokens, params, device)
    torch.manual_seed(params.seed + rank)  # dropout draws from the global generator: same seed, same run
    if params.gradient_checkpointing:
        # transformers 5 renamed it; older releases (the floor) have only the old name
        no_reentrant = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=no_reentrant)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=no_reentrant)
        model.config.use_cache = False  # a cache is of no use in training and conflicts with recomputation
    model.train()
    # Checkpoints live under the run id, so starting the same run again resumes it.
    checkpoints = Checkpointer(
        settings.home / "checkpoints" / (run_id or uuid.uuid4().hex), keep=params.keep_checkpoints, rank=rank
    )
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = trainable_parameters(model)
    log.info(
        "training %s with %s (%.2fM params, %.2fM trainable) on %s x%d: %d train / %d val blocks of %d, "
        "%d x %d tokens per step per rank, budget %d steps / %s tokens / %.1f min",
        base.label,
        params.method,
        n_params / 1e6,
        n_trainable / 1e6,
        device,
        world,
        len(train_blocks),
        len(val_blocks),
        tokens.block_size,
        params.accumulation(tokens.block_size),
        params.batch_size * tokens.block_size,
        params.max_steps,
        params.max_tokens or "-",
        params.max_minutes,
    )
    runnable = wrap_ddp(model, device) if world > 1 else model
    runnable = torch.compile(runnable) if params.compile else runnable
    micro = f"{params.batch_size} x {tokens.block_size} tokens per micro-batch on {device.type}"
    lower = (
        f"the batch size (now {micro}): --batch-size on finetune, training.batch_size in a run --config "
        "file; tokens_per_step keeps the step size through accumulation"
    )
    with out_of_memory_is_one_line("training", lower):
        state, stopped = train_loop(
            runnable,
            train_blocks,
            val_blocks,
            params,
            device,
            checkpoints,
            progress if rank == 0 else no_progress,
            rank=rank,
            train_masks=train_masks,
        )
        val_loss = evaluate(model, val_blocks, params, device)
    state.tokens_seen *= world  # every rank trained on its own batches
    if params.gradient_checkpointing:
        model.config.use_cache = True  # the saved version generates with its KV cache
    barrier()
    if state.best_val < val_loss and checkpoints.load_best(model):
        log.info(
            "keeping the best weights (step %d, val loss %.4f) over the last (%.4f)",
            state.best_step,
            state.best_val,
            val_loss,
        )
        val_loss = state.best_val
    progress(1, 1, f"done after {state.step} steps ({stopped})")
    metrics = {
        "steps": state.step,
        "stopped_by": stopped,
        "train_loss": state.last_train_loss,
        "val_loss": val_loss,
        "perplexity": math.exp(min(val_loss, 50)),
        "best_step": state.best_step or state.step,
        "tokens_seen": state.tokens_seen,
        "wall_seconds": state.elapsed,
        "resumed_from": state.resumed_from,
        "world_size": world,
        "tokens_per_second": state.tokens_seen / state.elapsed if state.elapsed else 0.0,
        "params": n_params,
        "method": params.method,
        "trainable_params": n_trainable,
        "chat_pairs": n_pairs,
        "device": device.type,
        "history": state.history,
    }
    log.info(
        "finished %d steps (%s) in %.0f s: train loss %.4f, val loss %.4f (perplexity %.1f)",
        state.step,
        stopped,
        state.elapsed,
        state.last_train_loss,
        val_loss,
        metrics["perplexity"],
    )
    ref = (
        _save_and_register(model, tokens, base, params, metrics, db, settings, run_id, val_blocks, defer_promotion)
        if rank == 0
        else None
    )
    ref = share_from_rank0(ref) if world > 1 else ref
    if rank == 0:
        checkpoints.clear()  # registered: a re-run of this run id must not resume into a duplicate
    assert ref is not None
    return ref


def _ref_fields(info: ModelInfo) -> dict[str, Any]:
    return {
        "version_id": info.id,
        "name": info.name,
        "path": info.path,
        "train_loss": info.train_loss,
        "val_loss": info.val_loss,
        "perplexity": info.perplexity,
    }


def _with_pairs(blocks: np.ndarray, tokens: TokensRef, pairs: ChatPairsRef) -> tuple[np.ndarray, np.ndarray, int]:
    """The corpus blocks (every token in the loss) followed by one block per approved chat pair."""
    from tasks.train.pairs import pair_blocks

    made = pair_blocks(load_tokenizer(tokens.tokenizer.path), pairs, tokens.block_size)
    log.info(
        "editor-approved drafts: %d chat pairs to train on (loss on the approved answer only), %d skipped "
        "(no answer, or no room for one in a block of %d)",
        len(made.ids),
        made.skipped,
        tokens.block_size,
    )
    masks = np.concatenate([np.ones(blocks.shape, dtype=np.uint8), made.mask])
    return np.concatenate([blocks, made.ids.astype(blocks.dtype, copy=False)]), masks, len(made.ids)


def _save_and_register(
    model: Any,
    tokens: TokensRef,
    base: BaseModelSpec,
    params: TrainParams,
    metrics: dict[str, Any],
    db: Database,
    settings: Settings,
    run_id: str | None,
    val_blocks: np.ndarray,
    defer_promotion: bool = False,
) -> ModelRef:
    device = next(model.parameters()).device
    promoted, note = (
        (False, "awaiting evaluation")
        if defer_promotion
        else decide_promotion(
            metrics["val_loss"],
            tokens.tokenizer.tokenizer_id,
            latest_model_version(db),
            lambda path: evaluate(load_causal_lm(path).to(device), val_blocks, params, device),
            params.promotion_tolerance,
        )
    )
    metrics = {**metrics, "promoted": promoted, "promotion": note}
    log.info("promotion: %s", note)
    staged = settings.models_dir / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        quiet_transformers()
        model.save_pretrained(staged)  # safetensors by default; a LoRA model writes its adapter only
        if is_adapter(str(staged)):
            metrics["adapter_of"] = adapter_base(str(staged))
        load_tokenizer(tokens.tokenizer.path).save_pretrained(staged)
        (staged / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_loss_curve(metrics["history"], staged / "loss_curve.png", f"{base.label}: {metrics['steps']} steps")
        write_tensorboard(metrics["history"], staged, metrics)
        info = register_model_version(
            db,
            staged,
            settings.models_dir,
            base=base.label,
            parent_id=base.version_id,
            run_id=run_id,
            tokenizer_id=tokens.tokenizer.tokenizer_id,
            corpus_fingerprint=tokens.corpus_fingerprint,
            tokens_fingerprint=tokens.fingerprint,
            hyperparams=params.model_dump(),
            train_loss=metrics["train_loss"],
            val_loss=metrics["val_loss"],
            perplexity=metrics["perplexity"],
            tokens_seen=metrics["tokens_seen"],
            wall_seconds=metrics["wall_seconds"],
            promoted=promoted,
            method=params.method,
            trainable_params=metrics["trainable_params"],
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)  # a version is its row and its folder, or nothing
        raise
    log.info("registered model version %s at %s", info.name, info.path)
    return ModelRef(
        **_ref_fields(info),
        tokens_seen=metrics["tokens_seen"],
        steps=metrics["steps"],
        wall_seconds=metrics["wall_seconds"],
        promoted=promoted,
        promotion=note,
        stopped_by=metrics["stopped_by"],
    )
