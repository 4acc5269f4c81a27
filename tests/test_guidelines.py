"""Review guidelines per category: storage, the admin page (/admin/guidelines) and `draftflow review guidelines`."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from review.app import create_app
from storage.db import Database
from storage.errors import DraftflowError
from storage.guidelines import MAX_TEXT, guideline_for, list_guidelines, set_guideline
from tests.cli_helpers import run_cli
from tests.desk_seed import ADMIN, EDITOR, Seeded, seed_desk

SECRET = "test-secret-" + "g" * 40

# --- storage --------------------------------------------------------------------------------------------------


def test_general_guideline_comes_first_then_the_category(db: Database) -> None:
    assert guideline_for(db, "news") == [] and guideline_for(db, None) == []
    set_guideline(db, "news", "  Check every name and date.\n", "boss")
    assert guideline_for(db, "news") == [("news", "Check every name and date.")]
    set_guideline(db, "*", "Reject anything with personal data.", "boss")
    assert guideline_for(db, "news") == [
        ("All categories", "Reject anything with personal data."),
        ("news", "Check every name and date."),
    ]
    assert guideline_for(db, "product description") == [("All categories", "Reject anything with personal data.")]
    assert guideline_for(db, None) == [("All categories", "Reject anything with personal data.")]
    assert [g.category for g in list_guidelines(db)] == ["*", "news"]


def test_saving_again_replaces_and_an_empty_text_deletes(db: Database) -> None:
    first = set_guideline(db, "news", "Version one.", "boss")
    assert first is not None and first.updated_by == "boss"
    second = set_guideline(db, "news", "Version two.", "chief")
    assert second is not None and second.text == "Version two." and second.updated_by == "chief"
    assert second.updated_at >= first.updated_at
    assert [(g.category, g.text) for g in list_guidelines(db)] == [("news", "Version two.")]
    assert set_guideline(db, "news", "  \n ", "boss") is None
    assert list_guidelines(db) == [] and guideline_for(db, "news") == []
    assert set_guideline(db, "never-had-one", "", "boss") is None  # removing nothing is fine
    assert list_guidelines(db) == []


def test_limits_and_bad_input_are_readable_errors(db: Database) -> None:
    assert set_guideline(db, "news", "x" * MAX_TEXT, "boss") is not None
    with pytest.raises(DraftflowError, match=r"10,001 characters long: at most 10,000"):
        set_guideline(db, "news", "x" * (MAX_TEXT + 1), "boss")
    assert set_guideline(db, "c" * 100, "fine", "boss") is not None
    with pytest.raises(DraftflowError, match="at most 100 characters"):
        set_guideline(db, "c" * 101, "too long a name", "boss")
    with pytest.raises(DraftflowError, match="name the category"):
        set_guideline(db, "  ", "text", "boss")
    with pytest.raises(DraftflowError, match="control characters"):
        set_guideline(db, "news\nsports", "text", "boss")
    with pytest.raises(DraftflowError, match="who changes"):
        set_guideline(db, "news", "text", "")
    assert guideline_for(db, "news") == [("news", "x" * MAX_TEXT)]  # refused saves changed nothing


# --- the admin page -------------------------------------------------------------------------------------------


@pytest.fixture
def seeded(db: Database) -> Seeded:
    return seed_desk(db)


@pytest.fixture
def client(db: Database, seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(create_app(db.url, secret_key=SECRET)) as c:
        yield c


def token_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: TestClient, who: tuple[str, str]) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"name": who[0], "password": who[1], "next": "/", "csrf_token": token_in(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def categories_on(html: str) -> list[str]:
    return re.findall(r'name="category" value="([^"]*)"', html)


def test_admin_sees_one_form_per_category_and_saves(client: TestClient, db: Database) -> None:
    set_guideline(db, "poetry", "Keep the metre.", "someone")  # a guideline for a category without drafts
    sign_in(client, ADMIN)
    page = client.get("/admin/guidelines")
    assert page.status_code == 200
    assert page.text.count("<h1") == 1 and 'href="/admin/guidelines" class="current"' in page.text
    assert categories_on(page.text) == ["*", "news", "poetry", "product description", "technical doc"]
    assert page.text.count('maxlength="10000" dir="auto"') == 5
    assert 'Last changed by <span dir="auto">someone</span> on' in page.text
    saved = client.post(
        "/admin/guidelines",
        data={"category": "news", "text": "Check <every> name.", "csrf_token": token_in(page.text)},
    )
    assert saved.status_code == 200 and "Saved guidelines for news." in saved.text
    assert "Check &lt;every&gt; name." in saved.text and "<every>" not in saved.text
    assert f'Last changed by <span dir="auto">{ADMIN[0]}</span> on' in saved.text
    general = client.post(
        "/admin/guidelines", data={"category": "*", "text": "Be kind.", "csrf_token": token_in(page.text)}
    )
    assert general.status_code == 200 and "Saved guidelines for All categories." in general.text
    assert guideline_for(db, "news") == [("All categories", "Be kind."), ("news", "Check <every> name.")]
    removed = client.post(
        "/admin/guidelines", data={"category": "poetry", "text": "", "csrf_token": token_in(page.text)}
    )
    assert removed.status_code == 200 and "Removed guidelines for poetry." in removed.text
    assert "poetry" not in categories_on(removed.text)


def test_too_long_text_is_shown_again_with_a_400(client: TestClient, db: Database) -> None:
    sign_in(client, ADMIN)
    t = token_in(client.get("/admin/guidelines").text)
    too_long = "y" * (MAX_TEXT + 1)
    response = client.post("/admin/guidelines", data={"category": "news", "text": too_long, "csrf_token": t})
    assert response.status_code == 400 and "at most 10,000" in response.text
    assert too_long in response.text  # the admin's text is not lost
    assert response.text.count("<h1") == 1
    assert list_guidelines(db) == []


def test_editors_get_403_and_posts_need_the_csrf_token(client: TestClient, db: Database) -> None:
    sign_in(client, EDITOR)
    assert client.get("/admin/guidelines").status_code == 403
    t = token_in(client.get("/").text)
    assert client.post("/admin/guidelines", data={"category": "*", "text": "x", "csrf_token": t}).status_code == 403
    assert "/admin/guidelines" not in client.get("/").text
    with TestClient(client.app) as boss:
        sign_in(boss, ADMIN)
        for data in ({"category": "*", "text": "x"}, {"category": "*", "text": "x", "csrf_token": "forged"}):
            assert boss.post("/admin/guidelines", data=data).status_code == 403
    assert list_guidelines(db) == []


# --- the CLI --------------------------------------------------------------------------------------------------


def test_cli_lists_sets_from_text_file_and_stdin(
    db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = run_cli(capsys, "review", "guidelines")
    assert empty.code == 0 and "no review guidelines yet" in empty.out
    done = run_cli(capsys, "review", "guidelines", "--category", "*", "--text", "Be kind [b]now[/b].", "-e", "ann")
    assert done.code == 0 and done.out.strip() == "saved guidelines for All categories"
    source = tmp_path / "news.md"
    source.write_text("Check names.\n", encoding="utf-8")
    assert run_cli(capsys, "review", "guidelines", "--category", "news", "--file", str(source)).code == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("Short sentences.\n"))
    assert run_cli(capsys, "review", "guidelines", "--category", "tech", "--file", "-", "-e", "bob").code == 0
    listed = run_cli(capsys, "review", "guidelines")
    assert listed.code == 0 and "== All categories (by ann," in listed.out and "Be kind [b]now[/b]." in listed.out
    rows = json.loads(run_cli(capsys, "review", "guidelines", "--json").out)
    assert [(r["category"], r["text"], r["updated_by"]) for r in rows][::2] == [
        ("*", "Be kind [b]now[/b].", "ann"),
        ("tech", "Short sentences.", "bob"),
    ]
    assert rows[1]["category"] == "news" and rows[1]["text"] == "Check names." and rows[1]["updated_by"]
    removed = run_cli(capsys, "review", "guidelines", "--category", "tech", "--text", "")
    assert removed.code == 0 and "removed guidelines for tech" in removed.out
    assert [g.category for g in list_guidelines(db)] == ["*", "news"]


def test_cli_errors_are_one_line_and_fail(db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = [
        (["--category", "news", "--text", "x" * (MAX_TEXT + 1)], "at most 10,000"),
        (["--text", "orphan"], "say which category"),
        (["--category", "news"], "give the new guidelines"),
        (["--category", "news", "--text", "a", "--file", "-"], "not both"),
        (["--category", "news", "--file", str(tmp_path / "missing.md")], "does not exist"),
        (["--category", "c" * 101, "--text", "a"], "at most 100 characters"),
    ]
    for args, message in cases:
        result = run_cli(capsys, "review", "guidelines", *args)
        assert result.code == 1, args
        assert result.err.startswith("error: ") and message in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert list_guidelines(db) == []
