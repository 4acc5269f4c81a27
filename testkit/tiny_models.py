"""Tiny random-init causal LMs of real model families, saved as hub-style folders.

Each family gets the tokenizer quirks of its real models, so that a test of `--base-model DIR`
meets what a user's download would bring: Llama and Mistral add a BOS token to every encoding,
Mistral uses a Metaspace (SentencePiece-style) vocabulary, Qwen2 and GPT-NeoX name `<|endoftext|>`
as EOS and add nothing. Weights are random: these folders test plumbing, not quality. Nothing is
downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FAMILIES = ("gpt2", "llama", "qwen2", "gpt_neox", "mistral")

_TEXT = (
    "The module returns a value for each key. A function takes arguments and raises an error when "
    "the input is invalid. Editors read drafts, approve the good ones and reject the rest. "
    "Cooking pasta needs salted water, a large pot and a timer. "
)


def _tokenizer(family: str, vocab_size: int, texts: list[str]) -> tuple[Any, dict[str, str]]:
    """A trained fast tokenizer (`tokenizers.Tokenizer`) and its special tokens, as the family has them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if family in ("llama", "mistral"):
        bos, eos = ("<|begin_of_text|>", "<|end_of_text|>") if family == "llama" else ("<s>", "</s>")
    else:
        bos, eos = "<|endoftext|>", "<|endoftext|>"
    specials = list(dict.fromkeys([eos, bos, "<|im_start|>", "<|im_end|>"]))
    tok = Tokenizer(models.BPE(unk_token="<unk>" if family == "mistral" else None))
    if family == "mistral":
        specials.insert(0, "<unk>")
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet: list[str] = []
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    if family in ("llama", "mistral"):  # every encoding starts with BOS, as Llama's and Mistral's do
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    elif family != "mistral":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    named = {"bos_token": bos, "eos_token": eos}
    if family == "mistral":
        named["unk_token"] = "<unk>"
    return tok, named


def _config(family: str, vocab_size: int, ids: dict[str, int], context: int) -> Any:
    import transformers

    small: dict[str, Any] = {
        "vocab_size": vocab_size,
        "bos_token_id": ids["bos_token"],
        "eos_token_id": ids["eos_token"],
        "tie_word_embeddings": family not in ("gpt_neox",),
    }
    llama_like: dict[str, Any] = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": context,
    }
    if family == "gpt2":
        return transformers.GPT2Config(n_positions=context, n_embd=32, n_layer=2, n_head=2, **small)
    if family == "llama":
        return transformers.LlamaConfig(**llama_like, **small)
    if family == "qwen2":
        return transformers.Qwen2Config(**llama_like, **small)
    if family == "mistral":
        return transformers.MistralConfig(**llama_like, sliding_window=None, **small)
    if family == "gpt_neox":
        return transformers.GPTNeoXConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=context,
            **small,
        )
    raise ValueError(f"unknown family {family!r} (one of: {', '.join(FAMILIES)})")


def save_tiny_causal_lm(
    family: str,
    folder: Path,
    texts: list[str] | None = None,
    vocab_size: int = 400,
    context: int = 128,
    chat_template: str | None = None,
    seed: int = 0,
) -> Path:
    """A random-init model of `family` with its own trained tokenizer, written by `save_pretrained`."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok, named = _tokenizer(family, vocab_size, texts or [_TEXT] * 20)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=context, **named)
    if chat_template:
        fast.chat_template = chat_template
    ids = {name: tok.token_to_id(token) for name, token in named.items()}
    config = _config(family, tok.get_vocab_size(), ids, context)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
