"""Where draftflow keeps its data: one home folder plus a database URL.

`DRAFTFLOW_HOME` (default `~/.draftflow`) holds corpora, tokens and models;
`DRAFTFLOW_DATABASE_URL` (default: SQLite file `draftflow.db` in the home) holds drafts and runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "DRAFTFLOW_HOME"
DATABASE_URL_ENV = "DRAFTFLOW_DATABASE_URL"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """Settings from arguments, then environment, then defaults."""
        home_path = Path(home or os.environ.get(HOME_ENV) or Path.home() / ".draftflow")
        home_path = home_path.expanduser().resolve()
        url = os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{home_path / 'draftflow.db'}"
        return cls(home=home_path, database_url=url)

    @property
    def raw_dir(self) -> Path:
        return self.home / "corpus" / "raw"

    @property
    def clean_dir(self) -> Path:
        return self.home / "corpus" / "clean"

    def rejected_dir(self, stage: str) -> Path:
        """Rejected documents, one sub-folder per stage so stages never overwrite each other."""
        return self.home / "corpus" / "rejected" / stage

    @property
    def tokens_dir(self) -> Path:
        return self.home / "tokens"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"
