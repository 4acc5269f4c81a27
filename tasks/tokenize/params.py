"""The tokenize stage's parameters."""

from __future__ import annotations

from pydantic import Field

from storage.params import Params

ENCODE_BATCH = 2048  # documents per encode_batch call: fewer, larger calls keep both cores busy


class TokenizeParams(Params):
    vocab_size: int = Field(8192, ge=300, le=2**20, description="BPE vocabulary size (scratch only).")
    block_size: int = Field(256, ge=8, le=8192, description="Tokens per training block.")
    val_fraction: float = Field(0.05, gt=0, lt=0.5, description="Share of documents held out.")
    min_frequency: int = Field(2, ge=1, description="BPE: minimum pair frequency to merge.")
