"""The desk's security limits over HTTP (FastAPI's TestClient) against a real SQLite file: sign-in
lockout per account and per address, server-side sessions that die at sign-out, no 500 from user
input and the security headers on every answer (errors included), the body size limit, and
exports for admins only, each one audited."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from review.app import SESSION_COOKIE
from storage import accounts, audit, desk_sessions, sign_in_limits
from storage.db import Database
from storage.models import DeskAudit, DeskSession, ReviewEvent, SignInFailure, utcnow
from tests import test_desk_http as desk_http
from tests.cli_helpers import run_cli
from tests.desk_seed import ADMIN, DRAFTS, EDITOR, OTHER_EDITOR, Seeded, seed_desk

CSP = "content-security-policy"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests make dozens of sign-in attempts: what they test is the limits, not argon2's cost.
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def seeded(db: Database, cheap_hashing: None) -> Seeded:
    return seed_desk(db)


app = desk_http.app  # the desk's fixtures, on this module's seeded database
client = desk_http.client


def client_from(app: FastAPI, address: tuple[str, int]) -> TestClient:
    """A test client whose requests come from `address` (the ASGI scope's client), on any Starlette."""

    async def from_address(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": address}
        await app(scope, receive, send)

    return TestClient(from_address)


def csrf(client: TestClient, path: str = "/login") -> str:
    html = client.get(path).text
    marker = 'name="csrf_token" value="'
    assert marker in html, f"no CSRF token on {path}"
    return html.split(marker, 1)[1].split('"', 1)[0]


def attempt(client: TestClient, name: str, password: str) -> Response:
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": csrf(client)},
        follow_redirects=False,
    )


def sign_in(client: TestClient, who: tuple[str, str]) -> None:
    response = attempt(client, *who)
    assert response.status_code == 303, response.text


def signed_in(client: TestClient) -> bool:
    return client.get("/", follow_redirects=False).status_code == 200


def age_failures(db: Database, by: timedelta) -> None:
    """The clock moves on: every recorded failure happened `by` earlier."""
    with db.transaction() as s:
        for row in s.scalars(sa.select(SignInFailure)):
            row.at = row.at - by


def failures(db: Database, name: str) -> int:
    with db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(SignInFailure).where(SignInFailure.name == name)) or 0


# --- sign-in: rate limit and lockout ------------------------------------------------------------------------------


