"""References that stages pass to each other: paths + fingerprints + ids, never the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class DatasetRef(BaseModel):
    """A committed Parquet dataset folder."""

    path: str
    fingerprint: str
    rows: int
    stats: dict[str, int] = Field(default_factory=dict)
    report: list[dict[str, Any]] = Field(default_factory=list)  # per-step table (clean)
    profiles: dict[str, str] = Field(default_factory=dict)  # clean: each source's profile and why
    warnings: list[str] = Field(default_factory=list)  # clean: sources that lost most of their documents


def dataset_ref(directory: str | Path, what: str, fix: str) -> DatasetRef:
    """The reference to a committed dataset, from its manifest (for stage-by-stage CLI use)."""
    from storage.parquet_store import require_dataset

    manifest = require_dataset(Path(directory), what, fix)
    return DatasetRef(
        path=str(directory), fingerprint=manifest["fingerprint"], rows=manifest["rows"], stats=manifest.get("stats", {})
    )


class TokenizerRef(BaseModel):
    """A tokenizer folder loadable with `AutoTokenizer.from_pretrained`."""

    path: str
    tokenizer_id: str
    eos_id: int
    vocab_size: int
    trained: bool  # True when trained from scratch on this corpus


class TokensRef(BaseModel):
    """Packed token blocks for training: `train/` and `val/` datasets."""

    path: str
    fingerprint: str
    corpus_fingerprint: str
    tokenizer: TokenizerRef
    block_size: int
    train_blocks: int
    val_blocks: int
    tokens: int
    val_split: str = "documents"  # "documents" (by document hash) or "blocks" (too few documents for that)


class ModelRef(BaseModel):
    """A registered model version."""

    version_id: int
    name: str
    path: str
    train_loss: float | None = None
    val_loss: float | None = None
    perplexity: float | None = None
    tokens_seen: int = 0
    steps: int = 0
    wall_seconds: float = 0.0
    promoted: bool = True
    promotion: str = ""
    stopped_by: str = ""


class BaseModelSpec(BaseModel):
    """Where training starts: from scratch, a registered version, or a hub id / local path."""

    kind: str  # "scratch" | "registry" | "pretrained"
    source: str | None = None  # model path or hub id; None for scratch
    version_id: int | None = None  # registry parent

    @property
    def label(self) -> str:
        if self.kind == "scratch":
            return "scratch"
        if self.kind == "registry":
            return f"version:{self.version_id}"
        return str(self.source)


class ChatPairsRef(BaseModel):
    """Editor-approved drafts to train on as (prompt -> approved answer) pairs, the loss on the answer
    only: the approved-drafts Parquet file, and the system turns generation gives each category."""

    path: str
    system_prompt: str = ""
    system_prompts: dict[str, str] = Field(default_factory=dict)
