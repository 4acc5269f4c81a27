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
from tasks.chat import end_of_turn_ids
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


def test_an_approved_pair_puts_only_the_answer_in_the_loss(instruct: ModelRef) -> None:
    from tasks.train.pairs import encode_pair

    tokenizer = load_tokenizer(instruct.path)
    ids, mask = encode_pair(tokenizer, "Describe the kettle", "It boils water fast.", "Write product copy.")
    asked = [i for i, m in zip(ids, mask, strict=True) if not m]
    answered = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(asked) == (
        "<|im_start|>system\nWrite product copy.<|im_end|>\n<|im_start|>user\nDescribe the kettle<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # the answer and the end of its turn: the model learns to write it and to stop
    assert tokenizer.decode(answered).startswith("It boils water fast.<|im_end|>")
    assert asked == encode_prompt(tokenizer, "{text}", PROMPTS[0], system="Write product copy.", chat=True)


def test_masked_pairs_train_the_answer_and_leave_the_prompt_alone(tmp_path: Path) -> None:
    """The same pair blocks trained with and without the mask: with it, the model learns the answer
    better and the prompts far less (what it learns of them, it learns only as context)."""
    import numpy as np

    from tasks.train.loop import train_loop
    from tasks.train.pairs import encode_pair
    from tasks.train.params import TrainParams

    folder = save_tiny_causal_lm("qwen2", tmp_path / "qwen2", chat_template=CHATML)
    tokenizer = load_tokenizer(str(folder))
    rng = np.random.default_rng(0)
    words = ["module", "kettle", "returns", "water", "value", "drafts", "editor", "fast", "key", "list"]
    encoded = [  # random questions, one fixed answer
        encode_pair(tokenizer, " ".join(rng.choice(words, 12)), "Approved answer.", None) for _ in range(32)
    ]
    width = max(len(ids) for ids, _ in encoded)
    rows = [ids + [tokenizer.eos_token_id] * (width - len(ids)) for ids, _ in encoded]
    masks = [mask + [0] * (width - len(mask)) for _, mask in encoded]
    blocks, mask_array = np.array(rows), np.array(masks, dtype=np.uint8)
    params = TrainParams(batch_size=8, max_steps=40, warmup_steps=0, learning_rate=1e-2, eval_interval=1000)

    def losses(masked: bool) -> tuple[float, float]:
        model = load_causal_lm(str(folder))
        train_loop(model, blocks, blocks[:8], params, torch.device("cpu"), train_masks=mask_array if masked else None)
        model.eval()
        with torch.no_grad():
            x = torch.from_numpy(blocks)
            logits = model(input_ids=x).logits[:, :-1]
            per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        on = torch.from_numpy(mask_array[:, 1:]).bool()
        prompt_part = torch.from_numpy(mask_array[:, 1:] == 0) & (x[:, 1:] != tokenizer.eos_token_id)
        return per_token[on].mean().item(), per_token[prompt_part].mean().item()

    masked_answer, masked_prompt = losses(masked=True)
    full_answer, full_prompt = losses(masked=False)
    assert masked_answer < 0.5 and masked_answer < full_answer  # all the training goes to the answer
    assert full_prompt < masked_prompt - 0.5  # only training without the mask learns to predict the prompts


def test_approved_chat_drafts_become_pairs_with_their_system_turn(
    db: Database, settings: Settings, instruct: ModelRef
) -> None:
    from storage.refs import BaseModelSpec
    from tasks.review import actions as editor
    from tasks.review.feedback import approved_file, write_editor_source
    from tasks.review.stage import queue_run
    from tasks.train.pairs import chat_pairs_for, pair_blocks, read_pairs

    start_run(db, "chat-night", "generate", {})
    params = GenerationParams(samples_per_prompt=1, max_new_tokens=8, system_prompts={"docs": "Write documentation."})
    generate_drafts(instruct, PROMPTS, params, db, run_id="chat-night")
    from tasks.review.params import CheckParams

    queue_run(db, "chat-night", params=CheckParams(min_new_words=0, max_echo_share=1.0))
    for name in ("ann", "bob"):
        claimed = editor.claim(db, name)
        editor.edit(db, claimed.id, name, f"An answer {name} wrote herself.")
        editor.approve(db, claimed.id, name)
    assert write_editor_source(settings)
    base = BaseModelSpec(kind="pretrained", source=instruct.path)
    ref = chat_pairs_for(base, approved_file(settings), "auto", "", {})
    assert ref is not None
    pairs = sorted(read_pairs(ref))
    assert [(p, a) for p, a, _ in pairs] == [
        ("Describe the kettle", "An answer ann wrote herself."),
        ("Explain the module", "An answer bob wrote herself."),
    ] or [(p, a) for p, a, _ in pairs] == [
        ("Describe the kettle", "An answer bob wrote herself."),
        ("Explain the module", "An answer ann wrote herself."),
    ]
    assert {s for _, _, s in pairs} == {None, "Write documentation."}  # each draft's own system turn
    made = pair_blocks(load_tokenizer(instruct.path), ref, 64)
    assert made.ids.shape == (2, 64) and made.skipped == 0 and made.mask.sum() > 0
    # off, or a model without a chat template: the drafts train as documents instead
    assert chat_pairs_for(base, approved_file(settings), "off", "", {}) is None
    assert chat_pairs_for(BaseModelSpec(kind="scratch"), approved_file(settings), "auto", "", {}) is None


@pytest.mark.slow
def test_a_chat_night_learns_from_approved_answers_as_pairs(
    prefect_harness: None, settings: Settings, db: Database, corpus_dir: Path, prompts_file: Path, tmp_path: Path
) -> None:
    import json

    from flows.nightly import nightly
    from tasks.review import actions as editor
    from tests.tiny import TOKENIZE, nightly_params

    base = save_tiny_causal_lm("qwen2", tmp_path / "instruct", chat_template=CHATML)
    params = nightly_params(str(corpus_dir), str(prompts_file), str(settings.home), base_model=str(base))
    params = params.model_copy(update={"tokenize": TOKENIZE.model_copy(update={"block_size": 128})})
    first = nightly(params)
    with db.session() as s:
        drafts = s.scalars(sa.select(Draft).where(Draft.run_id == first.run_id)).all()
    assert drafts and all(d.params.get("chat") for d in drafts)  # the tokenizer's template was used
    claimed = editor.claim(db, "ann")
    editor.edit(db, claimed.id, "ann", "The answer an editor wanted, in her own words.")
    editor.approve(db, claimed.id, "ann")

    second = nightly(params.model_copy(update={"base_model": None}))  # continues from the chat model's version
    assert second.editor_chat_pairs and second.editor_approved_source is None  # pairs, not documents
    metrics = json.loads(Path(second.model_path, "metrics.json").read_text())
    assert metrics["chat_pairs"] == 1
