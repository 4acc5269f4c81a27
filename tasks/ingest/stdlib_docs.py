"""The embedded default corpus: the documentation every Python installation carries.

Docstrings of stdlib modules, classes and functions are read with `ast.get_docstring` from the
`.py` sources, never by importing them (importing every module opens browsers, prints, needs a
display or is slow), plus the language-reference topics in `pydoc_data.topics`.
"""

from __future__ import annotations

import ast
import os
import sysconfig
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from tasks.ingest.records import SourceRecord
from tasks.ingest.sources import Unit

# Test suites, the IDE and bundled wheels are code about Python, not documentation of it.
_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "lib2to3",
    "turtledemo",
    "ensurepip",
}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def iter_stdlib_units(source: str = "python-stdlib-docs") -> Iterator[Unit]:
    """One unit per public stdlib `.py` file; `pydoc_data/topics.py` yields the reference topics."""
    root = stdlib_root()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith((".", "config-")))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            module = _public_module_name(root, path)
            if module == "pydoc_data.topics":
                yield Unit(source, path.as_posix(), path, partial(_topic_records, source, path))
            elif module:
                yield Unit(source, path.as_posix(), path, partial(_docstring_records, source, root, path, module))


def _topic_records(source: str, path: Path) -> Iterator[SourceRecord]:
    from pydoc_data.topics import topics

    for topic in sorted(topics):
        yield SourceRecord(
            source, path.as_posix(), f"pydoc_data.topics:{topic}", topics[topic], title=topic, meta={"kind": "topic"}
        )


def _public_module_name(root: Path, path: Path) -> str | None:
    if path.suffix != ".py":
        return None
    parts = path.relative_to(root).with_suffix("").parts
    if any(p.startswith("_") and p != "__init__" for p in parts):
        return None  # private modules document implementation details
    return ".".join(p for p in parts if p != "__init__")


def _docstring_records(source: str, root: Path, path: Path, module: str) -> Iterator[SourceRecord]:
    rel, file = path.relative_to(root).as_posix(), path.as_posix()
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError) as exc:
        yield SourceRecord(source, file, f"{source}:{rel}", None, reason="unparsable", detail=str(exc))
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield SourceRecord(
            source, file, f"{source}:{rel}", doc, title=module, meta={"kind": "module", "module": module}
        )
    yield from _walk_definitions(source, file, rel, module, tree)


def _walk_definitions(source: str, file: str, rel: str, prefix: str, node: ast.AST) -> Iterator[SourceRecord]:
    for child in getattr(node, "body", []):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if child.name.startswith("_"):
            continue
        name = f"{prefix}.{child.name}"
        doc = ast.get_docstring(child)
        kind = "class" if isinstance(child, ast.ClassDef) else "function"
        if doc:
            yield SourceRecord(
                source,
                file,
                f"{source}:{rel}::{name}",
                doc,
                title=name,
                meta={"kind": kind, "module": prefix.split(".")[0]},
            )
        if isinstance(child, ast.ClassDef):
            yield from _walk_definitions(source, file, rel, name, child)
