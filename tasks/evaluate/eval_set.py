"""The data home's evaluation set: held-out documents and prompts with fixed seeds, frozen on first use.

Versions are comparable only when they are measured on the same texts. The documents are picked
from the clean corpus among those the tokenize stage holds out of training (validation by document
hash), the lowest hashes of each source first, so the pick does not depend on the order of files;
the prompts are the night's prompts with the lowest key hashes. The set is written once, to
`evaluation/set.json` in the data home, and every later evaluation reads it back: a corpus that
grows, shrinks or changes does not move the yardstick. Delete the file to start a new one (the
versions evaluated on the old set are then evaluated again on the new one when compared).
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from storage.drafts import PromptRow
from storage.errors import DraftflowError
from storage.fingerprint import fingerprint
from storage.parquet_store import iter_batches
from storage.settings import Settings
from tasks.evaluate.params import EvalParams
from tasks.generate.stage import draft_seed
from tasks.review.feedback import SOURCE as EDITOR_SOURCE
from tasks.tokenize.packing import is_validation

SEED = 20_261_204  # the evaluation drafts' seeds derive from it, the prompt and the sample


@dataclass(frozen=True)
class EvalDocument:
    source: str
    doc_id: str
    text: str


@dataclass(frozen=True)
class EvalPrompt:
    key: str
    text: str
    category: str | None
    seeds: tuple[int, ...]


@dataclass
class EvalSet:
    documents: list[EvalDocument]
    prompts: list[EvalPrompt]
    max_new_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    held_out: bool = True  # False: the corpus was too small to hold documents out, they were trained on
    created_at: str = ""
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.fingerprint = fingerprint(
            [(d.source, d.doc_id, d.text) for d in self.documents],
            [(p.key, p.text, list(p.seeds)) for p in self.prompts],
            self.max_new_tokens,
            self.temperature,
            self.top_p,
        )[:16]

    @property
    def sources(self) -> list[str]:
        return sorted({d.source for d in self.documents})


def eval_set_path(settings: Settings) -> Path:
    return settings.home / "evaluation" / "set.json"


def load_eval_set(settings: Settings) -> EvalSet | None:
    path = eval_set_path(settings)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        return EvalSet(
            documents=[EvalDocument(**d) for d in raw["documents"]],
            prompts=[EvalPrompt(**(p | {"seeds": tuple(p["seeds"])})) for p in raw["prompts"]],
            max_new_tokens=raw["max_new_tokens"],
            temperature=raw["temperature"],
            top_p=raw["top_p"],
            held_out=raw["held_out"],
            created_at=raw.get("created_at", ""),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DraftflowError(f"the evaluation set {path} is damaged ({exc}): delete it to make a new one") from exc


def freeze_eval_set(
    settings: Settings,
    clean_dir: Path,
    prompts: Sequence[PromptRow],
    params: EvalParams,
    val_fraction: float,
) -> EvalSet:
    """The home's evaluation set: read back if it exists, else picked from this corpus and these prompts."""
    existing = load_eval_set(settings)
    if existing is not None:
        return existing
    documents, held_out = pick_documents(clean_dir, params.documents, params.max_bytes, val_fraction)
    if not documents:
        raise DraftflowError(f"no documents in '{clean_dir}' to evaluate on: the clean corpus is empty")
    if not prompts:
        raise DraftflowError("no prompts to evaluate with: generate drafts once first")
    picked = sorted(prompts, key=lambda p: fingerprint(p.key))[: params.prompts]
    eval_set = EvalSet(
        documents=documents,
        prompts=[
            EvalPrompt(p.key, p.text, p.category, tuple(draft_seed(SEED, p.key, i) for i in range(params.seeds)))
            for p in picked
        ],
        max_new_tokens=params.max_new_tokens,
        held_out=held_out,
        created_at=_now(),
    )
    path = eval_set_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.partial")  # a kill leaves debris that recovery removes
    staged.write_text(json.dumps(asdict(eval_set) | {"fingerprint": eval_set.fingerprint}, indent=1))
    os.replace(staged, path)  # a reader sees the whole set or none
    return eval_set


def pick_documents(clean_dir: Path, count: int, max_bytes: int, val_fraction: float) -> tuple[list[EvalDocument], bool]:
    """Up to `count` documents and `max_bytes` of text, taken from each source in turn, lowest hash first.

    Only documents the tokenize stage holds out are eligible; a corpus with none (too few documents
    to split by document) falls back to every document, and says so (False)."""
    held: dict[str, list[tuple[int, str, str]]] = {}
    every: dict[str, list[tuple[int, str, str]]] = {}
    for batch in iter_batches(clean_dir, columns=["doc_id", "source", "text"], batch_size=2048):
        for doc_id, source, text in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
            if source == EDITOR_SOURCE or not text or not text.strip():
                continue  # editors' approved drafts are the model's own words, not the domain's
            key = (-int(fingerprint(doc_id)[:12], 16), doc_id, text)  # a max-heap of the lowest hashes
            for target, eligible in ((held, is_validation(doc_id, val_fraction)), (every, True)):
                if eligible:
                    heap = target.setdefault(source, [])
                    (heapq.heappush if len(heap) < count else heapq.heappushpop)(heap, key)
    pool, held_out = (held, True) if held else (every, False)
    queues = {s: sorted(heap, reverse=True) for s, heap in sorted(pool.items())}
    per_document = max(1024, max_bytes // max(1, min(count, sum(len(q) for q in queues.values()))))
    picked: list[EvalDocument] = []
    used = 0
    while len(picked) < count and used < max_bytes and any(queues.values()):
        for source, queue in queues.items():
            if queue and len(picked) < count and used < max_bytes:
                _, doc_id, text = queue.pop(0)
                text = _cut(text, per_document)
                picked.append(EvalDocument(source, doc_id, text))
                used += len(text.encode())
    return picked, held_out


def _cut(text: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8, cut at a character boundary (whole characters only)."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def _now() -> str:
    from storage.models import utcnow

    return utcnow().isoformat(timespec="seconds")
