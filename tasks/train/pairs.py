"""Editor-approved drafts as supervised chat pairs: (prompt -> approved answer), loss on the answer only.

A chat model is asked a question and answers it; what editors approve is the answer they wanted to
that question. So each approved draft becomes one training block: the conversation as the chat
template renders it (system turn, the prompt as the user's turn, the approved text as the
assistant's turn), with a loss mask that is 1 on the answer and its end-of-turn token and 0 on
everything else: the model learns to write the answer, not to predict the question.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from storage.parquet_store import bounded_batches
from storage.refs import BaseModelSpec, ChatPairsRef
from tasks.chat import messages_for, render_chat

log = logging.getLogger("draftflow.finetune")


@dataclass
class PairBlocks:
    ids: np.ndarray  # (n, block) token ids, padded with EOS
    mask: np.ndarray  # (n, block) uint8: 1 where the loss counts (the answer)
    skipped: int  # pairs with no room for any answer token in a block


def chat_pairs_for(
    base: BaseModelSpec, approved_file: Path, chat: str, system_prompt: str, system_prompts: dict[str, str]
) -> ChatPairsRef | None:
    """Pairs to train on when the night's model is a chat model (its tokenizer has a chat template and
    generation.chat is not off) and editors approved drafts; None otherwise (they train as documents)."""
    if chat == "off" or base.source is None or not approved_file.is_file():
        return None
    from tasks.models import load_tokenizer

    if not getattr(load_tokenizer(base.source), "chat_template", None):
        return None
    return ChatPairsRef(path=str(approved_file), system_prompt=system_prompt, system_prompts=system_prompts)


def read_pairs(ref: ChatPairsRef) -> Iterator[tuple[str, str, str | None]]:
    """(prompt, approved answer, system turn) per approved draft, streamed in record batches. A draft
    written without chat holds its prompt then the continuation: the answer is the continuation."""
    columns = ["prompt", "text", "category", "params"]
    parquet = pq.ParquetFile(ref.path)
    for batch in bounded_batches(parquet, range(parquet.metadata.num_row_groups), 1024, columns):
        for prompt, text, category, params in zip(*(batch.column(c).to_pylist() for c in columns), strict=True):
            recorded = json.loads(params or "{}")
            answer = text[len(prompt) :].strip() if prompt and text.startswith(prompt) else text.strip()
            system = recorded["system"] if "system" in recorded else ref.system_prompts.get(category or "")
            yield prompt or "", answer, system if system is not None else (ref.system_prompt or None)


def encode_pair(tokenizer: Any, prompt: str, answer: str, system: str | None) -> tuple[list[int], list[int]]:
    """(ids, mask) of one conversation: the prompt as rendered for generation, then the answer as the
    template closes an assistant turn (its end-of-turn token included, so the model learns to stop)."""
    asked = render_chat(tokenizer, prompt, system, "the base model")
    whole = tokenizer.apply_chat_template(
        [*messages_for(prompt, system), {"role": "assistant", "content": answer}], tokenize=False
    )
    ids = list(tokenizer(whole, add_special_tokens=False)["input_ids"])
    if ids[: len(asked)] != asked:  # a template that renders the history differently: encode the answer alone
        ids = asked + list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return ids, [0] * len(asked) + [1] * (len(ids) - len(asked))


def pair_blocks(tokenizer: Any, ref: ChatPairsRef, block_size: int) -> PairBlocks:
    """One block per approved draft; a conversation longer than a block keeps its head (the prompt and
    the answer's start), and one whose prompt fills the block is skipped and counted."""
    eos, rows, masks, skipped = tokenizer.eos_token_id, [], [], 0
    for prompt, answer, system in read_pairs(ref):
        if not answer:
            skipped += 1
            continue
        ids, mask = encode_pair(tokenizer, prompt, answer, system)
        ids, mask = ids[:block_size], mask[:block_size]
        if not any(mask):
            skipped += 1
            continue
        pad = block_size - len(ids)
        rows.append(ids + [eos] * pad)
        masks.append(mask + [0] * pad)
    dtype = np.uint16 if len(tokenizer) <= 2**16 else np.uint32
    return PairBlocks(
        np.array(rows, dtype=dtype).reshape(-1, block_size),
        np.array(masks, dtype=np.uint8).reshape(-1, block_size),
        skipped,
    )
