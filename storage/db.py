"""Engine, sessions and automatic migrations for the drafts database.

Any SQLAlchemy URL works (`DRAFTFLOW_DATABASE_URL`); SQLite is the default. On SQLite we turn on
WAL (readers never block the writer), a busy timeout (writers wait instead of failing), foreign
keys, and `BEGIN IMMEDIATE` for write transactions so two writers serialise at BEGIN rather than
deadlocking on a lock upgrade half-way through.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import DraftflowError, hide_password

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_WRITE_OPTION = "draftflow_write"


class Database:
    """One database: an engine, migrated to the latest schema on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._writer = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        upgrade_to_head(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (no write lock taken on SQLite)."""
        with self._read_sessions() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: commits on success, rolls back on any exception."""
        with self._write_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DraftflowError(f"database URL '{hide_password(url)}' is not a valid SQLAlchemy URL: {exc}") from None
    if parsed.get_backend_name() != "sqlite":
        # a web desk and the queue serve many editors at once: room for 30 connections
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN out of pysqlite's hands so we can choose DEFERRED or IMMEDIATE below.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, much faster commits
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


_migrate_lock = threading.Lock()


_MIGRATION_LOCK_KEY = 0x6472616674  # "draft": the PostgreSQL advisory lock every migrating process takes


def upgrade_to_head(engine: Engine) -> None:
    """Apply any missing Alembic migrations (a no-op, one query, when already current).

    Processes that open a fresh database at once migrate one at a time: on PostgreSQL behind a
    transaction-scoped advisory lock, on SQLite inside a write transaction (BEGIN IMMEDIATE, the
    database file's own lock). The others wait, then find the schema current.
    """
    config = _alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    writer = engine.execution_options(**{_WRITE_OPTION: True})
    with _migrate_lock, writer.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def open_database(url: str) -> Database:
    """The process-wide Database for a URL (engines are pooled: create one per URL)."""
    with _databases_lock:
        if url not in _databases:
            _databases[url] = Database(url)
        return _databases[url]


def close_databases() -> None:
    with _databases_lock:
        for db in _databases.values():
            db.dispose()
        _databases.clear()
