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
        self.tokens = 0

    def add_batch(self, ids: list[int] | np.ndarray) -> None:
        """Ids of a whole record batch of documents (a list, or an array streamed from a shard), EOS
        already in place: one numpy conversion."""
        if not len(ids):
            return
        flat = np.concatenate([self.tail, np.asarray(ids, dtype=self.dtype)])
        n_blocks = len(flat) // self.block_size
        body, self.tail = flat[: n_blocks * self.block_size], flat[n_blocks * self.block_size :]
        if n_blocks:
            column = pa.FixedSizeListArray.from_arrays(pa.array(body), self.block_size)
            self.writer.write_table(pa.table({"input_ids": column}))
            self.blocks += n_blocks
            self.tokens += len(body)


def split_ids(batch: pa.RecordBatch, encodings: list[Any], eos_id: int, val_fraction: float) -> dict[bool, list[int]]:
    """A batch's token ids by split (True = validation, by document hash), each document + EOS."""
    ids: dict[bool, list[int]] = {False: [], True: []}
    for doc_id, enc in zip(batch.column("doc_id").to_pylist(), encodings, strict=True):
        target = ids[is_validation(doc_id, val_fraction)]
        target.extend(enc.ids)
        target.append(eos_id)
    return ids
