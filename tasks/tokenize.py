"""Tokenize: train (or reuse) a byte-level BPE tokenizer, encode the clean corpus, pack blocks.

Output `tokens/<tokenizer-id>/{train,val}/part-*.parquet`: one fixed-size block of token ids per
row, with the tokenizer id, block size and EOS id in the schema metadata. Documents are assigned
to train or validation by their id hash, so the split is the same on every run.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from pydantic import BaseModel, Field

from storage.errors import DraftflowError
from storage.fingerprint import code_version, fingerprint
from storage.parquet_store import DatasetWriter, iter_batches, require_dataset
from storage.refs import BaseModelSpec, DatasetRef, TokenizerRef, TokensRef
from storage.schemas import tokens_schema
from storage.settings import Settings
from tasks.base_model import load_tokenizer, tokenizer_id_of
from tasks.caching import CACHE_FOR, tokenize_key

log = logging.getLogger("draftflow.tokenize")
EOS_TOKEN = "<|endoftext|>"
CODE_VERSION = code_version(__file__)
ENCODE_BATCH = 2048  # documents per encode_batch call: fewer, larger calls keep both cores busy


class TokenizeParams(BaseModel):
    vocab_size: int = Field(8192, ge=300, le=2**20, description="BPE vocabulary size (scratch only).")
    block_size: int = Field(256, ge=8, le=8192, description="Tokens per training block.")
    val_fraction: float = Field(0.05, gt=0, lt=0.5, description="Share of documents held out.")
    min_frequency: int = Field(2, ge=1, description="BPE: minimum pair frequency to merge.")


def prepare_tokenizer(clean: DatasetRef, base: BaseModelSpec, settings: Settings,
                      params: TokenizeParams) -> TokenizerRef:
    """The base model's own tokenizer, or a new byte-level BPE trained on the clean corpus."""
    if base.kind != "scratch":
        assert base.source is not None
        tokenizer = load_tokenizer(base.source)
        tok_id = tokenizer_id_of(tokenizer)
        return TokenizerRef(path=base.source, tokenizer_id=tok_id, eos_id=tokenizer.eos_token_id,
                            vocab_size=len(tokenizer), trained=False)
    return train_tokenizer(clean, settings, params)


def train_tokenizer(clean: DatasetRef, settings: Settings, params: TokenizeParams) -> TokenizerRef:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    _use_both_cores()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=params.vocab_size, min_frequency=params.min_frequency,
        special_tokens=[EOS_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tokenizer.train_from_iterator(_texts(Path(clean.path)), trainer=trainer, length=clean.rows)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN,
                                      bos_token=EOS_TOKEN, unk_token=EOS_TOKEN, pad_token=EOS_TOKEN)
    # The id is taken from the tokenizer as saved and reloaded, the same way a model version's
    # tokenizer is identified later, so "same tokenizer" always means "same id".
    staging = settings.tokens_dir / f".tokenizer-{uuid.uuid4().hex[:8]}"
    wrapped.save_pretrained(staging)
    loaded = load_tokenizer(str(staging))
    tok_id = tokenizer_id_of(loaded)
    folder = settings.tokens_dir / tok_id / "tokenizer"
    if folder.exists():
        shutil.rmtree(staging)  # the same tokenizer was trained before: keep the first copy
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(folder)
    log.info("trained a byte-level BPE tokenizer: %d tokens, id %s", len(loaded), tok_id)
    return TokenizerRef(path=str(folder), tokenizer_id=tok_id, eos_id=loaded.eos_token_id,
                        vocab_size=len(loaded), trained=True)


def _texts(clean_dir: Path) -> Iterator[str]:
    for batch in iter_batches(clean_dir, columns=["text"]):
        yield from batch.column("text").to_pylist()


def _use_both_cores() -> None:
    # One process, no fork after this point: let the Rust thread pool use every core.
    os.environ["TOKENIZERS_PARALLELISM"] = "true"


def is_validation(doc_id: str, val_fraction: float) -> bool:
    """Deterministic split: doc ids are sha256 hex, so their prefix is uniform."""
    return int(doc_id[:8], 16) / 0xFFFFFFFF < val_fraction


class _Packer:
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
        body, self.tail = flat[: n_blocks * self.block_size], flat[n_blocks * self.block_size:]
        if n_blocks:
            column = pa.FixedSizeListArray.from_arrays(pa.array(body), self.block_size)
            self.writer.write_table(pa.table({"input_ids": column}))
            self.blocks += n_blocks
            self.tokens += len(body)


def _encoded_batches(backend: Any, clean_dir: Path) -> Iterator[tuple[pa.RecordBatch, list[Any]]]:
    """Record batches with their encodings, the next batch encoding while the caller packs this one.

    `encode_batch` releases the GIL, so reading, id extraction, packing and writing overlap with it
    instead of adding to it (one batch ahead: memory stays at two batches).
    """
    batches = iter_batches(clean_dir, columns=["doc_id", "text"], batch_size=ENCODE_BATCH)

    # encode_batch_fast (tokenizers >= 0.21) skips character offsets, which packing never uses
    encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)

    def encode(batch: pa.RecordBatch) -> list[Any]:
        return encode_batch(batch.column("text").to_pylist(), add_special_tokens=False)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        pending: tuple[pa.RecordBatch, Future[list[Any]]] | None = None
        for batch in batches:
            submitted = (batch, pool.submit(encode, batch))
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = submitted
        if pending is not None:
            yield pending[0], pending[1].result()


