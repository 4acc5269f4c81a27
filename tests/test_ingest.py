"""Ingest: every supported format, the embedded stdlib corpus, and bad input kept with a reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.errors import DraftflowError
from storage.parquet_store import iter_batches, read_manifest
from storage.settings import Settings
from tasks.ingest.stage import ingest_corpus
from tasks.ingest.stdlib_docs import iter_stdlib_units


def rows(directory: Path) -> list[dict]:
    return [r for b in iter_batches(directory) for r in b.to_pylist()]


def test_ingest_reads_txt_md_jsonl_parquet_recursively(settings: Settings, corpus_dir: Path) -> None:
    ref = ingest_corpus([str(corpus_dir)], settings)
    docs = rows(settings.raw_dir)
    assert ref.rows == len(docs) == 40
    assert {k: ref.stats[k] for k in ("documents", "rejected", "seen", "files_new")} == {
        "documents": 40,
        "rejected": 0,
        "seen": 40,
        "files_new": 22,
    }
    assert {d["source"] for d in docs} == {"corpus"}
    by_uri = {d["uri"]: d for d in docs}
    md = next(d for u, d in by_uri.items() if u.endswith("page0.md"))
    assert md["title"] == "Page 0"
    jsonl = next(d for u, d in by_uri.items() if u.endswith("records.jsonl#L1"))
    assert jsonl["title"] == "record 0" and json.loads(jsonl["meta"]) == {"id": 0, "lang": "en"}
    assert any(u.endswith("table.parquet#row0") for u in by_uri)
    assert any("/notes/" in u for u in by_uri)  # nested folder
    assert all(len(d["doc_id"]) == 32 and d["ingested_at"] is not None for d in docs)
    assert read_manifest(settings.raw_dir)["fingerprint"] == ref.fingerprint


def test_doc_id_is_stable_and_source_can_be_named(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Same  text here.\n")
    (tmp_path / "b.txt").write_text("same text here.")
    first = ingest_corpus([f"manuals={tmp_path / 'a.txt'}", str(tmp_path / "b.txt")], settings)
    docs = rows(settings.raw_dir)
    assert [d["source"] for d in docs] == ["manuals", "b"]
    assert docs[0]["doc_id"] == docs[1]["doc_id"]  # normalized text -> same id (dedup key)
    assert (
        ingest_corpus([f"manuals={tmp_path / 'a.txt'}", str(tmp_path / "b.txt")], settings).fingerprint
        == first.fingerprint
    )


def test_bad_files_are_kept_as_rejected_records_with_reasons(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "messy"
    src.mkdir()
    (src / "good.txt").write_text("A perfectly readable document about sockets and threads.")
    (src / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    (src / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (src / "empty.txt").write_text("   \n")
    (src / "lines.jsonl").write_text('{"text": "first good line of text"}\nnot json at all\n{"body": "x"}\n')
    pq.write_table(pa.table({"body": ["no text column"]}), src / "wrong.parquet")
    (src / "garbage.parquet").write_bytes(b"this is not parquet")
    (src / "data.bin.gz").write_bytes(gzip.compress(b"compressed"))
    (src / "cut.txt.gz").write_bytes(gzip.compress(b"a document that was cut off half way " * 50)[:60])
    (src / "bad.csv").write_text('text,title\n"fine row of text",t1\n"unterminated,t2\n')
    (src / "dangling.md").symlink_to(src / "gone.md")  # a broken link: the target does not exist
    (src / ".hidden.txt").write_text("tooling, not content")

    ref = ingest_corpus([str(src)], settings)
    rejected = rows(settings.rejected_dir("ingest"))
    reasons = {
        Path(r["uri"].split("#")[0]).name + ("#" + r["uri"].split("#")[1] if "#" in r["uri"] else ""): r["reason"]
        for r in rejected
    }
    assert reasons == {
        "binary.txt": "binary",
        "latin1.md": "not_utf8",
        "empty.txt": "empty",
        "lines.jsonl#L2": "bad_json",
        "lines.jsonl#L3": "missing_field",
        "wrong.parquet": "missing_column",
        "garbage.parquet": "unreadable",
        "data.bin.gz": "unsupported_type",
        "cut.txt.gz": "bad_gzip",
        "dangling.md": "broken_link",
        "bad.csv#row1": "bad_csv",
    }
    assert all(r["stage"] == "ingest" and r["detail"] for r in rejected)
    bad_json = next(r for r in rejected if r["reason"] == "bad_json")
    assert bad_json["detail"].startswith("line 2:")
    assert ref.rows == 3  # good.txt, the first JSONL line, the first CSV row
    assert ref.stats["seen"] == ref.rows + ref.stats["rejected"] == 14
    assert ref.stats["rejected_bad_json"] == 1


def test_missing_path_is_a_user_error_and_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("some text that is fine")
    with pytest.raises(DraftflowError, match=r"corpus path '.*nope' does not exist"):
        ingest_corpus([str(tmp_path / "ok.txt"), str(tmp_path / "nope")], settings)
    assert not settings.raw_dir.exists()


def test_embedded_stdlib_docs_corpus() -> None:
    records = list(record for unit in iter_stdlib_units() for record in unit.read())
    texts = [r for r in records if r.text]
    assert len(texts) > 3000
    assert sum(len(r.text.encode()) for r in texts) > 1_000_000
    assert {r.source for r in records} == {"python-stdlib-docs"}
    titles = {r.title for r in texts}
    assert {"json", "json.dumps", "pathlib.Path", "if"} <= titles  # modules, functions, classes, topics
    assert not any(t.startswith(("test.", "idlelib")) for t in titles)


def test_stdlib_docs_go_through_the_same_ingest_path(settings: Settings) -> None:
    ref = ingest_corpus(["python-stdlib-docs"], settings)
    assert ref.rows > 3000
    assert read_manifest(settings.raw_dir)["sources"] == ["python-stdlib-docs"]


def test_rst_html_json_csv_and_gzip(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "mixed"
    src.mkdir()
    (src / "guide.rst").write_text("Installing\n==========\n\nRun the installer and follow the steps.\n")
    (src / "page.html").write_text(
        "<html><head><title>Sockets</title></head><body><nav>Home | About | Contact</nav><article>"
        "<h1>Sockets</h1><p>A socket is an endpoint for sending and receiving data across a network, used by "
        "servers and clients alike.</p><p>Each socket has an address family and a type.</p></article>"
        "<footer>Copyright 2026 Example Corp</footer></body></html>"
    )
    (src / "items.json").write_text(json.dumps([{"body": "first item text", "sku": 1}, {"body": "second"}]))
    (src / "rows.csv").write_text('id,body\n1,"a row, with a comma"\n2,another row\n')
    with gzip.open(src / "notes.md.gz", "wt") as f:
        f.write("# Compressed\n\nNotes inside a gzip file.\n")
    with gzip.open(src / "lines.jsonl.gz", "wt") as f:
        f.write(json.dumps({"body": "a compressed JSON line"}) + "\n")
    from tasks.ingest.params import IngestOptions

    ingest_corpus([str(src)], settings, IngestOptions(text_field="body"))
    docs = {d["uri"].split("/")[-1]: d for d in rows(settings.raw_dir)}
    assert docs["guide.rst"]["title"] == "Installing"
    html = docs["page.html"]
    assert html["title"] == "Sockets" and "address family" in html["text"]
    assert "Home | About" not in html["text"] and "Copyright" not in html["text"]  # boilerplate removed
    assert docs["items.json#0"]["text"] == "first item text" and json.loads(docs["items.json#0"]["meta"]) == {"sku": 1}
    assert docs["rows.csv#row0"]["text"] == "a row, with a comma" and json.loads(docs["rows.csv#row0"]["meta"]) == {
        "id": "1"
    }
    assert docs["notes.md.gz"]["title"] == "Compressed"
    assert docs["lines.jsonl.gz#L1"]["text"] == "a compressed JSON line"
    assert len(docs) == 8


def test_long_files_split_by_headings_or_separator(settings: Settings, tmp_path: Path) -> None:
    from tasks.ingest.params import IngestOptions

    book = tmp_path / "book.md"
    book.write_text("Preface text.\n\n# One\n\nFirst chapter.\n\n## Two\n\nSecond chapter.\n")
    ingest_corpus([str(book)], settings, IngestOptions(split="headings"))
    docs = rows(settings.raw_dir)
    assert [(d["title"], d["uri"].split("#")[-1]) for d in docs] == [
        ("book", "section0"),
        ("One", "section1"),
        ("Two", "section2"),
    ]
    assert docs[1]["text"].startswith("# One") and "Second" not in docs[1]["text"]
    log = tmp_path / "log.txt"
    log.write_text("entry one\n---\nentry two\n---\nentry three\n")
    ingest_corpus([str(log)], settings, IngestOptions(split="separator", separator="\n---\n"))
    assert [d["text"] for d in rows(settings.raw_dir)] == ["entry one", "entry two", "entry three"]


def test_include_and_exclude_globs(settings: Settings, corpus_dir: Path) -> None:
    from tasks.ingest.params import IngestOptions

    ingest_corpus([str(corpus_dir)], settings, IngestOptions(include=["*.md", "notes/*"], exclude=["note1*"]))
    files = {Path(d["file"]).name for d in rows(settings.raw_dir)}
    assert files and all(f.endswith(".md") or f.startswith("note") for f in files)
    assert "note1.txt" not in files and "records.jsonl" not in files


def test_incremental_ingest_reads_only_new_and_changed_files(settings: Settings, corpus_dir: Path) -> None:
    (corpus_dir / "broken.jsonl").write_text('{"text": "a fine line"}\nnot json\n')
    first = ingest_corpus([str(corpus_dir)], settings)
    assert first.stats["files_new"] == 23 and first.stats["documents_read"] == 41

    again = ingest_corpus([str(corpus_dir)], settings)
    assert again.stats["documents_read"] == 0 and again.stats["files_unchanged"] == 23
    assert (again.rows, again.stats["rejected"], again.fingerprint) == (first.rows, 1, first.fingerprint)
    assert again.stats["rejected_bad_json"] == 1  # carried rejections still counted
    assert sorted(r["uri"] for r in rows(settings.raw_dir)) == sorted(r["uri"] for r in rows(settings.raw_dir))

    (corpus_dir / "page0.md").write_text("# Page 0\n\nRewritten text of the first page.\n")
    (corpus_dir / "page1.md").unlink()
    (corpus_dir / "extra.txt").write_text("A brand new document arrived tonight.")
    third = ingest_corpus([str(corpus_dir)], settings)
    assert {k: third.stats[f"files_{k}"] for k in ("new", "changed", "unchanged", "removed")} == {
        "new": 1,
        "changed": 1,
        "unchanged": 21,
        "removed": 1,
    }
    assert third.stats["documents_read"] == 2 and third.rows == first.rows
    texts = {Path(d["file"]).name: d["text"] for d in rows(settings.raw_dir)}
    assert texts["page0.md"].startswith("# Page 0\n\nRewritten") and "page1.md" not in texts
    assert third.stats["seen"] == third.rows + third.stats["rejected"]
