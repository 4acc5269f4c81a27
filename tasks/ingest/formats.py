"""Parsers from one file's content to records, one per format.

Each parser gets the file already decoded (text) or a stream of lines, never raises for bad content,
and reports a bad line or row as a record with a `reason` and where it was (`file#L12`, `#row3`).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from storage.parquet_store import bounded_batches
from tasks.ingest.limits import TOO_LONG, BoundedLines
from tasks.ingest.records import SourceRecord

_MD_HEADING = re.compile(r"^#{1,6}\s+\S")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def text_record(
    source: str, file: str, uri: str, text: str, title: str | None = None, meta: dict[str, Any] | None = None
) -> SourceRecord:
    if not text.strip():
        return SourceRecord(source, file, uri, None, title=title, meta=meta or {}, reason="empty", detail="no text")
    return SourceRecord(source, file, uri, text, title=title, meta=meta or {})


def parse_text(
    source: str, file: str, text: str, kind: str, split: str, separator: str, default_title: str
) -> Iterator[SourceRecord]:
    """Plain text, Markdown or reStructuredText: one document, or one per section / separator."""
    if split == "separator" and separator:
        parts: list[tuple[str | None, str]] = [(None, part) for part in text.split(separator)]
    elif split == "headings":
        parts = _split_headings(text, kind)
    else:
        parts = [(None, text)]
    parts = [(t, p) for t, p in parts if p.strip()] or [(None, text)]
    single = len(parts) == 1
    for number, (heading, part) in enumerate(parts):
        title = heading or _title_of(part, kind) or default_title
        uri = file if single else f"{file}#section{number}"
        yield text_record(
            source,
            file,
            uri,
            part.strip("\n") if not single else part,
            title=title,
            meta={} if single else {"section": number},
        )


def _title_of(text: str, kind: str) -> str | None:
    lines = text.splitlines()[:30]
    for i, line in enumerate(lines):
        if kind == ".md" and _MD_HEADING.match(line):
            return line.lstrip("#").strip()
        if (
            kind == ".rst"
            and i + 1 < len(lines)
            and line.strip()
            and _RST_UNDERLINE.match(lines[i + 1])
            and len(lines[i + 1].strip()) >= len(line.strip())
        ):
            return line.strip()
    return None


def _split_headings(text: str, kind: str) -> list[tuple[str | None, str]]:
    """Sections start at a Markdown `#` heading or an underlined reST title; text before the first is kept."""
    lines = text.splitlines(keepends=True)
    starts: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if kind == ".md" and _MD_HEADING.match(line):
            starts.append((i, line.lstrip("#").strip()))
        elif kind == ".rst" and i + 1 < len(lines) and line.strip() and _RST_UNDERLINE.match(lines[i + 1]):
            starts.append((i, line.strip()))
    if not starts:
        return [(None, text)]
    sections: list[tuple[str | None, str]] = [(None, "".join(lines[: starts[0][0]]))] if starts[0][0] > 0 else []
    bounds = [s for s, _ in starts] + [len(lines)]
    for (start, title), end in zip(starts, bounds[1:], strict=True):
        sections.append((title, "".join(lines[start:end])))
    return sections


def parse_html(source: str, file: str, html: str) -> Iterator[SourceRecord]:
    """Main text only (navigation, footers and boilerplate removed) with trafilatura, after the page's
    chrome that trafilatura keeps is taken out: permalink marks (Sphinx's and MkDocs' "¶"), and
    navigation, header, footer and sidebar elements outside the article."""
    import trafilatura

    try:
        doc = trafilatura.bare_extraction(
            strip_chrome(html), with_metadata=True, include_comments=False, include_tables=True
        )
    except Exception as exc:  # lxml raises many types for broken markup
        yield SourceRecord(source, file, file, None, reason="bad_html", detail=f"{type(exc).__name__}: {exc}")
        return
    text = getattr(doc, "text", None) if doc is not None else None
    if not text or not text.strip():
        yield SourceRecord(source, file, file, None, reason="no_main_text", detail="no main text found in the HTML")
        return
    text = _PERMALINK_MARK.sub("", text)
    meta = {k: v for k in ("author", "date", "sitename", "url") if (v := getattr(doc, k, None))}
    yield text_record(source, file, file, text, title=getattr(doc, "title", None), meta=meta)


_PERMALINK_MARK = re.compile(r"[ \t]*¶[ \t]*$", re.MULTILINE)
_PERMALINK_TEXTS = ("¶", "#", "§", "🔗")
# Page chrome, not content: site navigation, banners, footers, sidebars, search boxes. A <header> or
# <footer> inside an <article> or <main> belongs to the text (a title, a byline) and stays.
_CHROME = (
    "//nav | //*[@role='navigation' or @role='banner' or @role='contentinfo' or @role='search']"
    " | //header[not(ancestor::article) and not(ancestor::main)]"
    " | //footer[not(ancestor::article) and not(ancestor::main)]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' sphinxsidebar ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' related ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' footer ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' headerlink ')]"
)


def strip_chrome(html: str) -> str:
    """The page without its chrome and permalink anchors; the page unchanged when lxml cannot parse it."""
    import lxml.html

    try:
        tree = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return html
    for element in tree.xpath(_CHROME):
        element.drop_tree()
    for anchor in tree.xpath("//a[starts-with(@href, '#')]"):
        if anchor.text_content().strip() in _PERMALINK_TEXTS:
            anchor.drop_tree()
    return lxml.html.tostring(tree, encoding="unicode")


def parse_jsonl(source: str, file: str, lines: Iterable[str], text_field: str) -> Iterator[SourceRecord]:
    seen = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        seen += 1
        uri = f"{file}#L{number}"
        if line == TOO_LONG:
            yield SourceRecord(source, file, uri, None, reason="too_long", detail=f"line {number}: over max_chars")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield SourceRecord(source, file, uri, None, reason="bad_json", detail=f"line {number}: {exc.msg}")
            continue
        yield _object_record(source, file, uri, obj, text_field, f"line {number}")
    if seen == 0:
        yield SourceRecord(source, file, file, None, reason="empty", detail="no JSON lines")


def parse_json(source: str, file: str, content: str, text_field: str) -> Iterator[SourceRecord]:
    """A JSON array of objects (one document each) or a single object."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        yield SourceRecord(
            source, file, file, None, reason="bad_json", detail=f"line {exc.lineno} column {exc.colno}: {exc.msg}"
        )
        return
    items = data if isinstance(data, list) else [data]
    if not items:
        yield SourceRecord(source, file, file, None, reason="empty", detail="empty JSON array")
    for index, obj in enumerate(items):
        uri = f"{file}#{index}" if isinstance(data, list) else file
        yield _object_record(source, file, uri, obj, text_field, f"item {index}")


