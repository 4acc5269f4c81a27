"""Where draftflow keeps its data, from the environment (pydantic-settings): one home folder, a database
URL, optionally the datasets elsewhere, and how the stages log.

`DRAFTFLOW_HOME` (default `~/.draftflow`) holds corpora, tokens and models;
`DRAFTFLOW_DATABASE_URL` (default: SQLite file `draftflow.db` in the home) holds drafts and runs.
`DRAFTFLOW_CORPUS_URL` (default `$DRAFTFLOW_HOME/corpus`) moves the corpus datasets (raw, clean,
rejected) to another folder or to any fsspec URL (`s3://bucket/draftflow/corpus`);
`DRAFTFLOW_TOKENS_URL` (default `$DRAFTFLOW_HOME/tokens`) does the same for the packed token blocks.
Models, tokenizers, the n-gram index cache and the SQLite database always stay in the local home.
`DRAFTFLOW_LOG_LEVEL` and `DRAFTFLOW_LOG_FORMAT` (`text` or `json`) shape the stage logs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.locations import Location, location

PREFIX = "DRAFTFLOW_"
HOME_ENV = f"{PREFIX}HOME"
DATABASE_URL_ENV = f"{PREFIX}DATABASE_URL"
CORPUS_URL_ENV = f"{PREFIX}CORPUS_URL"
TOKENS_URL_ENV = f"{PREFIX}TOKENS_URL"


class Settings(BaseSettings):
    """Arguments win over `DRAFTFLOW_*` environment variables, which win over the defaults."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore")

    home: Path = Path("~/.draftflow")
    database_url: str = ""  # empty: SQLite in the home
    corpus_url: str | None = None  # None: <home>/corpus
    tokens_url: str | None = None  # None: <home>/tokens
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """Settings from arguments, then environment, then defaults."""
        return cls(home=Path(home)) if home else cls()

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("corpus_url", "tokens_url")
    @classmethod
    def _dataset_root(cls, value: str | None) -> str | None:
        """A URL as given; a plain path made absolute (workers may run in another directory)."""
        if not value:
            return None
        where = location(value)
        return str(where) if not isinstance(where, Path) else str(where.expanduser().resolve())

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'draftflow.db'}")
        return self

    @property
    def corpus_dir(self) -> Location:
        return location(self.corpus_url) if self.corpus_url else self.home / "corpus"

    @property
    def raw_dir(self) -> Location:
        return self.corpus_dir / "raw"

    @property
    def clean_dir(self) -> Location:
        return self.corpus_dir / "clean"

    def rejected_dir(self, stage: str) -> Location:
        """Rejected documents, one sub-folder per stage so stages never overwrite each other."""
        return self.corpus_dir / "rejected" / stage

    @property
    def shards_dir(self) -> Location:
        """Scratch space of sharded stages: beside the corpus, so remote Dask workers reach it too."""
        return self.corpus_dir / ".shards"

    @property
    def tokens_dir(self) -> Path:
        """Local: trained tokenizers and `latest.json` (and the token blocks unless `tokens_url` is set)."""
        return self.home / "tokens"

    @property
    def token_blocks_dir(self) -> Location:
        """Where `<tokenizer-id>/train` and `/val` block datasets are written."""
        return location(self.tokens_url) if self.tokens_url else self.tokens_dir

    @property
    def models_dir(self) -> Path:
        return self.home / "models"
