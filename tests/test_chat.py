"""Instruct models: prompts through the tokenizer's chat template, a system turn per category, drafts
that are the answer alone and end at the template's end-of-turn token, and regenerated exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from storage.db import Database
from storage.drafts import PromptRow
from storage.errors import DraftflowError
from storage.models import Draft
from storage.refs import ModelRef
from storage.registry import register_model_version
from storage.runs import start_run
from storage.settings import Settings
from tasks.generate.chat import end_of_turn_ids
from tasks.generate.params import GenerationParams, SampleSettings
from tasks.generate.sampling import Request, decode_batch
from tasks.generate.stage import encode_prompt, generate_drafts, regenerate_draft
from tasks.models import load_causal_lm, load_tokenizer
from testkit.tiny_models import save_tiny_causal_lm

# ChatML, as Qwen's instruct models have it
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROMPTS = [
    PromptRow(key="a", text="Describe the kettle", category="product", source="test"),
    PromptRow(key="b", text="Explain the module", category="docs", source="test"),
]


def _register(db: Database, settings: Settings, folder: Path) -> ModelRef:
    staged = settings.home / "staged"
    shutil.copytree(folder, staged)
    info = register_model_version(
        db, staged, settings.models_dir, base=str(folder), tokenizer_id="tiny", hyperparams={}, promoted=True
    )
    return ModelRef(version_id=info.id, name=info.name, path=info.path)


@pytest.fixture
def instruct(db: Database, settings: Settings, tmp_path: Path) -> ModelRef:
    return _register(db, settings, save_tiny_causal_lm("qwen2", tmp_path / "qwen2", chat_template=CHATML))


def test_a_chat_prompt_is_the_user_turn_after_the_category_system_turn(instruct: ModelRef) -> None:
    tokenizer = load_tokenizer(instruct.path)
    ids = encode_prompt(tokenizer, "{text}", PROMPTS[0], system="Write product copy.", chat=True)
    assert tokenizer.decode(ids) == (
        "<|im_start|>system\nWrite product copy.<|im_end|>\n"
        "<|im_start|>user\nDescribe the kettle<|im_end|>\n<|im_start|>assistant\n"
    )
    plain = encode_prompt(tokenizer, "{text}", PROMPTS[0], chat=False)
    assert "<|im_start|>" not in tokenizer.decode(plain)
    params = GenerationParams(system_prompt="Be helpful.", system_prompts={"docs": "Write documentation."})
    assert [params.system_for(p) for p in PROMPTS] == ["Be helpful.", "Write documentation."]


def test_chat_drafts_are_the_answer_alone_and_regenerate_exactly(db: Database, instruct: ModelRef) -> None:
    start_run(db, "chat-night", "generate", {})
    params = GenerationParams(samples_per_prompt=2, max_new_tokens=12, system_prompts={"docs": "Write documentation."})
    result = generate_drafts(instruct, PROMPTS, params, db, run_id="chat-night")
    assert result.drafts_new == 4
    with db.session() as s:
        drafts = s.scalars(sa.select(Draft).order_by(Draft.id)).all()
    tokenizer = load_tokenizer(instruct.path)
    for d in drafts:
        assert d.params["chat"] is True
        assert d.params["system"] == ("Write documentation." if d.category == "docs" else None)
        assert not d.original_text.startswith(("Describe the kettle", "Explain the module"))
        assert "<|im_end|>" not in d.original_text and "<|im_start|>" not in d.original_text
        prompt = PROMPTS[0] if d.category == "product" else PROMPTS[1]
        rendered = encode_prompt(tokenizer, "{text}", prompt, system=d.params["system"], chat=True)
        assert d.scores["prompt_tokens"] == len(rendered)
        assert regenerate_draft(db, d.id) == d.original_text


def test_generation_stops_at_the_end_of_turn_token(instruct: ModelRef) -> None:
    tokenizer = load_tokenizer(instruct.path)
    model = load_causal_lm(instruct.path).eval()
    ids = encode_prompt(tokenizer, "{text}", PROMPTS[0], chat=True)
    greedy = SampleSettings(temperature=0, max_new_tokens=6)
    args = (model, [Request(ids, greedy, 1)], tokenizer.eos_token_id, tokenizer.eos_token_id, torch.device("cpu"))
    free = decode_batch(*args)[0]
    assert free.stopped == "max_new_tokens" and len(free.ids) == 6
    # the token the model writes third ends its turn: the draft stops there, as at EOS
    ended = decode_batch(*args, end_ids=frozenset({free.ids[2]}))[0]
    assert ended.ids == free.ids[: free.ids.index(free.ids[2]) + 1] and ended.stopped == "eos"
    # the template's end-of-turn token is among the ids a chat draft ends at
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in end_of_turn_ids(tokenizer, instruct.path)


def test_chat_mistakes_are_one_line(db: Database, settings: Settings, tmp_path: Path) -> None:
    start_run(db, "chat-errors", "generate", {})
    plain = _register(db, settings, save_tiny_causal_lm("qwen2", tmp_path / "plain"))
    with pytest.raises(DraftflowError, match="has no chat template") as caught:
        generate_drafts(plain, PROMPTS, GenerationParams(chat="on"), db, run_id="chat-errors")
    assert "\n" not in str(caught.value)
    broken = "{% for m in messages %}{{ raise_exception('roles must alternate') }}{% endfor %}"
    shutil.rmtree(settings.home / "staged", ignore_errors=True)
    bad = _register(db, settings, save_tiny_causal_lm("qwen2", tmp_path / "bad", chat_template=broken))
    with pytest.raises(DraftflowError, match="failed to render a prompt") as caught:
        generate_drafts(bad, PROMPTS, GenerationParams(), db, run_id="chat-errors")
    assert "roles must alternate" in str(caught.value) and "\n" not in str(caught.value)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Draft)) == 0