def _object_record(source: str, file: str, uri: str, obj: Any, text_field: str, where: str) -> SourceRecord:
    if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
        return SourceRecord(
            source, file, uri, None, reason="missing_field", detail=f"{where}: no string field '{text_field}'"
        )
    meta = {k: v for k, v in obj.items() if k not in (text_field, "title")}
    title = obj.get("title") if isinstance(obj.get("title"), str) else None
    return text_record(source, file, uri, obj[text_field], title=title, meta=meta)


def parse_csv(source: str, file: str, lines: BoundedLines, text_field: str) -> Iterator[SourceRecord]:
    """One document per row; the other columns become `meta`. A row with a NUL byte, or on a line
    longer than max_chars, is rejected alone."""
    csv.field_size_limit(max(csv.field_size_limit(), lines.limit))
    reader = csv.DictReader(lines, strict=True)  # strict: an unterminated quote is an error, not a row
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        yield SourceRecord(source, file, file, None, reason="bad_csv", detail=f"header: {exc}")
        return
    if not header:
        yield SourceRecord(source, file, file, None, reason="empty", detail="no CSV header")
        return
    if text_field not in header:
        yield SourceRecord(
            source,
            file,
            file,
            None,
            reason="missing_column",
            detail=f"no column '{text_field}' (columns: {', '.join(header)})",
        )
        return
    row_number = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            too_long = lines.too_long
            yield SourceRecord(
                source,
                file,
                f"{file}#row{row_number}",
                None,
                reason="too_long" if too_long else "bad_csv",
                detail=f"row {row_number} (near line {reader.line_num}): "
                + ("a line over max_chars" if too_long else str(exc)),
            )
            row_number += 1
            continue
        uri = f"{file}#row{row_number}"
        row_number += 1
        text = row.get(text_field)
        if None in row or any(v is None for v in row.values()) or text is None:
            yield SourceRecord(
                source,
                file,
                uri,
                None,
                reason="bad_csv",
                detail=f"line {reader.line_num}: {len(row)} fields do not match the header",
            )
            continue
        meta = {k: v for k, v in row.items() if k not in (text_field, "title")}
        yield text_record(source, file, uri, text, title=row.get("title") or None, meta=meta)


def parse_parquet(source: str, file: str, handle: Any, text_field: str) -> Iterator[SourceRecord]:
    """One document per row of the text column, streamed in record batches."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(handle)
    except Exception as exc:  # pyarrow raises several types for a corrupt or non-Parquet file
        yield SourceRecord(source, file, file, None, reason="unreadable", detail=f"not a Parquet file: {exc}")
        return
    names = parquet.schema_arrow.names
    if text_field not in names:
        yield SourceRecord(
            source,
            file,
            file,
            None,
            reason="missing_column",
            detail=f"no column '{text_field}' (columns: {', '.join(names)})",
        )
        return
    columns = [text_field] + (["title"] if "title" in names and text_field != "title" else [])
    row = 0
    try:
        for batch in bounded_batches(parquet, range(parquet.metadata.num_row_groups), 1024, columns):
            for values in batch.to_pylist():
                text, uri = values[text_field], f"{file}#row{row}"
                row += 1
                if not isinstance(text, str):
                    yield SourceRecord(source, file, uri, None, reason="empty", detail=f"row {row - 1}: no text")
                else:
                    yield text_record(source, file, uri, text, title=values.get("title"))
    except OSError as exc:
        yield SourceRecord(source, file, f"{file}#row{row}", None, reason="unreadable", detail=f"row {row}: {exc}")
