"""Bits per byte: a model's likelihood of a text, comparable across tokenizers.

Perplexity is per token, and tokenizers cut the same text into different numbers of tokens, so a
change of tokenizer changes perplexity without any change in the model. Summing the negative log
likelihood of every token of a text and dividing by the text's UTF-8 bytes (and ln 2) gives a figure
that depends on the text only: the bits the model needs per byte to encode it (lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Likelihood:
    nats: float
    bytes: int
    tokens: int
    documents: int

    @property
    def bits_per_byte(self) -> float | None:
        return self.nats / math.log(2) / self.bytes if self.bytes else None

    def __add__(self, other: Likelihood) -> Likelihood:
        return Likelihood(
            self.nats + other.nats,
            self.bytes + other.bytes,
            self.tokens + other.tokens,
            self.documents + other.documents,
        )


def text_likelihood(
    model: Any, tokenizer: Any, texts: Sequence[str], context: int, device: torch.device, batch_size: int = 8
) -> Likelihood:
    """The summed negative log likelihood of every token of every text, each text scored on its own.

    Each text starts after BOS (EOS for tokenizers without one, as training documents follow the EOS
    of the one before), so its first token is predicted too; a text longer than the context is
    scored in windows that overlap by one token, so every token is predicted exactly once."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start
    window = max(2, context)
    pieces: list[list[int]] = []
    total_bytes = tokens = 0
    for text in texts:
        ids = [start, *tokenizer(text, add_special_tokens=False)["input_ids"]]
        total_bytes += len(text.encode())
        tokens += len(ids) - 1
        for begin in range(0, max(1, len(ids) - 1), window - 1):
            pieces.append(ids[begin : begin + window])
    nats = 0.0
    pieces.sort(key=len)  # similar lengths together: little padding
    with torch.inference_mode():
        for i in range(0, len(pieces), batch_size):
            nats += _batch_nats(model, pieces[i : i + batch_size], pad, device)
    return Likelihood(nats, total_bytes, tokens, len(texts))


def _batch_nats(model: Any, pieces: list[list[int]], pad: int, device: torch.device) -> float:
    longest = max(len(p) for p in pieces)
    ids = torch.full((len(pieces), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(pieces), longest), dtype=torch.long)
    for row, piece in enumerate(pieces):
        ids[row, : len(piece)] = torch.tensor(piece)
        mask[row, : len(piece)] = 1
    ids, mask = ids.to(device), mask.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = ids[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return float((losses * mask[:, 1:]).sum())
