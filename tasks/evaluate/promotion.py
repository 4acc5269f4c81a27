"""Promotion by evaluation: bits per byte decides, the draft metrics can veto.

A version is promoted ("latest", what the next night continues from) unless its bits per byte on
the fixed held-out split is worse than the current latest's by more than the tolerance (a wider
one for a preference-tuned version: learning what editors prefer costs some likelihood of the
corpus, and that is the point of it), or its
evaluation drafts repeat, echo their prompts or come out empty clearly more often than the
latest's: a model can fit the corpus better and still write worse drafts (a degenerate loop has a
low loss), and editors see the drafts, not the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.evaluate.params import EvalParams


@dataclass(frozen=True)
class Scored:
    """What promotion compares of one version."""

    name: str
    bits_per_byte: float | None
    metrics: dict[str, Any]
    preference_tuned: bool = False  # made by DPO: judged with preference_bpb_tolerance


GUARDS = (
    ("repetition", "max_repetition_rise", "repeats itself more"),
    ("echo_rate", "max_echo_rise", "echoes its prompts more"),
    ("empty_rate", "max_empty_rise", "writes empty drafts more"),
)


def decide(candidate: Scored, incumbent: Scored | None, params: EvalParams) -> tuple[bool, str]:
    """(promote?, the reason in one line, with the figures)."""
    if incumbent is None:
        return True, f"promoted: first evaluated version ({_bpb(candidate)} bits per byte)"
    vetoes = []
    for key, limit_name, says in GUARDS:
        new, old = candidate.metrics.get(key), incumbent.metrics.get(key)
        limit = getattr(params, limit_name)
        if new is not None and old is not None and new - old > limit:
            vetoes.append(f"{says} ({key} {new:.3f} vs {old:.3f}, more than +{limit:g})")
    comparison = f"{_bpb(candidate)} vs {_bpb(incumbent)} bits per byte for {incumbent.name}"
    tolerance = params.preference_bpb_tolerance if candidate.preference_tuned else params.bpb_tolerance
    old_bpb, new_bpb = incumbent.bits_per_byte, candidate.bits_per_byte
    if new_bpb is not None and old_bpb is not None and new_bpb > old_bpb * (1 + tolerance):
        vetoes.insert(0, f"fits the held-out text worse ({comparison}, tolerance {tolerance:.0%})")
    if vetoes:
        return False, "kept but not promoted: it " + "; it ".join(vetoes)
    return True, f"promoted: {comparison} on the fixed held-out split, draft metrics within the guards"


def _bpb(s: Scored) -> str:
    return "-" if s.bits_per_byte is None else f"{s.bits_per_byte:.4f}"
