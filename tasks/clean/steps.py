"""The per-document chain of the clean stage: normalize, language, quality, PII, exact and near dedup.

Each step either keeps a document or rejects it with a reason (datatrove's shape), and counts the
documents, bytes and seconds it saw and what it dropped.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tasks.clean.dedup import ExactDeduper, NearDeduper
from tasks.clean.language import identify
from tasks.clean.params import CleanParams
from tasks.clean.pii import scrub_pii
from tasks.clean.quality import first_failure, score_document, surely_too_many_words

# (reason, detail) of a rejection; a step returns None to keep the document
Verdict = tuple[str, str | None]
# (the raw row, the clean row or None, the rejection or None): what a stage writes for each document
Outcome = tuple[dict[str, Any], dict[str, Any] | None, Verdict | None]
STEPS = ("normalize", "language", "quality", "pii", "exact_dedup", "near_dedup")


# C0/C1 control characters except tab and newline, which carry layout.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


_TRAILING_WS = re.compile(r"[ \t]+\n")


_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str, fix_unicode: bool = True) -> str:
    """ftfy repair, NFC, no control characters, no trailing spaces, at most one blank line in a row."""
    if fix_unicode:
        text = _ftfy(text)
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_WS.sub("\n", text + "\n")
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _ftfy(text: str) -> str:
    import ftfy

    # datatrove's conservative settings: fix encoding mistakes, leave quotes, HTML and layout alone
    config = ftfy.TextFixerConfig(
        unescape_html=False,
        fix_latin_ligatures=False,
        fix_character_width=False,
        uncurl_quotes=False,
        fix_line_breaks=False,
        normalization=None,
        explain=False,
    )
    return ftfy.fix_text(text, config=config)


@dataclass
class StepStats:
    documents: int = 0
    bytes: int = 0
    seconds: float = 0.0
    dropped: Counter[str] = field(default_factory=Counter)


class Cleaner:
    """The per-document chain; each step returns (reason, detail) to reject, or None to go on."""

    def __init__(self, params: CleanParams) -> None:
        self.params = params
        self.steps = {name: StepStats() for name in STEPS}
        self.exact = ExactDeduper()
        self.near = NearDeduper(params.near_threshold, params.num_perm, params.shingle_words)

    def run(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, Verdict | None]:
        """(clean row, None) to keep, or (None, (reason, detail)) to reject."""
        doc: dict[str, Any] = {"text": row["text"]}
        verdict = self.run_steps(row, doc, STEPS)
        if verdict:
            return None, verdict
        return {**row, "text": doc["text"], "language": doc["language"], **doc["scores"]}, None

    def run_steps(self, row: dict[str, Any], doc: dict[str, Any], steps: Iterable[str]) -> Verdict | None:
        """Some of the steps, in order, on one document (the sharded clean runs them in two parts),
        counted per step; the first rejection's (reason, detail), or None."""
        for name in steps:
            stats = self.steps[name]
            started = time.perf_counter()
            stats.documents += 1
            stats.bytes += len(doc["text"].encode("utf-8"))
            verdict = getattr(self, f"_{name}")(row, doc)
            stats.seconds += time.perf_counter() - started
            if verdict:
                stats.dropped[verdict[0]] += 1
                return verdict
        return None

    def _normalize(self, row: dict[str, Any], doc: dict[str, Any]) -> Verdict | None:
        doc["text"] = normalize_text(doc["text"], self.params.fix_unicode)
        return ("empty", "no text after normalization") if not doc["text"] else None

    def _language(self, row: dict[str, Any], doc: dict[str, Any]) -> Verdict | None:
        doc["language"], doc["language_score"] = identify(doc["text"])
        t = self.params.for_source(row["source"])
        if t.allowed_languages and doc["language"] not in t.allowed_languages:
            return "language", f"{doc['language']} ({doc['language_score']:.2f}) not in {t.allowed_languages}"
        if doc["language_score"] < t.min_language_score:
            return "language", f"{doc['language']} probability {doc['language_score']:.2f} < {t.min_language_score}"
        return None

    def _quality(self, row: dict[str, Any], doc: dict[str, Any]) -> Verdict | None:
        thresholds = self.params.for_source(row["source"])
        early = surely_too_many_words(doc["text"], thresholds)  # a rejected row keeps no scores anyway
        if early:
            return early
        doc["scores"] = {**score_document(doc["text"]), "language_score": doc["language_score"]}
        return first_failure(doc["scores"], thresholds)

    def _pii(self, row: dict[str, Any], doc: dict[str, Any]) -> None:
        counts: Counter[str] = Counter()
        if self.params.scrub_pii:
            doc["text"], counts = scrub_pii(doc["text"], self.params.phone_regions)
        doc["scores"].update({f"pii_{kind}": counts.get(kind, 0) for kind in ("email", "phone", "ip")})
        return None

    def _exact_dedup(self, row: dict[str, Any], doc: dict[str, Any]) -> Verdict | None:
        first = self.exact.check(row["doc_id"], doc["text"]) if self.params.dedup_exact else None
        return ("duplicate", f"duplicate of {first}") if first else None

    def _near_dedup(self, row: dict[str, Any], doc: dict[str, Any]) -> Verdict | None:
        match = self.near.check(row["doc_id"], doc["text"]) if self.params.dedup_near else None
        return ("near_duplicate", f"near-duplicate of {match[0]} (Jaccard {match[1]:.2f})") if match else None

    def report(self) -> list[dict[str, Any]]:
        """One row per step: what a Prefect table artifact and the run summary show."""
        return [
            {
                "step": name,
                "documents": s.documents,
                "megabytes": round(s.bytes / 1e6, 3),
                "seconds": round(s.seconds, 3),
                "dropped": sum(s.dropped.values()),
                "reasons": ", ".join(f"{r} {n}" for r, n in s.dropped.most_common()),
            }
            for name, s in self.steps.items()
        ]