def test_an_account_is_locked_after_repeated_failures_even_for_the_right_password(
    client: TestClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    statuses = []
    with caplog.at_level(logging.WARNING, logger="storage.sign_in_limits"):
        for _ in range(sign_in_limits.NAME_LIMIT):
            statuses.append(attempt(client, EDITOR[0], "not-the-password").status_code)
    assert statuses == [400] * (sign_in_limits.NAME_LIMIT - 1) + [429]
    assert any("sign-in locked by name" in r.getMessage() and "'ed'" in r.getMessage() for r in caplog.records)

    right = attempt(client, *EDITOR)
    wrong = attempt(client, EDITOR[0], "still-not-it")
    for response in (right, wrong):
        assert response.status_code == 429 and CSP in response.headers
        assert "Wrong name or password" in response.text and "Too many attempts, try again in 15 minutes" in right.text
        assert int(response.headers["retry-after"]) == 15 * 60
    assert _flash(right.text) == _flash(wrong.text)  # a locked account does not tell a right password from a wrong one
    assert not signed_in(client)
    assert (
        failures(db, EDITOR[0]) == sign_in_limits.NAME_LIMIT
    )  # refused attempts are not counted: the lock ends on time

    sign_in(client, OTHER_EDITOR)  # the lock is the account's, not the address's

    age_failures(db, sign_in_limits.LOCKOUT - timedelta(minutes=1))
    assert "try again in 1 minute." in attempt(client, *EDITOR).text
    age_failures(db, timedelta(minutes=1, seconds=1))
    sign_in(client, EDITOR)
    assert signed_in(client) and failures(db, EDITOR[0]) == 0


def test_the_account_lock_holds_for_every_address_and_every_name(app: FastAPI, db: Database) -> None:
    for i in range(sign_in_limits.NAME_LIMIT):
        with client_from(app, (f"10.0.0.{i + 1}", 40000)) as c:
            assert attempt(c, ADMIN[0], f"guess-{i}").status_code in (400, 429)
    with client_from(app, ("10.0.0.99", 40000)) as fresh:
        assert attempt(fresh, *ADMIN).status_code == 429
        # a name that does not exist is limited the same way: the lock tells nobody who has an account
        answers = [attempt(fresh, "nobody-here", "x").status_code for _ in range(sign_in_limits.NAME_LIMIT)]
        assert answers[-1] == 429


def test_an_address_is_locked_after_failures_on_many_names(app: FastAPI, db: Database) -> None:
    with client_from(app, ("192.0.2.7", 50000)) as attacker:
        for i in range(sign_in_limits.ADDRESS_LIMIT):
            response = attempt(attacker, f"guess{i}", "password")
            assert response.status_code == (429 if i == sign_in_limits.ADDRESS_LIMIT - 1 else 400)
        refused = attempt(attacker, *ADMIN)
        assert refused.status_code == 429 and "Too many attempts" in refused.text and not signed_in(attacker)
    with client_from(app, ("192.0.2.8", 50000)) as colleague:
        sign_in(colleague, ADMIN)  # another address is not held up
    age_failures(db, sign_in_limits.LOCKOUT + timedelta(seconds=1))
    with client_from(app, ("192.0.2.7", 50000)) as later:
        sign_in(later, ADMIN)


def test_a_successful_sign_in_clears_the_account_failures(client: TestClient, db: Database) -> None:
    for _ in range(sign_in_limits.NAME_LIMIT - 1):
        assert attempt(client, EDITOR[0], "typo-password").status_code == 400
    sign_in(client, EDITOR)
    assert failures(db, EDITOR[0]) == 0
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    for _ in range(sign_in_limits.NAME_LIMIT - 1):
        assert attempt(client, EDITOR[0], "typo-password").status_code == 400
    sign_in(client, EDITOR)  # four more typos are not a lock: the earlier four were forgotten


def test_failures_far_apart_do_not_lock(client: TestClient, db: Database) -> None:
    for _ in range(sign_in_limits.NAME_LIMIT - 1):
        attempt(client, EDITOR[0], "typo-password")
    age_failures(db, sign_in_limits.WINDOW + timedelta(seconds=1))
    assert attempt(client, EDITOR[0], "typo-password").status_code == 400  # 5 failures, but not within 15 minutes
    sign_in(client, EDITOR)


# --- server-side sessions -----------------------------------------------------------------------------------------


def cookie_session(client: TestClient) -> dict[str, object]:
    value = client.cookies[SESSION_COOKIE]
    payload = value.split(".", 1)[0]
    return json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_copied_cookie_is_refused_after_sign_out(app: FastAPI, db: Database) -> None:
    with TestClient(app) as browser:
        sign_in(browser, EDITOR)
        stolen = browser.cookies[SESSION_COOKIE]
        token = cookie_session(browser)["sid"]
        with db.session() as s:
            row = s.get(DeskSession, hashlib.sha256(str(token).encode()).hexdigest())
            assert row is not None and row.editor == EDITOR[0] and row.ended_at is None
            assert s.get(DeskSession, token) is None  # the table holds the hash, never the token
        with TestClient(app, cookies={SESSION_COOKIE: stolen}) as thief:
            assert signed_in(thief)  # a copy works while the session is open ...
            browser.post("/logout", data={"csrf_token": csrf(browser, "/")})
            response = thief.get("/", follow_redirects=False)
            assert response.status_code == 303 and response.headers["location"].startswith("/login")
        with TestClient(app, cookies={SESSION_COOKIE: stolen}) as replay:
            # ... and not after sign-out, whatever the client does with the answer's cookie
            assert replay.get("/login", follow_redirects=False).status_code == 200
            assert replay.get("/metrics", follow_redirects=False).status_code == 303
        with db.session() as s:
            assert s.scalar(sa.select(DeskSession.ended_at)) is not None


def test_sessions_are_checked_cheaply_and_end_when_idle(client: TestClient, db: Database) -> None:
    sign_in(client, EDITOR)

    def seen_at() -> object:
        with db.session() as s:
            return s.scalar(sa.select(DeskSession.seen_at))

    first = seen_at()
    assert signed_in(client) and seen_at() == first  # not written on every click
    with db.transaction() as s:
        row = s.scalars(sa.select(DeskSession)).one()
        row.seen_at = row.seen_at - desk_sessions.SEEN_EVERY - timedelta(seconds=1)
    before = seen_at()
    assert signed_in(client) and seen_at() != before  # written once a minute at most
    with db.transaction() as s:
        row = s.scalars(sa.select(DeskSession)).one()
        row.seen_at = row.seen_at - desk_sessions.IDLE_LIMIT - timedelta(seconds=1)
    assert not signed_in(client)


def test_a_deactivated_editors_cookie_does_not_come_back_with_the_account(app: FastAPI, db: Database) -> None:
    with TestClient(app) as browser:
        sign_in(browser, EDITOR)
        copy = browser.cookies[SESSION_COOKIE]
        accounts.set_editor(db, EDITOR[0], active=False)
        assert not signed_in(browser)
        accounts.set_editor(db, EDITOR[0], active=True)
    with TestClient(app, cookies={SESSION_COOKIE: copy}) as replay:
        assert not signed_in(replay)


def test_ending_an_editors_sessions(app: FastAPI, db: Database) -> None:
    with TestClient(app) as one, TestClient(app) as two:
        sign_in(one, EDITOR)
        sign_in(two, EDITOR)
        assert desk_sessions.end_all(db, EDITOR[0]) == 2
        assert not signed_in(one) and not signed_in(two)


# --- no 500 from user input, and the headers on every answer ------------------------------------------------------

HOSTILE_QUERIES = [
    "after=2026-01-01~99999999999999999999999",
    "after=2026-01-01~4611686018427387905",
    "after=2026-01-01~%C2%B2",
    "after=~1",
    "after=not-a-time~1",
    "after=2026-13-45~1",
    "after=" + "9" * 5000,
    "size=-1",
    "size=99999999999999999999999",
    "size=" + "9" * 5000,
    "size=1e9",
    "model=-99999999999999999999999",
    "model=%00",
    "status=%FF%FE",
    "night=%FF&category=%C0%AF&q=%ED%A0%80",
    "queue=%FF",
    "next=%2F%2Fevil.example",
    "next=/" + "a" * 8000,
    "q=" + "x" * 30000,
    "%FF=%FF",
]
HOSTILE_IDS = ["0", "-1", "99999999999999999999999", "9" * 5000, "1e3", "%FF", "%00", "abc", "..%2F..%2Fetc"]
HOSTILE_FORMS = [
    {"content": b"name=%FF%FE&password=%C0&note=%ED%A0%80&text=%FF&expected_version=-9999999999999999999999"},
    {"content": b"expected_version=" + b"9" * 5000 + b"&required_reviews=99999999999999999999&lease_minutes=-1"},
    {"content": b"fmt=../../x&kind=..%2F&status=..%2F..%2Fetc&active=%FF&role=root&reason=%00"},
    {"content": b"&&==&%%%&a=%zz", "content-type": "application/x-www-form-urlencoded"},
    {
        "content": b"--x\r\nContent-Disposition: form-data\r\n\r\nbroken",
        "content-type": "multipart/form-data; boundary=x",
    },
    {"content": b"garbage", "content-type": "multipart/form-data"},
    {"content": b'{"csrf_token": 1}', "content-type": "application/json"},
    {"content": b"&".join(b"f%d=1" % i for i in range(3000))},
]


def _paths(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route, whatever the nesting of included routers."""
    routes: list[tuple[str, str]] = []
    pending: list[object] = list(app.routes)
    while pending:
        route = pending.pop(0)
        if isinstance(route, APIRoute):
            routes += [(method, route.path) for method in sorted(route.methods)]
        elif hasattr(route, "original_router"):  # FastAPI keeps included routers as nodes
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            for child in route.original_router.routes:
                if isinstance(child, APIRoute) and prefix:
                    routes += [(method, prefix + child.path) for method in sorted(child.methods)]
                else:
                    pending.append(child)
    return routes


def _fill(path: str, value: str) -> str:
    parts = path.split("/")
    return "/".join(value if p.startswith("{") and p.endswith("}") else p for p in parts)


def _assert_answered(response: Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    assert CSP in response.headers and "x-frame-options" in response.headers, what


def _variants(method: str, template: str) -> Iterator[tuple[str, dict[str, object]]]:
    """Each hostile path id, query and body alone, the other parts plain: every kind reaches every route."""
    plain_path = _fill(template, "1")
    plain_form: dict[str, object] = {"content": b"note=x"}
    for value in HOSTILE_IDS if "{" in template else []:
        yield _fill(template, value), plain_form
    for query in HOSTILE_QUERIES if method == "GET" else HOSTILE_QUERIES[:2]:  # forms read no query strings
        yield f"{plain_path}?{query}", plain_form
    for form in HOSTILE_FORMS if method == "POST" else []:
        yield plain_path, form


def test_hostile_input_to_every_route_never_gets_a_500(app: FastAPI, seeded: Seeded) -> None:
    routes = _paths(app)
    assert len(routes) > 15 and ("POST", "/drafts/{draft_id}/edit") in routes
    with client_from(app, ("198.51.100.1", 1)) as anonymous, TestClient(app) as admin:
        sign_in(admin, ADMIN)
        token = csrf(admin, "/")
        for client, who in ((anonymous, "anonymous"), (admin, "admin")):
            for method, template in routes:
                if template == "/logout":
                    continue  # signs the fuzzer out: tried once at the end
                for url, form in _variants(method, template):
                    what = f"{who} {method} {url[:80]} {str(form['content'])[:40]}"
                    if method == "GET":
                        _assert_answered(client.get(url, follow_redirects=False), what)
                        continue
                    headers = {"content-type": str(form.get("content-type", "application/x-www-form-urlencoded"))}
                    if who == "admin":
                        headers["X-CSRF-Token"] = token  # past the CSRF check, into the route itself
                    response = client.post(url, content=form["content"], headers=headers, follow_redirects=False)
                    _assert_answered(response, what)
        assert signed_in(admin)
        _assert_answered(admin.post("/logout", headers={"X-CSRF-Token": token}, follow_redirects=False), "logout")


def test_bad_page_cursors_are_a_400(client: TestClient) -> None:
    sign_in(client, EDITOR)
    for after in ("2026-01-01~99999999999999999999999", "2026-01-01~4611686018427387905", "x~1", "2026-01-01~²"):
        response = client.get("/", params={"after": after})
        assert response.status_code == 400 and "bad page cursor" in response.text and CSP in response.headers, after
    assert client.get("/", params={"after": "2026-01-01T00:00:00+00:00~4611686018427387904"}).status_code == 200


def test_an_unexpected_exception_is_a_500_page_with_the_headers(app: FastAPI) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/boom")
    assert response.status_code == 500 and "Something went wrong" in response.text and "a bug" not in response.text
    assert response.headers[CSP].startswith("default-src 'self'") and response.headers["x-frame-options"] == "DENY"


def test_a_huge_body_is_refused_before_parsing(client: TestClient, db: Database, seeded: Seeded) -> None:
    sign_in(client, EDITOR)
    token = csrf(client, "/")
    draft_id = int(client.get("/review", follow_redirects=False).headers["location"].rsplit("/", 1)[1])
    note = "n" * 1_000_000
    response = client.post(f"/drafts/{draft_id}/approve", data={"note": note, "csrf_token": token})
    assert response.status_code == 413 and CSP in response.headers and "at most 512 KiB" in response.text
    # the same body streamed without a Content-Length is cut off when it passes the limit
    chunks = (b"csrf_token=" + token.encode() + b"&note=", *(b"n" * 65536 for _ in range(20)))
    streamed = client.post(
        f"/drafts/{draft_id}/approve",
        content=iter(chunks),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413 and CSP in streamed.headers
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ReviewEvent).where(ReviewEvent.action == "approve")) == 0
    ok = client.post(f"/drafts/{draft_id}/approve", data={"note": "fine", "csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303


# --- export: admins only, audited ---------------------------------------------------------------------------------


def test_export_is_for_admins_and_every_export_is_recorded(app: FastAPI, db: Database) -> None:
    form = {"fmt": "jsonl", "kind": "drafts", "status": "pending"}
    with TestClient(app) as ed:
        sign_in(ed, EDITOR)
        assert ed.get("/export").status_code == 403
        refused = ed.post("/export", data={**form, "csrf_token": csrf(ed, "/")})
        assert refused.status_code == 403 and CSP in refused.headers and "draft_id" not in refused.text
    assert audit.recent(db) == []
    with TestClient(app) as boss:
        sign_in(boss, ADMIN)
        before = utcnow()
        response = boss.post("/export", data={**form, "csrf_token": csrf(boss, "/export")})
        assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
        rows = [json.loads(line) for line in response.text.splitlines()]
        assert len(rows) == len(DRAFTS)
        [entry] = audit.recent(db, "export")
        assert entry.actor == ADMIN[0] and entry.action == "export"
        assert entry.detail == {"kind": "drafts", "status": "pending", "format": "jsonl", "rows": len(DRAFTS)}
        at = entry.at.replace(tzinfo=before.tzinfo) if entry.at.tzinfo is None else entry.at
        assert before - timedelta(seconds=1) <= at <= utcnow()
        page = boss.get("/export")
        assert page.status_code == 200 and "Recent exports" in page.text
        recent = page.text.split('id="recent-exports"', 1)[1]
        assert f"<td>{ADMIN[0]}</td>" in recent and "drafts (pending)" in recent and "<td>jsonl</td>" in recent
        bad = boss.post(
            "/export", data={"fmt": "jsonl", "kind": "drafts", "status": "../x", "csrf_token": csrf(boss, "/export")}
        )
        assert bad.status_code == 400 and len(audit.recent(db, "export")) == 1


def test_cli_exports_are_recorded(
    db: Database, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prefs.jsonl"
    done = run_cli(capsys, "review", "export", "--out", str(out), "--format", "jsonl", "--preferences")
    assert done.code == 0, done.err
    with db.session() as s:
        entry = s.scalars(sa.select(DeskAudit)).one()
    assert entry.actor.startswith("cli:") and entry.action == "export"
    assert entry.detail["kind"] == "preferences" and entry.detail["out"] == str(out)


def _flash(html: str) -> str:
    start = html.index("Wrong name or password")
    return html[start : html.index("<", start)]
