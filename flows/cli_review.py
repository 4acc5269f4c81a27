"""`draftflow review ...`: the editors' queue from the command line (every action is audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows import console
from flows.cli_options import option
from flows.console import plain
from storage.accounts import DeskSettings
from storage.db import Database, open_database
from storage.errors import DraftflowError
from storage.models import Draft
from storage.settings import Settings

review_app = typer.Typer(help="The editors' queue: claim, read, approve, reject, edit, export.", no_args_is_help=True)

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
    from tasks.review.actions import listing

    drafts = listing(_db(), status=status, run_id=run, limit=limit, offset=offset)
    if as_json:
        console.print_json(drafts)
        return
    if not drafts:
        console.out.print(f"no drafts{f' with status {status}' if status else ''}")
        return
    table = Table("id", "status", "category", "prompt", "draft", "v")
    for d in drafts:
        table.add_row(
            str(d["id"]),
            d["status"],
            plain(d["prompt"]["category"] or ""),
            plain(_clip(d["prompt"]["text"], 30)),
            plain(_clip(d["current_text"], 70)),
            str(d["version"]),
        )
    console.out.print(table)


@review_app.command()
def show(draft_id: DraftId, as_json: JsonOpt = False) -> None:
    """One draft: prompt, text, checks and its whole history."""
    from tasks.review.actions import show as show_draft

    d = show_draft(_db(), draft_id)
    if as_json:
        console.print_json(d)
        return
    out = console.out
    out.print(
        f"[bold]Draft {d['id']}[/]  status [bold]{d['status']}[/]  version {d['version']}  "
        f"run {escape(str(d['run_id']))}  model version {d['model_version_id']}  seed {d['seed']}",
        highlight=False,
    )
    out.print(
        f"[bold]Prompt[/] ({escape(d['prompt']['category'] or 'no category')}): {escape(d['prompt']['text'])}",
        markup=True,
        highlight=False,
    )
    out.print("[bold]Text[/]" + (" (edited)" if d["edited"] else "") + ":")
    out.print(d["current_text"], markup=False, highlight=False)
    out.print(f"[bold]Checks[/]: {escape(str(d['scores']))}", highlight=False)
    out.print(f"[bold]Sampling[/]: {escape(str(d['params']))}", highlight=False)
    out.print("[bold]History[/]:")
    for e in d["history"]:
        out.print(
            f"  {e['at']}  {e['actor']}  {e['action']}  {e['from']} → {e['to']}"
            + (f"  ({e['note']})" if e["note"] else ""),
            markup=False,
            highlight=False,
        )


@review_app.command()
def approve(
    draft_id: DraftId,
    editor: EditorOpt,
    note: Annotated[str | None, typer.Option(help="Optional note.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a pending (or in-review) draft."""
    from tasks.review.actions import approve as approve_draft

    _done(approve_draft(_db(), draft_id, editor, note), "approved", as_json)


@review_app.command()
def undo(draft_id: DraftId, editor: EditorOpt, as_json: JsonOpt = False) -> None:
    """Undo your own last decision on a draft (within the desk's undo_minutes); it comes back to you."""
    from tasks.review.actions import undo as undo_decision

    draft, _ = undo_decision(_db(), draft_id, editor)
    _done(draft, "is yours to review again", as_json)


