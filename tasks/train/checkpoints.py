"""Training checkpoints: everything a killed run needs to continue exactly where it stopped.

`checkpoints/<run id>/step-0000120/` holds the model (safetensors), the optimizer state, the RNG
states (global and the batch sampler's: the data position) and the loop counters. A checkpoint is
written to a temporary folder and renamed, so a kill mid-write leaves the previous one usable.
Only the newest `keep` are kept; `best/` holds the weights with the lowest validation loss.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from tasks.train.distributed import barrier


@dataclass
class LoopState:
    """The loop's counters: saved with each checkpoint, restored on resume."""

    step: int = 0
    tokens_seen: int = 0
    elapsed: float = 0.0  # seconds trained in earlier processes of this run
    best_val: float = float("inf")
    best_step: int = 0
    evals_without_improvement: int = 0
    last_train_loss: float = float("nan")
    planned_steps: int = 0
    decay_progress: float = 0.0  # how far down the cosine the rate has gone: it never goes back up
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None


def _unwrap(model: Any) -> Any:
    """The plain module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def save_weights(model: Any, path: Path) -> None:
    """The weights that train: all of them (tied weights handled), or only the trainable ones when
    some are frozen (a LoRA adapter: megabytes, where its base may be gigabytes that never change)."""
    model = _unwrap(model)
    if all(p.requires_grad for p in model.parameters()):
        save_model(model, str(path))
    else:
        save_file({n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}, str(path))


def load_weights(model: Any, path: Path) -> None:
    """Load what `save_weights` wrote; with frozen weights, every trainable one must be in the file."""
    model = _unwrap(model)
    if all(p.requires_grad for p in model.parameters()):
        load_model(model, str(path))
        return
    state = load_file(str(path), device=str(next(model.parameters()).device))
    wanted = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != wanted:
        raise RuntimeError(f"checkpoint {path} does not hold this model's trainable weights")
    model.load_state_dict(state, strict=False)


class Checkpointer:
    """Under DDP every rank calls `save` and `restore` (each keeps its own RNG file); rank 0 writes
    the shared parts: the weights and optimizer state are identical on every rank."""

    def __init__(self, folder: Path, keep: int = 2, rank: int = 0) -> None:
        self.folder, self.keep, self.rank = Path(folder), max(1, keep), rank

    def save(self, model: Any, optimizer: torch.optim.Optimizer, sampler: torch.Generator, state: LoopState) -> Path:
        final = self.folder / f"step-{state.step:07d}"
        tmp = self.folder / f".step-{state.step:07d}.tmp"
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                save_weights(model, tmp / "model.safetensors")
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                (tmp / "state.json").write_text(json.dumps(asdict(state)))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # a full disk: the previous checkpoint stays whole
                raise
        barrier()
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "sampler": sampler.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / f"rng-{self.rank}.pt")
        barrier()
        if self.rank == 0:
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self.all()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        barrier()
        return final

    def all(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("step-*") if (p / "state.json").is_file())

    def restore(self, model: Any, optimizer: torch.optim.Optimizer, sampler: torch.Generator) -> LoopState | None:
        """Load the newest checkpoint into model, optimizer and sampler; None when there is none."""
        checkpoints = self.all()
        if not checkpoints:
            return None
        latest = checkpoints[-1]
        load_weights(model, latest / "model.safetensors")
        optimizer.load_state_dict(torch.load(latest / "optimizer.pt", weights_only=True))
        rng = torch.load(latest / f"rng-{self.rank}.pt", weights_only=True)
        torch.set_rng_state(rng["torch"])
        sampler.set_state(rng["sampler"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        state = LoopState(**json.loads((latest / "state.json").read_text()))
        state.resumed_from = state.step
        return state

    def save_best(self, model: Any) -> None:
        tmp, final = self.folder / ".best.tmp", self.folder / "best"
        tmp.mkdir(parents=True, exist_ok=True)
        save_weights(model, tmp / "model.safetensors")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)

    def load_best(self, model: Any) -> bool:
        best = self.folder / "best" / "model.safetensors"
        if not best.is_file():
            return False
        load_weights(model, best)
        return True

    def clear(self) -> None:
        """After the model is registered, the run's checkpoints are no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
