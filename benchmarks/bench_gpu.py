"""The GPU figures of the real-model path, from random-init weights of realistic shapes (no download).

1. GPT-2 124M training in bf16: our training loop (compile off and on) against a bare PyTorch loop;
   tokens/s and MFU against the GPU's bf16 peak.                     (target: >= 40% MFU, GPU only)
2. A Qwen2-0.5B-shaped model: full fine-tuning vs LoRA (rank 16, every linear layer): tokens/s and
   peak GPU memory.
3. Generation of 256 prompts of mixed lengths (16-512 tokens) x 256 new tokens, sampling: the torch
   engine (our decode loop, 128 prompts a batch, as the stage runs it) vs one batched HF `generate`
   call vs the vLLM engine when vLLM is installed.   (targets: torch >= 1.0x, vLLM >= 3x, GPU only)

Without CUDA it runs in its CPU mode: the same code on shapes scaled down so that it ends in a
minute, to keep the script working; those figures say nothing about a GPU and have no targets.
Run: python -m benchmarks.bench_gpu        (benchmarks/gpu_check.sh runs it on the device machine)
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.common import Targets
from tasks.generate.params import SampleSettings
from tasks.generate.sampling import Request, decode_batch
from tasks.models import pick_device
from tasks.train.loop import train_loop
from tasks.train.params import TrainParams

H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100/H200 SXM
GPU = torch.cuda.is_available()
TRAIN_STEPS, WARMUP_STEPS = (30, 5) if GPU else (4, 1)


def _peak_flops() -> float:
    return H200_BF16_PEAK if GPU else float("nan")


def _gpt2_124m() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    # GPT-2 small; vocabulary padded to a multiple of 64 as nanoGPT does (tensor-core friendly)
    tiny: dict[str, Any] = {
        "n_layer": 2,
        "n_embd": 64,
        "n_head": 2,
        "vocab_size": 512,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }
    config = GPT2Config(vocab_size=50304) if GPU else GPT2Config(**tiny)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


def _qwen2_half_b() -> Any:
    from transformers import AutoModelForCausalLM, Qwen2Config

    shape: dict[str, Any] = (
        {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14}
        | {"num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 4096, "tie_word_embeddings": True}
        if GPU
        else {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
        | {"num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 1024, "tie_word_embeddings": True}
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(Qwen2Config(**shape))


def _blocks(vocab: int, n: int, block: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, vocab, size=(n, block), dtype=np.int64)


def _timed_rate(step: Callable[[], None], tokens_per_step: int) -> float:
    for _ in range(WARMUP_STEPS):
        step()
    if GPU:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(TRAIN_STEPS):
        step()
    if GPU:
        torch.cuda.synchronize()
    return TRAIN_STEPS * tokens_per_step / (time.perf_counter() - started)


def bare_loop_rate(model: Any, blocks: np.ndarray, batch: int, device: torch.device) -> float:
    """The reference: forward, backward, clip, fused AdamW step; bf16 autocast on a GPU."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=GPU or None)
    rng = np.random.default_rng(1)

    def step() -> None:
        x = torch.from_numpy(blocks[rng.integers(0, len(blocks), batch)]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=GPU):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _timed_rate(step, batch * blocks.shape[1])


def task_loop_rate(model: Any, blocks: np.ndarray, params: TrainParams, device: torch.device) -> float:
    """Our training loop (tasks/train/loop.py) as fine-tune runs it, warm-up steps excluded."""
    runnable = torch.compile(model) if params.compile else model
    tokens = params.batch_size * blocks.shape[1]
    quiet = params.model_copy(update={"eval_interval": 10**6, "log_interval": 10**6, "max_minutes": 60})
    train_loop(runnable, blocks, blocks[:8], quiet.model_copy(update={"max_steps": WARMUP_STEPS}), device)
    if GPU:
        torch.cuda.synchronize()
    started = time.perf_counter()
    train_loop(runnable, blocks, blocks[:8], quiet.model_copy(update={"max_steps": TRAIN_STEPS}), device)
    if GPU:
        torch.cuda.synchronize()
    return TRAIN_STEPS * tokens / (time.perf_counter() - started)


def gpt2_training(device: torch.device, targets: Targets) -> None:
    block, batch = (1024, 16) if GPU else (64, 4)
    print(f"1. GPT-2 {'124M' if GPU else '(CPU mode: 2 x 64)'} training, {batch} x {block} tokens a step")
    probe = _gpt2_124m()
    n_params, cfg = sum(p.numel() for p in probe.parameters()), probe.config
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * block
    blocks = _blocks(cfg.vocab_size, 256, block)
    rates = {"bare PyTorch loop": bare_loop_rate(_gpt2_124m().to(device), blocks, batch, device)}
    for compile_ in (False, True) if GPU else (False,):
        params = TrainParams(batch_size=batch, warmup_steps=0, compile=compile_)
        rates[f"draftflow loop, compile {'on' if compile_ else 'off'}"] = task_loop_rate(
            _gpt2_124m().to(device), blocks, params, device
        )
    for name, rate in rates.items():
        mfu = rate * flops_per_token / _peak_flops()
        print(f"  {name:34s} {rate:12,.0f} tokens/s   MFU {mfu:.1%}   ({rate / rates['bare PyTorch loop']:.2f}x bare)")
    if GPU:
        best = max(rate for name, rate in rates.items() if name.startswith("draftflow"))
        targets.check("GPT-2 124M training MFU (bf16)", 100 * best * flops_per_token / _peak_flops(), ">=", 40, "%")