@review_app.command()
def reopen(
    draft_id: DraftId,
    editor: EditorOpt,
    note: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a decided draft back to the pending queue (an admin's fix after the undo window)."""
    from storage.accounts import get_editor
    from tasks.review.actions import reopen as reopen_draft

    account = get_editor(_db(), editor)
    if account is None or account.role != "admin":
        raise DraftflowError(
            f"reopening needs a desk admin: {editor!r} is not one (`review add-editor NAME --role admin`)"
        )
    _done(reopen_draft(_db(), draft_id, editor, note), "reopened", as_json)


@review_app.command()
def reject(
    draft_id: DraftId,
    editor: EditorOpt,
    reason: Annotated[str, typer.Option(help="Why (required).")],
    note: Annotated[str | None, typer.Option(help="Optional free note.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a pending (or in-review) draft with a reason."""
    from tasks.review.actions import reject as reject_draft

    _done(reject_draft(_db(), draft_id, editor, reason, note), "rejected", as_json)


@review_app.command()
def edit(
    draft_id: DraftId,
    editor: EditorOpt,
    text_file: Annotated[Path, typer.Option(help="File with the new text ('-' reads stdin).")],
    note: Annotated[str | None, typer.Option(help="Optional note.")] = None,
    expected_version: Annotated[
        int | None, typer.Option(help="Refuse the save if the draft changed since this version.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a draft's text (the model's original text is kept)."""
    from tasks.review.actions import edit as edit_draft

    _done(edit_draft(_db(), draft_id, editor, _read_text(text_file), note, expected_version), "edited", as_json)


@review_app.command()
def claim(
    editor: EditorOpt,
    category: Annotated[str | None, typer.Option(help="Only drafts of this category.")] = None,
    flagged: Annotated[bool, typer.Option("--flagged", help="Claim from the flagged queue.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Take the next draft (by priority, then age) with a lease; your live claim comes back first."""
    from tasks.review.actions import claim as claim_draft
    from tasks.review.actions import draft_to_dict

    draft = claim_draft(_db(), editor, category=category, queue="flagged" if flagged else "pending")
    if draft is None:
        if as_json:
            console.print_json(None)
        else:
            console.out.print("the queue is empty" + (f" for category {category}" if category else ""))
        raise typer.Exit(0)
    if as_json:
        console.print_json(draft_to_dict(draft))
    else:
        console.out.print(
            f"claimed draft {draft.id} (version {draft.version}) until "
            f"{draft.lease_expires_at:%H:%M:%S} UTC; `draftflow review show {draft.id}` to read it"
        )


@review_app.command()
def release(draft_id: DraftId, editor: EditorOpt, as_json: JsonOpt = False) -> None:
    """Give a claimed draft back to the queue, unchanged."""
    from storage.queue import release as release_draft

    _done(release_draft(_db(), draft_id, editor.strip()), "released", as_json)


@review_app.command()
def heartbeat(draft_id: DraftId, editor: EditorOpt, as_json: JsonOpt = False) -> None:
    """Renew your lease on a draft you are working on."""
    from storage.accounts import desk_setting
    from storage.queue import heartbeat as renew

    db = _db()
    expires = renew(db, draft_id, editor.strip(), desk_setting(db, "lease_minutes"))
    if as_json:
        console.print_json({"id": draft_id, "lease_expires_at": expires.isoformat()})
    else:
        console.out.print(f"lease on draft {draft_id} renewed until {expires:%H:%M:%S} UTC")


@review_app.command()
def comment(
    draft_id: DraftId,
    editor: EditorOpt,
    text: Annotated[str, typer.Option("--text", "-t", help="The comment.")],
    as_json: JsonOpt = False,
) -> None:
    """Add a comment to a draft's history."""
    from tasks.review.actions import comment as add_comment

    row = add_comment(_db(), draft_id, editor, text)
    if as_json:
        console.print_json(
            {"id": row.id, "draft_id": draft_id, "author": row.author, "body": row.body, "at": row.at.isoformat()}
        )
    else:
        console.out.print(f"comment added to draft {draft_id}")


@review_app.command()
def history(draft_id: DraftId, as_json: JsonOpt = False) -> None:
    """Every event, comment and revision of a draft, oldest first."""
    from tasks.review.actions import history as draft_history

    items = draft_history(_db(), draft_id)
    if as_json:
        console.print_json(items)
        return
    for e in items:
        moved = f"  {e['from']} → {e['to']}" if e["from"] or e["to"] else ""
        console.out.print(
            f"{e['at']}  {e['actor']}  {e['action']}{moved}" + (f"  ({e['note']})" if e["note"] else ""),
            markup=False,
            highlight=False,
        )


@review_app.command()
def stats(
    run: Annotated[str | None, typer.Option(help="Only this night (run id).")] = None,
    model_version: Annotated[str | None, typer.Option(help="Only this model version (e.g. v0003).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue metrics: states, editors' throughput and time per draft, approval rate, reasons, edit distance."""
    from storage.registry import get_model_version
    from tasks.review.metrics import desk_metrics

    db = _db()
    version_id = get_model_version(db, model_version).id if model_version else None
    m = desk_metrics(db, run_id=run, model_version_id=version_id)
    if as_json:
        console.print_json(m)
        return
    out = console.out
    out.print("states: " + (", ".join(f"{k} {v}" for k, v in sorted(m["states"].items())) or "no drafts"))
    rate = m["approval_rate"]
    out.print(
        f"approval rate: {'-' if rate is None else f'{rate:.0%}'}; rejection reasons: "
        + (", ".join(f"{k} {v}" for k, v in m["rejection_reasons"].items()) or "-"),
        markup=False,
    )
    d = m["edit_distance"]
    out.print(
        f"edit distance (model text → approved text), {d['n']} drafts: "
        + ("-" if d["mean"] is None else f"mean {d['mean']:.1f}, median {d['median']:.0f} characters")
    )
    table = Table("editor", "decisions", "approved", "rejected", "edits", "median s/draft")
    for e in m["editors"]:
        table.add_row(
            plain(e["editor"]),
            str(e["decisions"]),
            str(e["approved"]),
            str(e["rejected"]),
            str(e["edited"]),
            "-" if e["median_seconds"] is None else f"{e['median_seconds']:.0f}",
        )
    out.print(table)
    for key, label in (("by_night", "run_id"), ("by_model_version", "model_version")):
        table = Table(label, "approved", "rejected", "approval rate", "mean edit distance")
        for g in m[key]:
            table.add_row(
                plain(g[label]),
                str(g["approved"]),
                str(g["rejected"]),
                "-" if g["approval_rate"] is None else f"{g['approval_rate']:.0%}",
                "-" if g["mean_edit_distance"] is None else f"{g['mean_edit_distance']:.1f}",
            )
        out.print(table)


@review_app.command()
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    status: Annotated[str, typer.Option(help="Drafts in this status.")] = "approved",
    fmt: Annotated[str, typer.Option("--format", help="parquet or jsonl.")] = "parquet",
    preferences: Annotated[
        bool, typer.Option("--preferences", help="Write (prompt, chosen, rejected) preference pairs instead.")
    ] = False,
) -> None:
    """Export drafts with their provenance, or preference pairs, as Parquet or JSONL."""
    from storage.audit import record
    from tasks.review.export import export_drafts

    db = _db()
    kind = "preferences" if preferences else "drafts"
    rows = export_drafts(db, out, fmt=fmt, status=status, kind=kind)
    # an operator's export on the server is audited like the desk's (the desk's export page lists both)
    detail = {"kind": kind, "status": None if preferences else status, "format": fmt, "rows": rows, "out": str(out)}
    record(db, f"cli:{_login_name()}", "export", detail)
    console.out.print(f"wrote {rows} {'preference pairs' if preferences else f'{status} drafts'} to {out}")


@review_app.command()
def sweep() -> None:
    """Return drafts whose lease expired to their queue (the nightly flow runs this too)."""
    from storage.queue import sweep_expired

    console.out.print(f"{sweep_expired(_db())} expired leases returned to the queue")


@review_app.command()
def reasons(
    add: Annotated[str | None, typer.Option(help="Add (or re-enable) this reason code.")] = None,
    label: Annotated[str | None, typer.Option(help="The label of the added reason.")] = None,
    disable: Annotated[str | None, typer.Option(help="Disable this reason code.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the rejection reasons; add or disable one."""
    from storage.accounts import rejection_reasons, set_rejection_reason

    db = _db()
    if add:
        set_rejection_reason(db, add, label, active=True)
    if disable:
        set_rejection_reason(db, disable, None, active=False)
    rows = rejection_reasons(db)
    if as_json:
        console.print_json([{"code": r.code, "label": r.label} for r in rows])
        return
    for r in rows:
        console.out.print(f"{r.code:<16} {r.label}", markup=False, highlight=False)


@review_app.command("config")
def config(
    required_reviews: Annotated[int | None, option(DeskSettings, "required_reviews")] = None,
    lease_minutes: Annotated[int | None, option(DeskSettings, "lease_minutes")] = None,
    undo_minutes: Annotated[int | None, option(DeskSettings, "undo_minutes")] = None,
) -> None:
    """Show or change the desk settings."""
    from storage.accounts import desk_setting, set_desk_settings

    db = _db()
    given = {"required_reviews": required_reviews, "lease_minutes": lease_minutes, "undo_minutes": undo_minutes}
    set_desk_settings(db, {key: value for key, value in given.items() if value is not None})
    for key in given:
        console.out.print(f"{key} = {desk_setting(db, key)}")


@review_app.command("guidelines")
def guidelines(
    category: Annotated[
        str | None, typer.Option(help='Set the guidelines of this category ("*": every category).')
    ] = None,
    text: Annotated[str | None, typer.Option(help="The new guidelines (an empty text removes them).")] = None,
    file: Annotated[Path | None, typer.Option(help="Read the new guidelines from this file ('-' reads stdin).")] = None,
    editor: Annotated[
        str | None, typer.Option("--editor", "-e", help="Who changes them (default: your login name).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the review guidelines shown beside drafts; set (or with an empty text remove) one category's."""
    from storage.guidelines import heading, list_guidelines, set_guideline

    if (text is not None or file is not None) and category is None:
        raise DraftflowError('say which category with --category ("*" for every category)')
    if text is not None and file is not None:
        raise DraftflowError("give the guidelines with --text or --file, not both")
    db = _db()
    if category is not None:
        if file is not None:
            text = _read_text(file)
        if text is None:
            raise DraftflowError("give the new guidelines with --text or --file ('-' reads stdin)")
        saved = set_guideline(db, category, text, editor or _login_name())
        done = "saved" if saved else "removed"
        if not as_json:
            console.out.print(f"{done} guidelines for {heading(category.strip())}", markup=False, highlight=False)
            return
    rows = list_guidelines(db)
    if as_json:
        fields = ("category", "text", "updated_by", "updated_at")
        console.print_json([{key: getattr(g, key) for key in fields} for g in rows])
        return
    if not rows:
        console.out.print("no review guidelines yet (set one with --category and --text)")
    for g in rows:
        line = f"== {heading(g.category)} (by {g.updated_by}, {g.updated_at:%Y-%m-%d %H:%M} UTC)"
        console.out.print(line, markup=False, highlight=False)
        console.out.print(g.text + "\n", markup=False, highlight=False)


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@review_app.command("add-editor")
def add_editor(
    name: Annotated[str, typer.Argument(help="Sign-in name.")],
    role: Annotated[str, typer.Option(help="editor or admin.")] = "editor",
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from this file ('-' = stdin) instead of a prompt.")
    ] = None,
) -> None:
    """Create a web-desk account (the first one should be an admin)."""
    from storage.accounts import create_editor

    password = (
        _read_text(password_file).strip()
        if password_file
        else typer.prompt("password", hide_input=True, confirmation_prompt=True)
    )
    create_editor(_db(), name, password, role)
    console.out.print(f"editor {name} created ({role})")


@review_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8765,
    https_only: Annotated[
        bool, typer.Option("--https-only", help="Mark the session cookie Secure (behind TLS, e.g. a proxy).")
    ] = False,
) -> None:
    """Start the editors' web desk (same as `draftflow desk`)."""
    from review.server import serve as serve_desk

    console.out.print(f"editors' desk on http://{host}:{port} (Ctrl+C stops it)")
    settings = Settings.from_env()
    serve_desk(settings.database_url, host=host, port=port, https_only=https_only, home=settings.home)


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
    from tasks.review.actions import draft_to_dict

    if as_json:
        console.print_json(draft_to_dict(draft))
    else:
        console.out.print(f"draft {draft.id} {verb} (status {draft.status}, version {draft.version})")


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
