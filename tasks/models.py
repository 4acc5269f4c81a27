"""Where a run's model comes from: scratch, the latest registered version, or a hub id / path.

Loading goes through `from_pretrained` in every case, so a hub id, a local folder and a version
in our registry are the same code path; a model that cannot be loaded is a one-line user error.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.db import Database
from storage.errors import DraftflowError, first_line
from storage.refs import BaseModelSpec
from storage.registry import get_model_version, latest_model_version

if TYPE_CHECKING:
    import torch

log = logging.getLogger("draftflow.base_model")
# What `save_pretrained` writes for a tokenizer: a fast tokenizer.json, or a config that names the files
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def quiet_transformers() -> None:
    """No tqdm bars from transformers: they garble Prefect's log lines and CI output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def resolve_base_model(base_model: str | None, db: Database, from_scratch: bool = False) -> BaseModelSpec:
    """`None` continues from the latest promoted version (scratch if there is none).

    `base_model` may be `scratch`, a registry version (`v0003`), a local folder or a hub id.
    """
    if from_scratch or base_model == "scratch":
        return BaseModelSpec(kind="scratch")
    if base_model is None:
        latest = latest_model_version(db)
        if latest is None:
            return BaseModelSpec(kind="scratch")
        log.info("continuing from the latest model version %s", latest.name)
        return BaseModelSpec(kind="registry", source=latest.path, version_id=latest.id)
    if base_model.startswith("v") and base_model[1:].isdigit() and not Path(base_model).exists():
        version = get_model_version(db, base_model)
        return BaseModelSpec(kind="registry", source=version.path, version_id=version.id)
    path = Path(base_model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise DraftflowError(
                f"base model folder '{base_model}' has no config.json "
                "(give a folder written by save_pretrained, or a hub id)"
            )
        if not any((path / name).is_file() for name in _TOKENIZER_FILES):
            raise DraftflowError(
                f"base model folder '{base_model}' has no tokenizer (tokenizer.json or tokenizer_config.json): "
                "save it there too with tokenizer.save_pretrained(folder)"
            )
        return BaseModelSpec(kind="pretrained", source=str(path.resolve()))
    if base_model.startswith((".", "/", "~")):
        raise DraftflowError(f"base model path '{base_model}' does not exist")
    return BaseModelSpec(kind="pretrained", source=base_model)  # a hub id: loaded lazily


def load_tokenizer(source: str) -> Any:
    """A fast tokenizer with an EOS token, from a folder or hub id."""
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, source, "tokenizer")
    if not getattr(tokenizer, "is_fast", False):
        raise DraftflowError(
            f"the tokenizer of '{source}' has no fast (Rust) version, which draftflow needs for batch encoding"
        )
    if tokenizer.eos_token_id is None:
        raise DraftflowError(f"the tokenizer of '{source}' has no EOS token to separate documents")
    return tokenizer


def tokenizer_id_of(tokenizer: Any) -> str:
    """Content hash of a fast tokenizer: equal ids mean identical token ids for any text."""
    from storage.fingerprint import text_hash

    return text_hash(tokenizer.backend_tokenizer.to_str())[:16]


def load_config(source: str) -> Any:
    """The model config of a folder, hub id or version; a LoRA version's is its base's."""
    from transformers import AutoConfig

    from tasks.adapters import adapter_base, is_adapter

    return _load(AutoConfig.from_pretrained, adapter_base(source) if is_adapter(source) else source, "config")


def context_length(config: Any) -> int | None:
    """Positions a causal LM can attend over (GPT-2 calls it n_positions, most others max_position_embeddings)."""
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def pad_id(tokenizer: Any) -> int:
    """The padding id; decoder-only tokenizers often have none, and EOS serves (masked out anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def load_causal_lm(
    source: str,
    *,
    dtype: torch.dtype | None = None,
    trainable_adapter: bool = False,
    merge_adapter: bool = True,
    **options: Any,
) -> Any:
    """A causal LM from a folder, a hub id or a registered version. A LoRA version (an adapter folder)
    loads its base, then the adapter: merged into the weights by default (a plain model), kept as a
    trainable PeftModel with `trainable_adapter` (training continues it). `dtype` None keeps float32."""
    from transformers import AutoModelForCausalLM

    from tasks.adapters import adapter_base, is_adapter, load_adapter_model

    quiet_transformers()
    if dtype is not None:
        options["dtype" if _takes_dtype() else "torch_dtype"] = dtype
    if is_adapter(source):
        base = _load(lambda s: AutoModelForCausalLM.from_pretrained(s, **options), adapter_base(source), "model")
        return load_adapter_model(source, base, trainable=trainable_adapter, merge=merge_adapter)
    return _load(lambda s: AutoModelForCausalLM.from_pretrained(s, **options), source, "model")


def _takes_dtype() -> bool:
    """transformers 5 renamed `torch_dtype` to `dtype` (4.x, the floor, knows only the old name)."""
    import transformers

    return int(transformers.__version__.split(".")[0]) >= 5


def weights_dtype(choice: str, device: torch.device, frozen: bool) -> torch.dtype | None:
    """The dtype to load weights in: `float32`, `bfloat16`, or `auto`: bf16 on a CUDA GPU that has it
    for weights that do not train (a LoRA base, generation); float32 master weights for full
    fine-tuning, whose matmuls still run in bf16 under autocast. None means float32."""
    import torch

    if choice == "bfloat16":
        return torch.bfloat16
    if choice == "auto" and frozen and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _load(loader: Any, source: str, what: str) -> Any:
    try:
        return loader(source)
    except (OSError, ValueError) as exc:
        raise DraftflowError(
            f"cannot load the {what} of base model '{source}': not a local folder "
            f"with one, and not reachable on the model hub ({first_line(exc)})"
        ) from None


def pick_device() -> torch.device:
    """CUDA when present (TF32 matmuls on), else the CPU with one thread per core."""
    import torch

    # CPU threads: one per core; two torch jobs on the same cores slow each other ~7x.
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls: ~free speed on Ampere and later
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda")
    return torch.device("cpu")


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator failing to get memory."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextmanager
def out_of_memory_is_one_line(doing: str, lower: str) -> Iterator[None]:
    """Turn running out of (GPU or CPU) memory while `doing` into one line naming what to lower."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        asked = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMG]?i?B|\d+ bytes)", str(exc))
        detail = f"it tried to allocate {asked.group(1)}" if asked else type(exc).__name__
        raise DraftflowError(f"out of memory while {doing} ({detail}): lower {lower}") from None
