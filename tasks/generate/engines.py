"""Generation engines: our torch decode loop (everywhere), or vLLM (CUDA machines with the extra).

Both take the same requests (prompt ids, a draft's sampling settings and seed) and return the same
outputs (new ids ending with the token that ended them, and why they stopped), so the stage, the
drafts table and the checks do not know which one wrote a draft; each draft records its engine.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Protocol

from storage.errors import DraftflowError
from tasks.generate.params import SampleSettings
from tasks.generate.sampling import Output, Request, decode_batch
from tasks.models import out_of_memory_is_one_line, pad_id

log = logging.getLogger("draftflow.generate")
INSTALL_VLLM = "pip install 'draftflow[vllm]' on a machine with a CUDA GPU"


class Engine(Protocol):
    name: str

    def decode(self, requests: list[Request], end_ids: frozenset[int]) -> list[Output]: ...


def pick_engine(choice: str, cuda: bool) -> str:
    """`torch` or `vllm` for `generation.engine`; auto is vLLM where CUDA and vLLM both are."""
    has_vllm = importlib.util.find_spec("vllm") is not None
    if choice == "auto":
        return "vllm" if cuda and has_vllm else "torch"
    if choice == "vllm" and not has_vllm:
        raise DraftflowError(f"generation.engine vllm needs vLLM, which is not installed: {INSTALL_VLLM}")
    if choice == "vllm" and not cuda:
        raise DraftflowError("generation.engine vllm needs a CUDA GPU, and this machine has none: use engine torch")
    return choice


class TorchEngine:
    """The KV-cache decode loop of tasks/generate/sampling.py on a loaded transformers model."""

    name = "torch"

    def __init__(self, model: Any, tokenizer: Any, device: Any) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device

    def decode(self, requests: list[Request], end_ids: frozenset[int] = frozenset()) -> list[Output]:
        """One batch; running out of memory is one line naming what to lower."""
        longest = max(len(r.prompt_ids) + r.settings.max_new_tokens for r in requests)
        lower = (
            f"the batch size (now {len(requests)} drafts of up to {longest} tokens): --batch-size on generate, "
            "generation.batch_size in a run --config file; or --max-new-tokens"
        )
        with out_of_memory_is_one_line("generating", lower):
            return decode_batch(
                self.model,
                requests,
                pad_id(self.tokenizer),
                self.tokenizer.eos_token_id,
                self.device,
                decode=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
                end_ids=end_ids,
            )


def vllm_sampling(settings: SampleSettings, seed: int, end_ids: frozenset[int]) -> dict[str, Any]:
    """A draft's settings as `vllm.SamplingParams` arguments: the same knobs, vLLM's names. vLLM's
    repetition penalty is the same CTRL-style one (divide positive logits, multiply negative ones)."""
    return {
        "n": 1,
        "seed": seed,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k if settings.top_k > 0 else -1,  # vLLM: -1 is off
        "repetition_penalty": settings.repetition_penalty,
        "min_tokens": settings.min_new_tokens,
        "max_tokens": settings.max_new_tokens,
        "stop": list(settings.stop),
        "stop_token_ids": sorted(end_ids),
        "skip_special_tokens": True,
    }


def vllm_output(token_ids: list[int], finish_reason: str | None, stop_reason: Any, eos_id: int) -> Output:
    """A vLLM completion as our Output: ids end with the token that ended them, as the torch engine's do."""
    ids = list(token_ids)
    if finish_reason == "stop" and isinstance(stop_reason, str):
        return Output(ids, "stop_string")
    if finish_reason == "stop":
        end = stop_reason if isinstance(stop_reason, int) else eos_id  # a stop token id, or EOS (None)
        if not ids or ids[-1] != end:
            ids.append(end)
        return Output(ids, "eos")
    return Output(ids, "max_new_tokens")


class VllmEngine:  # pragma: no cover - needs CUDA and vLLM: exercised by benchmarks/gpu_check.sh
    """vLLM's continuous batching and paged attention. A LoRA version is served as its base model with
    the adapter as a LoRA request; a full version is served as it is."""

    name = "vllm"

    def __init__(self, path: str, tokenizer: Any, seed: int) -> None:
        from vllm import LLM

        from tasks.adapters import adapter_base, adapter_config, is_adapter

        self.tokenizer, self.lora = tokenizer, None
        options: dict[str, Any] = {"seed": seed, "dtype": "auto", "enable_prefix_caching": True}
        model = path
        if is_adapter(path):
            from vllm.lora.request import LoRARequest

            model = adapter_base(path)
            options |= {"enable_lora": True, "max_lora_rank": max(8, adapter_config(path).get("r") or 64)}
            self.lora = LoRARequest("draftflow", 1, path)
        self.llm = LLM(model=model, tokenizer=path, **options)

    def decode(self, requests: list[Request], end_ids: frozenset[int] = frozenset()) -> list[Output]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        eos = self.tokenizer.eos_token_id
        ends = end_ids | {eos}
        results = self.llm.generate(
            [TokensPrompt(prompt_token_ids=r.prompt_ids) for r in requests],
            [SamplingParams(**vllm_sampling(r.settings, r.seed, ends)) for r in requests],
            lora_request=self.lora,
            use_tqdm=False,
        )
        return [
            vllm_output(list(c.token_ids), c.finish_reason, c.stop_reason, eos)
            for c in (result.outputs[0] for result in results)
        ]
