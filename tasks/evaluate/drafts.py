"""Evaluation drafts: every version writes for the same prompts with the same seeds, and is scored.

The drafts are kept (table evaluation_drafts) so two versions can be read side by side for the
same prompt and seed; they never enter the review queue. The metrics judge what the model wrote
(the continuation, without its prompt):
- repetition: share of repeated word 3-grams within a draft (a loop scores near 1), averaged;
- distinct_1 / distinct_2: distinct words and word pairs over all drafts (low: every draft alike);
- echo_rate: share of drafts whose words mostly repeat their prompt;
- empty_rate: share of drafts with no new word; eos_rate: share that ended with EOS themselves;
- mean_words: new words per draft; originality: 1 - the share of 13-grams copied from the corpus.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from storage.drafts import PromptRow
from tasks.chat import end_of_turn_ids, use_chat
from tasks.evaluate.eval_set import EvalSet
from tasks.generate.engines import TorchEngine
from tasks.generate.params import SampleSettings
from tasks.generate.sampling import Request
from tasks.generate.stage import draft_text, encode_prompt, fit_to_context
from tasks.review.checks import NgramIndex, echo_share, repetition, words_of

ECHO = 0.5  # a draft whose 3-grams are mostly its prompt's echoes it


@dataclass
class EvalDraft:
    prompt_key: str
    prompt: str
    seed: int
    text: str  # as an editor would read it: the prompt, then what the model wrote
    new_tokens: int
    stopped: str

    @property
    def written(self) -> str:
        return self.text[len(self.prompt) :] if self.text.startswith(self.prompt) else self.text


def write_eval_drafts(
    model: Any, tokenizer: Any, name: str, path: str, eval_set: EvalSet, context: int | None, device: Any
) -> list[EvalDraft]:
    """One draft per (prompt, seed) of the set, sampled with the set's fixed settings."""
    chat = use_chat(tokenizer, "auto", name)
    end_ids = end_of_turn_ids(tokenizer, path) if chat else frozenset()
    settings = SampleSettings(
        temperature=eval_set.temperature, top_p=eval_set.top_p, max_new_tokens=eval_set.max_new_tokens
    )
    jobs = []
    for prompt in eval_set.prompts:
        row = PromptRow(prompt.key, prompt.text, prompt.category, "evaluation")
        ids, room, _ = fit_to_context(
            encode_prompt(tokenizer, "{text}", row, chat=chat, model_name=name), settings.max_new_tokens, context
        )
        fitted = replace(settings, max_new_tokens=room)
        jobs += [(prompt, seed, Request(ids, fitted, seed)) for seed in prompt.seeds]
    engine = TorchEngine(model, tokenizer, device)
    outputs = engine.decode([request for _, _, request in jobs], end_ids) if jobs else []
    return [
        EvalDraft(
            prompt.key,
            prompt.text,
            seed,
            draft_text(tokenizer, "" if chat else prompt.text, out, []),
            len(out.ids[:-1] if out.stopped == "eos" else out.ids),
            out.stopped,
        )
        for (prompt, seed, _), out in zip(jobs, outputs, strict=True)
    ]


def draft_metrics(drafts: list[EvalDraft], index: NgramIndex | None = None) -> dict[str, Any]:
    """The metrics above over a version's evaluation drafts (None where there is nothing to measure)."""
    if not drafts:
        return {"drafts": 0}
    written = [words_of(d.written) for d in drafts]
    every = [w for words in written for w in words]
    pairs = [tuple(words[i : i + 2]) for words in written for i in range(len(words) - 1)]
    metrics: dict[str, Any] = {
        "drafts": len(drafts),
        "mean_words": round(statistics.fmean(len(w) for w in written), 2),
        "repetition": round(statistics.fmean(repetition(w) for w in written), 4),
        "distinct_1": round(len(set(every)) / len(every), 4) if every else None,
        "distinct_2": round(len(set(pairs)) / len(pairs), 4) if pairs else None,
        "echo_rate": _share(
            echo_share(w, words_of(d.prompt)) > ECHO for w, d in zip(written, drafts, strict=True) if w
        ),
        "empty_rate": _share(not w for w in written),
        "eos_rate": _share(d.stopped == "eos" for d in drafts),
    }
    if index is not None:
        copied = [index.originality(d.written).get("copied_13gram_share", 0.0) for d in drafts]
        metrics["originality"] = round(1 - statistics.fmean(float(c) for c in copied), 4)
    return metrics


def _share(flags: Any) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 4) if values else 0.0
