"""The review CLI against a real SQLite file: list, show, approve, reject, edit, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.db import Database
from storage.models import Draft, ReviewEvent
from storage.refs import ModelRef
from storage.runs import start_run
from tasks.generate.params import GenerationParams
from tasks.generate.prompts import load_prompts
from tasks.generate.stage import generate_drafts
from tasks.review.params import CheckParams
from tasks.review.stage import queue_run
from tests.cli_helpers import run_cli


@pytest.fixture
def queued(db: Database, tiny_model: ModelRef, prompts_file: Path) -> list[int]:
    start_run(db, "night-1", "test", {})
    generate_drafts(tiny_model, load_prompts(prompts_file), GenerationParams(max_new_tokens=6), db, "night-1")
    queue_run(db, "night-1", params=CheckParams(min_new_words=0, max_echo_share=1.0))  # all to the pending queue
    with db.session() as s:
        return list(s.scalars(sa.select(Draft.id).order_by(Draft.id)))


def events(db: Database, draft_id: int) -> list[tuple[str, str, str | None, str, str | None]]:
    with db.session() as s:
        rows = s.scalars(sa.select(ReviewEvent).where(ReviewEvent.draft_id == draft_id).order_by(ReviewEvent.id))
        return [(e.actor, e.action, e.from_status, e.to_status, e.note) for e in rows]


def test_list_and_show(capsys: pytest.CaptureFixture[str], queued: list[int]) -> None:
    listed = run_cli(capsys, "review", "list", "--status", "pending", "--json")
    assert listed.code == 0
    rows = json.loads(listed.out)
    assert [r["id"] for r in rows] == queued and {r["status"] for r in rows} == {"pending"}
    assert rows[0]["prompt"]["category"] in {"technical doc", "news"}
    table = run_cli(capsys, "review", "list", "--limit", "2")
    assert table.code == 0 and "pending" in table.out
    shown = json.loads(run_cli(capsys, "review", "show", str(queued[0]), "--json").out)
    assert shown["history"][0]["action"] == "queue"
    assert {"temperature", "top_p", "max_new_tokens", "stop"} <= set(shown["params"])
    human = run_cli(capsys, "review", "show", str(queued[0]))
    assert human.code == 0 and "History" in human.out and shown["current_text"].split()[0] in human.out
    assert json.loads(run_cli(capsys, "review", "list", "--status", "approved", "--json").out) == []


def test_approve_reject_edit_write_events_in_the_same_transaction(
    capsys: pytest.CaptureFixture[str], db: Database, queued: list[int], tmp_path: Path
) -> None:
    a, b, c = queued[:3]
    assert run_cli(capsys, "review", "approve", str(a), "--editor", "ann", "--note", "clear").code == 0
    assert run_cli(capsys, "review", "reject", str(b), "--editor", "bob", "--reason", "off-topic").code == 0
    new_text = tmp_path / "fixed.txt"
    new_text.write_text("An edited draft, fixed by a human.")
    edited = run_cli(capsys, "review", "edit", str(c), "--editor", "ann", "--text-file", str(new_text), "--json")
    assert edited.code == 0
    body = json.loads(edited.out)
    assert body["current_text"] == "An edited draft, fixed by a human." and body["edited"] is True
    assert body["original_text"] != body["current_text"] and body["status"] == "pending"

    assert events(db, a)[-1] == ("ann", "approve", "pending", "approved", "clear")
    assert events(db, b)[-1] == ("bob", "reject", "pending", "rejected", "off_topic")
    assert events(db, c)[-1] == ("ann", "edit", "pending", "pending", None)
    with db.session() as s:
        assert s.get(Draft, a).status == "approved" and s.get(Draft, b).status == "rejected"
        assert s.get(Draft, c).version == 3  # generated(1) -> queued(2) -> edited(3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["review", "show", "4242"], "error: draft 4242 does not exist"),
        (["review", "approve", "4242", "--editor", "ann"], "error: draft 4242 does not exist"),
        (["review", "list", "--status", "maybe"], "error: unknown status 'maybe'"),
        (["review", "reject", "{first}", "--editor", "ann", "--reason", " "], "error: a rejection needs a reason"),
        (
            ["review", "edit", "{first}", "--editor", "ann", "--text-file", "/no/such/file"],
            "error: text file '/no/such/file' does not exist",
        ),
        (["review", "approve", "{first}", "--editor", " "], "error: an editor name is needed"),
    ],
)
def test_user_errors_are_one_line_and_exit_non_zero(
    capsys: pytest.CaptureFixture[str], queued: list[int], args: list[str], message: str
) -> None:
    result = run_cli(capsys, *[a.replace("{first}", str(queued[0])) for a in args])
    assert result.code == 1
    assert result.err.strip().startswith(message)
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_a_disallowed_transition_is_refused_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], db: Database, queued: list[int]
) -> None:
    first = queued[0]
    assert run_cli(capsys, "review", "reject", str(first), "--editor", "bob", "--reason", "factual_error").code == 0
    before = events(db, first)
    refused = run_cli(capsys, "review", "approve", str(first), "--editor", "ann")
    assert refused.code == 1
    assert refused.err.strip() == (
        f"error: cannot approve draft {first}: it is rejected; "
        "only pending, in_review or flagged drafts can be approved"
    )
    assert events(db, first) == before
    with db.session() as s:
        assert s.get(Draft, first).status == "rejected"


def test_stale_edit_is_refused_with_a_conflict(
    capsys: pytest.CaptureFixture[str], queued: list[int], tmp_path: Path
) -> None:
    text = tmp_path / "t.txt"
    text.write_text("first edit")
    draft = str(queued[0])
    assert (
        run_cli(
            capsys, "review", "edit", draft, "--editor", "ann", "--text-file", str(text), "--expected-version", "2"
        ).code
        == 0
    )
    text.write_text("second edit from a stale copy")
    stale = run_cli(
        capsys, "review", "edit", draft, "--editor", "bob", "--text-file", str(text), "--expected-version", "2"
    )
    assert stale.code == 1 and "changed since version 2 (now version 3)" in stale.err


def test_markup_in_data_is_shown_as_written(capsys: pytest.CaptureFixture[str], db: Database) -> None:
    """Prompts, drafts and editor names are data: `[/]` or `list[int]` never crash or vanish."""
    from storage.models import Prompt
    from tasks.review import actions as editor
    from testkit.queue_seed import seed_drafts

    (draft_id,) = seed_drafts(db, 1)
    with db.transaction() as s:
        draft = s.get(Draft, draft_id)
        assert draft is not None
        s.execute(sa.update(Prompt).where(Prompt.id == draft.prompt_id).values(text="Sort a list[int] [bold]now[/]"))
        s.execute(sa.update(Draft).where(Draft.id == draft_id).values(current_text="Use sorted() [/] then [red]x"))
    editor.approve(db, draft_id, "[/]")
    for args in (["review", "list"], ["review", "show", str(draft_id)], ["review", "stats"]):
        done = run_cli(capsys, *args)
        assert done.code == 0, (args, done.err)
    shown = run_cli(capsys, "review", "show", str(draft_id)).out
    assert "list[int] [bold]now[/]" in shown and "Use sorted() [/] then [red]x" in shown
    assert "[/]" in run_cli(capsys, "review", "stats").out  # the editor's name, as written
