"""Scale-out: sharded clean, tokenize and draft checks on a real Dask cluster give the in-process results;
Parquet datasets at fsspec URLs (memory://, file://) commit atomically and read back the same.

The sharded tests run real Prefect flows (the session's test server) on a real LocalCluster of two
worker processes, started once for this module and reached by address, as an existing production
cluster would be; one test lets the stage start its own local cluster.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from prefect import flow

from flows.params import ScaleParams
from storage.db import Database
from storage.drafts import insert_drafts
from storage.locations import StoreURL, location
from storage.models import Draft, ModelVersion, Prompt, ReviewEvent
from storage.parquet_store import (
    DatasetWriter,
    count_rows,
    iter_batches,
    iter_row_range,
    read_manifest,
    read_sidecar,
    schema_metadata,
)
from storage.refs import BaseModelSpec, DatasetRef, TokensRef
from storage.schemas import RAW_SCHEMA
from storage.settings import CORPUS_URL_ENV, HOME_ENV, TOKENS_URL_ENV, Settings
from tasks.clean.params import CleanParams
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tasks.review.params import CheckParams
from tasks.review.stage import corpus_index, queue_run
from tasks.shards import row_ranges
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.stage import tokenize_corpus
from tasks.train.stage import read_blocks
from testkit.queue_seed import seed_drafts
from tests.conftest import paragraph, write_corpus
from tests.tiny import TOKENIZE

SCHEMA = pa.schema([pa.field("doc_id", pa.string(), nullable=False), pa.field("n", pa.int32())])
SCRUB = {"seconds"}  # per-step seconds are timings, the one thing sharding changes


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """A real LocalCluster of two single-threaded worker processes, reached by address."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
        yield cluster.scheduler_address


@pytest.fixture
def mixed_corpus(tmp_path: Path) -> Path:
    """The test corpus plus what makes cleaning global: an exact and a near duplicate of documents in
    the first shards, placed last in corpus order (so in the last shard); plus a French page, a
    too-short note and one with an e-mail address."""
    root = write_corpus(tmp_path / "corpus")
    first = (root / "page0.md").read_text().split("\n\n", 1)[1].strip()
    words = first.split()
    words[len(words) // 2] = "zebra"
    rng = random.Random(7)
    extra = root / "zz-late"
    extra.mkdir()
    record = json.loads((root / "records.jsonl").read_text().splitlines()[0])["text"]
    (extra / "a-exact.txt").write_text(record)
    (extra / "b-near.txt").write_text(" ".join(words))
    (extra / "c-french.txt").write_text(
        "La bibliothèque conserve un petit cache des expressions compilées, afin "
        "qu'un programme qui utilise souvent la même expression ne paie pas deux "
        "fois sa compilation. Chaque entrée est créée lors de la première "
        "utilisation et reste jusqu'à ce que le cache soit plein."
    )
    (extra / "d-short.txt").write_text("Too short to keep.")
    (extra / "e-pii.txt").write_text(paragraph(rng) + " Write to jane.doe@example.com for a copy.")
    return root


def _home(tmp_path: Path, name: str) -> Settings:
    home = (tmp_path / name).resolve()
    return Settings(home=home, database_url=f"sqlite:///{home / 'draftflow.db'}")


def _copy_raw(source: Settings, target: Settings) -> None:
    """The same raw snapshot in another home (ingest again would stamp another `ingested_at`)."""
    shutil.copytree(Path(source.raw_dir), Path(target.raw_dir))


def _rows(directory: Any) -> list[dict[str, Any]]:
    return [row for batch in iter_batches(directory) for row in batch.to_pylist()]


def _scrub(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in step.items() if k not in SCRUB} for step in report]


