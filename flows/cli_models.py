"""`draftflow models ...`: the registered versions, their evaluation and their editors' verdict."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from flows import console
from flows.console import plain
from storage.db import Database, open_database
from storage.errors import DraftflowError
from storage.settings import Settings

models_app = typer.Typer(
    help="Model versions: list them, show one, compare two, evaluate one on the fixed set.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Version = Annotated[str, typer.Argument(help="A model version (e.g. v0003).")]


def _db() -> Database:
    return open_database(Settings.from_env().database_url)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@models_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every version: how it was made, bits per byte, draft metrics, editors' approval rate and edits."""
    from tasks.evaluate.report import version_rows

    rows = version_rows(_db())
    if as_json:
        console.print_json(rows)
        return
    if not rows:
        console.out.print("no model versions yet: `draftflow run` trains the first")
        return
    table = Table("version", "method", "promoted", "bits/byte", "repetition", "echo", "empty", "approved", "edit dist.")
    for r in rows:
        table.add_row(
            r["version"],
            plain(r["method"] + (f" ({r['preference_pairs']} pairs)" if r["preference_pairs"] else "")),
            _num(r["promoted"]),
            _num(r["bits_per_byte"]),
            _num(r.get("repetition"), 3),
            _rate(r.get("echo_rate")),
            _rate(r.get("empty_rate")),
            f"{_rate(r['approval_rate'])} of {r['approved'] + r['rejected']}",
            _num(r["mean_edit_distance"], 1),
        )
    console.out.print(table)


@models_app.command("show")
def show(version: Version, as_json: JsonOpt = False) -> None:
    """One version in full: evaluation by source, draft metrics, preference tuning, evaluation drafts."""
    from tasks.evaluate.report import version_detail

    d = version_detail(_db(), version)
    if as_json:
        console.print_json(d)
        return
    out = console.out
    out.print(f"{d['version']}  base {d['base']}  parent {d['parent'] or '-'}  method {d['method']}", markup=False)
    out.print(f"path {d['path']}  promoted {_num(d['promoted'])}  created {d['created_at']}", markup=False)
    if d["eval_set"] is None:
        out.print(f"not evaluated yet: `draftflow models evaluate {d['version']}`", markup=False)
    else:
        table = Table("source", "bits/byte", "documents", "bytes")
        for source, f in sorted(d["by_source"].items()):
            table.add_row(plain(source), _num(f["bits_per_byte"]), str(f["documents"]), str(f["bytes"]))
        table.add_row("all", _num(d["bits_per_byte"]), "", "")
        out.print(table)
    out.print(
        "drafts: "
        + ", ".join(f"{k} {_num(d.get(k), 3)}" for k in ("repetition", "echo_rate", "empty_rate", "eos_rate"))
        + f"; editors approved {_rate(d['approval_rate'])} of {d['approved'] + d['rejected']} decided",
        markup=False,
    )
    if d["preference"]:
        p = d["preference"]
        metrics = ", ".join(f"{k} {_num(v, 3)}" for k, v in (p.get("metrics") or {}).items())
        out.print(f"preference tuning: {p.get('method', 'dpo')} on {p.get('pairs')} pairs; {metrics}", markup=False)
    for draft in d["drafts"][:6]:
        out.print(plain(f"[{draft['prompt_key']} seed {draft['seed']}] {draft['text'][:300]}"))


@models_app.command("compare")
def compare(a: Version, b: Version, as_json: JsonOpt = False) -> None:
    """Two versions side by side: figures (B - A) and their drafts for the same prompt and seed."""
    from tasks.evaluate.report import compare_versions

    c = compare_versions(_db(), a, b)
    if as_json:
        console.print_json(c)
        return
    out = console.out
    if not c["same_eval_set"]:
        out.print(
            f"note: {c['a']} and {c['b']} were not evaluated on the same set: `draftflow models evaluate` each "
            "for figures that compare",
            markup=False,
        )
    table = Table("metric", c["a"], c["b"], "B - A", "better")
    for f in c["figures"]:
        table.add_row(f["metric"], _num(f["a"]), _num(f["b"]), _num(f["delta"]), f["better"])
    out.print(table)
    drafts = Table("prompt / seed", c["a"], c["b"], show_lines=True)
    for pair in c["drafts"][:8]:
        drafts.add_row(plain(f"{pair['prompt_key']}\nseed {pair['seed']}"), plain(pair["a"]), plain(pair["b"]))
    out.print(drafts)


@models_app.command("evaluate")
def evaluate(
    version: Version,
    again: Annotated[bool, typer.Option("--again", help="Measure again even if already evaluated.")] = False,
) -> None:
    """Evaluate a version on the home's fixed evaluation set (made by the first nightly run)."""
    from storage.registry import get_model_version
    from tasks.evaluate.eval_set import eval_set_path, load_eval_set
    from tasks.evaluate.stage import evaluate_version
    from tasks.review.stage import corpus_index

    settings = Settings.from_env()
    eval_set = load_eval_set(settings)
    if eval_set is None:
        raise DraftflowError(f"no evaluation set at {eval_set_path(settings)} yet: the first `draftflow run` makes it")
    db = open_database(settings.database_url)
    info = get_model_version(db, version)
    with console.progress_bar(f"evaluating {info.name}") as progress:
        e = evaluate_version(db, info, eval_set, corpus_index(settings, None), progress, again=again)
    console.out.print(
        f"{e.version}: {_num(e.bits_per_byte)} bits per byte; "
        + ", ".join(f"{k} {_num(v, 3)}" for k, v in e.draft_metrics.items()),
        markup=False,
    )
