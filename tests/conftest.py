"""Shared fixtures: a temporary data home with a real SQLite file, a small real corpus, tiny models."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.refs import ModelRef

# Tests never reach a model hub: fail fast instead of retrying the network for ~45 s.
os.environ["HF_HUB_OFFLINE"] = "1"
# Prefect's own state (profiles, the test harness database) stays out of the user's ~/.prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="draftflow-prefect-")

from flows.prefect_env import configure_prefect_env

configure_prefect_env()

from storage.db import Database, close_databases, open_database  # noqa: E402
from storage.settings import DATABASE_URL_ENV, HOME_ENV, Settings  # noqa: E402

_VOCABULARY = (
    "the module returns a value for each key in the mapping and raises an error when the to of with "
    "object is not found so the caller can handle it file path socket thread queue string "
    "list dictionary iterator generator function class method attribute default timeout"
)
WORDS = _VOCABULARY.split()


def sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def paragraph(rng: random.Random, sentences: int = 6) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def write_corpus(root: Path, n_docs: int = 40, seed: int = 0) -> Path:
    """A small corpus in every supported format: .txt, .md, .jsonl, .parquet, in nested folders."""
    rng = random.Random(seed)
    (root / "notes").mkdir(parents=True, exist_ok=True)
    docs = [paragraph(rng) for _ in range(n_docs)]
    quarter = n_docs // 4
    for i, text in enumerate(docs[:quarter]):
        (root / "notes" / f"note{i}.txt").write_text(text)
    for i, text in enumerate(docs[quarter : 2 * quarter]):
        (root / f"page{i}.md").write_text(f"# Page {i}\n\n{text}\n")
    with (root / "records.jsonl").open("w") as f:
        for i, text in enumerate(docs[2 * quarter : 3 * quarter]):
            f.write(json.dumps({"id": i, "text": text, "title": f"record {i}", "lang": "en"}) + "\n")
    pq.write_table(
        pa.table({"text": docs[3 * quarter :], "title": [f"row {i}" for i in range(n_docs - 3 * quarter)]}),
        root / "table.parquet",
    )
    return root


@pytest.fixture(autouse=True)
def _close_databases() -> Iterator[None]:
    yield
    close_databases()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    home = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    return Settings.from_env()


@pytest.fixture
def db(settings: Settings) -> Database:
    return open_database(settings.database_url)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = [
        {"id": "a", "text": "The module returns", "category": "technical doc"},
        {"id": "b", "text": "A thread queue is a list of", "category": "technical doc"},
        {"id": "c", "text": "When the object is not found the caller", "category": "news"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def tiny_model(settings: Settings, db: Database, corpus_dir: Path) -> ModelRef:
    """A real (tiny) model trained on the test corpus and registered as v0001."""
    from storage.refs import BaseModelSpec
    from tasks.clean.stage import clean_corpus
    from tasks.ingest.stage import ingest_corpus
    from tasks.tokenize.bpe import prepare_tokenizer
    from tasks.tokenize.stage import tokenize_corpus
    from tasks.train.stage import train_model
    from tests.tiny import TOKENIZE, TRAIN

    scratch = BaseModelSpec(kind="scratch")
    cleaned = clean_corpus(ingest_corpus([str(corpus_dir)], settings), settings)
    tokens = tokenize_corpus(cleaned, prepare_tokenizer(cleaned, scratch, settings, TOKENIZE), settings, TOKENIZE)
    return train_model(tokens, scratch, TRAIN, db, settings)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (a cold start takes ~20 s on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole session (testkit/postgres_server.py)."""
    from testkit.postgres_server import postgres_server

    with postgres_server() as url:
        yield url


_databases = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Database]:
    """The same test on a SQLite file and on a fresh database of the PostgreSQL server."""
    if request.param == "sqlite":
        yield open_database(settings.database_url)
        return
    import sqlalchemy as sa

    base = request.getfixturevalue("postgres_url")
    name = f"t{next(_databases)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))  # name is ours, never user input
    admin.dispose()
    db = open_database(base.rsplit("/", 1)[0] + f"/{name}")
    yield db
    db.dispose()
