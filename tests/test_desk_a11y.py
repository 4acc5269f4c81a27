"""The web desk for everyone and on a phone: axe-core in a real browser, a 390 px wide layout, invisible characters.

axe-core (the JavaScript engine, shipped inside the axe-playwright-python wheel: no network) runs
on every kind of page at 1280 px and at 390 px; a violation of impact "serious" or "critical"
fails the test. At 390 px nothing scrolls sideways and the review screen's Approve button is
within reach. The `visible_controls` filter shows bidi overrides and zero-width characters as
visible markers while escaping everything else.
"""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from markupsafe import Markup, escape
from playwright.sync_api import Page, ViewportSize

from review.pages import control_count, visible_controls
from storage.models import Prompt
from tests import test_desk_browser as browser_tests
from tests.desk_seed import ADMIN, EDITOR, draft_row
from tests.test_desk_browser import Desk, Tab, sign_in

desk = browser_tests.desk  # the fixtures: a desk on a seeded SQLite file, a Chromium tab
tab = browser_tests.tab

PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
FAILING_IMPACTS = ("serious", "critical")
RLO = "\u202e"


# --- the filter -----------------------------------------------------------------------------------


def test_visible_controls_escapes_markup_and_shows_bidi_controls() -> None:
    shown = visible_controls(f"<script>alert(1)</script> & pay {RLO}gnp.exe")
    assert isinstance(shown, Markup)
    assert "<script>" not in shown and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; pay " in shown
    assert RLO not in shown  # the override is gone: it can no longer reverse what follows
    assert '<span class="ctrl" title="U+202E RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span>gnp.exe' in shown


def test_visible_controls_marks_every_hidden_character_but_keeps_newlines_and_tabs() -> None:
    hidden = ["\u200b", "\u200f", "\u202a", "\u2060", "\u2066", "\u2069", "\ufeff", "\u00ad", "\x07", "\x00", "\u061c"]
    text = "a\nb\tc" + "".join(hidden)
    shown = visible_controls(text)
    assert shown.startswith("a\nb\tc")
    assert shown.count('class="ctrl"') == len(hidden) == control_count(text)
    assert 'title="U+200B ZERO WIDTH SPACE"' in shown and 'title="U+00AD SOFT HYPHEN"' in shown
    assert "⟨U+0007⟩" in shown  # a control without a Unicode name still gets a marker


def test_visible_controls_leaves_ordinary_text_alone() -> None:
    text = "Ünïcödé, עברית, العربية, 漢字, emoji 🙂 and \"quotes\" 'n' <b>"
    assert visible_controls(text) == escape(text)  # exactly what `{{ text }}` prints
    assert control_count(text) == 0 and control_count(None) == 0
    assert visible_controls(None) == "" and visible_controls("") == ""


def test_visible_controls_in_a_template() -> None:
    from review.pages import templates

    env = templates.env
    page = env.from_string('<p dir="auto">{{ t|visible_controls }}</p>{{ t|control_count }}')
    out = page.render(t=f"<i>x</i>{RLO}")
    marker = '<span class="ctrl" title="U+202E RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span>'
    assert out == f'<p dir="auto">&lt;i&gt;x&lt;/i&gt;{marker}</p>1'


# --- in a browser ---------------------------------------------------------------------------------


def _violations(page: Page) -> list[dict[str, Any]]:
    result = Axe().run(page)
    return list(result.response["violations"])


