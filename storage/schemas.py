"""Explicit pyarrow schemas of every Parquet dataset draftflow writes."""

from __future__ import annotations

import pyarrow as pa

_DOC_FIELDS = [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("file", pa.string(), nullable=False),  # the unit incremental ingest tracks (a file path)
    pa.field("uri", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("meta", pa.string(), nullable=False),  # JSON object, kept as text for portability
    pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
]

RAW_SCHEMA = pa.schema(_DOC_FIELDS, metadata={"draftflow.dataset": "raw"})

# Scores are kept as columns so thresholds can be retuned without re-scoring (tasks/clean/quality.py).
INT_SCORES = (
    "n_chars",
    "n_words",
    "n_tokens",
    "n_lines",
    "stop_words",
    "c4_lorem_lines",
    "c4_curly_lines",
    "c4_sentences",
    "pii_email",
    "pii_phone",
    "pii_ip",
)
FLOAT_SCORES = (
    "mean_word_length",
    "hash_ratio",
    "ellipsis_ratio",
    "bullet_lines_ratio",
    "ellipsis_lines_ratio",
    "alpha_words_ratio",
    "dup_para_ratio",
    "dup_para_char_ratio",
    "dup_line_ratio",
    "dup_line_char_ratio",
    "top_2gram_ratio",
    "top_3gram_ratio",
    "top_4gram_ratio",
    "dup_5gram_ratio",
    "dup_6gram_ratio",
    "dup_7gram_ratio",
    "dup_8gram_ratio",
    "dup_9gram_ratio",
    "dup_10gram_ratio",
    "line_punct_ratio",
    "short_line_ratio",
    "char_dup_ratio",
    "newline_ratio",
    "language_score",
)
CLEAN_SCHEMA = pa.schema(
    [
        *_DOC_FIELDS,
        pa.field("language", pa.string(), nullable=False),
        *[pa.field(name, pa.int32(), nullable=False) for name in INT_SCORES],
        *[pa.field(name, pa.float32(), nullable=False) for name in FLOAT_SCORES],
    ],
    metadata={"draftflow.dataset": "clean"},
)

# A rejected record may come from a file that never became a document (unreadable, binary):
# then doc_id and text are null and `uri` + `detail` say where and why.
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
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


# What incremental ingest remembers of each file: its content hash and what it produced.
FILE_INDEX_SCHEMA = pa.schema(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("hash", pa.string(), nullable=False),
        pa.field("documents", pa.int64(), nullable=False),
        pa.field("rejected", pa.int64(), nullable=False),
    ],
    metadata={"draftflow.dataset": "file_index"},
)


def tokens_schema(block_size: int, vocab_size: int, metadata: dict[str, str]) -> pa.Schema:
    """Packed token blocks: one fixed-size list per row; uint16 when the vocabulary fits."""
    id_type = pa.uint16() if vocab_size <= 2**16 else pa.uint32()
    return pa.schema(
        [pa.field("input_ids", pa.list_(id_type, block_size), nullable=False)],
        metadata={"draftflow.dataset": "tokens", **metadata},
    )
