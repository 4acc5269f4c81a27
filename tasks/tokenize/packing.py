"""Packing: documents (each followed by EOS) concatenated and cut into fixed-size blocks, split by doc hash."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from storage.parquet_store import DatasetWriter


def is_validation(doc_id: str, val_fraction: float) -> bool:
    """Deterministic split: doc ids are sha256 hex, so their prefix is uniform."""
    return int(doc_id[:8], 16) / 0xFFFFFFFF < val_fraction


class Packer:
    """Concatenate documents (each followed by EOS) and cut full blocks; the tail is dropped."""

    def __init__(self, writer: DatasetWriter, block_size: int, dtype: type[np.integer]) -> None:
        self.writer, self.block_size, self.dtype = writer, block_size, dtype
        self.tail = np.empty(0, dtype=dtype)
        self.blocks = 0
        self.tokens = 0  # packed into blocks
        self.fed = 0  # given to the packer, the dropped tail included

    def add_batch(self, ids: list[int] | np.ndarray) -> None:
        """Ids of a whole record batch of documents (a list, or an array streamed from a shard), EOS
        already in place: one numpy conversion."""
        if not len(ids):
            return
        self.fed += len(ids)
        flat = np.concatenate([self.tail, np.asarray(ids, dtype=self.dtype)])
        n_blocks = len(flat) // self.block_size
        body, self.tail = flat[: n_blocks * self.block_size], flat[n_blocks * self.block_size :]
        if n_blocks:
            column = pa.FixedSizeListArray.from_arrays(pa.array(body), self.block_size)
            self.writer.write_table(pa.table({"input_ids": column}))
            self.blocks += n_blocks
            self.tokens += len(body)


class BlockSplitPacker:
    """Pack all documents as one stream and deal the blocks out: every `period`-th block goes to
    validation. The split for corpora whose documents are too few or too large to split by document
    (a folder of ten long HTML pages has no validation document at a 5% share)."""

    def __init__(self, train: Packer, val: Packer, val_fraction: float) -> None:
        self.train, self.val = train, val
        self.period = max(2, round(1 / val_fraction))
        self.block_size, self.dtype = train.block_size, train.dtype
        self.tail = np.empty(0, dtype=self.dtype)
        self.seen = 0
        self.fed = 0

    def add_batch(self, ids: list[int] | np.ndarray) -> None:
        self.fed += len(ids)
        flat = np.concatenate([self.tail, np.asarray(ids, dtype=self.dtype)])
        n_blocks = len(flat) // self.block_size
        self.tail = flat[n_blocks * self.block_size :]
        blocks = flat[: n_blocks * self.block_size].reshape(n_blocks, self.block_size)
        to_val = (np.arange(self.seen, self.seen + n_blocks) % self.period) == self.period - 1
        self.seen += n_blocks
        for packer, chosen in ((self.train, blocks[~to_val]), (self.val, blocks[to_val])):
            if len(chosen):
                packer.add_batch(chosen.ravel())  # whole blocks: the packer's tail stays empty


def all_ids(encodings: list[Any], eos_id: int) -> list[int]:
    """A batch's token ids in corpus order, each document + EOS (for the split by block)."""
    ids: list[int] = []
    for enc in encodings:
        extend_with_eos(ids, enc.ids, eos_id)
    return ids


def extend_with_eos(target: list[int], ids: list[int], eos_id: int) -> None:
    """Append a document's ids ending in exactly one EOS. Tokenizers that add BOS (Llama, Mistral)
    keep it at the front, which is how the model saw documents in pretraining; one whose
    post-processor already appends EOS gets no second one."""
    target.extend(ids)
    if not ids or ids[-1] != eos_id:
        target.append(eos_id)


def split_ids(batch: pa.RecordBatch, encodings: list[Any], eos_id: int, val_fraction: float) -> dict[bool, list[int]]:
    """A batch's token ids by split (True = validation, by document hash), each document + EOS."""
    ids: dict[bool, list[int]] = {False: [], True: []}
    for doc_id, enc in zip(batch.column("doc_id").to_pylist(), encodings, strict=True):
        target = ids[is_validation(doc_id, val_fraction)]
        extend_with_eos(target, enc.ids, eos_id)
    return ids
