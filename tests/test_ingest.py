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
from tasks.ingest import ingest_corpus
from tasks.stdlib_docs import iter_stdlib_docs


def rows(directory: Path) -> list[dict]:
    return [r for b in iter_batches(directory) for r in b.to_pylist()]


def test_ingest_reads_txt_md_jsonl_parquet_recursively(settings: Settings, corpus_dir: Path) -> None:
    ref = ingest_corpus([str(corpus_dir)], settings)
    docs = rows(settings.raw_dir)
    assert ref.rows == len(docs) == 40
    assert ref.stats == {"documents": 40, "rejected": 0, "seen": 40}
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
    assert ingest_corpus([f"manuals={tmp_path / 'a.txt'}", str(tmp_path / "b.txt")], settings).fingerprint \
        == first.fingerprint


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
    (src / "data.gz").write_bytes(gzip.compress(b"compressed"))
    (src / ".hidden.txt").write_text("tooling, not content")

    ref = ingest_corpus([str(src)], settings)
    rejected = rows(settings.rejected_dir("ingest"))
    reasons = {Path(r["uri"].split("#")[0]).name + ("#" + r["uri"].split("#")[1] if "#" in r["uri"] else ""):
               r["reason"] for r in rejected}
    assert reasons == {
        "binary.txt": "binary", "latin1.md": "not_utf8", "empty.txt": "empty",
        "lines.jsonl#L2": "bad_json", "lines.jsonl#L3": "missing_field", "wrong.parquet": "missing_column",
        "garbage.parquet": "unreadable", "data.gz": "unsupported_type",
    }
    assert all(r["stage"] == "ingest" and r["detail"] for r in rejected)
    bad_json = next(r for r in rejected if r["reason"] == "bad_json")
    assert bad_json["detail"].startswith("line 2:")
    assert ref.rows == 2  # good.txt + the first JSONL line
    assert ref.stats["seen"] == ref.rows + ref.stats["rejected"] == 10
    assert ref.stats["rejected_bad_json"] == 1


def test_missing_path_is_a_user_error_and_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("some text that is fine")
    with pytest.raises(DraftflowError, match=r"corpus path '.*nope' does not exist"):
        ingest_corpus([str(tmp_path / "ok.txt"), str(tmp_path / "nope")], settings)
    assert not settings.raw_dir.exists()


def test_embedded_stdlib_docs_corpus() -> None:
    records = list(iter_stdlib_docs())
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
