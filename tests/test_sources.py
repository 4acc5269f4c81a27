"""Sources for fact-checking: the BM25 passage index over a real clean corpus, copied spans traced to
their documents, unsupported numbers and names, and corpus documents read by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.parquet_store import iter_batches
from storage.refs import DatasetRef
from storage.settings import Settings
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tasks.review.checks import NgramIndex, words_of
from tasks.review.sources import (
    Passage,
    SourcesIndex,
    claims,
    corpus_document,
    ngram_index,
    passage_spans,
    sources_cache_root,
    sources_index,
    unsupported_claims,
)
from tasks.review.stage import corpus_index

DOCUMENTS = {
    "lighthouse": """# The Eddystone Lighthouse

The third Eddystone Lighthouse was designed by the civil engineer John Smeaton and first lit in 1759.
He modelled the tower on the trunk of an oak tree and dovetailed its granite blocks together, so that
the sea could not wash them apart. The tower stood 72 feet high and weighed about 1,000 tons.

Smeaton tested hydraulic lime for its mortar, a cement that sets under water, and his work on it helped
lead to the Portland cement used by builders today. The light itself came from 24 tallow candles.

Erosion of the rock beneath it, not the sea against the tower, ended its service in 1877. The upper part
was taken down and rebuilt on Plymouth Hoe, where visitors can still climb its narrow stairs.
""",
    "railway": """# The Stockton and Darlington Railway

The Stockton and Darlington Railway opened on 27 September 1825 and was the first public railway to use
steam locomotives. George Stephenson was its engineer, and his engine Locomotion No. 1 hauled the first
train of coal wagons and passenger carriages along the line from Shildon to Stockton.

The line was 25 miles long. Horses still pulled most passenger coaches during its first years, because
the early engines were slow and broke down often, and the company let private operators run services.
Coal from the collieries of County Durham was its main freight, and the price of coal in Stockton fell
by half within a few years of the opening.
""",
    "coffee": """# Coffee houses of Constantinople

Coffee reached Constantinople in 1554, when two merchants from Aleppo and Damascus opened the first
coffee house in the city. Such houses soon became places where men met to play chess, listen to
storytellers and argue about poetry and the news of the day.

Sultan Murad IV later tried to close the coffee houses, fearing that their talk would turn into
rebellion, and the ban was enforced harshly for a time. Yet the custom outlived him, spreading to Venice
in 1645 and to London by 1652, where the houses were called penny universities for the price of a cup.
""",
    "telescope": """# The Great Melbourne Telescope

The Great Melbourne Telescope was built in Dublin by Thomas Grubb and shipped to Australia in 1868. Its
speculum metal mirror was 48 inches across, and for a time it was the largest fully steerable telescope
in the world, used to draw the nebulae of the southern sky.

