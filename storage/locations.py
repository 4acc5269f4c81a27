"""Where a dataset lives: a local folder (a `pathlib.Path`) or an fsspec URL (`s3://bucket/corpus`, `file:///data`).

Local folders keep the plain pathlib code path (fast, atomic folder renames). Anything with a scheme
goes through fsspec, so the Parquet datasets can live on an object store; `storage/parquet_store.py`
commits there by writing a manifest last instead of renaming a folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem
    from pyarrow.fs import FileSystem

_SCHEME_PART = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]+:")  # two letters at least: never a Windows drive
_LOCAL_SCHEMES = {"file", "local"}


class StoreURL(str):
    """An fsspec URL that joins and names like a Path: `url / "raw"`, `.name`, `.parent`, `.exists()`.

    It is a `str`, so references (`DatasetRef.path`), JSON and pickles carry it as plain text.
    """

    def __new__(cls, value: str) -> StoreURL:
        return super().__new__(cls, value if value.endswith("://") else value.rstrip("/"))

    def __truediv__(self, part: str | os.PathLike[str]) -> StoreURL:
        return StoreURL(f"{self}/{os.fspath(part).strip('/')}")

    @property
    def name(self) -> str:
        return self.rsplit("/", 1)[-1]

    @property
    def parent(self) -> StoreURL:
        return StoreURL(self.rsplit("/", 1)[0])

    def filesystem(self) -> tuple[AbstractFileSystem, str]:
        """The fsspec filesystem and the path inside it (fsspec caches filesystem instances)."""
        from fsspec.core import url_to_fs

        return url_to_fs(str(self))

    def arrow(self) -> tuple[FileSystem, str]:
        """The same filesystem wrapped for pyarrow (Parquet readers and writers take `filesystem=`)."""
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, path = self.filesystem()
        return PyFileSystem(FSSpecHandler(fs)), path

    def exists(self) -> bool:
        fs, path = self.filesystem()
        return bool(fs.exists(path))


Location: TypeAlias = Path | StoreURL


def location(value: str | os.PathLike[str]) -> Location:
    """A `StoreURL` for a URL, else a `Path`.

    A URL that went through `Path()` lost a slash (`Path("s3://b/x")` is `s3:/b/x`); callers that
    wrap every dataset path in `Path(ref.path)` still reach the same dataset, because a relative
    path whose first part is a known fsspec protocol followed by ':' is read back as that URL.
    """
    if isinstance(value, StoreURL):
        return value
    text = os.fspath(value)
    if "://" in text:
        return StoreURL(text)
    path = Path(text)
    first = path.parts[0] if path.parts and not path.is_absolute() else ""
    if _SCHEME_PART.fullmatch(first) and _known_protocol(first[:-1]):
        rest = "/".join(path.parts[1:])
        return StoreURL(f"{first[:-1]}:///{rest}" if first[:-1] in _LOCAL_SCHEMES else f"{first}//{rest}")
    return path


def _known_protocol(name: str) -> bool:
    import fsspec

    return name in fsspec.available_protocols()
