"""Prompt files: plain lines (`#` comments skipped) or JSONL with `id`, `text`, optional `category`."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from storage.drafts import PromptRow
from storage.errors import DraftflowError
from storage.fingerprint import text_hash


def default_prompts_path() -> Path:
    return Path(str(resources.files("tasks") / "data" / "default_prompts.jsonl"))


def load_prompts(path: str | Path | None = None) -> list[PromptRow]:
    """Read a prompts file; any malformed line is a user error naming the file and line."""
    file = Path(path).expanduser() if path else default_prompts_path()
    if not file.is_file():
        raise DraftflowError(f"prompts file '{file}' does not exist")
    try:
        content = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DraftflowError(f"prompts file '{file}' is not UTF-8 text (byte {exc.start})") from None
    source = file.stem
    rows = _jsonl_prompts(file, content, source) if file.suffix == ".jsonl" else _line_prompts(content, source)
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
            rows.append(PromptRow(key=_key(source, text_hash(text)[:8], text), text=text,
                                  category=None, source=source))
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
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DraftflowError(f"prompts file '{file}' line {number}: needs a non-empty string field 'text'")
        prompt_id = str(obj.get("id", number))
        category = obj.get("category")
        rows.append(PromptRow(key=_key(source, prompt_id, text), text=text.strip(),
                              category=str(category) if category is not None else None, source=source))
    return rows
