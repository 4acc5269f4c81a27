"""Checks on each generated draft, run before an editor sees it; flags route risky drafts aside.

Originality: the share of the draft's word 8- and 13-grams that occur verbatim in the training
corpus, and the longest copied span (generated text that copies its sources is a copyright risk).
The corpus n-gram index is built once per corpus version and stored beside the clean corpus.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from storage.parquet_store import iter_batches
from tasks.clean.pii import scrub_pii
from tasks.review.params import CheckParams

_WORD = re.compile(r"\w+")
NGRAM_SIZES = (8, 13)


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _gram_hashes(words: list[str], n: int) -> np.ndarray:
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    grams = (" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1))
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(g, digest_size=8).digest(), "little") for g in grams),
        dtype=np.uint64,
        count=len(words) - n + 1,
    )


class NgramIndex:
    """Sorted unique hashes of every word n-gram of the corpus, one array per n (8 bytes a gram)."""

    def __init__(self, arrays: dict[int, np.ndarray]) -> None:
        self.arrays = arrays

    @classmethod
    def build(cls, clean_dir: Path) -> NgramIndex:
        parts: dict[int, list[np.ndarray]] = {n: [] for n in NGRAM_SIZES}
        for batch in iter_batches(clean_dir, columns=["text"], batch_size=2048):
            for text in batch.column("text").to_pylist():
                words = words_of(text)
                for n in NGRAM_SIZES:
                    parts[n].append(_gram_hashes(words, n))
            for n in NGRAM_SIZES:  # dedupe as we go: memory follows unique n-grams, not corpus size
                parts[n] = [np.unique(np.concatenate(parts[n]))] if parts[n] else []
        return cls({n: (p[0] if p else np.empty(0, dtype=np.uint64)) for n, p in parts.items()})

    @classmethod
    def load(cls, cache_root: Path, fingerprint: str) -> NgramIndex | None:
        """The stored index of this corpus version, or None when it was never built (readers never build)."""
        folder = cache_root / fingerprint
        if not (folder / "meta.json").is_file():
            return None
        return cls({n: np.load(folder / f"n{n}.npy") for n in NGRAM_SIZES})

    @classmethod
    def load_or_build(cls, clean_dir: Path, fingerprint: str, cache_root: Path) -> NgramIndex:
        """The index of this corpus version, built on first use and then read from disk."""
        stored = cls.load(cache_root, fingerprint)
        if stored is not None:
            return stored
        folder = cache_root / fingerprint
        index = cls.build(clean_dir)
        tmp = cache_root / f".{fingerprint}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for n, array in index.arrays.items():
            np.save(tmp / f"n{n}.npy", array)
        (tmp / "meta.json").write_text(json.dumps({n: int(a.size) for n, a in index.arrays.items()}))
        if not folder.exists():
            tmp.rename(folder)
        return index

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def originality(self, text: str) -> dict[str, float | int]:
        words = words_of(text)
        scores: dict[str, float | int] = {}
        for n, found in self._found(words).items():
            scores[f"copied_{n}gram_share"] = round(float(found.mean()), 4) if found.size else 0.0
        scores["longest_copied_words"] = _longest_run(self._covered(words))
        return scores

    def copied_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets in `text` of each maximal run of words that an n-gram found in
        the corpus covers (the runs `longest_copied_words` measures), sorted and never overlapping."""
        lowered = text.lower()
        # Lowering keeps offsets unless a character changes length ("İ" becomes two): then words are found
        # in the original and lowered one by one, which can split such a word differently from words_of.
        matches = list(_WORD.finditer(lowered if len(lowered) == len(text) else text))
        covered = self._covered([m.group(0).lower() for m in matches])
        edges = np.diff(np.concatenate([[0], covered.astype(np.int8), [0]]))
        return [
            (matches[first].start(), matches[last - 1].end())
            for first, last in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)
        ]

    def _found(self, words: list[str]) -> dict[int, np.ndarray]:
        """Per n: whether each of the words' n-grams is in the corpus."""
        return {n: _contains(self.arrays[n], _gram_hashes(words, n)) for n in NGRAM_SIZES}

    def _covered(self, words: list[str]) -> np.ndarray:
        """Per word: whether some n-gram found in the corpus covers it."""
        covered = np.zeros(len(words) + 1, dtype=np.int32)  # +1/-1 marks: covered spans by prefix sum
        for n, found in self._found(words).items():
            starts = np.flatnonzero(found)
            np.add.at(covered, starts, 1)
            np.add.at(covered, starts + n, -1)
        return np.cumsum(covered)[: len(words)] > 0


def _contains(sorted_hashes: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Membership by binary search in the sorted index: O(m log n), no re-sorting per draft."""
    if not queries.size or not sorted_hashes.size:
        return np.zeros(queries.size, dtype=bool)
    pos = np.searchsorted(sorted_hashes, queries).clip(max=sorted_hashes.size - 1)
    return sorted_hashes[pos] == queries


def _longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True."""
    if not flags.any():
        return 0
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def repetition(words: list[str], n: int = 3) -> float:
    """Share of the draft's n-grams that repeat an earlier one (a degenerate loop scores near 1)."""
    if len(words) < n + 1:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return round(1 - len(set(grams)) / len(grams), 4)


def check_draft(
    text: str, index: NgramIndex | None, params: CheckParams, prompt: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """(scores, flags) for one draft; no flags means it goes to the normal queue.

    The draft is its prompt followed by what the model wrote: length, echo and originality judge the
    model's part (a prompt taken from the corpus is not a copy the model made); PII and the blocklist
    judge the whole text, as the editor will read it.
    """
    written = text[len(prompt) :] if prompt and text.startswith(prompt) else text
    words, new_words = words_of(text), words_of(written)
    _, pii = scrub_pii(text)
    lowered = text.lower()
    scores: dict[str, Any] = {
        "n_words": len(words),
        "new_words": len(new_words),
        "echo_share": echo_share(new_words, words_of(prompt)),
        "repetition": repetition(words),
        **{f"pii_{kind}": pii.get(kind, 0) for kind in ("email", "phone", "ip")},
        **(index.originality(written) if index is not None else {}),
    }
    flags = []
    if index is not None and (
        scores["longest_copied_words"] >= params.max_copied_span
        or scores["copied_13gram_share"] > params.max_copied_13gram_share
    ):
        flags.append("copied")
    if scores["repetition"] > params.max_repetition:
        flags.append("repetitive")
    if params.flag_pii and any(pii.values()):
        flags.append("pii")
    flags += [
        f"blocklist:{term}"
        for term in params.blocklist
        if re.search(rf"(?<!\w){re.escape(term.lower())}(?!\w)", lowered)
    ]
    if scores["echo_share"] > params.max_echo_share:
        flags.append("echo")  # it adds nothing (share 1.0), or repeats its prompt
    if len(new_words) < params.min_new_words:
        flags.append("too_short")
    return scores, flags


def echo_share(written: list[str], prompt: list[str], n: int = 3) -> float:
    """Share of the written words' n-grams that are n-grams of the prompt (1.0: it only repeats it)."""
    if not written:
        return 1.0
    size = min(n, len(written))
    grams = [tuple(written[i : i + size]) for i in range(len(written) - size + 1)]
    source = {tuple(prompt[i : i + size]) for i in range(len(prompt) - size + 1)}
    return round(sum(g in source for g in grams) / len(grams), 4)
