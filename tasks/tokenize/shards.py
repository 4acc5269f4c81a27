"""Sharded tokenize: the tokenizer is trained once, shards encode slices of the clean corpus, one pass packs.

Each shard encodes its rows, appends EOS after each document, and writes the token ids of each
split (train / validation, by doc-id hash) as a flat stream to a scratch dataset. The merge step
concatenates the streams in shard order, which is corpus order, and cuts the fixed-size blocks:
the blocks, the split, the manifests and the fingerprint are exactly those of
`tasks.tokenize.stage.tokenize_corpus` (packing is ~40x cheaper than encoding, so it stays in one pass).
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from storage.locations import location
from storage.parquet_store import DatasetWriter, iter_batches, iter_row_range
from storage.refs import DatasetRef, TokenizerRef, TokensRef
from storage.schemas import tokens_schema
from storage.settings import Settings
from tasks.models import load_tokenizer
from tasks.shards import Shard, worker_id
from tasks.tokenize.packing import Packer, split_ids
from tasks.tokenize.params import ENCODE_BATCH, TokenizeParams
from tasks.tokenize.stage import commit_blocks, tokenize_corpus, tokens_fingerprint, tokens_meta

log = logging.getLogger("draftflow.tokenize")
SPLITS = {"train": False, "val": True}  # split name -> is_validation


class EncodedShard(BaseModel):
    """A shard's token streams (a reference) and how much they hold."""

    index: int
    output: str
    documents: int
    ids: dict[str, int]  # split -> token ids written, EOS included
    seconds: float
    worker: str


def _stream_schema(vocab_size: int) -> pa.Schema:
    return pa.schema(
        [pa.field("ids", pa.uint16() if vocab_size <= 2**16 else pa.uint32(), nullable=False)],
        metadata={"draftflow.dataset": "token-stream"},
    )


def encode_shard(shard: Shard, tok: TokenizerRef, params: TokenizeParams) -> EncodedShard:
    """Encode rows [start, stop) of the clean corpus into one id stream per split."""
    # One shard is one core (threads_per_worker=1): the parallelism comes from the shards, and a
    # Rust thread pool per worker on top would only make the workers fight over the same cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    started = time.perf_counter()
    backend = load_tokenizer(tok.path).backend_tokenizer
    encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets: packing needs none
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    schema = _stream_schema(tok.vocab_size)
    documents = 0
    out = {name: location(shard.output) / name for name in SPLITS}
    with DatasetWriter(out["train"], schema) as train_w, DatasetWriter(out["val"], schema) as val_w:
        writers = {False: train_w, True: val_w}
        for batch in iter_row_range(
            shard.source, shard.start, shard.stop, columns=["doc_id", "text"], batch_size=ENCODE_BATCH
        ):
            encodings = encode_batch(batch.column("text").to_pylist(), add_special_tokens=True)  # as stage.py
            ids = split_ids(batch, encodings, tok.eos_id, params.val_fraction)
            for split, writer in writers.items():
                if ids[split]:
                    writer.write_table(pa.table({"ids": np.array(ids[split], dtype=dtype)}))
            documents += batch.num_rows
        counts = {name: writers[is_val].rows_written for name, is_val in SPLITS.items()}
        for writer in writers.values():
            writer.commit({"stage": "tokenize-shard", "shard": shard.index, "tokenizer_id": tok.tokenizer_id})
    seconds = time.perf_counter() - started
    log.info(
        "tokenize %s: %d documents -> %d train + %d val ids (%.1f s on %s)",
        shard.label,
        documents,
        counts["train"],
        counts["val"],
        seconds,
        worker_id(),
    )
    return EncodedShard(
        index=shard.index, output=shard.output, documents=documents, ids=counts, seconds=seconds, worker=worker_id()
    )


def pack_shards(
    clean: DatasetRef, tok: TokenizerRef, shards: list[EncodedShard], settings: Settings, params: TokenizeParams
) -> TokensRef:
    """Concatenate the shard streams in corpus order, cut blocks, commit train/val as `tokenize_corpus` does."""
    started = time.perf_counter()
    out = settings.token_blocks_dir / tok.tokenizer_id
    meta = tokens_meta(tok, params)
    schema = tokens_schema(params.block_size, tok.vocab_size, meta)
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    fp = tokens_fingerprint(clean, tok, params)
    ordered = sorted(shards, key=lambda s: s.index)
    with DatasetWriter(out / "train", schema) as train_w, DatasetWriter(out / "val", schema) as val_w:
        packers = {"train": Packer(train_w, params.block_size, dtype), "val": Packer(val_w, params.block_size, dtype)}
        for split, packer in packers.items():
            for shard in ordered:
                for batch in iter_batches(location(shard.output) / split, batch_size=1 << 20):
                    packer.add_batch(batch.column(0).to_numpy())
        if packers["train"].blocks == 0 or packers["val"].blocks == 0:
            by_block = True  # too few documents to split by document: the in-process stage splits by block
        else:
            by_block = False
            ref = commit_blocks(
                clean, tok, params, settings, str(out), fp, meta, (train_w, packers["train"]), (val_w, packers["val"])
            )
    if by_block:  # a corpus this small gains nothing from shards
        return tokenize_corpus(clean, tok, settings, params, split="blocks")
    log.info(
        "packed %d tokens from %d shards into %d train + %d val blocks of %d (%.1f s)",
        ref.tokens,
        len(shards),
        ref.train_blocks,
        ref.val_blocks,
        params.block_size,
        time.perf_counter() - started,
    )
    return ref
