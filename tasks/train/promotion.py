"""The registry's promotion rule: a new version becomes "latest" unless it is measurably worse.

When the new version and the current latest share a tokenizer, both are evaluated on the same
validation blocks, so the comparison is fair; perplexities over different tokenizers measure
different things, so a tokenizer change is promoted with a note instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from storage.registry import ModelInfo


def decide_promotion(
    candidate_val_loss: float,
    tokenizer_id: str,
    latest: ModelInfo | None,
    evaluate_latest: Callable[[str], float],
    tolerance: float,
) -> tuple[bool, str]:
    """(promote?, the reason in one line)."""
    if latest is None:
        return True, "first model version"
    if latest.tokenizer_id != tokenizer_id:
        return True, f"tokenizer differs from {latest.name}: perplexities not comparable, promoted"
    incumbent = math.exp(min(evaluate_latest(latest.path), 50))
    candidate = math.exp(min(candidate_val_loss, 50))
    limit = incumbent * (1 + tolerance)
    verdict = "promoted" if candidate <= limit else "kept but not promoted"
    return candidate <= limit, (
        f"{verdict}: perplexity {candidate:.2f} vs {incumbent:.2f} for {latest.name} "
        f"on the same validation blocks (tolerance {tolerance:.0%})"
    )
