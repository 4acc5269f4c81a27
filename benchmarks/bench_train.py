"""Training throughput: the fine-tune task's loop vs a bare PyTorch loop vs HF Trainer, same model and data.

Each contender is set up outside the timed region (HF's TrainingArguments and Trainer included), then
runs WARMUP steps, then STEPS timed steps of the same micro-batch size, starting from the same weights.
Also reports achieved FLOP/s against this machine's measured fp32 matmul peak.
Run: .venv/bin/python -m benchmarks.bench_train
(targets: task loop >= 0.95x the bare loop and >= 0.9x HF Trainer)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Targets, fresh_settings, prepared_corpus
from storage.refs import BaseModelSpec
from tasks.models import pick_device
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.params import TokenizeParams
from tasks.tokenize.stage import tokenize_corpus
from tasks.train.loop import make_optimizer, train_loop
from tasks.train.params import TrainParams
from tasks.train.stage import build_model, read_blocks

STEPS, WARMUP, ROUNDS = 30, 3, 3
PARAMS = TrainParams(
    max_steps=STEPS, eval_interval=10**9, checkpoint_interval=10**9, log_interval=10**9, max_minutes=60, warmup_steps=0
)


Runner = Callable[[int], None]  # runs n optimizer steps


def bare_loop(model: torch.nn.Module, blocks: np.ndarray) -> Runner:
    """The minimal loop every tutorial writes: sample, forward, backward, clip, step."""
    optimizer = make_optimizer(model, PARAMS)
    generator = torch.Generator().manual_seed(0)

    def run(steps: int) -> None:
        for _ in range(steps):
            idx = torch.randint(len(blocks), (PARAMS.batch_size,), generator=generator).numpy()
            x = torch.from_numpy(blocks[idx].astype(np.int64))
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), PARAMS.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return run


def task_loop(model: torch.nn.Module, blocks: np.ndarray) -> Runner:
    # train_loop builds its optimizer and sampler itself: a few ms per call, inside the timed region
    def run(steps: int) -> None:
        train_loop(model, blocks, blocks[:8], PARAMS.model_copy(update={"max_steps": steps}), torch.device("cpu"))

    return run


def hf_trainer(model: torch.nn.Module, blocks: np.ndarray) -> Runner:
    from transformers import Trainer, TrainingArguments

    class Blocks(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(blocks)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            x = torch.from_numpy(blocks[i].astype(np.int64))
            return {"input_ids": x, "labels": x}

    args = TrainingArguments(
        output_dir=str(Path(fresh_settings("trainer").home)),
        per_device_train_batch_size=PARAMS.batch_size,
        max_steps=WARMUP,
        learning_rate=PARAMS.learning_rate,
        weight_decay=PARAMS.weight_decay,
        max_grad_norm=PARAMS.grad_clip,
        logging_steps=10**9,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Blocks())

    def run(steps: int) -> None:
        trainer.args.max_steps = steps  # train() builds its optimizer and data loader, as train_loop does
        trainer.train()

    return run


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    pick_device()  # one thread per core, as the task does
    settings = fresh_settings("train")
    _, clean = prepared_corpus(settings)
    tok_params = TokenizeParams()
    tokens = tokenize_corpus(
        clean, prepare_tokenizer(clean, BaseModelSpec(kind="scratch"), settings, tok_params), settings, tok_params
    )
    blocks = read_blocks(Path(tokens.path) / "train")
    tokens_per_step = PARAMS.batch_size * tokens.block_size
    contenders = {"bare PyTorch loop": bare_loop, "draftflow task loop": task_loop, "HF Trainer": hf_trainer}
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(ROUNDS):  # interleaved rounds in rotating order, best of each
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            # the same seed: the same weights
            model = build_model(BaseModelSpec(kind="scratch"), tokens, PARAMS, torch.device("cpu"))
            run = contenders[name](model, blocks)  # set-up, untimed
            run(WARMUP)
            started = time.perf_counter()
            run(STEPS)
            rates[name].append(STEPS * tokens_per_step / (time.perf_counter() - started))
    best = {name: max(values) for name, values in rates.items()}
    model = build_model(BaseModelSpec(kind="scratch"), tokens, PARAMS, torch.device("cpu"))
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * tokens.block_size  # nanoGPT's estimate
    peak = matmul_peak_gflops()
    print(
        f"model: GPT-2 {cfg.n_layer} layers x {cfg.n_embd}, {n_params / 1e6:.2f}M params, vocab {cfg.vocab_size}, "
        f"batch {PARAMS.batch_size} x {tokens.block_size} tokens, {STEPS} timed steps, best of {ROUNDS}"
    )
    for name, rate in best.items():
        achieved = rate * flops_per_token / 1e9
        print(f"  {name:<22} {rate:8.0f} tokens/s  {achieved:6.1f} GFLOP/s  ({achieved / peak:.0%} of matmul peak)")
    print(f"fp32 matmul peak (2048x2048): {peak:.1f} GFLOP/s")
    targets = Targets()
    targets.check("task loop / bare loop", best["draftflow task loop"] / best["bare PyTorch loop"], ">=", 0.95)
    targets.check("task loop / HF Trainer", best["draftflow task loop"] / best["HF Trainer"], ">=", 0.9)
    targets.finish()


if __name__ == "__main__":
    main()