def _assert_same_clean(sharded: DatasetRef, expected: DatasetRef, a: Settings, b: Settings) -> None:
    assert sharded.fingerprint == expected.fingerprint and sharded.rows == expected.rows
    assert sharded.stats == expected.stats
    assert sharded.stats["input"] == sharded.stats["kept"] + sharded.stats["rejected"]
    assert _scrub(sharded.report) == _scrub(expected.report)
    assert _rows(b.clean_dir) == _rows(a.clean_dir)
    assert _rows(b.rejected_dir("clean")) == _rows(a.rejected_dir("clean"))


def _assert_same_tokens(sharded: TokensRef, expected: TokensRef) -> None:
    assert sharded.fingerprint == expected.fingerprint
    assert sharded.tokenizer.tokenizer_id == expected.tokenizer.tokenizer_id
    assert (sharded.train_blocks, sharded.val_blocks, sharded.tokens) == (
        expected.train_blocks,
        expected.val_blocks,
        expected.tokens,
    )
    for split in ("train", "val"):
        assert np.array_equal(read_blocks(Path(sharded.path) / split), read_blocks(Path(expected.path) / split))
        assert schema_metadata(Path(sharded.path) / split) == schema_metadata(Path(expected.path) / split)


def _executed(address: str) -> dict[int, int]:
    """Tasks each worker process of the cluster has run so far, by process id."""
    from distributed import Client

    with Client(address) as client:
        counts = client.run(lambda dask_worker: (os.getpid(), dask_worker.state.executed_count))
    return dict(counts.values())


# ---------------------------------------------------------------- sharded stages on Dask


@pytest.mark.slow
def test_sharded_clean_and_tokenize_match_in_process(
    tmp_path: Path, mixed_corpus: Path, dask_address: str, prefect_harness: None
) -> None:
    from flows.scaleout import clean_stage, tokenize_stage

    a, b = _home(tmp_path, "in-process"), _home(tmp_path, "sharded")
    raw = ingest_corpus([str(mixed_corpus)], a)
    expected = clean_corpus(raw, a, CleanParams())
    reasons = {k for k in expected.stats if k.startswith("rejected_")}
    assert {
        "rejected_duplicate",
        "rejected_near_duplicate",
        "rejected_language",
        "rejected_gopher_too_few_words",
    } <= reasons  # every kind of verdict, dedup across shards
    expected_tokens = tokenize_corpus(
        expected, prepare_tokenizer(expected, BaseModelSpec(kind="scratch"), a, TOKENIZE), a, TOKENIZE
    )

    _copy_raw(a, b)
    scale = ScaleParams(shards=3, dask_address=dask_address)
    before = _executed(dask_address)
    cleaned = clean_stage(raw, b, CleanParams(), scale)
    _assert_same_clean(cleaned, expected, a, b)
    tokens = tokenize_stage(cleaned, BaseModelSpec(kind="scratch"), b, TOKENIZE, scale)
    _assert_same_tokens(tokens, expected_tokens)
    ran = {pid: n - before[pid] for pid, n in _executed(dask_address).items()}
    assert sum(ran.values()) == 6 and all(ran.values()) and os.getpid() not in ran  # 2 other processes
    assert TokensRef.model_validate_json((b.tokens_dir / "latest.json").read_text()) == tokens
    assert not list(Path(b.shards_dir).glob("*"))  # scratch removed
    assert not list(Path(b.corpus_dir).glob(".*staging*"))


def _seed_run(db: Database, run_id: str, texts: list[str]) -> None:
    seed_drafts(db, 0, run_id=run_id)  # the run, a model version and prompts; no drafts
    with db.session() as s:
        version = s.scalar(sa.select(ModelVersion.id).limit(1))
        prompt = s.scalar(sa.select(Prompt.id).where(Prompt.key == f"seed:{run_id}:0"))
    insert_drafts(
        db,
        [
            {
                "run_id": run_id,
                "model_version_id": version,
                "prompt_id": prompt,
                "sample_index": i,
                "original_text": t,
                "current_text": t,
                "params": {},
                "seed": i,
            }
            for i, t in enumerate(texts)
        ],
    )