def full_vs_lora(device: torch.device) -> None:
    from tasks.adapters import add_lora, trainable_parameters

    block, batch = (1024, 8) if GPU else (64, 4)
    print(f"2. Qwen2-0.5B shape {'' if GPU else '(CPU mode: 2 x 64) '}fine-tuning, {batch} x {block} tokens a step")
    for method in ("full", "lora"):
        if GPU:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        model = _qwen2_half_b()
        if method == "lora":
            model = add_lora(model.to(dtype=torch.bfloat16) if GPU else model, TrainParams(method="lora"))
        model = model.to(device)
        params = TrainParams(batch_size=batch, warmup_steps=0, method=method)
        rate = task_loop_rate(model, _blocks(model.config.vocab_size, 64, block), params, device)
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:6.1f} GiB peak" if GPU else "(no GPU memory in CPU mode)"
        trainable = trainable_parameters(model)
        print(f"  {method:5s} {rate:12,.0f} tokens/s   {peak}   {trainable / 1e6:.1f}M trainable parameters")
        del model


def _requests(n: int, vocab: int, longest: int, new: int) -> list[Request]:
    rng = random.Random(0)
    settings = SampleSettings(temperature=0.8, top_p=0.95, max_new_tokens=new, min_new_tokens=new)
    return [
        Request([rng.randrange(3, vocab) for _ in range(rng.randint(16, longest))], settings, seed=i) for i in range(n)
    ]


def generation(device: torch.device, targets: Targets) -> None:
    n, longest, new = (256, 512, 256) if GPU else (16, 48, 16)
    print(f"3. generation: {n} prompts of 16-{longest} tokens x {new} new tokens, sampling")
    model = _qwen2_half_b().to(device, dtype=torch.bfloat16 if GPU else torch.float32).eval()
    vocab, eos = model.config.vocab_size, 2
    requests = _requests(n, vocab, longest, new)
    batch = 128 if GPU else 8

    def torch_engine() -> int:
        done = 0
        for start in range(0, n, batch):
            done += sum(len(o.ids) for o in decode_batch(model, requests[start : start + batch], 0, eos, device))
        return done

    def hf_generate() -> int:
        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.tensor([[0] * (width - len(r.prompt_ids)) + r.prompt_ids for r in requests], device=device)
        mask = (
            torch.arange(width, device=device)[None, :]
            >= width - torch.tensor([len(r.prompt_ids) for r in requests], device=device)[:, None]
        ).long()
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=0.8,
                top_p=0.95,
                max_new_tokens=new,
                min_new_tokens=new,
                pad_token_id=0,
                eos_token_id=eos,
            )
        return int(out[:, width:].numel())

    contenders: dict[str, Callable[[], int]] = {"one HF generate call": hf_generate, "torch engine": torch_engine}
    vllm = _vllm_contender(model, requests) if GPU else None
    if vllm is not None:
        contenders["vLLM engine"] = vllm
    rates = {}
    for name, run in contenders.items():
        if GPU:
            torch.cuda.synchronize()
        started = time.perf_counter()
        tokens = run()
        if GPU:
            torch.cuda.synchronize()
        rates[name] = tokens / (time.perf_counter() - started)
        print(f"  {name:22s} {rates[name]:12,.0f} new tokens/s   ({tokens} tokens)")
    base = rates["one HF generate call"]
    for name in rates:
        print(f"  {name:22s} {rates[name] / base:.2f}x one HF generate call")
    if GPU:
        targets.check("torch engine vs one HF generate call", rates["torch engine"] / base, ">=", 1.0)
        if "vLLM engine" in rates:
            targets.check("vLLM engine vs one HF generate call", rates["vLLM engine"] / base, ">=", 3.0)
        else:
            print("  vLLM is not installed here: no vLLM figure (pip install 'draftflow[vllm]')")


def _vllm_contender(model: Any, requests: list[Request]) -> Callable[[], int] | None:
    """The vLLM engine on the same random weights, saved to a folder (its loader reads folders)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return None
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from tasks.generate.engines import vllm_sampling

    folder = tempfile.mkdtemp(prefix="draftflow-bench-vllm-")
    model.save_pretrained(folder)
    llm = LLM(model=folder, skip_tokenizer_init=True, dtype="bfloat16", seed=0, gpu_memory_utilization=0.5)

    def run() -> int:
        sampling = [
            SamplingParams(**(vllm_sampling(r.settings, r.seed, frozenset()) | {"detokenize": False})) for r in requests
        ]
        outputs = llm.generate(
            [TokensPrompt(prompt_token_ids=r.prompt_ids) for r in requests], sampling, use_tqdm=False
        )
        return sum(len(o.outputs[0].token_ids) for o in outputs)

    run()  # warm-up: CUDA graphs are captured on the first batch
    return run


def main() -> None:
    device = pick_device()
    print(f"device: {torch.cuda.get_device_name(0) if GPU else 'CPU (CPU mode: scaled-down shapes, no targets)'}")
    targets = Targets()
    gpt2_training(device, targets)
    full_vs_lora(device)
    generation(device, targets)
    targets.finish()


if __name__ == "__main__":
    main()
