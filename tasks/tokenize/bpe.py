"""The tokenizer of a run: the base model's own, or a byte-level BPE trained on the clean corpus."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from storage.parquet_store import iter_batches
from storage.refs import BaseModelSpec, DatasetRef, TokenizerRef
from storage.settings import Settings
from tasks.models import load_tokenizer, tokenizer_id_of
from tasks.tokenize.params import TokenizeParams

log = logging.getLogger("draftflow.tokenize")
EOS_TOKEN = "<|endoftext|>"


def prepare_tokenizer(
    clean: DatasetRef, base: BaseModelSpec, settings: Settings, params: TokenizeParams
) -> TokenizerRef:
    """The base model's own tokenizer, or a new byte-level BPE trained on the clean corpus."""
    if base.kind != "scratch":
        assert base.source is not None
        tokenizer = load_tokenizer(base.source)
        tok_id = tokenizer_id_of(tokenizer)
        return TokenizerRef(
            path=base.source,
            tokenizer_id=tok_id,
            eos_id=tokenizer.eos_token_id,
            vocab_size=len(tokenizer),
            trained=False,
        )
    return train_tokenizer(clean, settings, params)


def train_tokenizer(clean: DatasetRef, settings: Settings, params: TokenizeParams) -> TokenizerRef:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    use_both_cores()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=params.vocab_size,
        min_frequency=params.min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_texts(Path(clean.path)), trainer=trainer, length=clean.rows)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN, unk_token=EOS_TOKEN, pad_token=EOS_TOKEN
    )
    # The id is taken from the tokenizer as saved and reloaded, the same way a model version's
    # tokenizer is identified later, so "same tokenizer" always means "same id".
    staging = settings.tokens_dir / f".tokenizer-{uuid.uuid4().hex[:8]}"
    try:
        wrapped.save_pretrained(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a full disk: no half-written tokenizer left behind
        raise
    loaded = load_tokenizer(str(staging))
    tok_id = tokenizer_id_of(loaded)
    folder = settings.tokens_dir / tok_id / "tokenizer"
    if folder.exists():
        shutil.rmtree(staging)  # the same tokenizer was trained before: keep the first copy
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(folder)
    log.info("trained a byte-level BPE tokenizer: %d tokens, id %s", len(loaded), tok_id)
    return TokenizerRef(
        path=str(folder), tokenizer_id=tok_id, eos_id=loaded.eos_token_id, vocab_size=len(loaded), trained=True
    )


def _texts(clean_dir: Path) -> Iterator[str]:
    for batch in iter_batches(clean_dir, columns=["text"]):
        yield from batch.column("text").to_pylist()


def use_both_cores() -> None:
    # One process, no fork after this point: let the Rust thread pool use every core.
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
