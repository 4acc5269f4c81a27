"""Re-run a draft's checks on an editor's saved text: an edit can add PII or remove a copied span.

The checks are the ones the draft was queued with (tasks.review.checks.check_draft) with the
thresholds stored in its scores when it was queued (older drafts: today's defaults). What cannot
be re-checked here is kept, not silently cleared: without the corpus n-gram index the `copied`
flag and its scores stay as they were, and without the stored thresholds the blocklist flags stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tasks.review.checks import NgramIndex, check_draft
from tasks.review.params import CheckParams

COPIED_SCORES = ("copied_8gram_share", "copied_13gram_share", "longest_copied_words")


@dataclass(frozen=True)
class Recheck:
    scores: dict[str, Any]
    flags: list[str]
    appeared: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.appeared or self.cleared)

    def note(self) -> str:
        """For the history: `flag pii appeared; flag copied cleared`."""
        parts = [f"flag {f} appeared" for f in self.appeared] + [f"flag {f} cleared" for f in self.cleared]
        return "; ".join(parts) or "no flag changed"


def check_params(scores: dict[str, Any]) -> CheckParams:
    """The thresholds the draft was checked with (stored at queue time), else the defaults."""
    stored = scores.get("thresholds")
    if isinstance(stored, dict):
        try:
            return CheckParams.model_validate(stored)
        except ValidationError:
            pass  # thresholds from another release of the checks: today's defaults judge the edit
    return CheckParams()


def recheck(text: str, prompt: str, scores: dict[str, Any], flags: list[str], index: NgramIndex | None) -> Recheck:
    """The checks on `text`; `scores`/`flags` are the draft's current ones."""
    params = check_params(scores)
    new_scores, new_flags = check_draft(text, index, params, prompt=prompt)
    if index is None and "copied" in flags:
        new_flags.append("copied")
    if index is None:
        new_scores.update({key: scores[key] for key in COPIED_SCORES if key in scores})
    if "thresholds" not in scores:
        new_flags += [f for f in flags if f.startswith("blocklist:") and f not in new_flags]
    merged = {**scores, **new_scores, "flags": new_flags}
    return Recheck(
        scores=merged,
        flags=new_flags,
        appeared=[f for f in new_flags if f not in flags],
        cleared=[f for f in flags if f not in new_flags],
    )
