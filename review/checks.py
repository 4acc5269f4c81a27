"""The draft checks' scores (tasks.review.checks) as rows for the review screen.

Scores are whatever the checks stored: a draft queued without a corpus index has no originality
scores, so every row is optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CheckRow:
    label: str
    value: str
    warn: bool = False  # shown highlighted: the value is what got the draft flagged, or close to it
    limit: str = ""  # the threshold that flags it, as the draft was checked


def check_rows(scores: dict[str, Any], flags: list[str]) -> list[CheckRow]:
    from tasks.review.recheck import check_params  # the thresholds stored with the scores, else the defaults

    limits = check_params(scores)
    rows: list[CheckRow] = []
    share = scores.get("copied_8gram_share")
    if share is not None:
        rows.append(
            CheckRow(
                "Originality (8-word spans not in the corpus)", f"{(1 - float(share)) * 100:.1f} %", "copied" in flags
            )  # reported for context: the copied flag comes from the two rows below
        )
    share13 = scores.get("copied_13gram_share")
    if share13 is not None:
        rows.append(
            CheckRow(
                "Copied 13-word spans",
                f"{float(share13) * 100:.1f} %",
                "copied" in flags,
                f"above {limits.max_copied_13gram_share * 100:.0f} %",
            )
        )
    longest = scores.get("longest_copied_words")
    if longest is not None:
        rows.append(
            CheckRow(
                "Longest copied span", f"{int(longest)} words", "copied" in flags, f"{limits.max_copied_span} words"
            )
        )
    repetition = scores.get("repetition")
    if repetition is not None:
        rows.append(
            CheckRow(
                "Repetition (repeated 3-word spans)",
                f"{float(repetition) * 100:.1f} %",
                "repetitive" in flags,
                f"above {limits.max_repetition * 100:.0f} %",
            )
        )
    pii = {kind: scores.get(f"pii_{kind}") for kind in ("email", "phone", "ip")}
    if any(v is not None for v in pii.values()):
        found = ", ".join(f"{n} {kind}" for kind, n in pii.items() if n) or "none"
        rows.append(CheckRow("Personal data found", found, "pii" in flags, "any" if limits.flag_pii else "off"))
    if scores.get("echo_share") is not None:
        rows.append(
            CheckRow(
                "Echo of the prompt",
                f"{float(scores['echo_share']) * 100:.1f} %",
                "echo" in flags,
                f"above {limits.max_echo_share * 100:.0f} %",
            )
        )
    if scores.get("n_words") is not None:
        rows.append(CheckRow("Words", str(scores["n_words"]), "too_short" in flags))
    if scores.get("new_words") is not None:
        rows.append(
            CheckRow(
                "New words (not the prompt)",
                str(scores["new_words"]),
                "too_short" in flags,
                f"below {limits.min_new_words}",
            )
        )
    return rows


def draft_flags(flags_column: str | None, scores: dict[str, Any]) -> list[str]:
    """The draft's flags: the indexed column, else the list the checks stored in the scores."""
    flags = [f for f in (flags_column or "").split(",") if f]
    return flags or [str(f) for f in scores.get("flags") or []]
