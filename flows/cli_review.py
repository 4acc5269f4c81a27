"""`draftflow review ...`: the editors' queue from the command line (every action is audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows import console
from storage.db import Database, open_database
from storage.errors import DraftflowError
from storage.models import Draft
from storage.settings import Settings

review_app = typer.Typer(help="List, read, approve, reject and edit drafts.", no_args_is_help=True)

EditorOpt = Annotated[str, typer.Option("--editor", "-e", help="Who is acting (recorded in the history).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DraftId = Annotated[int, typer.Argument(help="Draft id (see `draftflow review list`).")]


def _db() -> Database:
    return open_database(Settings.from_env().database_url)


@review_app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only drafts in this status (e.g. pending).")] = None,
    run: Annotated[str | None, typer.Option(help="Only drafts of this run id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (paging).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Drafts in queue order (oldest first)."""
    from tasks.editor import listing

    drafts = listing(_db(), status=status, run_id=run, limit=limit, offset=offset)
    if as_json:
        console.print_json(drafts)
        return
    if not drafts:
        console.out.print(f"no drafts{f' with status {status}' if status else ''}")
        return
    table = Table("id", "status", "category", "prompt", "draft", "v")
    for d in drafts:
        table.add_row(str(d["id"]), d["status"], d["prompt"]["category"] or "", _clip(d["prompt"]["text"], 30),
                      _clip(d["current_text"], 70), str(d["version"]))
    console.out.print(table)


@review_app.command()
def show(draft_id: DraftId, as_json: JsonOpt = False) -> None:
    """One draft: prompt, text, checks and its whole history."""
    from tasks.editor import show as show_draft

    d = show_draft(_db(), draft_id)
    if as_json:
        console.print_json(d)
        return
    out = console.out
    out.print(f"[bold]Draft {d['id']}[/]  status [bold]{d['status']}[/]  version {d['version']}  "
              f"run {d['run_id']}  model version {d['model_version_id']}  seed {d['seed']}", highlight=False)
    out.print(f"[bold]Prompt[/] ({d['prompt']['category'] or 'no category'}): {d['prompt']['text']}",
              markup=True, highlight=False)
    out.print("[bold]Text[/]" + (" (edited)" if d["edited"] else "") + ":")
    out.print(d["current_text"], markup=False, highlight=False)
    out.print(f"[bold]Checks[/]: {d['scores']}", highlight=False)
    out.print(f"[bold]Sampling[/]: {d['params']}", highlight=False)
    out.print("[bold]History[/]:")
    for e in d["history"]:
        out.print(f"  {e['at']}  {e['actor']}  {e['action']}  {e['from']} → {e['to']}"
                  + (f"  ({e['note']})" if e["note"] else ""), markup=False, highlight=False)


@review_app.command()
def approve(draft_id: DraftId, editor: EditorOpt,
            note: Annotated[str | None, typer.Option(help="Optional note.")] = None, as_json: JsonOpt = False) -> None:
    """Approve a pending (or in-review) draft."""
    from tasks.editor import approve as approve_draft

    _done(approve_draft(_db(), draft_id, editor, note), "approved", as_json)


@review_app.command()
def reject(draft_id: DraftId, editor: EditorOpt,
           reason: Annotated[str, typer.Option(help="Why (required).")],
           note: Annotated[str | None, typer.Option(help="Optional free note.")] = None,
           as_json: JsonOpt = False) -> None:
    """Reject a pending (or in-review) draft with a reason."""
    from tasks.editor import reject as reject_draft

    _done(reject_draft(_db(), draft_id, editor, reason, note), "rejected", as_json)


@review_app.command()
def edit(draft_id: DraftId, editor: EditorOpt,
         text_file: Annotated[Path, typer.Option(help="File with the new text ('-' reads stdin).")],
         note: Annotated[str | None, typer.Option(help="Optional note.")] = None,
         expected_version: Annotated[int | None, typer.Option(
             help="Refuse the save if the draft changed since this version.")] = None,
         as_json: JsonOpt = False) -> None:
    """Replace a draft's text (the model's original text is kept)."""
    from tasks.editor import edit as edit_draft

    _done(edit_draft(_db(), draft_id, editor, _read_text(text_file), note, expected_version), "edited", as_json)


def _read_text(path: Path) -> str:
    import sys

    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DraftflowError(f"text file '{path}' does not exist") from None
    except UnicodeDecodeError:
        raise DraftflowError(f"text file '{path}' is not UTF-8 text") from None
    except OSError as exc:
        raise DraftflowError(f"cannot read text file '{path}': {exc.strerror}") from None


def _done(draft: Draft, verb: str, as_json: bool) -> None:
    from tasks.editor import draft_to_dict

    if as_json:
        console.print_json(draft_to_dict(draft))
    else:
        console.out.print(f"draft {draft.id} {verb} (status {draft.status}, version {draft.version})")


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
