"""Prompts: plain lines (`#` comments skipped), JSONL, CSV or Parquet files, the `prompts` table, or the
openings of the user's own held-out documents (`prompts_from_corpus`).

Structured files carry `text`, optional `id` and `category`, and optional per-prompt sampling
overrides (`temperature`, `top_p`, `top_k`, `repetition_penalty`, `max_new_tokens`, `stop`).
"""

from __future__ import annotations

import csv
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from storage.db import Database
from storage.drafts import PromptRow
from storage.errors import DraftflowError
from storage.fingerprint import text_hash
from storage.locations import Location
from storage.parquet_store import iter_batches


def default_prompts_path() -> Path:
    return Path(str(resources.files("tasks.generate") / "data" / "default_prompts.jsonl"))


def load_prompts(path: str | Path | None = None) -> list[PromptRow]:
    """Read a prompts file; any malformed line is a user error naming the file and line."""
    file = Path(path).expanduser() if path else default_prompts_path()
    if not file.is_file():
        raise DraftflowError(f"prompts file '{file}' does not exist")
    try:
        content = "" if file.suffix == ".parquet" else file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DraftflowError(f"prompts file '{file}' is not UTF-8 text (byte {exc.start})") from None
    source = file.stem
    if file.suffix == ".jsonl":
        rows = _jsonl_prompts(file, content, source)
    elif file.suffix in (".csv", ".parquet"):
        rows = [_structured_prompt(file, f"row {i}", obj, i, source) for i, obj in enumerate(_table_rows(file))]
    else:
        rows = _line_prompts(content, source)
    if not rows:
        raise DraftflowError(f"prompts file '{file}' has no prompts")
    return rows


def _key(source: str, prompt_id: str, text: str) -> str:
    # The text hash is part of the key: editing a prompt makes a new prompt, so old drafts
    # keep pointing at the exact text they were generated from.
    return f"{source}:{prompt_id}:{text_hash(text)[:12]}"[:200]


def _line_prompts(content: str, source: str) -> list[PromptRow]:
    rows = []
    for line in content.splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            rows.append(PromptRow(key=_key(source, text_hash(text)[:8], text), text=text, category=None, source=source))
    return rows


def _jsonl_prompts(file: Path, content: str, source: str) -> list[PromptRow]:
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DraftflowError(f"prompts file '{file}' line {number}: not valid JSON ({exc.msg})") from None
        rows.append(_structured_prompt(file, f"line {number}", obj, number, source))
    return rows


def _structured_prompt(file: Path, where: str, obj: Any, default_id: int, source: str) -> PromptRow:
    from tasks.generate.params import OVERRIDABLE

    text = obj.get("text") if isinstance(obj, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise DraftflowError(f"prompts file '{file}' {where}: needs a non-empty string field 'text'")
    prompt_id = str(obj.get("id") if obj.get("id") not in (None, "") else default_id)
    category = obj.get("category") or None
    params = {k: obj[k] for k in OVERRIDABLE if obj.get(k) not in (None, "")}
    if isinstance(params.get("stop"), str):
        params["stop"] = [params["stop"]]
    params = _checked_overrides(file, where, params)
    return PromptRow(
        key=_key(source, prompt_id, text),
        text=text.strip(),
        category=str(category) if category is not None else None,
        source=source,
        params=params,
    )


def _checked_overrides(file: Path, where: str, params: dict[str, Any]) -> dict[str, Any]:
    """The overrides validated and typed (a CSV cell "0.5" becomes 0.5) by GenerationParams' rules."""
    from pydantic import ValidationError

    from tasks.generate.params import GenerationParams

    try:
        validated = GenerationParams(**params)
        return {k: getattr(validated, k) for k in params}
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DraftflowError(f"prompts file '{file}' {where}: {first['loc'][0]}: {first['msg']}") from None


def _table_rows(file: Path) -> list[dict[str, Any]]:
    if file.suffix == ".csv":
        with file.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle))
    import pyarrow.parquet as pq

    try:
        return pq.read_table(file).to_pylist()  # prompt files are small: one table is fine
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DraftflowError(f"prompts file '{file}' is not a readable Parquet file ({exc})") from None


