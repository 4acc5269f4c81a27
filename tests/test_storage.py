"""Storage: Alembic-migrated SQLite database, Parquet datasets with atomic commit, settings."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from storage.db import Database, open_database
from storage.errors import DraftflowError
from storage.parquet_store import MAX_BATCH_BYTES, DatasetWriter, count_rows, iter_batches, read_manifest
from storage.settings import DATABASE_URL_ENV, Settings

SCHEMA = pa.schema([pa.field("doc_id", pa.string(), nullable=False), pa.field("n", pa.int32())])


def test_migration_creates_every_table_once(db: Database) -> None:
    tables = set(sa.inspect(db.engine).get_table_names())
    assert {"runs", "model_versions", "prompts", "drafts", "review_events", "alembic_version"} <= tables
    with db.session() as s:
        assert s.execute(sa.text("select version_num from alembic_version")).scalar() == "0007"
    again = Database(db.url)  # a second open finds the schema current and changes nothing
    assert set(sa.inspect(again.engine).get_table_names()) == tables
    again.dispose()


def test_drafts_table_guards_uniqueness_and_queue_index(db: Database) -> None:
    inspector = sa.inspect(db.engine)
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("drafts")}
    assert ("run_id", "prompt_id", "sample_index") in uniques
    indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("drafts")}
    assert ("status", "created_at") in indexes


def test_sqlite_runs_with_wal_and_foreign_keys(db: Database) -> None:
    with db.session() as s:
        assert s.execute(sa.text("pragma journal_mode")).scalar() == "wal"
        assert s.execute(sa.text("pragma foreign_keys")).scalar() == 1
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as s:
        s.execute(
            sa.text(
                "insert into review_events(draft_id, actor, action, to_status, at) "
                "values (999, 'x', 'approve', 'approved', '2026-01-01')"
            )
        )


def test_database_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'drafts.db'}"
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    settings = Settings.from_env(tmp_path / "home")
    assert settings.database_url == url
    db = open_database(settings.database_url)
    assert (tmp_path / "elsewhere" / "drafts.db").is_file()
    assert "drafts" in sa.inspect(db.engine).get_table_names()


def test_bad_database_url_is_a_user_error() -> None:
    with pytest.raises(DraftflowError, match="not a valid SQLAlchemy URL"):
        Database("not a url")


def test_dataset_writer_streams_and_commits(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    with DatasetWriter(target, SCHEMA, rows_per_file=250, buffer_rows=100) as writer:
        for i in range(1000):
            writer.write_row({"doc_id": f"d{i}", "n": i})
        writer.commit({"fingerprint": "abc"})
    assert len(list(target.glob("part-*.parquet"))) == 4
    assert count_rows(target) == 1000
    assert read_manifest(target)["rows"] == 1000
    batches = list(iter_batches(target, batch_size=128))
    assert max(b.num_rows for b in batches) <= 128
    assert [r["n"] for b in batches for r in b.to_pylist()] == list(range(1000))


def test_long_texts_are_written_and_read_in_batches_bounded_by_size(tmp_path: Path) -> None:
    """Documents of 1 MB: the writer flushes by characters and the reader sizes its batches by the
    row group's bytes, so neither holds hundreds of them at once; short rows keep full batches."""
    schema = pa.schema([("i", pa.int64()), ("text", pa.string())])
    with DatasetWriter(tmp_path / "ds", schema) as writer:
        for i in range(40):
            writer.write_row({"i": i, "text": chr(97 + i % 26) * 1_000_000})
        for i in range(40, 3040):
            writer.write_row({"i": i, "text": "short"})
        writer.commit({})
    batches = list(iter_batches(tmp_path / "ds", batch_size=512))
    assert [i for b in batches for i in b.column("i").to_pylist()] == list(range(3040))
    long_batches = [b for b in batches if b.column("i")[0].as_py() < 40]
    assert max(b.nbytes for b in long_batches) <= 2 * MAX_BATCH_BYTES
    assert max(b.num_rows for b in batches) == 512  # the short rows are not cut into small batches


def test_failed_write_keeps_the_previous_dataset(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    with DatasetWriter(target, SCHEMA) as writer:
        writer.write_row({"doc_id": "old", "n": 1})
        writer.commit({"fingerprint": "v1"})
    with pytest.raises(RuntimeError), DatasetWriter(target, SCHEMA) as writer:
        writer.write_row({"doc_id": "new", "n": 2})
        raise RuntimeError("crash half-way")
    assert read_manifest(target)["fingerprint"] == "v1"
    assert [r["doc_id"] for b in iter_batches(target) for r in b.to_pylist()] == ["old"]
    assert not list(tmp_path.glob(".ds.staging-*"))  # staging cleaned up


def test_the_migrations_build_every_column_the_models_describe(db: Database) -> None:
    """Every column a model gained has its migration (and no migration adds a column the models lack)."""
    from storage.models import Base

    inspector = sa.inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys()), table.name


def _staged(root: Path, content: str) -> Path:
    folder = root / f".staging-{content}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_text(content)
    return folder


def test_a_second_database_on_the_same_home_never_overwrites_a_model(tmp_path: Path) -> None:
    from storage.models import ModelVersion
    from storage.registry import register_model_version

    models = tmp_path / "home" / "models"
    fields = {"base": "scratch", "tokenizer_id": "t", "hyperparams": {}}
    first_db, second_db = (Database(f"sqlite:///{tmp_path / name}.db") for name in ("first", "second"))
    first = register_model_version(first_db, _staged(tmp_path, "first-weights"), models, **fields)
    second = register_model_version(second_db, _staged(tmp_path, "second-weights"), models, **fields)
    assert first.name == second.name == "v0001" and first.path != second.path
    assert (Path(first.path) / "model.safetensors").read_text() == "first-weights"  # untouched
    assert (Path(second.path) / "model.safetensors").read_text() == "second-weights"
    with second_db.session() as s:
        assert s.scalars(sa.select(ModelVersion.path)).one() == second.path


def test_a_registration_that_fails_to_insert_moves_nothing(tmp_path: Path, db: Database) -> None:
    from storage.models import ModelVersion
    from storage.registry import register_model_version

    models, staged = tmp_path / "models", _staged(tmp_path, "weights")
    with pytest.raises(sa.exc.IntegrityError):  # a run id the runs table does not have
        register_model_version(db, staged, models, base="scratch", tokenizer_id="t", run_id="nobody")
    assert staged.is_dir() and list(models.iterdir()) == []
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) == 0
