"""LoRA adapters with peft: add one to a model for training, and load a version that is one.

A LoRA version's folder holds only the adapter (`adapter_config.json`, `adapter_model.safetensors`)
and the tokenizer; `adapter_config.json` names the full-weight base it adapts (a hub id or a
folder), which must stay reachable. Training a LoRA version further continues the same adapter
over the same base, so an adapter never stacks on another adapter.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.errors import DraftflowError, first_line

if TYPE_CHECKING:
    import torch

    from tasks.train.params import TrainParams

log = logging.getLogger("draftflow.base_model")
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(source: str) -> bool:
    """A folder written by a peft model's `save_pretrained` (local folders only)."""
    return (Path(source) / ADAPTER_CONFIG).is_file()


def adapter_config(source: str) -> dict[str, Any]:
    """The adapter's `adapter_config.json`: its rank (`r`), targets and base."""
    config: dict[str, Any] = json.loads((Path(source) / ADAPTER_CONFIG).read_text())
    return config


def adapter_base(source: str) -> str:
    """The base model (hub id or folder) the adapter in `source` was trained over."""
    base = adapter_config(source).get("base_model_name_or_path")
    if not base:
        raise DraftflowError(f"the adapter in '{source}' does not name its base model (base_model_name_or_path)")
    return str(base)


def load_adapter_model(source: str, base_model: Any, *, trainable: bool = False, merge: bool = False) -> Any:
    """`base_model` with the adapter of `source` on it: trainable (to continue training it), merged into
    the base weights (a plain model: fastest to generate with), or as a PeftModel."""
    from peft import PeftModel

    with _quiet_peft():
        model = PeftModel.from_pretrained(base_model, source, is_trainable=trainable)
    return model.merge_and_unload() if merge and not trainable else model


def add_lora(model: Any, params: TrainParams) -> Any:
    """A new LoRA adapter on `model` (whose weights are frozen); target modules that match no layer of
    the model are the user's mistake: one line listing the names the model does have."""
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = params.lora_target_modules or "all-linear"
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=params.lora_rank,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=targets,
    )
    try:
        with _quiet_peft():
            return get_peft_model(model, config)
    except ValueError as exc:
        if "not found" not in str(exc) and "target" not in str(exc).lower():
            raise
        raise DraftflowError(
            f"LoRA target modules {targets} match no layer of the model: use 'all-linear' (the default: leave "
            f"lora_target_modules empty) or names among {', '.join(linear_layer_names(model)) or 'none'} "
            f"({first_line(exc)[:120]})"
        ) from None


def linear_layer_names(model: Any) -> list[str]:
    """The distinct last name parts of the model's linear layers (what target_modules matches)."""
    import torch

    kinds: tuple[type, ...] = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

        kinds = (*kinds, Conv1D)
    except ImportError:  # pragma: no cover - every supported transformers has it
        pass
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, kinds)})


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft calls a transformers method that transformers 5 deprecated: a warning for peft's authors,
    not for our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def is_peft_model(model: Any) -> bool:
    return hasattr(model, "peft_config")


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def quantized_base_options(device: torch.device) -> dict[str, Any]:
    """`from_pretrained` options for a 4-bit (QLoRA) base: CUDA and bitsandbytes only."""
    import torch

    if device.type != "cuda":
        raise DraftflowError(
            f"4-bit QLoRA needs a CUDA GPU and bitsandbytes; this run is on {device.type}: "
            'train with {"method": "lora", "quantize": "none"} here'
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise DraftflowError("4-bit QLoRA needs bitsandbytes: pip install bitsandbytes (or set quantize to none)")
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    }
