"""Explicit pyarrow schemas of every Parquet dataset draftflow writes (DESIGN.md §3)."""

from __future__ import annotations

import pyarrow as pa

_DOC_FIELDS = [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("meta", pa.string(), nullable=False),  # JSON object, kept as text for portability
    pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
]

RAW_SCHEMA = pa.schema(_DOC_FIELDS, metadata={"draftflow.dataset": "raw"})

# Scores are kept as columns so thresholds can be retuned without re-scoring.
CLEAN_SCHEMA = pa.schema(
    [
        *_DOC_FIELDS,
        pa.field("n_chars", pa.int32(), nullable=False),
        pa.field("n_words", pa.int32(), nullable=False),
        pa.field("mean_word_length", pa.float32(), nullable=False),
        pa.field("alpha_ratio", pa.float32(), nullable=False),
    ],
    metadata={"draftflow.dataset": "clean"},
)

# A rejected record may come from a file that never became a document (unreadable, binary):
# then doc_id and text are null and `uri` + `detail` say where and why.
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("text", pa.large_string()),
        pa.field("meta", pa.string(), nullable=False),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ],
    metadata={"draftflow.dataset": "rejected"},
)


def tokens_schema(block_size: int, vocab_size: int, metadata: dict[str, str]) -> pa.Schema:
    """Packed token blocks: one fixed-size list per row; uint16 when the vocabulary fits."""
    id_type = pa.uint16() if vocab_size <= 2**16 else pa.uint32()
    return pa.schema(
        [pa.field("input_ids", pa.list_(id_type, block_size), nullable=False)],
        metadata={"draftflow.dataset": "tokens", **metadata},
    )
