"""Tokenize: encode the clean corpus with the run's tokenizer (tasks/tokenize/bpe.py), pack blocks.

Output `tokens/<tokenizer-id>/{train,val}/part-*.parquet`: one fixed-size block of token ids per
row, with the tokenizer id, block size and EOS id in the schema metadata. Documents are assigned
to train or validation by their id hash, so the split is the same on every run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from storage.errors import DraftflowError
from storage.fingerprint import code_version, fingerprint
from storage.parquet_store import DatasetWriter, iter_batches, read_manifest, require_unchanged
from storage.refs import BaseModelSpec, DatasetRef, TokenizerRef, TokensRef
from storage.schemas import tokens_schema
from storage.settings import Settings
from tasks.models import load_tokenizer
from tasks.tokenize.bpe import prepare_tokenizer, use_both_cores
from tasks.tokenize.packing import BlockSplitPacker, Packer, all_ids, split_ids
from tasks.tokenize.params import ENCODE_BATCH, TokenizeParams

log = logging.getLogger("draftflow.tokenize")
CODE_VERSION = code_version(Path(__file__).parent)


def _encoded_batches(backend: Any, clean_dir: Path) -> Iterator[tuple[pa.RecordBatch, list[Any]]]:
    """Record batches with their encodings, the next batch encoding while the caller packs this one.

    `encode_batch` releases the GIL, so reading, id extraction, packing and writing overlap with it
    instead of adding to it (one batch ahead: memory stays at two batches).
    """
    batches = iter_batches(clean_dir, columns=["doc_id", "text"], batch_size=ENCODE_BATCH)

    # encode_batch_fast (tokenizers >= 0.21) skips character offsets, which packing never uses
    encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)

    def encode(batch: pa.RecordBatch) -> list[Any]:
        # special tokens on: a tokenizer that starts every text with BOS (Llama, Mistral) does so for
        # each document here too, as in its pretraining and in the prompts generate encodes
        return encode_batch(batch.column("text").to_pylist(), add_special_tokens=True)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        pending: tuple[pa.RecordBatch, Future[list[Any]]] | None = None
        for batch in batches:
            submitted = (batch, pool.submit(encode, batch))
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = submitted
        if pending is not None:
            yield pending[0], pending[1].result()


def tokenize_corpus(
    clean: DatasetRef, tok: TokenizerRef, settings: Settings, params: TokenizeParams, split: str = "documents"
) -> TokensRef:
    """Encode `corpus/clean` with `encode_batch`, pack blocks, write train/val token datasets.

    Documents go to train or validation by their id hash. When that leaves either side without a
    block (a few documents, or a few large ones), the corpus is packed again and split by block
    instead, and the reference and the log say so.
    """
    require_unchanged(Path(clean.path), clean.fingerprint, "clean corpus", "run `draftflow clean` again")
    use_both_cores()
    backend = load_tokenizer(tok.path).backend_tokenizer
    out = settings.token_blocks_dir / tok.tokenizer_id
    meta = tokens_meta(tok, params)
    schema = tokens_schema(params.block_size, tok.vocab_size, meta)
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    fp = tokens_fingerprint(clean, tok, params)
    with DatasetWriter(out / "train", schema) as train_w, DatasetWriter(out / "val", schema) as val_w:
        packers = {False: Packer(train_w, params.block_size, dtype), True: Packer(val_w, params.block_size, dtype)}
        by_block = BlockSplitPacker(packers[False], packers[True], params.val_fraction)
        for batch, encodings in _encoded_batches(backend, Path(clean.path)):
            if split == "blocks":
                by_block.add_batch(all_ids(encodings, tok.eos_id))
                continue
            ids = split_ids(batch, encodings, tok.eos_id, params.val_fraction)
            for side, packer in packers.items():
                packer.add_batch(ids[side])
        if split == "documents" and (packers[False].blocks == 0 or packers[True].blocks == 0):
            log.warning(
                "%d documents give %d training and %d validation blocks by document: splitting by block instead",
                clean.rows,
                packers[False].blocks,
                packers[True].blocks,
            )
            retry_by_block = True  # leaving the block without a commit discards the staged blocks
        else:
            retry_by_block = False
            ref = commit_blocks(
                clean,
                tok,
                params,
                settings,
                str(out),
                fp,
                meta,
                (train_w, packers[False]),
                (val_w, packers[True]),
                split,
                tokens_in=by_block.fed if split == "blocks" else packers[False].fed + packers[True].fed,
            )
    if retry_by_block:
        return tokenize_corpus(clean, tok, settings, params, split="blocks")
    log.info(
        "packed %d tokens into %d train + %d val blocks of %d",
        ref.tokens,
        ref.train_blocks,
        ref.val_blocks,
        params.block_size,
    )
    return ref


def tokens_fingerprint(clean: DatasetRef, tok: TokenizerRef, params: TokenizeParams) -> str:
    return fingerprint(clean.fingerprint, tok.tokenizer_id, params.model_dump(), CODE_VERSION)


def tokens_meta(tok: TokenizerRef, params: TokenizeParams) -> dict[str, str]:
    """What a token dataset's schema metadata records: enough to train on it without the ref."""
    return {
        "tokenizer_id": tok.tokenizer_id,
        "block_size": str(params.block_size),
        "eos_id": str(tok.eos_id),
        "vocab_size": str(tok.vocab_size),
    }


