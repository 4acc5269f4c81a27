"""A batched decode loop with a KV cache that stops paying for finished sequences.

HF `generate` keeps every row of a batch until the longest one ends; here a row leaves the batch
(and the KV cache) as soon as it hits EOS, its own token limit or a stop string. Each row samples
with its own torch.Generator, seeded per draft, so a draft does not depend on which other prompts
shared its batch (up to float rounding differences of batched vs. single matmuls).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch

from tasks.generate.params import SampleSettings

log = logging.getLogger("draftflow.generate")


@dataclass
class Request:
    prompt_ids: list[int]
    settings: SampleSettings
    seed: int


@dataclass
class Output:
    ids: list[int]
    stopped: str  # "eos", "stop_string", "max_new_tokens"


def _penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> None:
    """CTRL-style repetition penalty, in place on one row's logits."""
    picked = logits[seen]
    logits[seen] = torch.where(picked > 0, picked / penalty, picked * penalty)


def _top_k(logits: torch.Tensor, s: SampleSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, token ids) of the k likeliest tokens per row, likeliest first, top-p applied
    among them (the token crossing top_p is kept, as in HF's TopPLogitsWarper)."""
    values, ids = torch.topk(logits / s.temperature, min(s.top_k, logits.shape[-1]), dim=-1)
    probs = torch.softmax(values, dim=-1)
    if s.top_p < 1.0:
        probs = probs.masked_fill(probs.cumsum(-1) - probs > s.top_p, 0.0)
    return probs / probs.sum(-1, keepdim=True), ids


def _uniforms(generators: list[torch.Generator], device: torch.device) -> torch.Tensor:
    return torch.stack([torch.rand((), generator=g) for g in generators]).to(device)


def _draw(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Inverse-CDF sampling: one uniform number per row from that row's own generator."""
    cdf = probs.cumsum(-1)
    target = (_uniforms(generators, probs.device).to(probs.dtype) * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, target, right=True).clamp(max=probs.shape[-1] - 1)[:, 0]


def _draw_nucleus(probs: torch.Tensor, top_p: float, generators: list[torch.Generator]) -> torch.Tensor:
    """Top-p sampling over the whole vocabulary without sorting it (a sort of 32 x 8k logits cost
    ~9 ms a step, half of a CPU decode step). Rejection sampling is exact: draw from the full
    distribution and keep the token when the mass of the tokens likelier than it is <= top_p (it
    is in the nucleus); otherwise draw again. The nucleus holds >= top_p of the mass, so a row
    needs 1 / top_p draws on average."""
    picks = _draw(probs, generators)
    pending = torch.arange(probs.shape[0], device=probs.device)
    while True:
        rows = probs[pending]
        chosen = rows.gather(1, picks[pending, None])
        likelier = torch.where(rows > chosen, rows, 0.0).sum(-1) / rows.sum(-1)
        pending = pending[likelier > top_p]
        if not len(pending):
            return picks
        picks[pending] = _draw(probs[pending], [generators[i] for i in pending.tolist()])


def _next_tokens(
    logits: torch.Tensor,
    requests: list[Request],
    outputs: list[list[int]],
    generators: list[torch.Generator],
    end_ids: list[int],
) -> list[int]:
    """One token per row. Filtering is vectorized over rows with equal settings (the usual case);
    only the draw is per row, with that draft's own generator."""
    logits = logits.float().clone()
    for row, r in enumerate(requests):
        if len(outputs[row]) < r.settings.min_new_tokens:
            logits[row, end_ids] = float("-inf")
        if r.settings.repetition_penalty != 1.0:
            seen = torch.tensor(r.prompt_ids + outputs[row], dtype=torch.long, device=logits.device)
            _penalize_repeats(logits[row], seen, r.settings.repetition_penalty)
    tokens = [0] * len(requests)
    groups: dict[tuple[float, float, int], list[int]] = {}
    for row, r in enumerate(requests):
        groups.setdefault((r.settings.temperature, r.settings.top_p, r.settings.top_k), []).append(row)
    for rows in groups.values():
        settings = requests[rows[0]].settings
        block = logits[rows]
        if settings.temperature <= 0:
            picks = torch.argmax(block, dim=-1).tolist()
        else:
            row_generators = [generators[row] for row in rows]
            if settings.top_k:
                probs, ids = _top_k(block, settings)
                picks = ids.gather(1, _draw(probs, row_generators)[:, None])[:, 0].tolist()
            else:
                probs = torch.softmax(block / settings.temperature, dim=-1)
                picks = (
                    _draw_nucleus(probs, settings.top_p, row_generators)
                    if settings.top_p < 1.0
                    else _draw(probs, row_generators)
                ).tolist()
        for row, token in zip(rows, picks, strict=True):
            tokens[row] = token
    return tokens


def _cache_argument(model: Any) -> str:
    """transformers 5.24 renamed `past_key_values` to `cache`; accept either generation."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _last_logits_only(model: Any) -> dict[str, int]:
    """The prompt pass needs the logits of the last position only: asking for those alone skips
    the LM head over the whole prompt (32 x 200 x vocab for long prompts)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _cache_of(output: Any) -> Any:
    return output.cache if getattr(output, "cache", None) is not None else output.past_key_values


# Cache layers that hold only per-row keys and values, so that slicing the batch dimension is exact.
# Others (static, quantized, linear-attention or recurrent state) either refuse or would keep stale rows.
_DROPPABLE_LAYERS = frozenset({"DynamicLayer", "DynamicSlidingWindowLayer"})


def can_drop_rows(cache: Any) -> bool:
    """Whether finished rows can leave this KV cache: a legacy tuple of (key, value) tensors per layer,
    or a transformers Cache whose every layer only holds keys and values."""
    if isinstance(cache, tuple):
        return all(isinstance(layer, tuple) for layer in cache)
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return bool(layers) and all(type(layer).__name__ in _DROPPABLE_LAYERS for layer in layers)
    # transformers < 4.56: a DynamicCache keeps plain per-layer key and value lists, no layer objects
    return type(cache).__name__ == "DynamicCache" and hasattr(cache, "batch_select_indices")


def _keep_rows(cache: Any, index: torch.Tensor) -> Any:
    """The KV cache of the rows still generating (the caller checked `can_drop_rows`): a Cache object
    in place (transformers' own method), or a legacy tuple (transformers < 4.47 returns those for GPT-2)."""
    if isinstance(cache, tuple):
        return tuple(tuple(tensor[index] for tensor in layer) for layer in cache)
    cache.batch_select_indices(index)
    return cache


@torch.no_grad()
def decode_batch(
    model: Any,
    requests: list[Request],
    pad_id: int,
    eos_id: int,
    device: torch.device,
    decode: Any = None,
    drop_finished: bool = True,
    end_ids: frozenset[int] = frozenset(),
) -> list[Output]:
    """Generate for a batch of prompts; `decode(ids) -> str` is needed only for stop strings.
    `end_ids` end a row as EOS does (a chat template's end-of-turn token); the row's output keeps
    the token that ended it, reported as stopped by "eos".

    Finished rows leave the batch and the KV cache when the cache allows it (`can_drop_rows`) and
    `drop_finished` is on; otherwise they stay, fed EOS, and what they produce is ignored. Either way
    each row's tokens are the same: a row samples from its own generator."""
    width = max(len(r.prompt_ids) for r in requests)
    ids = torch.tensor([[pad_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in requests], device=device)
    mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in requests], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    generators = [torch.Generator().manual_seed(r.seed) for r in requests]
    outputs: list[list[int]] = [[] for _ in requests]
    stopped: list[str] = [""] * len(requests)
    batch = list(range(len(requests)))  # the original request of each row the model sees
    cache_arg = _cache_argument(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **_last_logits_only(model))
    cache, logits = _cache_of(out), out.logits[:, -1, :]
    can_drop = drop_finished and can_drop_rows(cache)
    if drop_finished and not can_drop:
        log.info("the %s cannot drop finished rows: they stay in the batch", type(cache).__name__)
    next_pos = positions[:, -1] + 1
    ends = sorted({eos_id, *end_ids})
    while True:
        live = [row for row, original in enumerate(batch) if not stopped[original]]
        chosen = _next_tokens(
            logits[live] if len(live) < len(batch) else logits,
            [requests[batch[row]] for row in live],
            [outputs[batch[row]] for row in live],
            [generators[batch[row]] for row in live],
            ends,
        )
        fed = [eos_id] * len(batch)  # a finished row that stays in the batch is fed EOS, and ignored
        for row, token in zip(live, chosen, strict=True):
            original = batch[row]
            r = requests[original]
            outputs[original].append(token)
            fed[row] = token
            if token in ends:
                stopped[original] = "eos"
            elif (
                r.settings.stop and decode is not None and any(s in decode(outputs[original]) for s in r.settings.stop)
            ):
                stopped[original] = "stop_string"
            elif len(outputs[original]) >= r.settings.max_new_tokens:
                stopped[original] = "max_new_tokens"
        keep = [row for row, original in enumerate(batch) if not stopped[original]]
        if not keep:
            break
        if can_drop and len(keep) < len(batch):  # finished rows leave the batch and the KV cache
            index = torch.tensor(keep, device=device)
            cache, mask, next_pos = _keep_rows(cache, index), mask[index], next_pos[index]
            fed = [fed[row] for row in keep]
            batch = [batch[row] for row in keep]
        mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(
            input_ids=torch.tensor(fed, device=device)[:, None],
            attention_mask=mask,
            position_ids=next_pos[:, None],
            use_cache=True,
            **{cache_arg: cache},
        )
        cache, logits = _cache_of(out), out.logits[:, -1, :]
        next_pos = next_pos + 1
    return [Output(ids, stop) for ids, stop in zip(outputs, stopped, strict=True)]
