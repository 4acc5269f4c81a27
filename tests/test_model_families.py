"""Pretrained models of real families as `--base-model`: the whole night from the CLI on each.

Each test builds and saves a tiny random-init model with the tokenizer quirks of its family
(testkit/tiny_models.py): Llama and Mistral add BOS to every encoding, Mistral's vocabulary is
SentencePiece-style (Metaspace), Qwen2 and GPT-NeoX end documents with `<|endoftext|>`.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from storage.db import open_database
from storage.models import Draft, ModelVersion
from storage.parquet_store import iter_batches
from storage.settings import Settings
from tasks.models import load_tokenizer, tokenizer_id_of
from testkit.tiny_models import save_tiny_causal_lm
from tests.cli_helpers import run_cli

FAMILIES = ("gpt2", "llama", "qwen2", "gpt_neox", "mistral")
ADDS_BOS = {"llama", "mistral"}


def _token_blocks(settings: Settings) -> np.ndarray:
    rows = [
        block
        for split in ("train", "val")
        for folder in settings.token_blocks_dir.iterdir()
        for batch in iter_batches(folder / split, columns=["input_ids"])
        for block in batch.column("input_ids").to_pylist()
    ]
    return np.array(rows)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_runs_the_whole_night_from_the_cli(
    family: str,
    prefect_harness: None,
    settings: Settings,
    corpus_dir: Path,
    tmp_path: Path,
) -> None:
    from prefect.settings import PREFECT_API_URL

    base = save_tiny_causal_lm(family, tmp_path / family)
    tokenizer = load_tokenizer(str(base))
    # the console script, as a user runs it, against the session's Prefect test server
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DRAFTFLOW_HOME": str(settings.home)}
    command = ["run", "--corpus", str(corpus_dir), "--base-model", str(base), "--block-size", "32", "--json"]
    budget = ["--max-train-steps", "3", "--max-new-tokens", "8", "--samples-per-prompt", "1"]
    night = subprocess.run(
        [str(Path(sys.executable).with_name("draftflow")), *command, *budget],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert night.returncode == 0, night.stderr[-3000:]
    assert "Traceback" not in night.stderr
    summary = json.loads(night.stdout[night.stdout.index("{") :])
    assert summary["base_model"] == str(base) and summary["model_version"] == "v0001"
    assert summary["train_steps"] == 3 and summary["drafts_generated"] > 0

    # packing: every document ends in one EOS; families that add BOS start every document with it
    blocks = _token_blocks(settings)
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    flat = blocks.reshape(-1)
    assert (flat == eos).sum() > 10
    doubled = (flat[:-1] == eos) & (flat[1:] == eos)
    assert not doubled.any()
    if family in ADDS_BOS:
        inside = blocks[:, :-1] == eos  # an EOS that is not the last token of its block
        assert (blocks[:, 1:][inside] == bos).all()  # is followed by the next document's BOS

    db = open_database(settings.database_url)
    with db.session() as s:
        version = s.scalars(sa.select(ModelVersion)).one()
        texts = list(s.scalars(sa.select(Draft.current_text)))
    assert version.tokenizer_id == tokenizer_id_of(tokenizer) and version.base == str(base)
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(version.path).model_type == family
    specials = {t for t in tokenizer.all_special_tokens if t}
    assert texts and not [t for t in texts if any(special in t for special in specials)]


def test_finished_rows_leave_the_cache_or_stay_and_the_drafts_are_the_same(tmp_path: Path) -> None:
    """Dropping finished rows from the KV cache is an optimisation only: with it off (the path for a
    cache that cannot drop rows) every row's tokens are the same."""
    from transformers import AutoModelForCausalLM, StaticCache

    from tasks.generate.params import SampleSettings
    from tasks.generate.sampling import Request, _cache_of, can_drop_rows, decode_batch

    base = save_tiny_causal_lm("llama", tmp_path / "llama")
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    tokenizer = load_tokenizer(str(base))
    prompts = ["The module returns", "Editors read drafts and approve the good ones", "Cooking"]
    requests = [
        Request(
            prompt_ids=tokenizer(text)["input_ids"],
            settings=SampleSettings(temperature=0.9, top_p=0.95, max_new_tokens=4 + 6 * i, min_new_tokens=4 + 6 * i),
            seed=100 + i,
        )
        for i, text in enumerate(prompts)
    ]
    args = (model, requests, tokenizer.eos_token_id, tokenizer.eos_token_id, torch.device("cpu"))
    dropped, kept = decode_batch(*args), decode_batch(*args, drop_finished=False)
    assert [o.ids for o in dropped] == [o.ids for o in kept]
    assert [len(o.ids) for o in dropped] == [4, 10, 16]  # rows of different lengths: some finished early
    ids = torch.tensor([tokenizer("The module returns")["input_ids"]])
    assert can_drop_rows(_cache_of(model(input_ids=ids, use_cache=True)))  # what this family's forward returns
    # transformers < 4.56 also asks for the batch size; later releases do not take it
    batch = {"batch_size": 1} if "batch_size" in inspect.signature(StaticCache.__init__).parameters else {}
    assert not can_drop_rows(StaticCache(config=model.config, max_cache_len=16, **batch))


def test_a_base_model_folder_without_a_tokenizer_is_one_line(
    capsys: pytest.CaptureFixture[str], settings: Settings, corpus_dir: Path, tmp_path: Path
) -> None:
    base = save_tiny_causal_lm("qwen2", tmp_path / "qwen2")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (base / name).unlink(missing_ok=True)
    home = ("--home", str(settings.home))
    assert run_cli(capsys, *home, "ingest", str(corpus_dir)).code == 0
    assert run_cli(capsys, *home, "clean").code == 0
    done = run_cli(capsys, *home, "tokenize", "--base-model", str(base))
    assert done.code == 1 and done.err.count("\n") == 1 and "Traceback" not in done.err
    assert done.err.startswith(f"error: base model folder '{base}' has no tokenizer")
