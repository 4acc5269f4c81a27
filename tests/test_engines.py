"""Generation engines: which one runs, vLLM's settings mapped from a draft's, its outputs read back the
way the torch engine writes them, and asking for vLLM where it cannot run is one line."""

from __future__ import annotations

import importlib.util
from dataclasses import fields

import pytest
import sqlalchemy as sa

from storage.db import Database
from storage.errors import DraftflowError
from storage.models import Draft
from storage.refs import ModelRef
from tasks.generate.engines import pick_engine, vllm_output, vllm_sampling
from tasks.generate.params import SampleSettings
from tests.cli_helpers import run_cli

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_auto_is_torch_without_cuda_or_vllm() -> None:
    assert pick_engine("auto", cuda=False) == "torch"
    assert pick_engine("auto", cuda=True) == ("vllm" if HAS_VLLM else "torch")
    assert pick_engine("torch", cuda=True) == "torch"


@pytest.mark.skipif(HAS_VLLM, reason="checks the message given where vLLM is not installed")
def test_vllm_where_it_is_not_installed_says_how_to_install_it() -> None:
    with pytest.raises(DraftflowError, match=r"pip install 'draftflow\[vllm\]'"):
        pick_engine("vllm", cuda=True)


def test_every_sampling_setting_reaches_vllm() -> None:
    settings = SampleSettings(
        temperature=0.7, top_p=0.9, top_k=0, repetition_penalty=1.2, max_new_tokens=50, min_new_tokens=5, stop=["##"]
    )
    mapped = vllm_sampling(settings, seed=42, end_ids=frozenset({7, 3}))
    assert mapped == {
        "n": 1,
        "seed": 42,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": -1,  # vLLM's "off"
        "repetition_penalty": 1.2,
        "min_tokens": 5,
        "max_tokens": 50,
        "stop": ["##"],
        "stop_token_ids": [3, 7],
        "skip_special_tokens": True,
    }
    assert vllm_sampling(SampleSettings(top_k=40), 1, frozenset())["top_k"] == 40
    # a setting added to SampleSettings must be mapped too
    used = {"temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "min_new_tokens", "stop"}
    assert {f.name for f in fields(SampleSettings)} == used


def test_vllm_outputs_end_as_the_torch_engines_do() -> None:
    assert vllm_output([5, 6, 2], "stop", None, eos_id=2) == vllm_output([5, 6], "stop", None, eos_id=2)
    assert vllm_output([5, 6], "stop", None, eos_id=2).ids == [5, 6, 2]
    assert vllm_output([5, 9], "stop", 9, eos_id=2).stopped == "eos"  # an end-of-turn stop token
    assert vllm_output([5, 6], "stop", "##", eos_id=2).stopped == "stop_string"
    assert vllm_output([5, 6], "length", None, eos_id=2).stopped == "max_new_tokens"


@pytest.mark.skipif(HAS_VLLM, reason="checks the message given where vLLM is not installed")
def test_asking_for_vllm_is_one_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], db: Database, tiny_model: ModelRef, prompts_file: object
) -> None:
    done = run_cli(capsys, "generate", "--prompts", str(prompts_file), "--max-new-tokens", "8", "--engine", "vllm")
    assert done.code == 1 and done.err.count("\n") == 1 and "Traceback" not in done.err
    assert done.err.startswith("error: generation.engine vllm needs vLLM")
    assert "pip install 'draftflow[vllm]'" in done.err  # brackets are text, not console markup
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Draft)) == 0
    assert (
        run_cli(capsys, "generate", "--prompts", str(prompts_file), "--max-new-tokens", "8", "--engine", "torch").code
        == 0
    )
    with db.session() as s:
        assert set(s.scalars(sa.select(Draft.engine))) == {"torch"}  # every draft records its engine
