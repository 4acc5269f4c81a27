"""The guard against silent decimation: a source that loses more than `max_drop_share` of its documents
in cleaning is named, with its top reasons and the setting that would keep them."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from tasks.clean.params import CleanParams
from tasks.clean.quality import RULES

_DETAIL = re.compile(r"^\S+ (\S+) [<>] \S+$")  # "n_words 7 < 50": the score's value is the second token
_RULES = {reason: (kind, threshold) for reason, _score, kind, threshold in RULES}
# The profile whose rules were made for the text a reason stops most often.
_PROFILE_FOR = {
    "gopher_too_few_words": "short-form",
    "gopher_few_stop_words": "short-form",
    "fineweb_char_dup": "dialogue",
    "gopher_dup_lines": "dialogue",
    "gopher_dup_line_chars": "dialogue",
    "fineweb_short_lines": "long-form",
    "fineweb_line_punct": "long-form",
    "fineweb_list_like": "docs",
    "gopher_hashes": "docs",
    "gopher_bullet_lines": "docs",
    "gopher_non_alpha_words": "docs",
    "gopher_too_many_words": "long-form",
}


@dataclass
class SourceTally:
    """What cleaning did to one source: documents seen and kept, drops by reason, the failing values."""

    seen: int = 0
    kept: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kept: bool, reason: str | None = None, detail: str | None = None) -> None:
        self.seen += 1
        self.kept += kept
        if reason is None:
            return
        self.reasons[reason] += 1
        match = _DETAIL.match(detail or "")
        if match and reason in _RULES:
            try:
                value = float(match.group(1))
            except ValueError:
                return
            if not math.isnan(value):
                self.values.setdefault(reason, []).append(value)


def decimation_warnings(tallies: dict[str, SourceTally], params: CleanParams, profiles: dict[str, str]) -> list[str]:
    """One line per source that lost more than `params.max_drop_share` of its documents."""
    warnings = []
    for source, tally in sorted(tallies.items()):
        dropped = tally.seen - tally.kept
        if not tally.seen or dropped / tally.seen <= params.max_drop_share:
            continue
        top = ", ".join(f"{reason} {n:,}" for reason, n in tally.reasons.most_common(3))
        profile = profiles.get(source, "").split(" (")[0] or "web"
        warnings.append(
            f"source '{source}' lost {dropped / tally.seen:.0%} of its {tally.seen:,} documents in cleaning "
            f"({top}) with profile {profile}; {_remedy(source, tally, profile)}"
        )
    return warnings


def _remedy(source: str, tally: SourceTally, profile: str) -> str:
    """The settings that would keep what the top reason dropped."""
    reason = tally.reasons.most_common(1)[0][0]
    fixes = []
    better = _PROFILE_FOR.get(reason)
    if better and better != profile:
        snippet = json.dumps({"profiles": [{"source": source, "profile": better}]})
        fixes.append(
            f"clean it as {better} (`{source}=PATH:{better}` on the command line, or {snippet} in --clean-config)"
        )
    if reason in _RULES and tally.values.get(reason):
        kind, threshold = _RULES[reason]
        values = sorted(tally.values[reason])
        # the value that keeps 90% of what this rule dropped
        keep = values[int(0.1 * (len(values) - 1))] if kind == "min" else values[int(0.9 * (len(values) - 1))]
        shown = int(keep) if keep.is_integer() else float(f"{keep:.2g}")
        snippet = json.dumps({"per_source": [{"source": source, threshold: shown}]})
        fixes.append(f"set {threshold} to {shown} for it ({snippet} in --clean-config)")
    elif reason in ("duplicate", "near_duplicate"):
        fixes.append('turn deduplication off ("dedup_exact": false, or a higher "near_threshold"): they are copies')
    elif reason == "language":
        snippet = json.dumps({"per_source": [{"source": source, "allowed_languages": []}]})
        fixes.append(f"allow every language for it ({snippet} in --clean-config)")
    return "to keep them, " + ", or ".join(fixes) + "; --strict fails the run instead of this warning"