def _describe(where: str, violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{where}: [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    {' '.join(map(str, node['target']))}: {node['html'][:160]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            if summary:
                lines.append(f"      {summary[:300]}")
        if len(v["nodes"]) > 5:
            lines.append(f"    … and {len(v['nodes']) - 5} more")
    return "\n".join(lines)


def _sign_in_as(page: Page, desk: Desk, who: tuple[str, str]) -> None:
    page.goto(desk.url + "/login")
    page.fill("#name", who[0])
    page.fill("#password", who[1])
    page.click("main button[type=submit]")
    page.wait_for_url(desk.url + "/")


def _sign_out(page: Page) -> None:
    page.click(".topbar .who button[type=submit]")
    page.wait_for_url("**/login**")


def _add_hidden_characters(desk: Desk) -> int:
    """Right-to-left text and a right-to-left override in the first draft's prompt."""
    draft_id = desk.seeded.draft_ids[0]
    with desk.db.transaction() as s:
        prompt = s.get(Prompt, draft_row(desk.db, draft_id).prompt_id)
        assert prompt is not None
        prompt.text = f"Prompt in Hebrew: שלום עולם. Open invoice{RLO}fdp.exe today."
    return draft_id


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_no_serious_accessibility_violations(tab: Tab, desk: Desk, viewport: ViewportSize) -> None:
    page = tab.page
    page.set_viewport_size(viewport)
    first = _add_hidden_characters(desk)
    found: dict[str, list[dict[str, Any]]] = {}

    def check(where: str) -> None:
        page.wait_for_load_state("load")
        assert page.locator("h1").count() == 1, f"{where}: {page.locator('h1').count()} h1 elements, not one"
        found[where] = _violations(page)

    page.goto(desk.url + "/login")
    check("login")
    sign_in(page, desk)
    check("queue")
    assert page.locator("table.drafts .ctrl[title='U+202E RIGHT-TO-LEFT OVERRIDE']").count() == 1
    page.click("text=Start reviewing")
    page.wait_for_url(desk.url + f"/drafts/{first}")
    check("review screen")
    page.goto(desk.url + f"/drafts/{first}/history")
    check("history")
    assert page.locator(".prompt[dir=auto] .ctrl").inner_text() == "⟨U+202E⟩"
    assert "1 invisible character" in page.inner_text("main")
    page.goto(desk.url + "/metrics")
    check("metrics")
    page.goto(desk.url + "/drafts/999999")
    check("error 404 (no such draft)")
    page.goto(desk.url + "/no/such/page")
    check("error 404 (no such page)")
    page.goto(desk.url + "/")
    _sign_out(page)
    _sign_in_as(page, desk, ADMIN)
    for tab_name in ("editors", "reasons", "settings"):
        page.goto(desk.url + f"/admin/{tab_name}")
        check(f"admin {tab_name}")

    report = "\n".join(_describe(where, v) for where, v in found.items() if v)
    if report:
        print(f"axe-core at {viewport['width']} px:\n{report}")
    failing = {where: [v for v in vs if v["impact"] in FAILING_IMPACTS] for where, vs in found.items() if vs}
    failing = {where: vs for where, vs in failing.items() if vs}
    assert not failing, "serious or critical accessibility violations:\n" + "\n".join(
        _describe(where, vs) for where, vs in failing.items()
    )


def _no_sideways_scroll(page: Page, where: str) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{where} scrolls sideways at {widths[1]} px: {widths[0]} px wide"


@pytest.mark.slow
def test_phone_layout(tab: Tab, desk: Desk) -> None:
    page = tab.page
    page.set_viewport_size(PHONE)
    page.goto(desk.url + "/login")
    _no_sideways_scroll(page, "the sign-in page")
    sign_in(page, desk)
    _no_sideways_scroll(page, "the queue")
    page.goto(desk.url + "/metrics")
    _no_sideways_scroll(page, "the metrics page")

    page.goto(desk.url + "/")
    page.click("text=Start reviewing")
    page.wait_for_url(desk.url + f"/drafts/{desk.seeded.draft_ids[0]}")
    _no_sideways_scroll(page, "the review screen")
    page.goto(desk.url + f"/drafts/{desk.seeded.draft_ids[0]}/history")
    _no_sideways_scroll(page, "the history page")
    page.goto(desk.url + f"/drafts/{desk.seeded.draft_ids[0]}")

    box = page.locator("button.approve").bounding_box()
    assert box is not None, "no Approve button"
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"Approve is off the screen sideways: {box}"
    assert box["y"] + page.evaluate("window.scrollY") <= 1.5 * PHONE["height"], f"Approve is too far down: {box}"

    _sign_out(page)
    _sign_in_as(page, desk, ADMIN)
    page.goto(desk.url + "/admin/editors")
    _no_sideways_scroll(page, "the editors page")
    assert EDITOR[0] in page.inner_text("table.admin")


# every state the desk's stylesheet knows, a few of which the seeded pages never show
SAMPLES = """
<div class="lease-warning" role="status"><strong>Your lease ends in 1:00.</strong> Save or decide now.</div>
<p>{pills}</p>
<p><span class="flag">copied</span> <span class="badge">edited</span> <span class="lease ending">0:59 left</span>
  <span class="lease expired">expired</span> <kbd>A</kbd> <a href="#">a link</a> <span class="muted">muted</span>
  <span class="hint">hint</span></p>
<p class="js-message">Press E to edit first.</p>
<div class="flash flash-error" role="alert">Something failed.</div>
<div class="flash flash-success" role="status">Saved.</div>
<div class="flash flash-info" role="status">Note.</div>
<p class="notice">A notice.</p>
<div class="text diff"><ins>added</ins> and <del>removed</del></div>
<div class="text" dir="auto">Copied: <mark class="copied">a copied span</mark>,
  personal: <mark class="pii">555 0100</mark>, unsupported: <mark class="unsupported">a claim</mark>,
  hidden: <span class="ctrl" title="U+202E RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span></div>
<section class="panel sources"><h2>Sources</h2><ol><li><span class="title">A source</span>
  <blockquote class="snippet">a quoted passage</blockquote></li></ol></section>
<section class="panel guidelines"><h2>Guidelines</h2><p>Write plainly.</p></section>
<table class="admin"><tbody><tr class="inactive"><th>kim <span class="muted small">(you)</span></th>
  <td>inactive</td></tr></tbody></table>
<table class="checks"><tbody><tr class="warn"><th>Repetition</th><td>60 %</td></tr></tbody></table>
<div class="decide"><button class="approve">Approve <kbd>A</kbd></button>
  <button class="reject">Reject <kbd>R</kbd></button>
  <button class="skip">Skip <kbd>S</kbd></button> <button class="primary">Primary</button></div>
"""
LEASE_LOST = """<h2 id="lost-title">Your lease has ended</h2>
<p>Someone else may be reviewing this draft now.</p><a href="/review">Take the next draft</a>"""
STATES = ("generated", "pending", "flagged", "in_review", "approved", "rejected", "archived")


@pytest.mark.slow
def test_every_styled_state_reads_well(tab: Tab, desk: Desk) -> None:
    """The banners, marks, pills and flags the review screen uses, put on a desk page and checked by axe-core."""
    page = tab.page
    sign_in(page, desk)
    pills = " ".join(f'<span class="pill state-{s}">{s.replace("_", " ")}</span>' for s in STATES)
    page.evaluate(
        "html => { const box = document.createElement('div'); box.id = 'samples'; box.innerHTML = html;"
        " document.querySelector('main').prepend(box); }",
        SAMPLES.format(pills=pills),
    )
    violations = Axe().run(page, context="#samples").response["violations"]
    assert not violations, _describe("samples", violations)
    # marks differ by their underline, not by colour alone
    styles = page.evaluate(
        "['copied', 'pii', 'unsupported'].map(k => getComputedStyle(document.querySelector('mark.' + k))"
        ".textDecorationStyle)"
    )
    assert len(set(styles)) == 3, styles

    # a lost lease: a box in the middle of the screen over a backdrop that takes every click
    page.evaluate(
        "html => { const box = document.createElement('div'); box.className = 'lease-lost';"
        " box.setAttribute('role', 'alertdialog'); box.setAttribute('aria-labelledby', 'lost-title');"
        " box.innerHTML = html; document.body.append(box); }",
        LEASE_LOST,
    )
    box = page.locator(".lease-lost").bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert abs((box["x"] + box["width"] / 2) - viewport["width"] / 2) < 2, box
    assert abs((box["y"] + box["height"] / 2) - viewport["height"] / 2) < 2, box
    on_top = page.evaluate("document.elementFromPoint(5, window.innerHeight - 5).closest('.lease-lost') !== null")
    assert on_top, "a click outside the box reaches the page behind a lost lease"
    violations = Axe().run(page, context=".lease-lost").response["violations"]
    assert not violations, _describe("lease lost", violations)
