"""Fine-tune: schedule, a real tiny training run, the registry, continuing, and a path base model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from storage.db import Database
from storage.errors import DraftflowError
from storage.refs import BaseModelSpec, TokensRef
from storage.registry import latest_model_version
from storage.settings import Settings
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tasks.models import load_tokenizer, resolve_base_model, tokenizer_id_of
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.stage import tokenize_corpus
from tasks.train.loop import lr_at
from tasks.train.params import TrainParams
from tasks.train.stage import train_model
from tests.tiny import TOKENIZE, TRAIN


def prepare(settings: Settings, corpus_dir: Path, base: BaseModelSpec) -> TokensRef:
    cleaned = clean_corpus(ingest_corpus([str(corpus_dir)], settings), settings)
    return tokenize_corpus(cleaned, prepare_tokenizer(cleaned, base, settings, TOKENIZE), settings, TOKENIZE)


def save_tiny_pretrained(folder: Path) -> Path:
    """A tiny GPT-2 with its own (different) byte-level BPE, saved as a hub-style folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=290,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["an unrelated corpus about cooking pasta and sauces"] * 20, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(folder)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=64,
        n_embd=32,
        n_layer=1,
        n_head=2,
        eos_token_id=tok.token_to_id("<eos>"),
        bos_token_id=tok.token_to_id("<eos>"),
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    p = TrainParams(learning_rate=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, p, 110) == pytest.approx(1e-4)
    assert lr_at(9, p, 110) == pytest.approx(1e-3)
    assert lr_at(10, p, 110) == pytest.approx(1e-3)
    assert lr_at(60, p, 110) == pytest.approx(0.55e-3)  # half-way down the cosine
    assert lr_at(110, p, 110) == pytest.approx(1e-4)
    assert lr_at(500, p, 110) == pytest.approx(1e-4)  # never below the floor
    values = [lr_at(s, p, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_trains_saves_and_registers_a_loadable_model(settings: Settings, db: Database, corpus_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokens = prepare(settings, corpus_dir, BaseModelSpec(kind="scratch"))
    model = train_model(tokens, BaseModelSpec(kind="scratch"), TRAIN, db, settings)
    assert model.name == "v0001" and model.steps == TRAIN.max_steps
    assert math.isfinite(model.train_loss) and math.isfinite(model.val_loss)
    assert model.perplexity == pytest.approx(math.exp(model.val_loss))
    folder = Path(model.path)
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= {p.name for p in folder.iterdir()}
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([tokenizer("The module returns a value")["input_ids"]])
    assert loaded(input_ids=ids).logits.shape == (1, ids.shape[1], tokens.tokenizer.vocab_size)
    latest = latest_model_version(db)
    assert latest is not None and latest.name == "v0001" and latest.tokenizer_id == tokens.tokenizer.tokenizer_id


def test_a_later_run_continues_from_the_latest_version(settings: Settings, db: Database, corpus_dir: Path) -> None:
    scratch = BaseModelSpec(kind="scratch")
    first = train_model(prepare(settings, corpus_dir, scratch), scratch, TRAIN, db, settings)
    base = resolve_base_model(None, db)
    assert base.kind == "registry" and base.version_id == first.version_id
    tokens = prepare(settings, corpus_dir, base)
    assert not tokens.tokenizer.trained  # the version's own tokenizer is reused
    second = train_model(tokens, base, TRAIN, db, settings)
    assert second.name == "v0002"
    latest = latest_model_version(db)
    assert latest.name == "v0002" and latest.parent_id == first.version_id
    # continuing starts from trained weights: the first loss is below a fresh model's ~ln(vocab)
    assert second.val_loss < math.log(tokens.tokenizer.vocab_size)


def test_base_model_from_a_local_path_uses_its_own_tokenizer(
    settings: Settings, db: Database, corpus_dir: Path, tmp_path: Path
) -> None:
    folder = save_tiny_pretrained(tmp_path / "tiny-gpt2")
    base = resolve_base_model(str(folder), db)
    assert base.kind == "pretrained" and base.label == str(folder)
    tokens = prepare(settings, corpus_dir, base)
    assert tokens.tokenizer.tokenizer_id == tokenizer_id_of(load_tokenizer(str(folder)))
    assert tokens.tokenizer.vocab_size == 290
    model = train_model(tokens, base, TRAIN, db, settings)
    assert latest_model_version(db).name == model.name
    from storage.models import ModelVersion

    with db.session() as s:
        assert s.get(ModelVersion, model.version_id).base == str(folder)


def test_tokens_and_base_model_must_share_a_tokenizer(
    settings: Settings, db: Database, corpus_dir: Path, tmp_path: Path
) -> None:
    tokens = prepare(settings, corpus_dir, BaseModelSpec(kind="scratch"))
    base = resolve_base_model(str(save_tiny_pretrained(tmp_path / "other")), db)
    with pytest.raises(DraftflowError, match="run `draftflow tokenize` with the same --base-model"):
        train_model(tokens, base, TRAIN, db, settings)


def test_unreachable_hub_id_and_bad_paths_are_user_errors(db: Database, tmp_path: Path) -> None:
    base = resolve_base_model("no-such-org/no-such-model", db)
    assert base.kind == "pretrained"
    with pytest.raises(DraftflowError, match="cannot load the tokenizer of base model 'no-such-org/no-such-model'"):
        load_tokenizer(base.source)
    with pytest.raises(DraftflowError, match="does not exist"):
        resolve_base_model("./missing-folder", db)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DraftflowError, match=r"has no config\.json"):
        resolve_base_model(str(tmp_path / "empty"), db)
    with pytest.raises(DraftflowError, match="model version 'v0042' is not in the registry"):
        resolve_base_model("v0042", db)


@pytest.mark.slow
def test_running_out_of_memory_is_one_line_naming_the_setting(
    settings: Settings, corpus_dir: Path, tmp_path: Path
) -> None:
    """A real allocation failure: the address space of `draftflow finetune` is capped at 6 GiB and a
    micro-batch of 1,024 blocks of 256 tokens needs more. One line, the option to lower, no version."""
    import os
    import resource
    import subprocess
    import sys

    from tasks.tokenize.params import TokenizeParams

    cleaned = clean_corpus(ingest_corpus([str(corpus_dir)], settings), settings)
    params = TokenizeParams(vocab_size=320, block_size=256, min_frequency=1)
    tokenize_corpus(
        cleaned, prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), settings, params), settings, params
    )

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    done = subprocess.run(
        [str(Path(sys.executable).with_name("draftflow")), "finetune", "--batch-size", "1024", "--max-steps", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "DRAFTFLOW_HOME": str(settings.home)},
        preexec_fn=cap_memory,
        timeout=300,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: out of memory while training (it tried to allocate ")
    assert "(now 1024 x 256 tokens per micro-batch on cpu): --batch-size on finetune" in error
    import sqlalchemy as sa

    from storage.db import open_database
    from storage.models import Run

    db = open_database(settings.database_url)
    assert latest_model_version(db) is None
    with db.session() as s:
        (run,) = s.scalars(sa.select(Run)).all()
    assert run.kind == "finetune" and run.status == "failed" and run.error.startswith("out of memory while training")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_gradient_checkpointing_trains_the_same_model(
    family: str, settings: Settings, db: Database, corpus_dir: Path, tmp_path: Path
) -> None:
    """Recomputing activations saves memory, not results: the same steps give the same losses."""
    import json

    from testkit.tiny_models import save_tiny_causal_lm

    folder = save_tiny_causal_lm(family, tmp_path / family, context=64)
    base = resolve_base_model(str(folder), db)
    tokens = prepare(settings, corpus_dir, base)
    plain = train_model(tokens, base, TRAIN, db, settings)
    saving = train_model(tokens, base, TRAIN.model_copy(update={"gradient_checkpointing": True}), db, settings)
    assert saving.train_loss == pytest.approx(plain.train_loss, rel=1e-4)
    assert saving.val_loss == pytest.approx(plain.val_loss, rel=1e-4)
    assert json.loads((Path(saving.path) / "config.json").read_text()).get("use_cache", True) is True
