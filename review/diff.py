"""A word diff of the editor's text against the model's, as (op, text) pieces for the template.

The pieces are plain text; the template escapes each one and wraps it in <ins>/<del>, so no
HTML is ever assembled from draft text here.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Literal

Op = Literal["same", "ins", "del"]
_TOKENS = re.compile(r"\s+|\S+")  # words and the whitespace between them, so the text reads as written
MAX_TOKENS = 20_000  # SequenceMatcher is quadratic at worst; past this, show the texts as replaced


def word_diff(before: str, after: str) -> list[tuple[Op, str]]:
    """Pieces that read as `after`, with what `before` had instead marked as deleted."""
    old, new = _TOKENS.findall(before), _TOKENS.findall(after)
    if before == after:
        return [("same", after)] if after else []
    if len(old) + len(new) > MAX_TOKENS:
        return [("del", before), ("ins", after)]
    pieces: list[tuple[Op, str]] = []
    matcher = SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            _append(pieces, "same", "".join(new[j1:j2]))
            continue
        if tag in ("delete", "replace"):
            _append(pieces, "del", "".join(old[i1:i2]))
        if tag in ("insert", "replace"):
            _append(pieces, "ins", "".join(new[j1:j2]))
    return pieces


def _append(pieces: list[tuple[Op, str]], op: Op, text: str) -> None:
    if not text:
        return
    if pieces and pieces[-1][0] == op:
        pieces[-1] = (op, pieces[-1][1] + text)
    else:
        pieces.append((op, text))
