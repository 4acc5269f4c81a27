"""The web desk in a real browser: Playwright driving Debian's Chromium against uvicorn on a seeded SQLite file.

Sign in, claim, edit and save with Ctrl+Enter, approve with `a`, land on the next draft, read the
history; markup in a draft stays text; a form stripped of its CSRF token is refused; an anonymous
visit is sent to sign-in; the lease timer's heartbeat; a link from another site keeps the session.
CI installs Chromium (`make system-deps`): without it these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from playwright.sync_api import Dialog, Page, sync_playwright

from review.app import create_app
from storage.db import Database
from storage.models import DraftStatus
from storage.queue import release
from tests.desk_seed import EDITOR, XSS_TEXT, Seeded, actions_of, draft_row, seed_desk

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("DRAFTFLOW_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 10_000


@dataclass
class Desk:
    url: str
    db: Database
    seeded: Seeded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def desk(db: Database) -> Iterator[Desk]:
    seeded = seed_desk(db)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(db.url, secret_key="browser-test-" + "s" * 40),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the desk did not start"
        time.sleep(0.05)
    yield Desk(url=f"http://127.0.0.1:{port}", db=db, seeded=seeded)
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Tab:
    page: Page
    dialogs: list[str]  # messages of any alert/confirm/prompt: generated text must never open one


@pytest.fixture
def tab(desk: Desk) -> Iterator[Tab]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it (`apt-get install -y chromium`) or set "
            "DRAFTFLOW_CHROMIUM to its path; the desk's browser test needs a real browser",
            pytrace=False,
        )
    with sync_playwright() as p:
        # as root (containers, CI) Chromium refuses to start with its sandbox on
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        dialogs: list[str] = []

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        yield Tab(page=page, dialogs=dialogs)
        browser.close()


def sign_in(page: Page, desk: Desk) -> None:
    page.goto(desk.url + "/")
    assert "/login" in page.url  # anonymous: sent to sign-in
    page.fill("#name", EDITOR[0])
    page.fill("#password", EDITOR[1])
    page.click("button[type=submit]")
    page.wait_for_url(desk.url + "/")


def test_review_loop_in_a_browser(tab: Tab, desk: Desk) -> None:
    page = tab.page
    ids = desk.seeded.draft_ids
    page.goto(desk.url + f"/drafts/{ids[0]}/history")
    assert re.search(r"/login\?next=%2Fdrafts%2F\d+%2Fhistory$", page.url), page.url
    sign_in(page, desk)

    page.click("text=Start reviewing")
    page.wait_for_url(desk.url + f"/drafts/{ids[0]}")
    assert re.match(r"\d+:\d\d left", page.inner_text("#lease-left")), "the lease timer counts down"

    edited = "\nThe module returns a value for every key in the mapping.\n\nEdited in a browser."
    page.fill("#editor", edited)
    page.press("#editor", "Control+Enter")
    page.wait_for_selector("text=now version 2")
    assert page.locator("#diff del").all_inner_texts() == ["each"]
    assert "every" in page.locator("#diff ins").all_inner_texts()
    assert draft_row(desk.db, ids[0]).current_text == edited
    assert page.input_value("#editor") == edited  # newlines, the leading one too, survive the round trip

    page.keyboard.press("a")
    page.wait_for_url(desk.url + f"/drafts/{ids[1]}")
    assert page.is_visible(f"text=Approved draft {ids[0]}")
    assert page.input_value("#editor") == draft_row(desk.db, ids[1]).current_text
    assert draft_row(desk.db, ids[0]).status == DraftStatus.APPROVED.value

    page.goto(desk.url + f"/drafts/{ids[0]}/history")
    actions = page.locator("span.action").all_inner_texts()
    assert {"edit", "revision 2", "approve"} <= set(actions), actions
    assert [a for a in actions_of(desk.db, ids[0]) if a != "recheck"] == ["edit", "approve"]


def test_markup_in_drafts_stays_text(tab: Tab, desk: Desk) -> None:
    page = tab.page
    sign_in(page, desk)
    page.goto(desk.url + f"/drafts/{desk.seeded.xss_id}")
    assert page.inner_text("#draft-text") == XSS_TEXT
    assert page.locator("#draft-text b").count() == 0 and page.locator("#draft-text script").count() == 0
    page.goto(desk.url + "/?category=news")
    assert "<script>alert(1)</script>" in page.inner_text("table.drafts")
    page.wait_for_timeout(300)
    assert tab.dialogs == []  # no alert(1) ever ran


def test_forms_without_csrf_token_are_refused(tab: Tab, desk: Desk) -> None:
    page = tab.page
    sign_in(page, desk)
    page.goto(desk.url + "/review")
    draft_id = int(page.url.rsplit("/", 1)[1])
    page.evaluate("document.querySelector('#review-form input[name=csrf_token]').remove()")
    page.click("#approve")
    page.wait_for_selector("text=Form refused")
    assert page.is_visible("text=security token")
    status = page.evaluate(f"fetch('/drafts/{draft_id}/approve', {{method: 'POST'}}).then(r => r.status)")
    assert status == 403
    assert draft_row(desk.db, draft_id).status == DraftStatus.IN_REVIEW.value


def test_a_link_from_another_site_keeps_the_session(tab: Tab, desk: Desk) -> None:
    """The session cookie is SameSite=strict: a link from mail or chat must not sign the editor out."""
    page = tab.page
    sign_in(page, desk)
    draft_id = desk.seeded.draft_ids[0]
    other_site = desk.url.replace("127.0.0.1", "localhost")  # another site to the browser
    page.goto(other_site + "/static/desk.css")
    page.evaluate(
        "url => { const a = document.createElement('a'); a.id = 'out'; a.href = url; a.textContent = 'x';"
        " document.body.appendChild(a); }",
        f"{desk.url}/drafts/{draft_id}",
    )
    page.click("#out")
    page.wait_for_selector(f"h1:text-is('Draft {draft_id}')")  # the draft itself, not the sign-in page
    assert page.url == f"{desk.url}/drafts/{draft_id}"
    page.goto(desk.url + "/")
    assert page.url == desk.url + "/"  # still signed in


def test_lease_timer_and_heartbeat(tab: Tab, desk: Desk) -> None:
    page = tab.page
    sign_in(page, desk)
    page.clock.install()  # the page's timers under the test's control: a minute passes in no time
    page.goto(desk.url + "/review")
    draft_id = int(page.url.rsplit("/", 1)[1])
    claimed_until = draft_row(desk.db, draft_id).lease_expires_at
    with page.expect_response(lambda r: r.url.endswith(f"/drafts/{draft_id}/heartbeat")) as beat:
        page.keyboard.press("e")  # the editor is active: the page keeps their lease (a beat every third of it)
        page.clock.run_for(5 * 60_000 + 1000)
    assert beat.value.status == 200 and draft_row(desk.db, draft_id).lease_expires_at > claimed_until

    release(desk.db, draft_id, EDITOR[0])  # the draft leaves the editor (as when a lapsed lease is swept)
    with page.expect_response(lambda r: r.url.endswith(f"/drafts/{draft_id}/heartbeat")) as beat:
        page.keyboard.press("Escape")
        page.clock.run_for(5 * 60_000 + 1000)
    assert beat.value.status == 409
    page.wait_for_selector("#lease-left:text-is('lost')")
    page.wait_for_selector("#lease-lost[role=alertdialog]", state="visible")  # a blocking box, not a side note
    assert "not claimed" in page.inner_text("#lease-lost-message")
    assert page.is_disabled("#approve") and page.is_disabled("#skip")
