"""What the CLI prints: Rich tables for summaries and a Rich progress bar for long stages."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tasks.progress import Progress as ProgressFn

if TYPE_CHECKING:
    from flows.params import RunSummary

out = Console()
err = Console(stderr=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, code: int = 1) -> None:
    """One readable line on stderr and a non-zero exit: how every user error ends."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressFn]:
    """A Rich bar on stderr; yields the `progress(done, total, message)` callback stages accept."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[message]}"), TimeRemainingColumn(), console=err,
                  transient=False, disable=not err.is_terminal) as bar:
        task_id = bar.add_task(description, total=None, message="")

        def update(done: int, total: int, message: str) -> None:
            bar.update(task_id, completed=done, total=total, message=message)

        yield update


def summary_table(s: RunSummary) -> Table:
    table = Table(title=f"draftflow nightly run {s.run_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    ranked = sorted(s.rejected_by_reason.items(), key=lambda kv: -kv[1])
    reasons = ", ".join(f"{k} {v}" for k, v in ranked[:3]) + (f", {len(ranked) - 3} more" if len(ranked) > 3 else "")
    rows = [
        ("Files", ", ".join(f"{k} {v}" for k, v in s.files.items())),
        ("Documents ingested", f"{s.documents_ingested:,}"),
        ("  kept", f"{s.documents_kept:,}"),
        ("  rejected", f"{s.documents_rejected:,}" + (f"  ({reasons})" if reasons else "")),
        ("Tokens (train + val)", f"{s.tokens:,}  ({s.train_blocks} + {s.val_blocks} blocks)"),
        ("Base model", s.base_model),
        ("Model version", f"{s.model_version}  ({s.model_path})"),
        ("Promotion", s.promotion),
        ("Training steps", str(s.train_steps)),
        ("Train loss", _f(s.train_loss)),
        ("Validation loss", _f(s.val_loss) + (f"  (perplexity {s.perplexity:.1f})" if s.perplexity else "")),
        ("Drafts queued", f"{s.drafts_queued}  (generation {s.generate_tokens_per_second:.0f} tokens/s)"),
        ("  flagged", f"{s.drafts_flagged}" + (f"  ({', '.join(f'{k} {v}' for k, v in s.flags.items())})"
                                              if s.flags else "")),
        ("Review queue", ", ".join(f"{k} {v}" for k, v in sorted(s.queue.items()))),
        ("Stage seconds", ", ".join(f"{k} {v:.0f}" for k, v in s.seconds.items())),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
