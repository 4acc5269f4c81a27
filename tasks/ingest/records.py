"""The record every reader yields: a document, or a rejection that says where and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceRecord:
    """One document read from a source, or one rejection (when `reason` is set)."""

    source: str
    file: str  # the unit incremental ingest tracks (a file path)
    uri: str  # where exactly: file, file#L12, file#row3, file#section2
    text: str | None
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    detail: str | None = None
