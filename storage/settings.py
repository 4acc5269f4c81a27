"""Where draftflow keeps its data: one home folder, a database URL, and optionally the datasets elsewhere.

`DRAFTFLOW_HOME` (default `~/.draftflow`) holds corpora, tokens and models;
`DRAFTFLOW_DATABASE_URL` (default: SQLite file `draftflow.db` in the home) holds drafts and runs.
`DRAFTFLOW_CORPUS_URL` (default `$DRAFTFLOW_HOME/corpus`) moves the corpus datasets (raw, clean,
rejected) to another folder or to any fsspec URL (`s3://bucket/draftflow/corpus`);
`DRAFTFLOW_TOKENS_URL` (default `$DRAFTFLOW_HOME/tokens`) does the same for the packed token blocks.
Models, tokenizers, the n-gram index cache and the SQLite database always stay in the local home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from storage.locations import Location, location

HOME_ENV = "DRAFTFLOW_HOME"
DATABASE_URL_ENV = "DRAFTFLOW_DATABASE_URL"
CORPUS_URL_ENV = "DRAFTFLOW_CORPUS_URL"
TOKENS_URL_ENV = "DRAFTFLOW_TOKENS_URL"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    corpus_url: str | None = None  # None: <home>/corpus
    tokens_url: str | None = None  # None: <home>/tokens

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """Settings from arguments, then environment, then defaults."""
        home_path = Path(home or os.environ.get(HOME_ENV) or Path.home() / ".draftflow")
        home_path = home_path.expanduser().resolve()
        url = os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{home_path / 'draftflow.db'}"
        return cls(home=home_path, database_url=url, corpus_url=_dataset_root(CORPUS_URL_ENV),
                   tokens_url=_dataset_root(TOKENS_URL_ENV))

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


def _dataset_root(env: str) -> str | None:
    """A URL as given; a plain path made absolute (workers may run in another directory)."""
    value = os.environ.get(env)
    if not value:
        return None
    where = location(value)
    return str(where) if not isinstance(where, Path) else str(where.expanduser().resolve())
