"""The key that signs the desk's session cookies.

Taken from, in order: the `secret_key` argument, the `DRAFTFLOW_DESK_SECRET` environment variable,
or a random key generated once and kept in `desk-secret` (mode 0600) next to the SQLite file, or in
the draftflow home for other databases. Persisting it means a restart does not sign everyone out;
deleting the file signs everyone out.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from storage.errors import DraftflowError
from storage.settings import Settings

SECRET_ENV = "DRAFTFLOW_DESK_SECRET"


class DeskSecretEnv(BaseSettings):
    """`DRAFTFLOW_DESK_SECRET`: kept apart from `Settings`, which travels as a parameter to Prefect tasks."""

    model_config = SettingsConfigDict(env_prefix="DRAFTFLOW_", extra="ignore")

    desk_secret: SecretStr | None = None


SECRET_FILE = "desk-secret"
MIN_SECRET = 32  # characters: shorter keys make forged session cookies a matter of brute force


def resolve_secret(database_url: str, secret_key: str | None = None) -> str:
    configured = DeskSecretEnv().desk_secret
    key = secret_key or (configured.get_secret_value() if configured else None)
    if key:
        if len(key) < MIN_SECRET:
            raise DraftflowError(
                f"the desk's secret key must have at least {MIN_SECRET} characters "
                f"(set {SECRET_ENV} to e.g. the output of `openssl rand -hex 32`)"
            )
        return key
    return _stored_secret(secret_path(database_url))


def secret_path(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().resolve().parent / SECRET_FILE
    return Settings.from_env().home / SECRET_FILE


def _stored_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        # O_EXCL: two desks starting at once never overwrite each other's key; 0600: only the owner reads it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
