"""`draftflow review` commands for the queue with leases, comments, metrics, export and the desk's
configuration, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from storage.accounts import authenticate
from storage.db import Database
from testkit.queue_seed import seed_drafts
from tests.cli_helpers import run_cli


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    result = run_cli(capsys, *args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_claim_heartbeat_comment_history_release(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    ids = seed_drafts(db, 3)
    claimed = as_json(capsys, "review", "claim", "--editor", "ann")
    assert claimed["id"] == ids[0] and claimed["status"] == "in_review" and claimed["claimed_by"] == "ann"
    assert as_json(capsys, "review", "claim", "--editor", "ann")["id"] == ids[0]  # one at a time
    assert as_json(capsys, "review", "claim", "--editor", "bob", "--category", "product description")["id"] == ids[1]
    beat = as_json(capsys, "review", "heartbeat", str(ids[0]), "--editor", "ann")
    assert beat["lease_expires_at"] > claimed["lease_expires_at"]
    refused = run_cli(capsys, "review", "heartbeat", str(ids[0]), "--editor", "bob")
    assert refused.code == 1
    assert refused.err.strip() == f"error: cannot renew the lease on draft {ids[0]}: it is claimed by ann"
    assert run_cli(capsys, "review", "comment", str(ids[0]), "--editor", "ann", "--text", "Needs a source.").code == 0
    assert as_json(capsys, "review", "release", str(ids[0]), "--editor", "ann")["status"] == "pending"
    history = as_json(capsys, "review", "history", str(ids[0]))
    assert [(h["actor"], h["action"]) for h in history] == [("ann", "comment")]  # claims leave no trace
    assert history[0]["note"] == "Needs a source."


def test_stats_export_and_preferences(db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ids = seed_drafts(db, 4)
    assert run_cli(capsys, "review", "approve", str(ids[0]), "--editor", "ann").code == 0
    assert run_cli(capsys, "review", "reject", str(ids[1]), "--editor", "bob", "--reason", "off_topic").code == 0
    stats = as_json(capsys, "review", "stats")
    assert stats["states"] == {"approved": 1, "rejected": 1, "pending": 2}
    assert stats["rejection_reasons"] == {"off_topic": 1}
    text = run_cli(capsys, "review", "stats", "--model-version", "v0001")
    assert text.code == 0 and "approval rate: 50%" in text.out
    out = tmp_path / "approved.parquet"
    done = run_cli(capsys, "review", "export", "--out", str(out))
    assert done.code == 0 and "wrote 1 approved drafts" in done.out
    assert pq.read_table(out).column("draft_id").to_pylist() == [ids[0]]
    prefs = tmp_path / "prefs.jsonl"
    assert run_cli(capsys, "review", "export", "--out", str(prefs), "--format", "jsonl", "--preferences").code == 0
    bad = run_cli(capsys, "review", "export", "--out", str(out), "--format", "xml")
    assert bad.code == 1 and bad.err.startswith("error: unknown format 'xml'") and "Traceback" not in bad.err


def test_reasons_config_and_editor_accounts(db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_cli(capsys, "review", "reasons", "--add", "legal", "--label", "Legal risk").code == 0
    assert run_cli(capsys, "review", "reasons", "--disable", "style").code == 0
    codes = [r["code"] for r in as_json(capsys, "review", "reasons")]
    assert "legal" in codes and "style" not in codes
    shown = run_cli(capsys, "review", "config", "--required-reviews", "2")
    assert "required_reviews = 2" in shown.out and "lease_minutes = 15" in shown.out
    assert run_cli(capsys, "review", "config", "--lease-minutes", "0").code != 0
    secret = tmp_path / "pw"
    secret.write_text("correct horse battery\n")
    made = run_cli(capsys, "review", "add-editor", "chief", "--role", "admin", "--password-file", str(secret))
    assert made.code == 0 and "editor chief created (admin)" in made.out
    assert authenticate(db, "chief", "correct horse battery").role == "admin"
    again = run_cli(capsys, "review", "add-editor", "chief", "--password-file", str(secret))
    assert again.code == 1 and again.err.strip() == "error: editor 'chief' exists already"


def test_undo_then_an_admin_reopens(db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ids = seed_drafts(db, 2)
    secret = tmp_path / "password"
    secret.write_text("chief-password-1\n")
    assert run_cli(capsys, "review", "approve", str(ids[0]), "--editor", "ann").code == 0
    undone = as_json(capsys, "review", "undo", str(ids[0]), "--editor", "ann")
    assert (undone["status"], undone["claimed_by"]) == ("in_review", "ann")
    refused = run_cli(capsys, "review", "undo", str(ids[0]), "--editor", "ann")
    assert refused.code == 1 and "no decision of yours to undo" in refused.err and "Traceback" not in refused.err
    assert run_cli(capsys, "review", "reject", str(ids[1]), "--editor", "ann", "--reason", "off_topic").code == 0
    assert run_cli(capsys, "review", "add-editor", "chief", "--role", "admin", "--password-file", str(secret)).code == 0
    not_admin = run_cli(capsys, "review", "reopen", str(ids[1]), "--editor", "ann")
    assert not_admin.code == 1 and "needs a desk admin" in not_admin.err
    reopened = as_json(capsys, "review", "reopen", str(ids[1]), "--editor", "chief", "--note", "misclick")
    assert reopened["status"] == "pending"
    history = as_json(capsys, "review", "history", str(ids[1]))
    assert [h["action"] for h in history] == ["reject", "reopen"]