def tokenize_corpus(clean: DatasetRef, tok: TokenizerRef, settings: Settings,
                    params: TokenizeParams) -> TokensRef:
    """Encode `corpus/clean` with `encode_batch`, pack blocks, write train/val token datasets."""
    require_dataset(Path(clean.path), "clean corpus", "run `draftflow clean` first")
    _use_both_cores()
    backend = load_tokenizer(tok.path).backend_tokenizer
    out = settings.token_blocks_dir / tok.tokenizer_id
    meta = tokens_meta(tok, params)
    schema = tokens_schema(params.block_size, tok.vocab_size, meta)
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    fp = tokens_fingerprint(clean, tok, params)
    with DatasetWriter(out / "train", schema) as train_w, DatasetWriter(out / "val", schema) as val_w:
        packers = {False: _Packer(train_w, params.block_size, dtype),
                   True: _Packer(val_w, params.block_size, dtype)}
        for batch, encodings in _encoded_batches(backend, Path(clean.path)):
            ids = split_ids(batch, encodings, tok.eos_id, params.val_fraction)
            for split, packer in packers.items():
                packer.add_batch(ids[split])
        ref = commit_blocks(clean, tok, params, settings, str(out), fp, meta, (train_w, packers[False]),
                            (val_w, packers[True]))
    log.info("packed %d tokens into %d train + %d val blocks of %d", ref.tokens, ref.train_blocks,
             ref.val_blocks, params.block_size)
    return ref


def split_ids(batch: pa.RecordBatch, encodings: list[Any], eos_id: int,
              val_fraction: float) -> dict[bool, list[int]]:
    """A batch's token ids by split (True = validation, by document hash), each document + EOS."""
    ids: dict[bool, list[int]] = {False: [], True: []}
    for doc_id, enc in zip(batch.column("doc_id").to_pylist(), encodings, strict=True):
        target = ids[is_validation(doc_id, val_fraction)]
        target.extend(enc.ids)
        target.append(eos_id)
    return ids


def tokens_fingerprint(clean: DatasetRef, tok: TokenizerRef, params: TokenizeParams) -> str:
    return fingerprint(clean.fingerprint, tok.tokenizer_id, params.model_dump(), CODE_VERSION)


def tokens_meta(tok: TokenizerRef, params: TokenizeParams) -> dict[str, str]:
    """What a token dataset's schema metadata records: enough to train on it without the ref."""
    return {"tokenizer_id": tok.tokenizer_id, "block_size": str(params.block_size),
            "eos_id": str(tok.eos_id), "vocab_size": str(tok.vocab_size)}


def commit_blocks(clean: DatasetRef, tok: TokenizerRef, params: TokenizeParams, settings: Settings, out: str,
                  fp: str, meta: dict[str, str], train: tuple[Any, Any], val: tuple[Any, Any]) -> TokensRef:
    """Commit the packed train and val blocks ((writer, packer) pairs) and point tokens/latest.json at
    them. Shared by the in-process and the sharded tokenize (tasks/tokenize_shards.py)."""
    (train_w, train_p), (val_w, val_p) = train, val
    if train_p.blocks == 0 or val_p.blocks == 0:
        raise DraftflowError(
            f"corpus too small for block size {params.block_size}: {train_p.blocks} training and "
            f"{val_p.blocks} validation blocks; lower --block-size or add documents")
    manifest = {"stage": "tokenize", "fingerprint": fp, "corpus": clean.fingerprint, **meta}
    train_w.commit({**manifest, "split": "train"})
    val_w.commit({**manifest, "split": "val"})
    ref = TokensRef(path=out, fingerprint=fp, corpus_fingerprint=clean.fingerprint, tokenizer=tok,
                    block_size=params.block_size, train_blocks=train_p.blocks, val_blocks=val_p.blocks,
                    tokens=train_p.tokens + val_p.tokens)
    (settings.tokens_dir / "latest.json").write_text(ref.model_dump_json(indent=2))
    return ref


def latest_tokens(settings: Settings) -> TokensRef:
    """The tokens written by the last tokenize run (for stage-by-stage CLI use)."""
    pointer = settings.tokens_dir / "latest.json"
    if not pointer.is_file():
        raise DraftflowError(f"no tokenized corpus in '{settings.tokens_dir}': run `draftflow tokenize` first")
    return TokensRef.model_validate_json(pointer.read_text())


@task(name="tokenize", cache_key_fn=tokenize_key, cache_expiration=CACHE_FOR, persist_result=True)
def tokenize(clean: DatasetRef, base: BaseModelSpec, settings: Settings,
             params: TokenizeParams) -> TokensRef:
    """Prefect task: tokenizer (trained or the base model's) + packed train/val blocks."""
    tok = prepare_tokenizer(clean, base, settings, params)
    return tokenize_corpus(clean, tok, settings, params)