def prompts_from_table(db: Database, category: str | None = None) -> list[PromptRow]:
    """Prompts stored in the database (every prompt a file ever brought in), optionally one category."""
    from sqlalchemy import select

    from storage.models import Prompt

    with db.session() as session:
        query = select(Prompt).order_by(Prompt.id)
        if category:
            query = query.where(Prompt.category == category)
        rows = [PromptRow(key=p.key, text=p.text, category=p.category, source=p.source) for p in session.scalars(query)]
    if not rows:
        raise DraftflowError("the prompts table is empty" + (f" for category '{category}'" if category else ""))
    return rows


def prompts_from_corpus(
    clean_dir: Location, count: int = 16, val_fraction: float = 0.05, words: int = 12
) -> tuple[list[PromptRow], str]:
    """Prompts about the user's corpus: the openings of documents held out from training (the
    validation split, by document hash), taken in turn from each source, the source as category.

    Returns the prompts and a line saying where they came from. When no document is held out (a
    corpus split by block), the openings of the first documents of each source serve.
    """
    from tasks.tokenize.packing import is_validation

    held_out: dict[str, list[tuple[str, str]]] = {}
    others: dict[str, list[tuple[str, str]]] = {}
    for batch in iter_batches(clean_dir, columns=["doc_id", "source", "text"], batch_size=2048):
        for doc_id, source, text in zip(
            *(batch.column(c).to_pylist() for c in ("doc_id", "source", "text")), strict=True
        ):
            pool = held_out if is_validation(doc_id, val_fraction) else others
            if len(pool.setdefault(source, [])) < count:
                pool[source].append((doc_id, text))
    from_held_out = any(held_out.values())
    if not from_held_out:
        held_out = others
    rows: list[PromptRow] = []
    used: set[str] = set()  # the documents the prompts came from
    # A corpus of few large documents (reference pages, books) holds out few of them: their later
    # paragraphs prompt too, after every document's own opening, so a night still has `count` prompts.
    queues = {source: _openings_in_turn(docs, words) for source, docs in sorted(held_out.items())}
    while len(rows) < count and any(queues.values()):
        for source, queue in queues.items():
            if queue and len(rows) < count:
                doc_id, opening = queue.pop(0)
                used.add(doc_id)
                rows.append(
                    PromptRow(key=_key(source, doc_id[:12], opening), text=opening, category=source, source=source)
                )
    if not rows:
        raise DraftflowError("the clean corpus has no documents to take prompts from: pass --prompts FILE")
    per_source = ", ".join(f"{s} {sum(r.source == s for r in rows)}" for s in sorted({r.source for r in rows}))
    noun = "document" if len(used) == 1 else "documents"
    documents = f"{len(used)} held-out {noun}" if from_held_out else f"{len(used)} {noun} (none is held out)"
    what = documents if len(rows) == len(used) else f"{len(rows)} paragraphs of {documents}"
    return rows, f"the openings of {what} of the corpus ({per_source})"


def _openings_in_turn(docs: list[tuple[str, str]], words: int) -> list[tuple[str, str]]:
    """(doc_id, opening): every document's opening first, then every document's second paragraph, ..."""
    per_doc = [[(doc_id, o) for o in paragraph_openings(text, words)] for doc_id, text in docs]
    ordered, seen = [], set()
    for rank in range(max((len(o) for o in per_doc), default=0)):
        for openings in per_doc:
            if rank < len(openings) and openings[rank][1] not in seen:
                seen.add(openings[rank][1])
                ordered.append(openings[rank])
    return ordered


def paragraph_openings(text: str, words: int = 12) -> list[str]:
    """The document's opening, then the opening of each later paragraph of at least `words` words
    (paragraphs are blank-line separated; in text with no blank lines, each line is one)."""
    blocks = re.split(r"\n\s*\n", text.strip())
    if len(blocks) == 1:
        blocks = text.strip().splitlines()
    first = opening_of(text, words)
    later = [opening_of(block, words) for block in blocks[1:] if len(block.split()) >= words]
    return [first, *(o for o in later if o not in first)]  # a short title runs into the next paragraph


def opening_of(text: str, words: int = 12) -> str:
    """A document's first sentence when it is short, else its first `words` words."""
    first = " ".join(text.split())
    sentence = re.match(r"^(.{20,200}?[.!?])\s", first + " ")
    if sentence and len(sentence.group(1).split()) <= 2 * words:
        return sentence.group(1)
    return " ".join(first.split(" ")[:words])