def _outcome(db: Database, run_id: str) -> list[tuple[Any, ...]]:
    with db.session() as s:
        drafts = s.scalars(sa.select(Draft).where(Draft.run_id == run_id).order_by(Draft.sample_index)).all()
        notes = {e.draft_id: e.note for e in s.scalars(sa.select(ReviewEvent).where(ReviewEvent.action == "queue"))}
        return [(d.sample_index, d.status, d.flags, d.scores, notes[d.id]) for d in drafts]


@pytest.mark.slow
def test_sharded_draft_checks_match_in_process(
    settings: Settings, db: Database, corpus_dir: Path, prefect_harness: None
) -> None:
    from flows.scaleout import queue_stage

    cleaned = clean_corpus(ingest_corpus([str(corpus_dir)], settings), settings)
    copied = _rows(settings.clean_dir)[3]["text"]
    rng = random.Random(3)
    texts = [
        paragraph(rng, 2),
        copied,
        paragraph(rng, 1) + " Call +1 415 555 0100 now.",
        "the value of the value of the value of the value of the value of the value",
        "Too short",
        paragraph(rng, 2) + " Mail ops@example.com today.",
        " ".join(copied.split()[:30]),
    ] * 3
    _seed_run(db, "in-process", texts)
    _seed_run(db, "sharded", texts)
    expected = queue_run(db, "in-process", corpus_index(settings, cleaned), CheckParams())

    # no address: the stage starts (and stops) its own local cluster of two worker processes
    result = queue_stage("sharded", settings, cleaned, CheckParams(), ScaleParams(shards=3, workers=2))
    assert (result.queued, result.flagged, result.flags) == (expected.queued, expected.flagged, expected.flags)
    assert result.queued == len(texts) and 0 < result.flagged < len(texts)
    assert result.queue == {"flagged": 2 * result.flagged, "pending": 2 * (result.queued - result.flagged)}
    assert _outcome(db, "sharded") == _outcome(db, "in-process")


@pytest.mark.slow
def test_a_failed_shard_leaves_the_previous_datasets(
    settings: Settings, corpus_dir: Path, dask_address: str, prefect_harness: None
) -> None:
    from flows.scaleout import clean_stage

    raw = ingest_corpus([str(corpus_dir)], settings)
    before = clean_corpus(raw, settings, CleanParams())
    # a raw row without text, in the last shard: the per-document steps fail on it
    schema = RAW_SCHEMA.set(RAW_SCHEMA.get_field_index("text"), pa.field("text", pa.large_string()))
    broken = pa.Table.from_pylist([{**_rows(settings.raw_dir)[0], "text": None}], schema=schema)
    pq.write_table(broken, Path(settings.raw_dir) / "part-99999.parquet")
    changed = raw.model_copy(update={"fingerprint": "changed", "rows": raw.rows + 1})

    with pytest.raises(AttributeError, match="NoneType"):  # what the shard raised, raised by the stage
        clean_stage(changed, settings, CleanParams(), ScaleParams(shards=2, dask_address=dask_address))
    assert read_manifest(settings.clean_dir)["fingerprint"] == before.fingerprint
    assert _rows(settings.clean_dir) and count_rows(settings.clean_dir) == before.rows
    assert read_manifest(settings.rejected_dir("clean"))["fingerprint"] == f"{before.fingerprint}-rejected"
    assert not list(Path(settings.corpus_dir).glob(".*staging*")) and not list(Path(settings.shards_dir).glob("*"))


