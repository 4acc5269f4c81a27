"""The web desk over HTTP (FastAPI's TestClient) against a real SQLite file: sign-in, CSRF, escaping,
roles, the review loop, conflicts, the queue's filters and paging, metrics, export and admin."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from review.app import create_app
from review.secret import SECRET_ENV, SECRET_FILE
from storage.accounts import set_editor
from storage.db import Database
from storage.errors import DraftflowError
from storage.models import Draft, DraftStatus
from tests.desk_seed import ADMIN, EDITOR, OTHER_EDITOR, XSS_TEXT, Seeded, actions_of, draft_row, seed_desk

SECRET = "test-secret-" + "x" * 40


@pytest.fixture
def seeded(db: Database) -> Seeded:
    return seed_desk(db, extra_night_drafts=30)


@pytest.fixture
def app(db: Database, seeded: Seeded) -> FastAPI:
    return create_app(db.url, secret_key=SECRET)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def token_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: TestClient, who: tuple[str, str], next_path: str = "/") -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"name": who[0], "password": who[1], "next": next_path, "csrf_token": token_in(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def token(client: TestClient, path: str = "/") -> str:
    return token_in(client.get(path).text)


def row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


def claim_next(client: TestClient, query: str = "") -> int:
    response = client.get("/review" + query, follow_redirects=False)
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/drafts/(\d+)", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


# --- sign-in and sessions -------------------------------------------------------------------------------------


def test_anonymous_requests_are_sent_to_sign_in_and_come_back(client: TestClient, seeded: Seeded) -> None:
    for path in ("/", "/review", "/metrics", "/export", "/admin/editors", f"/drafts/{seeded.draft_ids[0]}/history"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    target = f"/drafts/{seeded.draft_ids[0]}?tab=x"
    response = client.get(target, follow_redirects=False)
    assert response.headers["location"] == "/login?next=%2Fdrafts%2F" + str(seeded.draft_ids[0]) + "%3Ftab%3Dx"
    login_page = client.get(response.headers["location"])
    assert 'name="next" value="/drafts/' in login_page.text
    # an anonymous POST (with a valid anonymous CSRF token) changes nothing and goes to sign-in too
    refused = client.post(
        f"/drafts/{seeded.draft_ids[0]}/approve", data={"csrf_token": token_in(login_page.text)}, follow_redirects=False
    )
    assert refused.status_code == 303 and refused.headers["location"] == "/login"
    sign_in(client, EDITOR, next_path=target)
    assert client.get("/", follow_redirects=False).status_code == 200
    assert client.get("/static/desk.css").status_code == 200


def test_links_from_other_sites_are_reloaded_same_site(client: TestClient, seeded: Seeded) -> None:
    # Without the strict cookie the desk answers with a same-site reload, never a new (anonymous) session.
    for path in (f"/drafts/{seeded.draft_ids[0]}", "/login?next=%2Fmetrics"):
        response = client.get(path, headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
        assert response.status_code == 200 and "set-cookie" not in response.headers
        assert f'http-equiv="refresh" content="0;url={path}"' in response.text


def test_sign_in_goes_back_only_to_local_pages(client: TestClient) -> None:
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        page = client.get("/login")
        response = client.post(
            "/login",
            data={"name": EDITOR[0], "password": EDITOR[1], "next": evil, "csrf_token": token_in(page.text)},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/", evil
        client.post("/logout", data={"csrf_token": token(client)})


def test_wrong_password_and_inactive_editors_are_refused(client: TestClient, db: Database) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"name": EDITOR[0], "password": "not-the-password", "csrf_token": token_in(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 400 and "Wrong name or password" in response.text
    assert client.get("/", follow_redirects=False).status_code == 303
    set_editor(db, OTHER_EDITOR[0], active=False)
    response = client.post(
        "/login",
        data={"name": OTHER_EDITOR[0], "password": OTHER_EDITOR[1], "csrf_token": token_in(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 400


def test_deactivating_or_resetting_an_editor_ends_their_session(app: FastAPI, db: Database) -> None:
    with TestClient(app) as ed, TestClient(app) as boss:
        sign_in(ed, EDITOR)
        sign_in(boss, ADMIN)
        assert ed.get("/", follow_redirects=False).status_code == 200
        boss.post(f"/admin/editors/{EDITOR[0]}/active", data={"active": "0", "csrf_token": token(boss)})
        assert ed.get("/", follow_redirects=False).status_code == 303
        boss.post(f"/admin/editors/{EDITOR[0]}/active", data={"active": "1", "csrf_token": token(boss)})
        sign_in(ed, EDITOR)
        assert ed.get("/", follow_redirects=False).status_code == 200
        response = boss.post(
            f"/admin/editors/{EDITOR[0]}/password",
            data={"password": "a-new-password", "csrf_token": token(boss, "/admin/editors")},
        )
        assert response.status_code == 200 and "Password of ed changed" in response.text
        assert ed.get("/", follow_redirects=False).status_code == 303  # the old session died with the old password
        sign_in(ed, (EDITOR[0], "a-new-password"))


def test_sign_out(client: TestClient) -> None:
    sign_in(client, EDITOR)
    response = client.post("/logout", data={"csrf_token": token(client)}, follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_session_cookie_flags(db: Database, seeded: Seeded) -> None:
    with TestClient(create_app(db.url, secret_key=SECRET, https_only=True), base_url="https://testserver") as c:
        cookie = c.get("/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie


# --- CSRF -------------------------------------------------------------------------------------------------------


def test_forms_without_their_csrf_token_are_refused(client: TestClient, db: Database, seeded: Seeded) -> None:
    page = client.get("/login")
    no_token = client.post("/login", data={"name": EDITOR[0], "password": EDITOR[1]}, follow_redirects=False)
    assert no_token.status_code == 403 and "security token" in no_token.text
    sign_in(client, EDITOR)
    draft_id = claim_next(client)
    for data in ({}, {"csrf_token": ""}, {"csrf_token": token_in(page.text)}, {"csrf_token": "forged"}):
        response = client.post(f"/drafts/{draft_id}/approve", data=data)
        assert response.status_code == 403, data
    assert client.post(f"/drafts/{draft_id}/heartbeat").status_code == 403
    assert client.post(f"/drafts/{draft_id}/heartbeat", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert draft_row(db, draft_id).status == DraftStatus.IN_REVIEW.value
    assert "approve" not in actions_of(db, draft_id)


# --- untrusted text -------------------------------------------------------------------------------------------


def test_generated_text_is_always_escaped(client: TestClient, db: Database, seeded: Seeded) -> None:
    sign_in(client, EDITOR)
    raw = ("<script>alert(1)</script>", "<b>bold</b>")
    escaped = ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;b&gt;bold&lt;/b&gt;")
    read_only = client.get(f"/drafts/{seeded.xss_id}")
    queue = client.get("/?category=news")
    for page in (read_only, queue):
        assert page.status_code == 200
        assert all(e in page.text for e in escaped) and not any(r in page.text for r in raw)
    assert "&lt;news&gt;" in read_only.text  # the prompt's markup too
    assert "script-src 'self'" in read_only.headers["content-security-policy"]
    # claimed: the text sits in the edit box, escaped; after an edit the diff shows both texts escaped
    assert claim_next(client, "?category=news") == seeded.xss_id
    page = client.get(f"/drafts/{seeded.xss_id}")
    assert '<textarea name="text" id="editor"' in page.text and escaped[0] in page.text and raw[0] not in page.text
    edited = XSS_TEXT.replace("<b>bold</b>", "<i>changed</i>")
    saved = client.post(
        f"/drafts/{seeded.xss_id}/edit",
        data={"text": edited, "expected_version": "1", "csrf_token": token_in(page.text)},
    )
    assert saved.status_code == 200
    assert "<del>&lt;b&gt;bold&lt;/b&gt;</del>" in saved.text and "<ins>&lt;i&gt;changed&lt;/i&gt;</ins>" in saved.text
    assert "<i>changed</i>" not in saved.text
    history = client.get(f"/drafts/{seeded.xss_id}/history")
    assert "&lt;i&gt;changed&lt;/i&gt;" in history.text and "<i>changed</i>" not in history.text


# --- roles ----------------------------------------------------------------------------------------------------


def test_editors_cannot_open_admin_pages(client: TestClient) -> None:
    sign_in(client, EDITOR)
    for path in ("/admin/editors", "/admin/reasons", "/admin/settings"):
        assert client.get(path).status_code == 403, path
    response = client.post(
        "/admin/editors",
        data={"name": "mallory", "password": "password-123", "role": "admin", "csrf_token": token(client)},
    )
    assert response.status_code == 403
    assert "Admin" not in client.get("/").text.split("<main")[0]  # no admin link in the menu


def test_admin_manages_editors_reasons_and_settings(client: TestClient, db: Database) -> None:
    sign_in(client, ADMIN)
    t = token(client, "/admin/editors")
    created = client.post(
        "/admin/editors", data={"name": "newbie", "password": "newbie-pass-1", "role": "editor", "csrf_token": t}
    )
    assert created.status_code == 200 and "Editor newbie created" in created.text
    bad = client.post("/admin/editors", data={"name": "bad name!", "password": "x", "role": "editor", "csrf_token": t})
    assert bad.status_code == 400 and "bad editor name" in bad.text
    assert client.post("/admin/editors/newbie/role", data={"role": "admin", "csrf_token": t}).status_code == 200
    self_demote = client.post(f"/admin/editors/{ADMIN[0]}/role", data={"role": "editor", "csrf_token": t})
    assert self_demote.status_code == 400 and "your own admin role" in self_demote.text
    with TestClient(client.app) as newbie:
        sign_in(newbie, ("newbie", "newbie-pass-1"))
        assert newbie.get("/admin/reasons").status_code == 200

    added = client.post("/admin/reasons", data={"code": "too_long", "label": "Far too long", "csrf_token": t})
    assert added.status_code == 200 and "too_long" in added.text
    retired = client.post("/admin/reasons/too_long/active", data={"active": "0", "csrf_token": t})
    assert retired.status_code == 200 and "retired" in retired.text

    saved = client.post(
        "/admin/settings", data={"required_reviews": "2", "lease_minutes": "30", "undo_minutes": "5", "csrf_token": t}
    )
    assert saved.status_code == 200 and 'value="30"' in saved.text
    wrong = client.post(
        "/admin/settings", data={"required_reviews": "two", "lease_minutes": "30", "undo_minutes": "5", "csrf_token": t}
    )
    assert wrong.status_code == 400 and "expected a whole number" in wrong.text


# --- the review loop ------------------------------------------------------------------------------------------


def test_claim_approve_then_the_next_draft(client: TestClient, db: Database, seeded: Seeded) -> None:
    sign_in(client, EDITOR)
    first = claim_next(client)
    assert first == seeded.draft_ids[0]
    page = client.get(f"/drafts/{first}")
    assert 'id="approve"' in page.text and 'id="lease"' in page.text
    assert claim_next(client) == first  # one draft at a time: reopening the review screen gives it back
    response = client.post(
        f"/drafts/{first}/approve", data={"note": "fine", "csrf_token": token_in(page.text)}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/review"
    nxt = client.get("/review")
    assert nxt.url.path == f"/drafts/{seeded.draft_ids[1]}" and f"Approved draft {first}" in nxt.text
    assert draft_row(db, first).status == DraftStatus.APPROVED.value
    assert actions_of(db, first) == ["approve"]  # taking a draft writes no history row


def test_reject_needs_a_reason(client: TestClient, db: Database) -> None:
    sign_in(client, EDITOR)
    draft_id = claim_next(client)
    t = token(client, f"/drafts/{draft_id}")
    missing = client.post(f"/drafts/{draft_id}/reject", data={"reason": "", "csrf_token": t})
    assert missing.status_code == 400 and "choose a reason" in missing.text
    unknown = client.post(f"/drafts/{draft_id}/reject", data={"reason": "nonsense", "csrf_token": t})
    assert unknown.status_code == 400 and "unknown rejection reason" in unknown.text
    assert draft_row(db, draft_id).status == DraftStatus.IN_REVIEW.value
    done = client.post(
        f"/drafts/{draft_id}/reject",
        data={"reason": "off_topic", "note": "about cats", "csrf_token": t},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/review"
    assert draft_row(db, draft_id).status == DraftStatus.REJECTED.value


def test_a_stale_edit_shows_the_conflict(client: TestClient, db: Database) -> None:
    sign_in(client, EDITOR)
    draft_id = claim_next(client)
    page = client.get(f"/drafts/{draft_id}")
    assert 'name="expected_version" value="1"' in page.text
    t = token_in(page.text)
    first = client.post(
        f"/drafts/{draft_id}/edit", data={"text": "First tab's text.", "expected_version": "1", "csrf_token": t}
    )
    assert first.status_code == 200 and "now version 2" in first.text
    stale = client.post(
        f"/drafts/{draft_id}/edit", data={"text": "Second tab's text.", "expected_version": "1", "csrf_token": t}
    )
    assert stale.status_code == 409
    assert "changed since version 1" in stale.text and "Second tab&#39;s text." in stale.text
    assert draft_row(db, draft_id).current_text == "First tab's text."
    empty = client.post(f"/drafts/{draft_id}/edit", data={"text": "  ", "expected_version": "2", "csrf_token": t})
    assert empty.status_code == 400 and "empty" in empty.text


def test_decisions_need_the_claim(app: FastAPI, db: Database, seeded: Seeded) -> None:
    with TestClient(app) as ed, TestClient(app) as kim:
        sign_in(ed, EDITOR)
        sign_in(kim, OTHER_EDITOR)
        held = claim_next(ed)
        other = claim_next(kim)
        assert other != held
        page = kim.get(f"/drafts/{held}")
        assert (
            'Claimed by <span dir="auto">ed</span>' in page.text
            and 'id="approve"' not in page.text
            and 'id="claim-form"' not in page.text
        )
        t = token_in(page.text)
        for action, data in (
            ("approve", {}),
            ("reject", {"reason": "other"}),
            ("skip", {}),
            ("edit", {"text": "mine now", "expected_version": "1"}),
        ):
            response = kim.post(f"/drafts/{held}/{action}", data={**data, "csrf_token": t})
            assert response.status_code == 409, action
        pending = seeded.draft_ids[5]
        assert kim.post(f"/drafts/{pending}/approve", data={"csrf_token": t}).status_code == 409
        assert draft_row(db, held).claimed_by == EDITOR[0] and draft_row(db, pending).status == "pending"


def test_skip_heartbeat_comment_and_history(client: TestClient, db: Database) -> None:
    sign_in(client, EDITOR)
    draft_id = claim_next(client)
    t = token(client, f"/drafts/{draft_id}")
    before = draft_row(db, draft_id).lease_expires_at
    beat = client.post(f"/drafts/{draft_id}/heartbeat", headers={"X-CSRF-Token": t})
    assert beat.status_code == 200 and beat.json()["expires_at"] >= before.isoformat()
    commented = client.post(f"/drafts/{draft_id}/comment", data={"body": "Check the <date>.", "csrf_token": t})
    assert commented.status_code == 200 and "Check the &lt;date&gt;." in commented.text
    client.post(f"/drafts/{draft_id}/edit", data={"text": "Edited.", "expected_version": "1", "csrf_token": t})
    skipped = client.post(f"/drafts/{draft_id}/skip", data={"csrf_token": t}, follow_redirects=False)
    assert skipped.status_code == 303 and skipped.headers["location"] == "/review"
    assert draft_row(db, draft_id).status == DraftStatus.PENDING.value
    following = claim_next(client)  # the next draft, not the one just skipped (it is the oldest)
    assert following != draft_id and draft_row(db, following).claimed_by == EDITOR[0]
    lost = client.post(f"/drafts/{draft_id}/heartbeat", headers={"X-CSRF-Token": t})
    assert lost.status_code == 409 and "not claimed" in lost.json()["error"]
    history = client.get(f"/drafts/{draft_id}/history").text
    for action in ("comment", "edit", "revision 2"):
        assert f">{action}</span>" in history, action
    for action in ("claim", "release"):  # taking and giving back a draft leaves no trace in its history
        assert f">{action}</span>" not in history, action
    assert client.get("/drafts/999999").status_code == 404
    assert client.get("/drafts/999999/history").status_code == 404
    assert client.get("/drafts/not-a-number").status_code == 400


def test_empty_queue_says_so(client: TestClient, db: Database) -> None:
    sign_in(client, EDITOR)
    response = client.get("/review?queue=flagged")
    assert response.status_code == 200 and "flagged queue" in response.text and "is empty" in response.text


def test_unknown_pages_and_the_queue_alias(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, EDITOR)
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and "There is no page at this address" in missing.text
    alias = client.get("/queue?flag=copied")
    assert alias.url.path == "/" and row_ids(alias.text) == [seeded.draft_ids[3]]


# --- queue: filters, search, paging ---------------------------------------------------------------------------


def test_queue_filters(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, EDITOR)
    ids = seeded.draft_ids
    v1, v2 = seeded.model_version_ids
    assert row_ids(client.get("/?category=news&night=night-1").text) == [ids[2], ids[3]]
    assert row_ids(client.get("/?flag=copied").text) == [ids[3]]
    assert row_ids(client.get("/?q=kettle").text) == [ids[4]]
    assert row_ids(client.get(f"/?model={v1}").text) == ids[:6]
    assert row_ids(client.get(f"/?model={v2}&size=100").text) == ids[6:]
    assert row_ids(client.get("/?night=night-1&status=pending").text) == ids[:6]
    assert row_ids(client.get("/?status=approved").text) == []
    held = claim_next(client)
    assert held not in row_ids(client.get("/?size=100").text)  # the screen opens on the pending queue
    everything = client.get("/?status=&size=100")
    assert row_ids(everything.text) == ids and 'href="/?status=in_review&amp;size=100"' in everything.text
    counts = client.get("/").text
    assert re.search(r'<span class="count">35</span><span class="label">pending</span>', counts)
    assert re.search(r'<span class="count">1</span><span class="label">in review</span>', counts)


def test_queue_pages_by_keyset(client: TestClient, seeded: Seeded) -> None:
    sign_in(client, EDITOR)
    seen: list[int] = []
    url: str | None = "/?size=10&status=pending"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += row_ids(page.text)
        match = re.search(r'<a href="([^"]+)" rel="next"', page.text)
        url = match.group(1).replace("&amp;", "&") if match else None
        assert url is None or ("after=" in url and "status=pending" in url and "size=10" in url)
    assert seen == seeded.draft_ids  # every draft once, in queue order, over 4 pages


def test_query_strings_never_reach_sql(client: TestClient, db: Database, seeded: Seeded) -> None:
    sign_in(client, EDITOR)
    harmless = [
        "/?q=' OR 1=1 --",
        "/?q=%",
        "/?q=_",
        "/?category=news' OR '1'='1",
        "/?flag=%25",
        '/?night=x"; DROP TABLE drafts; --',
        "/?editor=' OR ''='",
    ]
    for path in harmless:
        response = client.get(path)
        assert response.status_code == 200 and row_ids(response.text) == [], path
    refused = [
        "/?model=1 OR 1=1",
        "/?status=pending' --",
        "/?after=garbage",
        "/?after=2020-01-01~1;DROP",
        "/?size=99999999999999999999999",
        "/?model=-99999999999999999999999",
        "/metrics?model=1;--",
    ]
    for path in refused:
        response = client.get(path)
        assert response.status_code == 400, path
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Draft)) == len(seeded.draft_ids)


# --- metrics and export ---------------------------------------------------------------------------------------


def test_metrics_and_export(app: FastAPI, client: TestClient, db: Database, seeded: Seeded) -> None:
    sign_in(client, EDITOR)
    t = token(client)
    approved = claim_next(client)
    client.post(f"/drafts/{approved}/edit", data={"text": "An edited text.", "expected_version": "1", "csrf_token": t})
    client.post(f"/drafts/{approved}/approve", data={"csrf_token": t})
    rejected = claim_next(client)
    client.post(f"/drafts/{rejected}/reject", data={"reason": "low_quality", "csrf_token": t})

    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "50.0 %" in metrics.text and "low_quality" in metrics.text and f">{EDITOR[0]}</th>" in metrics.text
    assert client.get("/metrics?night=night-2").status_code == 200

    # exports hold every draft with notes and names: admins only
    assert client.get("/export").status_code == 403
    assert client.post("/export", data={"fmt": "jsonl", "kind": "drafts", "csrf_token": t}).status_code == 403
    with TestClient(app) as boss:
        sign_in(boss, ADMIN)
        t = token(boss, "/export")
        jsonl = boss.post("/export", data={"fmt": "jsonl", "kind": "drafts", "status": "approved", "csrf_token": t})
        assert jsonl.status_code == 200 and "attachment" in jsonl.headers["content-disposition"]
        rows = [json.loads(line) for line in jsonl.text.splitlines()]
        assert [r["draft_id"] for r in rows] == [approved] and rows[0]["text"] == "An edited text."
        parquet = boss.post("/export", data={"fmt": "parquet", "kind": "preferences", "csrf_token": t})
        assert parquet.status_code == 200 and pq.read_table(BytesIO(parquet.content)).num_rows >= 1
        bad = boss.post("/export", data={"fmt": "csv", "kind": "drafts", "csrf_token": t})
        assert bad.status_code == 400


# --- the session secret ---------------------------------------------------------------------------------------


def test_secret_is_generated_once_and_kept_private(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    first = create_app(db.url).state.secret
    secret_file = Path(db.engine.url.database).parent / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert create_app(db.url).state.secret == first and len(first) >= 32
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(DraftflowError, match="at least 32"):
        create_app(db.url)
