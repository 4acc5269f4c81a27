"""The ingest stage's parameters: how files are read."""

from __future__ import annotations

from pydantic import Field

from storage.params import Params


class IngestOptions(Params):
    """How files are read; changing these re-reads every file on the next incremental run."""

    text_field: str = Field("text", description="Field (JSON/JSONL) or column (CSV/Parquet) holding the text.")
    include: list[str] = Field(default_factory=list, description="Globs a file in a folder must match (any).")
    exclude: list[str] = Field(default_factory=list, description="Globs that skip a file in a folder.")
    split: str = Field(
        "none",
        pattern="^(none|headings|separator)$",
        description="Split .txt/.md/.rst files into documents: none, headings or separator.",
    )
    separator: str = Field("\n---\n", description="The separator when split = separator.")
    max_chars: int = Field(
        1_000_000,
        ge=1_000,
        le=100_000_000,
        description="Longest document: longer texts are cut into parts (file#part2); longer JSONL/CSV lines "
        "and HTML/JSON files are rejected. Bounds ingest's memory.",
    )
