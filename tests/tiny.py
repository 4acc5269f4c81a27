"""Tiny-but-real configurations so each test trains and generates in about a second."""

from __future__ import annotations

from flows.params import NightlyParams
from tasks.clean.params import CleanParams
from tasks.evaluate.params import EvalParams
from tasks.generate.params import GenerationParams
from tasks.review.params import CheckParams
from tasks.tokenize.params import TokenizeParams
from tasks.train.params import TrainParams

TOKENIZE = TokenizeParams(vocab_size=320, block_size=32, val_fraction=0.2, min_frequency=1)
TRAIN = TrainParams(
    n_layer=1,
    n_embd=32,
    n_head=2,
    batch_size=4,
    max_steps=6,
    warmup_steps=2,
    eval_interval=3,
    eval_batches=2,
    log_interval=2,
    max_minutes=2,
)
GENERATE = GenerationParams(samples_per_prompt=2, max_new_tokens=8, batch_size=4)
# A 1-layer model's 8-token drafts are rarely 3 words: tests of the flow route them all to the pending
# queue, tests of the checks use their own CheckParams.
CHECKS = CheckParams(min_new_words=0, max_echo_share=1.0)
EVALUATE = EvalParams(documents=8, max_bytes=16_384, prompts=3, seeds=2, max_new_tokens=8)


def nightly_params(corpus: str, prompts: str, home: str, base_model: str | None = None) -> NightlyParams:
    return NightlyParams(
        corpus=[corpus],
        prompts_file=prompts,
        home=home,
        base_model=base_model,
        clean=CleanParams(),
        tokenize=TOKENIZE,
        training=TRAIN,
        generation=GENERATE,
        checks=CHECKS,
        evaluation=EVALUATE,
    )