def commit_blocks(
    clean: DatasetRef,
    tok: TokenizerRef,
    params: TokenizeParams,
    settings: Settings,
    out: str,
    fp: str,
    meta: dict[str, str],
    train: tuple[Any, Any],
    val: tuple[Any, Any],
    split: str = "documents",
    tokens_in: int | None = None,
) -> TokensRef:
    """Commit the packed train and val blocks ((writer, packer) pairs) and point tokens/latest.json at
    them. Shared by the in-process and the sharded tokenize (tasks/tokenize/shards.py). `tokens_in` is
    every token encoded (each document + EOS), the tails too short for a block included."""
    (train_w, train_p), (val_w, val_p) = train, val
    if train_p.blocks == 0 or val_p.blocks == 0:
        encoded = tokens_in if tokens_in is not None else train_p.fed + val_p.fed
        raise DraftflowError(
            f"corpus too small for block size {params.block_size}: {encoded} tokens make "
            f"{train_p.blocks + val_p.blocks} block(s), and training needs 2 or more; lower --block-size "
            f"(tokenize.block_size in a --config file) or add documents"
        )
    manifest = {"stage": "tokenize", "fingerprint": fp, "corpus": clean.fingerprint, "val_split": split, **meta}
    train_w.commit({**manifest, "split": "train"})
    val_w.commit({**manifest, "split": "val"})
    ref = TokensRef(
        path=out,
        fingerprint=fp,
        corpus_fingerprint=clean.fingerprint,
        tokenizer=tok,
        block_size=params.block_size,
        train_blocks=train_p.blocks,
        val_blocks=val_p.blocks,
        tokens=train_p.tokens + val_p.tokens,
        val_split=split,
    )
    (settings.tokens_dir / "latest.json").write_text(ref.model_dump_json(indent=2))
    return ref


def latest_tokens(settings: Settings) -> TokensRef:
    """The tokens written by the last tokenize run (for stage-by-stage CLI use)."""
    pointer = settings.tokens_dir / "latest.json"
    if not pointer.is_file():
        raise DraftflowError(f"no tokenized corpus in '{settings.tokens_dir}': run `draftflow tokenize` first")
    return TokensRef.model_validate_json(pointer.read_text())


def committed_tokens(
    clean: DatasetRef, tok: TokenizerRef, settings: Settings, params: TokenizeParams
) -> TokensRef | None:
    """The token blocks already written when they are exactly what this run would write, else None."""
    out = settings.token_blocks_dir / tok.tokenizer_id
    fp = tokens_fingerprint(clean, tok, params)
    train, val = read_manifest(out / "train"), read_manifest(out / "val")
    if not train or not val or train.get("fingerprint") != fp or val.get("fingerprint") != fp:
        return None
    ref = TokensRef(
        path=str(out),
        fingerprint=fp,
        corpus_fingerprint=clean.fingerprint,
        tokenizer=tok,
        block_size=params.block_size,
        train_blocks=train["rows"],
        val_blocks=val["rows"],
        tokens=(train["rows"] + val["rows"]) * params.block_size,
        val_split=train.get("val_split", "documents"),
    )
    (settings.tokens_dir / "latest.json").write_text(ref.model_dump_json(indent=2))
    return ref


def prepare_and_tokenize(
    clean: DatasetRef, base: BaseModelSpec, settings: Settings, params: TokenizeParams
) -> TokensRef:
    """The run's tokenizer, then the blocks: reused when exactly these are committed already (same
    corpus, tokenizer, parameters and code), encoded otherwise."""
    tok = prepare_tokenizer(clean, base, settings, params)
    reused = committed_tokens(clean, tok, settings, params)
    if reused is not None:
        log.info("tokenize: the blocks for fingerprint %s are already written: nothing to do", reused.fingerprint)
        return reused
    return tokenize_corpus(clean, tok, settings, params)
