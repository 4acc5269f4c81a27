"""Tokenize: byte-level BPE trained on the corpus, packed blocks, metadata, deterministic split."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from storage.errors import DraftflowError
from storage.parquet_store import read_manifest, schema_metadata
from storage.refs import BaseModelSpec, DatasetRef
from storage.settings import Settings
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.packing import is_validation
from tasks.tokenize.params import TokenizeParams
from tasks.tokenize.stage import latest_tokens, tokenize_corpus
from tasks.train.stage import read_blocks
from tests.tiny import TOKENIZE


def _clean(settings: Settings, corpus_dir: Path) -> DatasetRef:
    return clean_corpus(ingest_corpus([str(corpus_dir)], settings), settings)


def test_trains_bpe_and_packs_blocks_with_metadata(settings: Settings, corpus_dir: Path) -> None:
    from transformers import AutoTokenizer

    cleaned = _clean(settings, corpus_dir)
    tok = prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), settings, TOKENIZE)
    assert tok.trained and tok.vocab_size <= TOKENIZE.vocab_size
    hf = AutoTokenizer.from_pretrained(tok.path)
    assert hf.eos_token_id == tok.eos_id
    text = "The module returns a value."
    assert hf.decode(hf(text)["input_ids"]) == text  # byte-level: lossless round trip

    ref = tokenize_corpus(cleaned, tok, settings, TOKENIZE)
    train = read_blocks(Path(ref.path) / "train")
    val = read_blocks(Path(ref.path) / "val")
    assert train.shape == (ref.train_blocks, 32) and val.shape == (ref.val_blocks, 32)
    assert train.dtype == np.uint16
    assert ref.tokens == (ref.train_blocks + ref.val_blocks) * 32
    meta = schema_metadata(Path(ref.path) / "train")
    assert meta["tokenizer_id"] == tok.tokenizer_id and meta["block_size"] == "32"
    assert meta["eos_id"] == str(tok.eos_id)
    # one EOS after each kept document; each split's dropped tail (< 1 block) may hold one
    eos = (np.concatenate([train.ravel(), val.ravel()]) == tok.eos_id).sum()
    assert cleaned.rows - 2 <= eos <= cleaned.rows
    assert latest_tokens(settings) == ref


def test_same_inputs_give_the_same_blocks(settings: Settings, corpus_dir: Path) -> None:
    cleaned = _clean(settings, corpus_dir)
    tok = prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), settings, TOKENIZE)
    first = tokenize_corpus(cleaned, tok, settings, TOKENIZE)
    blocks = read_blocks(Path(first.path) / "val").copy()
    second = tokenize_corpus(
        cleaned, prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), settings, TOKENIZE), settings, TOKENIZE
    )
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(read_blocks(Path(second.path) / "val"), blocks)


def test_validation_split_is_by_document_hash() -> None:
    import hashlib

    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(4000)]
    share = sum(is_validation(i, 0.1) for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert [is_validation(i, 0.1) for i in ids] == [is_validation(i, 0.1) for i in ids]


def test_corpus_too_small_for_the_block_size_is_a_user_error(settings: Settings, corpus_dir: Path) -> None:
    cleaned = _clean(settings, corpus_dir)
    params = TokenizeParams(vocab_size=320, block_size=8192, val_fraction=0.2)
    tok = prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), settings, params)
    with pytest.raises(DraftflowError, match="corpus too small for block size 8192"):
        tokenize_corpus(cleaned, tok, settings, params)


def test_a_corpus_shorter_than_one_block_names_its_token_count(settings: Settings, tmp_path: Path) -> None:
    """One short saying is kept by the short-form profile but is shorter than a block: the error
    counts the tokens encoded, not the (zero) tokens packed."""
    src = tmp_path / "one"
    src.mkdir()
    (src / "a.txt").write_text("A stitch in time saves nine, and a kept promise saves more.")
    cleaned = _clean(settings, src)
    assert cleaned.rows == 1
    params = TokenizeParams(vocab_size=320, block_size=64, val_fraction=0.2)
    tok = prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), settings, params)
    with pytest.raises(DraftflowError, match=r"block size 64: (\d+) tokens make 0 block\(s\)") as err:
        tokenize_corpus(cleaned, tok, settings, params)
    tokens = int(err.value.args[0].split(": ")[1].split(" ")[0])
    assert 10 < tokens < 64


def test_a_few_large_documents_are_split_by_block_and_say_so(settings: Settings, tmp_path: Path) -> None:
    """Three long pages: at a 20% share, no document is held out. The blocks are dealt out instead."""
    from tests.conftest import paragraph

    rng = random.Random(3)
    src = tmp_path / "pages"
    src.mkdir()
    for i in range(3):
        (src / f"page{i}.txt").write_text("\n\n".join(paragraph(rng) for _ in range(12)))
    cleaned = clean_corpus(ingest_corpus([str(src)], settings), settings)
    params = TokenizeParams(vocab_size=320, block_size=32, val_fraction=0.05, min_frequency=1)
    tok = prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), settings, params)
    ref = tokenize_corpus(cleaned, tok, settings, params)
    assert ref.val_split == "blocks" and ref.val_blocks >= 1 and ref.train_blocks > ref.val_blocks
    assert ref.val_blocks == (ref.train_blocks + ref.val_blocks) // 20  # every 20th block
    assert read_manifest(Path(ref.path) / "train")["val_split"] == "blocks"
    assert latest_tokens(settings) == ref


def test_a_corpus_of_one_block_names_the_option_that_fixes_it(
    capsys: pytest.CaptureFixture[str], settings: Settings, tmp_path: Path
) -> None:
    from tests.cli_helpers import run_cli

    src = tmp_path / "tiny"
    src.mkdir()
    (src / "one.txt").write_text(
        "The module returns a value for each key in the mapping, and raises an error when the object is not "
        "found, so that the caller can handle it with the default."
    )
    for args in (["ingest", str(src)], ["clean", "--min-words", "5"]):
        assert run_cli(capsys, *args).code == 0
    result = run_cli(capsys, "tokenize", "--vocab-size", "300", "--block-size", "64")
    assert result.code == 1 and "lower --block-size" in result.err and "Traceback" not in result.err
