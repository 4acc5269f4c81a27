"""Size limits that keep ingest's memory bounded: no document, line or buffer grows past `max_chars`.

A text file larger than the limit is read in chunks and split into parts at paragraph, line or word
boundaries; a JSONL or CSV line longer than the limit is skipped in chunks and rejected; any other
record whose text is longer is split into parts. Each part is a document of its own
(`file#part2`), so a 100 MB book on one line costs a few times `max_chars` of memory, not 100 MB.
"""

from __future__ import annotations

import codecs
import gzip
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import IO, BinaryIO

from tasks.ingest.records import SourceRecord

_CHUNK_BYTES = 1 << 20
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"\s"))


def looks_binary(head: bytes) -> bool:
    """More than 1% NUL bytes in the first block: a binary file. (A single stray NUL in a text file
    costs only its line or row, not the file.)"""
    return head.count(b"\x00") > max(1, len(head) // 100)


def cut_point(text: str, limit: int) -> int:
    """Where to end a part of at most `limit` characters: the last paragraph break, line break or space
    in its second half, else a hard cut at the limit."""
    if len(text) <= limit:
        return len(text)
    window = text[limit // 2 : limit]
    for pattern in _BREAKS:
        breaks = [m.end() for m in pattern.finditer(window)]
        if breaks:
            return limit // 2 + breaks[-1]
    return limit


def split_record(record: SourceRecord, max_chars: int) -> Iterator[SourceRecord]:
    """The record, or its text cut into parts of at most `max_chars` (`uri#part1`, `#part2`, ...)."""
    text = record.text
    if text is None or len(text) <= max_chars:
        yield record
        return
    part = 0
    while text:
        end = cut_point(text, max_chars)
        part += 1
        piece, text = text[:end], text[end:]
        if piece.strip():
            yield replace(record, uri=f"{record.uri}#part{part}", text=piece, meta={**record.meta, "part": part})


def text_parts(handle: BinaryIO | gzip.GzipFile, max_chars: int) -> Iterator[str]:
    """The decoded text of a binary stream in parts of at most `max_chars`, reading 1 MiB at a time.

    Raises UnicodeDecodeError where the bytes stop being UTF-8 (the parts before it were yielded).
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    buffer = ""
    while chunk := handle.read(_CHUNK_BYTES):
        buffer += decoder.decode(chunk)
        while len(buffer) > max_chars:
            end = cut_point(buffer, max_chars)
            yield buffer[:end]
            buffer = buffer[end:]
    buffer += decoder.decode(b"", final=True)
    if buffer:
        yield buffer


TOO_LONG = "\x00\n"  # what BoundedLines gives for a line over the limit: a NUL, so CSV rejects just that row


class BoundedLines:
    """The lines of a text stream; a line longer than `limit` characters is read past in chunks and
    given as TOO_LONG (with `too_long` set), so one huge line never sits in memory."""

    def __init__(self, stream: IO[str], limit: int) -> None:
        self.stream, self.limit, self.too_long = stream, limit, False

    def __iter__(self) -> BoundedLines:
        return self

    def __next__(self) -> str:
        line = self.stream.readline(self.limit + 1)
        if not line:
            raise StopIteration
        self.too_long = len(line) > self.limit and not line.endswith("\n")
        if self.too_long:
            while (rest := self.stream.readline(self.limit)) and not rest.endswith("\n"):
                pass
            return TOO_LONG
        return line
