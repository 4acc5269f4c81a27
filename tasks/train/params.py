"""The fine-tune stage's parameters: model size (scratch), optimizer, budget, evaluation, checkpoints."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from storage.params import Params


class TrainParams(Params):
    """Model size (scratch only), optimizer, budget, evaluation and checkpoints."""

    n_layer: int = Field(4, ge=1, le=48, description="Transformer layers (scratch).")
    n_embd: int = Field(256, ge=16, le=4096, description="Hidden size (scratch); divisible by n_head.")
    n_head: int = Field(4, ge=1, le=64, description="Attention heads (scratch).")
    batch_size: int = Field(8, ge=1, le=1024, description="Blocks per micro-batch.")
    tokens_per_step: int | None = Field(
        None, ge=1, description="Target tokens per optimizer step: gradient accumulation makes up the rest."
    )
    learning_rate: float = Field(1e-3, gt=0, le=1, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine floor as a share of the peak.")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (matrices only).")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip.")
    max_steps: int = Field(5000, ge=1, description="Budget: optimizer steps.")
    max_tokens: int | None = Field(None, ge=1, description="Budget: training tokens.")
    max_minutes: float = Field(3.0, gt=0, description="Budget: wall-clock minutes (resumed runs included).")
    eval_interval: int = Field(100, ge=1, description="Steps between validation evaluations.")
    eval_batches: int = Field(10, ge=1, description="Validation batches per evaluation.")
    patience: int | None = Field(None, ge=1, description="Stop after this many evaluations without improvement.")
    log_interval: int = Field(10, ge=1, description="Steps between log lines.")
    checkpoint_interval: int = Field(100, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")
    compile: bool = Field(False, description="torch.compile the model (pays a warm-up; helps on GPU).")
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: about a third slower, far less memory "
        "(what a 1-8B model needs on one GPU).",
    )
    method: Literal["full", "lora"] = Field(
        "full",
        description="full: train every weight; lora: train a small LoRA adapter over a frozen pretrained base "
        "(the version folder holds only the adapter).",
    )
    lora_rank: int = Field(16, ge=1, le=1024, description="LoRA rank r (method lora).")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha: the adapter's update is scaled by alpha / r.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA adapter's input.")
    lora_target_modules: list[str] | None = Field(
        None, description="Layer names LoRA adapts (q_proj, v_proj, ...); empty = every linear layer but the head."
    )
    quantize: Literal["none", "4bit"] = Field(
        "none", description="4bit: QLoRA, the frozen base loaded in 4-bit NF4 (method lora, CUDA + bitsandbytes)."
    )
    weights: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Weight dtype: auto = bf16 for a frozen LoRA base on a GPU, float32 masters otherwise "
        "(matmuls run in bf16 on a GPU either way).",
    )
    promotion_tolerance: float = Field(
        0.02, ge=0, description="Promote a new version unless its perplexity is worse than the latest's by more."
    )
    seed: int = Field(1234, description="Seed for initialisation and batch sampling.")

    def accumulation(self, block_size: int) -> int:
        micro = self.batch_size * block_size
        return max(1, math.ceil(self.tokens_per_step / micro)) if self.tokens_per_step else 1