The mirror tarnished quickly in the open air and had to be repolished, which the observers at Melbourne
found hard to do well. Bushfires in 2003 destroyed much of the telescope at Mount Stromlo, and a team of
volunteers has since been restoring it from the surviving parts.
""",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, DatasetRef, dict[str, str]]:
    """A real clean corpus made by the ingest and clean stages; (settings, clean ref, doc id by topic)."""
    root = tmp_path_factory.mktemp("sources")
    folder = root / "articles"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / f"{name}.md").write_text(text)
    settings = Settings.from_env(root / "home")
    clean = clean_corpus(ingest_corpus([str(folder)], settings), settings)
    ids = {}
    for batch in iter_batches(settings.clean_dir, columns=["doc_id", "text"]):
        for row in batch.to_pylist():
            ids[next(name for name, text in DOCUMENTS.items() if text.split("\n")[2][:40] in row["text"])] = row[
                "doc_id"
            ]
    assert set(ids) == set(DOCUMENTS), "the clean stage kept every article"
    return settings, clean, ids


@pytest.fixture(scope="module")
def index(corpus: tuple[Settings, DatasetRef, dict[str, str]]) -> SourcesIndex:
    _, clean, _ = corpus
    return SourcesIndex.build(Path(clean.path))


def test_the_index_is_built_once_then_loaded_from_disk(
    corpus: tuple[Settings, DatasetRef, dict[str, str]], tmp_path: Path
) -> None:
    _, clean, ids = corpus
    cache = tmp_path / "sources-index"
    assert SourcesIndex.load(cache, clean.fingerprint) is None  # the desk never builds: nothing yet
    built = SourcesIndex.load_or_build(Path(clean.path), clean.fingerprint, cache)
    folder = cache / clean.fingerprint
    stamps = {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}
    assert (folder / "meta.json").is_file() and len(stamps) >= 5
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folder left
    again = SourcesIndex.load_or_build(Path(clean.path), clean.fingerprint, cache)
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()} == stamps  # not rebuilt
    loaded = SourcesIndex.load(cache, clean.fingerprint)
    assert loaded is not None and loaded.passages.num_rows == built.passages.num_rows == again.passages.num_rows
    query = "Who designed the granite lighthouse tower?"
    assert [p.doc_id for p in loaded.closest(query)] == [p.doc_id for p in built.closest(query)]
    assert loaded.closest(query)[0].doc_id == ids["lighthouse"]
    assert SourcesIndex.load(cache, "another-corpus") is None


def test_closest_ranks_the_passage_on_the_topic_first(
    index: SourcesIndex, corpus: tuple[Settings, DatasetRef, dict[str, str]]
) -> None:
    _, _, ids = corpus
    draft = "Steam locomotives pulled coal wagons on the first public railway, with Stephenson as engineer."
    found = index.closest(draft, k=3)
    assert found[0].doc_id == ids["railway"] and "Stephenson" in found[0].text
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True) and found[0].score > 0
    assert found[0].source == "articles" and found[0].title == "The Stockton and Darlington Railway"
    assert index.closest("mirror speculum nebulae")[0].doc_id == ids["telescope"]
    assert index.closest("zzz qqq") == [] and index.closest("") == []


def test_containing_leads_a_copied_span_to_its_document(
    index: SourcesIndex, corpus: tuple[Settings, DatasetRef, dict[str, str]]
) -> None:
    _, clean, ids = corpus
    copied = "yet the custom outlived him, spreading to Venice in 1645 and to London by 1652"
    draft = f"Editors like a short history. {copied.capitalize()}, which surprised nobody at all back then."
    ngrams = NgramIndex.build(Path(clean.path))
    spans = ngrams.copied_spans(draft)
    assert len(spans) == 1
    start, end = spans[0]
    assert words_of(draft[start:end]) == words_of(copied)
    passage = index.containing(draft[start:end])
    assert passage is not None and passage.doc_id == ids["coffee"]
    document = corpus_document(Path(clean.path), passage.doc_id)
    assert document is not None and document["text"][passage.start : passage.end] == passage.text
    assert index.containing("Venice in 1645 and to London by 1700") is None  # not verbatim anywhere
    assert index.containing("") is None


def test_passages_pack_paragraphs_and_overlap_inside_long_ones() -> None:
    text = "one two three\n\nfour five six seven"
    assert [text[s:e] for s, e in passage_spans(text, max_words=5, overlap=1)] == [
        "one two three",
        "four five six seven",
    ]
    words = " ".join(f"w{i}" for i in range(10))
    windows = [words[s:e].split() for s, e in passage_spans(words, max_words=4, overlap=2)]
    assert windows[0] == ["w0", "w1", "w2", "w3"] and windows[1][:2] == ["w2", "w3"] and windows[-1][-1] == "w9"
    assert passage_spans("  \n ") == []


def test_unsupported_claims_mark_what_no_passage_mentions(index: SourcesIndex) -> None:
    draft = (
        "The tower by John Smeaton weighed 1000 tons and was first lit in 1759. "
        "Later Isambard Brunel paid 42 guineas to see it."
    )
    passages = index.closest(draft)
    unsupported = unsupported_claims(draft, passages)
    assert [(c.text, c.kind) for c in unsupported] == [("Isambard Brunel", "name"), ("42", "number")]
    for claim in unsupported:
        assert draft[claim.start : claim.end] == claim.text
    assert unsupported_claims(draft, []) == [c for c in claims(draft)]  # nothing supports anything


def test_claims_heuristics() -> None:
    text = (
        "In 1825 the Stockton and Darlington Railway opened. Paris is far. I met Dr. Ada Lovelace's "
        "friend, who paid $1,500 for 5 MB (about 12.50%) of the Bank of England data.\n## Setup\nRun it."
    )
    found = [(c.text, c.kind) for c in claims(text)]
    assert found == [
        ("1825", "number"),
        ("Stockton", "name"),  # "and" joins two names, not one: each is checked on its own
        ("Darlington Railway", "name"),
        ("Ada Lovelace", "name"),
        ("$1,500", "number"),
        ("5 MB", "number"),
        ("12.50%", "number"),
        ("Bank of England", "name"),
    ]
    support = [Passage(doc_id="d", text="Lovelace and Ada Lovelace paid 1500 and 12.5 in 1825.", score=1.0)]
    assert [c.text for c in unsupported_claims(text, support)] == [
        "Stockton",
        "Darlington Railway",
        "5 MB",
        "Bank of England",
    ]


def test_corpus_document_by_id(corpus: tuple[Settings, DatasetRef, dict[str, str]]) -> None:
    settings, _, ids = corpus
    document = corpus_document(settings.clean_dir, ids["telescope"])
    assert document is not None and document["doc_id"] == ids["telescope"]
    assert document["source"] == "articles" and "Thomas Grubb" in document["text"]
    assert document["title"] == "The Great Melbourne Telescope"
    assert corpus_document(settings.clean_dir, "no-such-document") is None


def test_the_queue_stage_builds_both_indexes_and_the_desk_loads_them(
    corpus: tuple[Settings, DatasetRef, dict[str, str]], tmp_path: Path
) -> None:
    built, clean, ids = corpus
    # a home of its own, so the indexes start unbuilt, reading the same corpus
    settings = Settings(home=tmp_path / "home", corpus_url=str(built.corpus_dir))
    assert sources_index(settings, clean.fingerprint) is None and ngram_index(settings, clean.fingerprint) is None
    assert corpus_index(settings, clean) is not None
    assert (sources_cache_root(settings) / clean.fingerprint / "meta.json").is_file()
    sources = sources_index(settings, clean.fingerprint)
    assert sources is not None and sources is sources_index(settings, clean.fingerprint)  # kept in process
    assert sources.closest("coffee house chess storytellers")[0].doc_id == ids["coffee"]
    ngrams = ngram_index(settings, clean.fingerprint)
    assert ngrams is not None and ngrams is ngram_index(settings, clean.fingerprint)
    assert sources_index(settings, None) is None and sources_index(settings, "unknown") is None
