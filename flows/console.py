"""What the CLI prints: Rich tables for summaries and a Rich progress bar for long stages."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from tasks.progress import Progress as ProgressFn

if TYPE_CHECKING:
    from flows.params import RunSummary

out = Console()
err = Console(stderr=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def plain(value: object) -> Text:
    """User data in a Rich table or line: shown as written, never read as markup (`[/]`, `list[int]`)."""
    return Text(str(value))


def fail(message: str, code: int = 1) -> None:
    """One readable line on stderr and a non-zero exit: how every user error ends."""
    # escaped: a message may hold brackets (`pip install 'draftflow[vllm]'`, a list of names)
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressFn]:
    """A Rich bar on stderr; yields the `progress(done, total, message)` callback stages accept.
    Not a terminal (a log file, CI): no bar at all, so nothing is written around the error line."""
    if not err.is_terminal:
        yield lambda done, total, message: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[message]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as bar:
        task_id = bar.add_task(description, total=None, message="")

        def update(done: int, total: int, message: str) -> None:
            bar.update(task_id, completed=done, total=total, message=message)

        yield update


def command(args: str) -> str:
    """`draftflow ARGS` as the user can type it: plain `draftflow` when that is on PATH and is this
    installation, else the path of this installation's script (e.g. `.venv/bin/draftflow`)."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    mine = script if script is not None and script.name == "draftflow" else Path(sys.prefix) / "bin" / "draftflow"
    found = shutil.which("draftflow")
    if found and Path(found).resolve() == mine.resolve():
        return f"draftflow {args}"
    try:
        shown = mine.relative_to(Path.cwd())
    except ValueError:
        shown = mine
    return f"{shown} {args}"


def print_sources(profiles: dict[str, str], warnings: list[str]) -> None:
    """Each source's cleaning profile, then the decimation warnings: on stderr, in yellow, never hidden."""
    for source, profile in sorted(profiles.items()):
        out.print(Text(f"  source {source}: cleaned as {profile}"), highlight=False, soft_wrap=True)
    for warning in warnings:
        err.print(Text("warning: ", style="bold yellow") + Text(warning), highlight=False, soft_wrap=True)


def summary_table(s: RunSummary) -> Table:
    table = Table(title=Text(f"draftflow nightly run {s.run_id}"), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    ranked = sorted(s.rejected_by_reason.items(), key=lambda kv: -kv[1])
    reasons = ", ".join(f"{k} {v}" for k, v in ranked[:3]) + (f", {len(ranked) - 3} more" if len(ranked) > 3 else "")
    rows = [
        ("Files", ", ".join(f"{k} {v}" for k, v in s.files.items())),
        ("Documents ingested", f"{s.documents_ingested:,}"),
        ("  kept", f"{s.documents_kept:,}"),
        ("  rejected", f"{s.documents_rejected:,}" + (f"  ({reasons})" if reasons else "")),
        ("Profiles", "; ".join(f"{k}: {v}" for k, v in sorted(s.profiles.items())) or "-"),
        ("Tokens (train + val)", f"{s.tokens:,}  ({s.train_blocks} + {s.val_blocks} blocks)" + _split_note(s)),
        ("Base model", s.base_model),
        ("Model version", f"{s.model_version}  ({s.model_path})"),
        ("Preference tuning", _preference(s)),
        ("Evaluation", _evaluation(s)),
        ("Promotion", s.promotion),
        ("Drafts written by", s.drafts_model_version or s.model_version),
        ("Training steps", str(s.train_steps)),
        ("Train loss", _f(s.train_loss)),
        ("Validation loss", _f(s.val_loss) + (f"  (perplexity {s.perplexity:.1f})" if s.perplexity else "")),
        ("Prompts", s.prompts or "-"),
        ("Drafts queued", f"{s.drafts_queued}  (generation {s.generate_tokens_per_second:.0f} tokens/s)"),
        (
            "  flagged",
            f"{s.drafts_flagged}" + (f"  ({', '.join(f'{k} {v}' for k, v in s.flags.items())})" if s.flags else ""),
        ),
        ("Review queue", ", ".join(f"{k} {v}" for k, v in sorted(s.queue.items()))),
        ("Cached stages", ", ".join(s.cached_stages) or "none"),
        ("Stage seconds", ", ".join(f"{k} {v:.0f}" for k, v in s.seconds.items())),
    ]
    for key, value in rows:
        table.add_row(key, Text(value))  # data, never markup: a "[/]" in a reason or path stays text
    return table


def _preference(s: RunSummary) -> str:
    p = s.preference
    if p.get("version"):
        m = p.get("metrics") or {}
        accuracy = m.get("rewards/accuracies")
        return f"{p['version']}: DPO on {p.get('pairs')} pairs" + (
            f"  (reward accuracy {accuracy:.0%})" if isinstance(accuracy, float) else ""
        )
    return p.get("skipped") or "-"


def _evaluation(s: RunSummary) -> str:
    return (
        "; ".join(
            f"{v}: {e.get('bits_per_byte') or '-'} bits/byte, repetition {e.get('repetition', '-')}, "
            f"echo {e.get('echo_rate', '-')}"
            for v, e in s.evaluation.items()
        )
        or "-"
    )


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _split_note(s: RunSummary) -> str:
    if s.val_split == "blocks":
        return "; validation split by block: too few documents to split by document"
    return ""
