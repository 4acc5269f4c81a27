"""What a finished training leaves beside the model: a loss-curve PNG and TensorBoard event files."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_loss_curve(history: list[dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on a training box
    import matplotlib.pyplot as plt

    train = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_tensorboard(history: list[dict[str, float]], folder: Path, metrics: dict[str, Any]) -> Path:
    """Event files under `folder/tensorboard`: `tensorboard --logdir ~/.draftflow/models` shows every version."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = folder / "tensorboard"
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for entry in history:
            for key in ("train_loss", "val_loss", "lr"):
                if key in entry:
                    writer.add_scalar(key.replace("_", "/", 1) if key != "lr" else "lr", entry[key], int(entry["step"]))
        writer.add_text("metrics", "\n".join(f"- {k}: {v}" for k, v in metrics.items() if k != "history"))
    return logdir
