"""The review screen explains a draft from its corpus: over HTTP against a real SQLite file and a real
clean corpus made by the ingest and clean stages, with the indexes the queue stage builds.

A draft that copies a sentence of one article and adds a year and a name found nowhere: the copied
span is marked and linked to its corpus document (whose page highlights it), the year and the name
are marked unsupported, the closest passages are shown, and an edit that removes the copy clears
the `copied` flag (recorded in the history)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from review.app import create_app
from storage.accounts import create_editor
from storage.db import Database
from storage.models import Draft, DraftStatus, ModelVersion, Prompt, ReviewEvent, Run
from storage.settings import Settings
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tasks.review.params import CheckParams
from tasks.review.stage import corpus_index, queue_run
from tests.desk_seed import EDITOR, actions_of, draft_row
from tests.test_desk_http import SECRET, claim_next, sign_in, token_in
from tests.test_sources import DOCUMENTS

COPIED = (
    "He modelled the tower on the trunk of an oak tree and dovetailed its granite blocks together, "
    "so that the sea could not wash them apart."
)
PROMPT = "Write about a lighthouse."
TEXT = f"{PROMPT} The lighthouse was finished in 1761 by Robert Stevenson. {COPIED}"


@pytest.fixture
def desk(db: Database, tmp_path: Path) -> Iterator[tuple[TestClient, int, str]]:
    folder = tmp_path / "articles"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / f"{name}.md").write_text(text)
    settings = Settings.from_env(tmp_path / "home")
    clean = clean_corpus(ingest_corpus([str(folder)], settings), settings)
    index = corpus_index(settings, clean)  # the queue stage builds the n-gram and the sources index
    with db.transaction() as s:
        s.add(Run(id="night-1", kind="nightly", params={}, summary={}, status="completed"))
        version = ModelVersion(
            name="v0001", path="/m", base="scratch", tokenizer_id="t", corpus_fingerprint=clean.fingerprint
        )
        prompt = Prompt(key="p1", text=PROMPT, category="news", source="seed")
        s.add_all([version, prompt])
        s.flush()
        draft = Draft(
            run_id="night-1",
            model_version_id=version.id,
            prompt_id=prompt.id,
            sample_index=0,
            original_text=TEXT,
            current_text=TEXT,
            seed=1,
            category="news",
            status=DraftStatus.GENERATED.value,
        )
        s.add(draft)
        s.flush()
        draft_id = draft.id
    queue_run(db, "night-1", index, CheckParams(max_copied_span=10))
    create_editor(db, *EDITOR)
    with TestClient(create_app(db.url, secret_key=SECRET, home=settings.home)) as client:
        yield client, draft_id, clean.fingerprint


def test_copied_span_is_marked_and_linked_to_its_document(desk: tuple[TestClient, int, str]) -> None:
    client, draft_id, fingerprint = desk
    sign_in(client, EDITOR)
    html = client.get(f"/drafts/{draft_id}").text
    assert "copied" in draft_row(client.app.state.db, draft_id).flags
    link = html.split(f'href="/corpus/{fingerprint}/', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    doc_id, query = link.split("?span=")
    assert "modelled the tower on the trunk of an oak tree" in unquote(query)
    document = client.get(f"/corpus/{fingerprint}/{doc_id}?{link.split('?', 1)[1]}")
    assert document.status_code == 200 and "The Eddystone Lighthouse" in document.text
    marked = document.text.split('<mark class="copied"', 1)[1].split("</mark>", 1)[0]
    assert "dovetailed its granite blocks together" in marked
    assert client.get(f"/corpus/{fingerprint}/no-such-doc").status_code == 404


def test_unsupported_numbers_and_names_and_the_closest_passages(desk: tuple[TestClient, int, str]) -> None:
    client, draft_id, _ = desk
    sign_in(client, EDITOR)
    html = client.get(f"/drafts/{draft_id}").text
    sources = html.split('id="sources"', 1)[1].split("</section>", 1)[0]
    assert '<mark class="unsupported" dir="auto">1761</mark>' in sources
    assert '<mark class="unsupported" dir="auto">Robert Stevenson</mark>' in sources
    assert "Smeaton" in sources  # the lighthouse article's passage is among the closest
    assert "Eddystone" not in sources.split("Unsupported:", 1)[1].split("</p>", 1)[0]


def test_an_edit_that_removes_the_copy_clears_the_flag(desk: tuple[TestClient, int, str]) -> None:
    client, draft_id, _ = desk
    db = client.app.state.db
    sign_in(client, EDITOR)
    assert claim_next(client, "?queue=flagged") == draft_id  # held by the copied check
    t = token_in(client.get(f"/drafts/{draft_id}").text)
    rewritten = f"{PROMPT} The lighthouse was finished in 1761. Its stones were locked together against the waves."
    client.post(f"/drafts/{draft_id}/edit", data={"csrf_token": t, "text": rewritten, "expected_version": "2"})
    row = draft_row(db, draft_id)
    assert row.current_text == rewritten and "copied" not in row.flags.split(",")
    assert "recheck" in actions_of(db, draft_id)
    with db.session() as s:
        note = s.query(ReviewEvent.note).filter(ReviewEvent.action == "recheck").scalar()
    assert "flag copied cleared" in note