@pytest.mark.slow
def test_ingest_clean_tokenize_with_the_corpus_at_a_file_url(
    tmp_path: Path, mixed_corpus: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    """Today's stages, unchanged, at a `file://` URL; then the sharded stages, inside a parent flow."""

    store = tmp_path / "bucket"
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(CORPUS_URL_ENV, f"file://{store}/a/corpus")
    a = Settings.from_env()
    assert isinstance(a.raw_dir, StoreURL) and a.raw_dir == f"file://{store}/a/corpus/raw"
    raw = ingest_corpus([str(mixed_corpus)], a)
    cleaned = clean_corpus(raw, a, CleanParams())
    tokens = tokenize_corpus(
        cleaned, prepare_tokenizer(cleaned, BaseModelSpec(kind="scratch"), a, TOKENIZE), a, TOKENIZE
    )
    assert raw.path.startswith("file://") and cleaned.path == f"file://{store}/a/corpus/clean"
    assert not (a.home / "corpus").exists()  # nothing of the corpus in the local home
    manifest = read_manifest(cleaned.path)
    assert manifest["parts"] and all(p.startswith(manifest["version"] + "/") for p in manifest["parts"])
    assert read_sidecar(a.raw_dir, "_files.parquet") is not None  # ingest's file index travels too
    assert ingest_corpus([str(mixed_corpus)], a).stats["files_unchanged"] == raw.stats["files_new"]
    assert corpus_index(a, cleaned) is not None  # the draft checks' n-gram index reads it there too

    monkeypatch.setenv(CORPUS_URL_ENV, f"file://{store}/b/corpus")
    monkeypatch.setenv(TOKENS_URL_ENV, f"file://{store}/b/tokens")
    b = Settings.from_env(tmp_path / "home-b")
    shutil.copytree(store / "a" / "corpus" / "raw", store / "b" / "corpus" / "raw")
    sharded, sharded_tokens = _night(raw, b)
    assert sharded.path == f"file://{store}/b/corpus/clean"
    _assert_same_clean(sharded, cleaned, a, b)
    assert sharded_tokens.path.startswith(f"file://{store}/b/tokens/")
    _assert_same_tokens(sharded_tokens, tokens)


@flow(name="test-night")
def _night(raw: DatasetRef, settings: Settings) -> tuple[DatasetRef, TokensRef]:
    """The nightly flow's shape: sharded stages as subflows of a parent flow, one local cluster for both."""
    from flows.scaleout import clean_stage, shared_cluster, tokenize_stage

    with shared_cluster(ScaleParams(shards=2, workers=2)) as scale:
        assert scale.dask_address
        cleaned = clean_stage(raw, settings, CleanParams(), scale)
        return cleaned, tokenize_stage(cleaned, BaseModelSpec(kind="scratch"), settings, TOKENIZE, scale)


def test_a_committed_output_is_reused_without_a_cluster(settings: Settings, corpus_dir: Path) -> None:
    """The same input, parameters and code: the sharded stage returns the committed corpus at once
    (the address is never contacted: nothing listens there)."""
    from flows.scaleout import clean_stage

    raw = ingest_corpus([str(corpus_dir)], settings)
    expected = clean_corpus(raw, settings, CleanParams())
    reused = clean_stage(raw, settings, CleanParams(), ScaleParams(shards=4, dask_address="tcp://127.0.0.1:9"))
    assert reused == expected


@pytest.mark.slow
def test_one_shard_runs_the_usual_task_in_process(settings: Settings, corpus_dir: Path, prefect_harness: None) -> None:
    from flows.scaleout import clean_stage

    raw = ingest_corpus([str(corpus_dir)], settings)
    ref = clean_stage(raw, settings, CleanParams(), ScaleParams(shards=1, dask_address="tcp://127.0.0.1:9"))
    assert ref.rows == raw.rows - ref.stats["rejected"] > 0
    assert read_manifest(settings.clean_dir)["fingerprint"] == ref.fingerprint
    assert not Path(settings.shards_dir).exists()


# ---------------------------------------------------------------- storage at URLs


@pytest.fixture(params=["local", "memory", "file-url"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return tmp_path / "ds"
    if request.param == "memory":
        return f"memory://draftflow-tests/{tmp_path.name}/ds"
    return f"file://{tmp_path}/ds"


def _write(target: Any, n: int, fingerprint: str, rows_per_file: int = 250) -> None:
    with DatasetWriter(target, SCHEMA, rows_per_file=rows_per_file, buffer_rows=100) as writer:
        for i in range(n):
            writer.write_row({"doc_id": f"d{i}", "n": i})
        writer.write_sidecar("_index.parquet", pa.table({"n": [n]}))
        writer.commit({"fingerprint": fingerprint})


def test_datasets_at_urls_commit_read_and_slice_like_local_ones(target: Any) -> None:
    _write(target, 1000, "v1")
    assert read_manifest(target)["rows"] == 1000 and count_rows(target) == 1000
    assert [r["n"] for r in _rows(target)] == list(range(1000))
    assert read_sidecar(target, "_index.parquet").column("n").to_pylist() == [1000]
    for start, stop in [(0, 1000), (0, 1), (99, 101), (240, 610), (250, 500), (999, 1000), (5, 5)]:
        got = [r["n"] for b in iter_row_range(target, start, stop, batch_size=64) for r in b.to_pylist()]
        assert got == list(range(start, stop)), (start, stop)
    _write(target, 10, "v2")
    assert [r["n"] for r in _rows(target)] == list(range(10)) and read_manifest(target)["fingerprint"] == "v2"


def test_a_failed_write_at_a_url_keeps_the_previous_version(target: Any) -> None:
    _write(target, 20, "v1")
    with pytest.raises(RuntimeError), DatasetWriter(target, SCHEMA) as writer:
        for _ in range(5000):  # files written, never published
            writer.write_row({"doc_id": "new", "n": -1})
        raise RuntimeError("crash half-way")
    assert read_manifest(target)["fingerprint"] == "v1" and [r["n"] for r in _rows(target)] == list(range(20))
    where = location(target)
    if isinstance(where, StoreURL):  # one version prefix left: the published one
        fs, path = where.filesystem()
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
        assert names == ["_manifest.json", read_manifest(target)["version"]]


def test_a_url_that_went_through_path_still_names_the_dataset(tmp_path: Path) -> None:
    _write(f"file://{tmp_path}/ds", 30, "v1")
    mangled = Path(f"file://{tmp_path}/ds")  # what `Path(ref.path)` does to a URL
    assert str(mangled).startswith("file:/") and location(mangled) == f"file://{tmp_path}/ds"
    assert count_rows(mangled) == 30 and read_manifest(mangled)["fingerprint"] == "v1"
    assert location(Path("s3://bucket/corpus/clean")) == "s3://bucket/corpus/clean"
    assert location("notes:/x") == Path("notes:/x")  # not a protocol: an ordinary relative path
    assert location(tmp_path) == tmp_path


def test_settings_default_to_the_home_and_take_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CORPUS_URL_ENV, raising=False)
    monkeypatch.delenv(TOKENS_URL_ENV, raising=False)
    plain = Settings.from_env(tmp_path)
    assert plain.raw_dir == tmp_path / "corpus" / "raw" and isinstance(plain.raw_dir, Path)
    assert plain.token_blocks_dir == plain.tokens_dir == tmp_path / "tokens"
    monkeypatch.setenv(CORPUS_URL_ENV, "s3://bucket/draftflow/corpus/")
    monkeypatch.setenv(TOKENS_URL_ENV, "relative/tokens")
    moved = Settings.from_env(tmp_path)
    assert moved.rejected_dir("clean") == "s3://bucket/draftflow/corpus/rejected/clean"
    assert moved.token_blocks_dir == Path(os.getcwd()) / "relative" / "tokens"
    assert moved.tokens_dir == tmp_path / "tokens" and moved.models_dir == tmp_path / "models"


def test_row_ranges_cover_the_input_once() -> None:
    assert row_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert row_ranges(2, 8) == [(0, 1), (1, 2)]  # never an empty shard
    assert row_ranges(0, 4) == [(0, 0)]
