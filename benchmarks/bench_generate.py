"""Generation throughput (new tokens/s) of the generate stage vs the classic loops, and the originality check.

Every pair of contenders does the same work: the same prompts, and the same number of new tokens.
1. 32 prompts x exactly 64 new tokens (sampling, min_new_tokens = 64): the stage vs one prompt at a
   time with `model.generate`.                                               (target: >= 7x end to end)
2. 32 prompts x <= 64 new tokens, EOS allowed, greedy: both write the same continuations, so the
   same tokens; the stage vs one prompt at a time.                           (target: >= 3x end to end)
3. A realistic mix of prompts (5-200 tokens) against one plain batched, left-padded `model.generate`
   call over all of them, twice: with exactly 128 new tokens each, sampling (the same tokens by
   construction)                                                          (target: >= 1.3x end to end)
   and with EOS allowed, greedy (the same continuations)                 (target: >= 1.0x end to end)
4. The originality check: index build time and size vs corpus size, and cost per draft.
                                                 (targets: <= 1 ms per draft, <= 16 index bytes per word)
Same model (GPT-2 4x256, context 512, briefly trained so that it emits EOS), one run. A pair whose
new-token counts differ by more than 2% fails: then they did not do the same work.
Run: .venv/bin/python -m benchmarks.bench_generate
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Targets, fresh_settings, prepared_corpus
from storage.db import Database, open_database
from storage.drafts import PromptRow
from storage.parquet_store import iter_batches
from storage.refs import BaseModelSpec, ModelRef
from storage.runs import start_run
from tasks.generate.params import GenerationParams
from tasks.generate.stage import generate_drafts
from tasks.models import load_causal_lm, load_tokenizer, pick_device
from tasks.review.checks import NgramIndex, check_draft, words_of
from tasks.review.params import CheckParams
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.params import TokenizeParams
from tasks.tokenize.stage import tokenize_corpus
from tasks.train.params import TrainParams
from tasks.train.stage import train_model

SAMPLING = {"temperature": 0.8, "top_p": 0.95}
GREEDY = {"temperature": 0.0}


def new_tokens(rows: torch.Tensor, eos: int) -> int:
    total = 0
    for row in rows.tolist():
        total += row.index(eos) + 1 if eos in row else len(row)
    return total


def _hf_sampling(settings: dict[str, float]) -> dict[str, Any]:
    if settings.get("temperature", 1.0) <= 0:
        return {"do_sample": False}
    return {"do_sample": True, **settings}


def one_at_a_time(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new: int,
    min_new: int = 0,
    sampling: dict[str, float] = SAMPLING,
) -> tuple[int, float]:
    started, total = time.perf_counter(), 0
    for text in prompts:
        ids = torch.tensor(
            [[tokenizer.eos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]], device=model.device
        )
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new,
            min_new_tokens=min_new,
            pad_token_id=tokenizer.eos_token_id,
            **_hf_sampling(sampling),
        )
        total += new_tokens(out[:, ids.shape[1] :], tokenizer.eos_token_id)
    return total, time.perf_counter() - started


def one_batched_call(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new: int,
    sampling: dict[str, float] = SAMPLING,
    min_new: int = 0,
) -> tuple[int, float]:
    started = time.perf_counter()
    seqs = [[tokenizer.eos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in prompts]
    width = max(map(len, seqs))
    ids = torch.tensor([[tokenizer.eos_token_id] * (width - len(s)) + s for s in seqs], device=model.device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=model.device)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new,
        min_new_tokens=min_new,
        pad_token_id=tokenizer.eos_token_id,
        **_hf_sampling(sampling),
    )
    return new_tokens(out[:, width:], tokenizer.eos_token_id), time.perf_counter() - started


def stage(
    model_ref: ModelRef,
    db: Database,
    prompts: list[str],
    max_new: int,
    tag: str,
    model: Any = None,
    min_new: int = 0,
    sampling: dict[str, float] = SAMPLING,
) -> tuple[int, float]:
    rows = [PromptRow(key=f"{tag}:{i}", text=t, category=None, source=tag) for i, t in enumerate(prompts)]
    run = f"{tag}-{time.monotonic_ns()}"
    start_run(db, run, "bench", {})
    params = GenerationParams(samples_per_prompt=1, max_new_tokens=max_new, min_new_tokens=min_new, **sampling)
    result = generate_drafts(model_ref, rows, params, db, run, model=model)
    return result.new_tokens, result.seconds


def main() -> None:
    device = pick_device()
    settings = fresh_settings("generate")
    db = open_database(settings.database_url)
    _, clean = prepared_corpus(settings)
    tok_params = TokenizeParams(block_size=512)
    tokens = tokenize_corpus(
        clean, prepare_tokenizer(clean, BaseModelSpec(kind="scratch"), settings, tok_params), settings, tok_params
    )
    model_ref = train_model(
        tokens, BaseModelSpec(kind="scratch"), TrainParams(max_steps=40, eval_interval=40), db, settings
    )
    model, tokenizer = load_causal_lm(model_ref.path).to(device).eval(), load_tokenizer(model_ref.path)
    texts = [t for b in iter_batches(Path(clean.path), columns=["text"]) for t in b.column("text").to_pylist()]
    rng = random.Random(0)
    short = [" ".join(t.split()[:8]) for t in rng.sample(texts, 32)]

    def prompt_of_tokens(text: str, n: int) -> str:
        return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:n])

    mixed = [prompt_of_tokens(" ".join(rng.sample(texts, 6)), rng.randint(5, 200)) for _ in range(32)]
    with torch.no_grad():
        results = {
            "32 x 64 fixed: one prompt at a time (model.generate)": one_at_a_time(model, tokenizer, short, 64, 64),
            "32 x 64 fixed: draftflow generate stage": stage(model_ref, db, short, 64, "fixed", min_new=64),
            "32 x 64 fixed: generate stage, model already loaded": stage(
                model_ref, db, short, 64, "fixed2", model, min_new=64
            ),
            "32 x <=64 greedy, EOS allowed: one prompt at a time": one_at_a_time(
                model, tokenizer, short, 64, sampling=GREEDY
            ),
            "32 x <=64 greedy, EOS allowed: draftflow generate stage": stage(
                model_ref, db, short, 64, "short", sampling=GREEDY
            ),
            "mix 5-200 / 128 fixed: one batched model.generate call": one_batched_call(
                model, tokenizer, mixed, 128, min_new=128
            ),
            "mix 5-200 / 128 fixed: draftflow generate stage": stage(model_ref, db, mixed, 128, "mixfix", min_new=128),
            "mix 5-200 / <=128 greedy: one batched model.generate call": one_batched_call(
                model, tokenizer, mixed, 128, sampling=GREEDY
            ),
            "mix 5-200 / <=128 greedy: draftflow generate stage": stage(
                model_ref, db, mixed, 128, "mixed", sampling=GREEDY
            ),
            "mix 5-200 / <=128 greedy: generate stage, model already loaded": stage(
                model_ref, db, mixed, 128, "mixed2", model, sampling=GREEDY
            ),
        }
    rates = {name: tokens_ / seconds for name, (tokens_, seconds) in results.items()}
    print(f"device: {device}")
    for name, (tokens_, seconds) in results.items():
        print(f"  {name:<64} {tokens_:6d} new tokens in {seconds:6.2f} s = {rates[name]:7.1f} tokens/s")
    names = list(rates)
    targets = Targets()
    for baseline, contender in ((0, 1), (0, 2), (3, 4), (5, 6), (7, 8), (7, 9)):
        ours, theirs = results[names[contender]][0], results[names[baseline]][0]
        if abs(ours - theirs) > 0.02 * theirs:
            targets.missed.append(f"same work: {names[contender]} wrote {ours} tokens, its baseline {theirs}")
    targets.check("stage / one-at-a-time, 32 x 64 fixed, end to end", rates[names[1]] / rates[names[0]], ">=", 7)
    print(f"  stage / one-at-a-time, 32 x 64 fixed, model already loaded: {rates[names[2]] / rates[names[0]]:.1f}x")
    targets.check("stage / one-at-a-time, EOS allowed (greedy), end to end", rates[names[4]] / rates[names[3]], ">=", 3)
    targets.check(
        "stage / one batched call, mix, 128 fixed (sampling), end to end", rates[names[6]] / rates[names[5]], ">=", 1.3
    )
    targets.check(
        "stage / one batched call, mix, EOS allowed (greedy), end to end", rates[names[8]] / rates[names[7]], ">=", 1.0
    )
    print(f"  stage / one batched call, mix greedy, model already loaded: {rates[names[9]] / rates[names[7]]:.2f}x")

    # The originality index against corpus size: the clean corpus cut to a quarter, a half and all of it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus_mb = sum(len(t.encode()) for t in texts) / 1e6
    for share in (0.25, 0.5, 1.0):
        subset = Path(settings.home) / f"subset-{share}"
        subset.mkdir()
        pq.write_table(pa.table({"text": texts[: int(len(texts) * share)]}), subset / "part-0.parquet")
        started = time.perf_counter()
        index = NgramIndex.build(subset)
        build = time.perf_counter() - started
        mb = corpus_mb * share
        words = sum(len(words_of(t)) for t in texts[: int(len(texts) * share)])
        print(
            f"originality index: {mb:.2f} MB corpus -> built in {build:.2f} s, {index.nbytes / 1e6:.2f} MB "
            f"({index.nbytes / 1e6 / mb:.2f} MB per corpus MB, {index.nbytes / words:.1f} bytes per word)"
        )
    targets.check("originality index bytes per corpus word", index.nbytes / words, "<=", 16, unit=" B")
    drafts = [t[:600] for t in rng.sample(texts, 200)]
    started = time.perf_counter()
    for d in drafts:
        check_draft(d, index, CheckParams())
    per_draft = (time.perf_counter() - started) / len(drafts)
    targets.check(
        "all checks of one draft (originality, repetition, PII, blocklist, length)",
        1000 * per_draft,
        "<=",
        1.0,
        unit=" ms",
    )
    targets.finish()


if __name__ == "__main__":
    main()
