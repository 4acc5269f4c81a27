"""The preference-tuning stage's parameters: when to train, the DPO loss, optimizer and budget."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storage.params import Params

# TRL's pairwise losses that every supported TRL release knows: DPO itself ("sigmoid") and its close
# relatives that learn from the same (prompt, chosen, rejected) pairs against a frozen reference.
LossType = Literal["sigmoid", "ipo", "hinge", "robust", "nca_pair", "sppo_hard", "apo_zero", "apo_down"]


class PreferenceParams(Params):
    """DPO on editors' decisions (chosen over rejected), after the night's supervised fine-tune."""

    enabled: bool = Field(True, description="Preference-tune the night's model when editors gave enough new pairs.")
    min_new_pairs: int = Field(
        8, ge=1, description="Train only when at least this many pairs are new since the last preference-tuned version."
    )
    loss_type: LossType = Field(
        "sigmoid",
        description="TRL's loss: sigmoid = DPO; ipo, hinge, robust, nca_pair, sppo_hard, apo_zero, apo_down are "
        "close relatives on the same pairs.",
    )
    beta: float = Field(
        0.1, gt=0, le=10, description="How far the model may move from the reference (lower: further; IPO's tau)."
    )
    learning_rate: float = Field(5e-6, gt=0, le=1, description="Peak learning rate (decays linearly to 0).")
    max_steps: int = Field(100, ge=1, description="Budget: optimizer steps.")
    max_minutes: float = Field(10.0, gt=0, description="Budget: wall-clock minutes of training.")
    batch_size: int = Field(4, ge=1, le=1024, description="Pairs per optimizer step.")
    max_length: int = Field(
        512, ge=8, description="Tokens of prompt + answer kept per pair (at most the model's context)."
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: slower, far less memory (a 1-8B model on one GPU).",
    )
    log_interval: int = Field(10, ge=1, description="Steps between log lines (the metrics are averaged over them).")
    seed: int = Field(1234, description="Seed for the data order and the adapter's dropout.")
