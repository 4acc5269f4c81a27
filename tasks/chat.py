"""Instruct models: prompts rendered through the tokenizer's chat template, drafts ended at end-of-turn.

An instruct model answers a conversation, not a text to continue: the prompt becomes the user's
turn (after an optional system turn chosen by the prompt's category), the template adds the
assistant's opening, and the model's answer ends with the template's end-of-turn token, which
is often not the tokenizer's EOS (`<|im_end|>` for Qwen, `<|eot_id|>` for Llama 3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from storage.errors import DraftflowError, first_line

# Tokens that end an assistant turn in the chat templates of common open families.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eot|>")


def use_chat(tokenizer: Any, choice: str, model_name: str) -> bool:
    """`auto`: when the tokenizer has a chat template; `on` without one is the user's mistake."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if choice == "on" and not has_template:
        raise DraftflowError(
            f"generation.chat is on, but the tokenizer of {model_name} has no chat template: "
            "set generation.chat to auto or off (or give the tokenizer a chat_template)"
        )
    return choice == "on" or (choice == "auto" and has_template)


def messages_for(text: str, system: str | None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def render_chat(tokenizer: Any, text: str, system: str | None, model_name: str) -> list[int]:
    """Input ids of a conversation of one user turn, ending with the assistant's opening. The template
    writes its own BOS where it wants one, so the rendered text is encoded without special tokens."""
    try:
        rendered = tokenizer.apply_chat_template(messages_for(text, system), tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja2's TemplateError, or a template's own raise_exception(...)
        raise DraftflowError(
            f"the chat template of {model_name} failed to render a prompt ({first_line(exc)}): "
            "fix the tokenizer's chat_template, or set generation.chat to off"
        ) from None
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def end_of_turn_ids(tokenizer: Any, model_path: str | None = None) -> frozenset[int]:
    """Ids that end a draft besides EOS: the end-of-turn tokens the vocabulary has as special tokens,
    and the ids the model's generation_config.json lists as its EOS."""
    special = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {}))
    ids = {tokenizer.convert_tokens_to_ids(t) for t in END_OF_TURN_TOKENS if t in special}
    config = Path(model_path) / "generation_config.json" if model_path else None
    if config is not None and config.is_file():
        eos = json.loads(config.read_text()).get("eos_token_id")
        ids |= set(eos) if isinstance(eos, list) else {eos} if isinstance(eos, int) else set()
    unk = getattr(tokenizer, "unk_token_id", None)
    return frozenset(i for i in ids if isinstance(i, int) and i != unk)
