"""No lost work, leases that warn and undo, in a real browser (Playwright driving Debian's Chromium).

Typed text reaches the database through every way of deciding: the Approve button, the `a` and
`s` keys, Reject with a reason; leaving the page by a link with unsaved text is asked first; an
idle editor sees a warning before the lease ends and a blocking box when it is lost, can take the
draft back with their text, and can undo a decision with `u`.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Dialog, Page

from storage.accounts import set_desk_settings
from storage.models import DraftStatus
from tests import test_desk_browser as browser_tests
from tests.desk_seed import draft_row
from tests.test_desk_browser import Desk, Tab, sign_in

desk = browser_tests.desk  # the fixtures: a desk on a seeded SQLite file, a Chromium tab
tab = browser_tests.tab

pytestmark = pytest.mark.slow


def _advance(page: Page, ms: int, step: int = 10_000) -> None:
    """Run the page's fake clock forward in steps, letting each step's heartbeat answer arrive
    (the server answers in real time: one jump of minutes would outrun every reply)."""
    for _ in range(ms // step):
        page.clock.run_for(step)
        page.wait_for_timeout(150)
    page.clock.run_for(ms % step)


def _type(tab: Tab, text: str) -> None:
    tab.page.click("#editor")  # a real click: the browser's "user activation" that unsaved-text prompts need
    tab.page.fill("#editor", text)
    tab.page.keyboard.press("Escape")  # out of the box: letters are commands again


def test_typed_text_reaches_the_database_by_every_decision_path(tab: Tab, desk: Desk) -> None:
    page, ids, db = tab.page, desk.seeded.draft_ids, desk.db
    sign_in(page, desk)
    page.click("text=Start reviewing")
    page.wait_for_url(desk.url + f"/drafts/{ids[0]}")

    _type(tab, "Typed, then the Approve button.")
    page.click("#approve")
    page.wait_for_url(desk.url + f"/drafts/{ids[1]}")
    assert (draft_row(db, ids[0]).current_text, draft_row(db, ids[0]).status) == (
        "Typed, then the Approve button.",
        DraftStatus.APPROVED.value,
    )

    _type(tab, "Typed, then the a key.")
    page.keyboard.press("a")
    page.wait_for_url(desk.url + f"/drafts/{ids[2]}")
    assert draft_row(db, ids[1]).current_text == "Typed, then the a key."
    assert draft_row(db, ids[1]).status == DraftStatus.APPROVED.value

    _type(tab, "Typed, then the s key.")
    page.keyboard.press("s")
    page.wait_for_url(desk.url + f"/drafts/{ids[3]}")
    assert draft_row(db, ids[2]).current_text == "Typed, then the s key."
    assert draft_row(db, ids[2]).status == DraftStatus.PENDING.value  # skipped, with the text saved
    assert page.is_visible("text=your text was saved first as version 2")

    _type(tab, "Typed, then rejected.")
    page.keyboard.press("r")
    page.select_option("#reason", "off_topic")
    page.keyboard.press("Enter")
    page.wait_for_url(desk.url + f"/drafts/{ids[4]}")
    assert draft_row(db, ids[3]).current_text == "Typed, then rejected."
    assert draft_row(db, ids[3]).status == DraftStatus.REJECTED.value
    assert tab.dialogs == []  # none of these asked anything: the text went with the decision


def test_leaving_with_unsaved_text_asks_first(tab: Tab, desk: Desk) -> None:
    page = tab.page
    asked: list[str] = []

    def record(dialog: Dialog) -> None:  # the tab fixture dismisses it: the editor chose to stay
        asked.append(dialog.type)

    page.on("dialog", record)
    sign_in(page, desk)
    page.click("text=Start reviewing")
    page.wait_for_selector("#editor")
    here = page.url
    _type(tab, "Half an edit, not saved.")
    page.click("nav >> text=Queue")
    page.wait_for_timeout(500)
    assert asked == ["beforeunload"] and page.url == here
    assert page.input_value("#editor") == "Half an edit, not saved."  # still there
    page.click("#approve")  # deciding carries the text: no question
    page.wait_for_url(lambda url: url != here)
    assert asked == ["beforeunload"]


def test_an_idle_editor_is_warned_then_the_lost_lease_blocks(tab: Tab, desk: Desk) -> None:
    set_desk_settings(desk.db, {"lease_minutes": 3})  # a beat every minute; warned in the last minute
    page = tab.page
    sign_in(page, desk)
    page.clock.install()
    page.goto(desk.url + "/review")
    draft_id = int(page.url.rsplit("/", 1)[1])
    assert page.is_hidden("#lease-warning")
    # idle: beats at 1:00 and 2:00, none once idle for 2:30, so the lease ends at 5:00, warned from 4:00
    _advance(page, 4 * 60_000 + 15_000)
    page.wait_for_selector("#lease-warning", state="visible")
    assert "ends in" in page.inner_text("#lease-warning")
    with page.expect_response(lambda r: r.url.endswith(f"/drafts/{draft_id}/heartbeat")) as beat:
        page.mouse.wheel(0, 40)  # back at the desk: renewed at once, not at the next beat
    assert beat.value.status == 200
    page.clock.run_for(2000)
    assert page.is_hidden("#lease-warning")

    _advance(page, 7 * 60_000)  # idle again: renewed at 5:00 and 6:00 (idle under 2:30), lost at 9:00
    page.wait_for_selector("#lease-lost", state="visible")
    assert page.get_attribute("#lease-lost", "role") == "alertdialog"
    assert page.is_disabled("#approve") and page.is_disabled("#reject")
    page.click("#show-text")  # the box steps aside so the text can be copied; Take it back stays
    page.fill("#editor", "Typed after the lease was lost.")
    page.click("#take-back")
    page.wait_for_selector("#restored-notice")
    assert page.input_value("#editor") == "Typed after the lease was lost."
    page.click("#approve")
    page.wait_for_url(lambda url: not url.endswith(f"/drafts/{draft_id}"))
    row = draft_row(desk.db, draft_id)
    assert (row.current_text, row.status) == ("Typed after the lease was lost.", DraftStatus.APPROVED.value)


def test_undo_with_the_u_key(tab: Tab, desk: Desk) -> None:
    page, ids = tab.page, desk.seeded.draft_ids
    sign_in(page, desk)
    page.click("text=Start reviewing")
    page.wait_for_url(desk.url + f"/drafts/{ids[0]}")
    page.keyboard.press("a")
    page.wait_for_url(desk.url + f"/drafts/{ids[1]}")
    assert page.is_visible("text=Undo that approval")
    page.keyboard.press("u")
    page.wait_for_url(desk.url + f"/drafts/{ids[0]}")
    assert page.is_visible(f"text=Undone: draft {ids[0]} is yours to review again")
    assert draft_row(desk.db, ids[0]).status == DraftStatus.IN_REVIEW.value
    assert draft_row(desk.db, ids[1]).status == DraftStatus.PENDING.value
    assert page.is_visible("#approve")
