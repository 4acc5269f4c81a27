"""Deduplication: exact (hash of normalized text) and near-duplicate (MinHash LSH, then true Jaccard).

The first occurrence survives; a duplicate is rejected with a pointer to it. The near-duplicate
index holds the MinHash of every kept document plus its shingle hashes (8 bytes each) so an LSH
candidate is confirmed by the true Jaccard similarity, not the estimate.
"""

from __future__ import annotations

import hashlib

import numpy as np
from datasketch import MinHash, MinHashLSH

from tasks.text import normalize_for_hash


class ExactDeduper:
    def __init__(self) -> None:
        self._first: dict[bytes, str] = {}  # 16-byte digest -> first doc_id

    def check(self, doc_id: str, text: str) -> str | None:
        """The doc_id this text duplicates, or None (and remember it as the first)."""
        key = hashlib.blake2b(normalize_for_hash(text).encode(), digest_size=16).digest()
        first = self._first.get(key)
        if first is None:
            self._first[key] = doc_id
        return first


def shingles(text: str, n: int) -> list[bytes]:
    """Word n-grams of the normalized text (the whole text when it has fewer than n words)."""
    words = normalize_for_hash(text).split(" ")
    if len(words) <= n:
        return [" ".join(words).encode()]
    return list({" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)})


def _hashes(items: list[bytes]) -> np.ndarray:
    return np.unique(np.fromiter((int.from_bytes(hashlib.blake2b(s, digest_size=8).digest(), "little")
                                  for s in items), dtype=np.uint64, count=len(items)))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter) if (a.size or b.size) else 1.0


class NearDeduper:
    def __init__(self, threshold: float = 0.8, num_perm: int = 112, shingle_words: int = 5) -> None:
        self.threshold, self.num_perm, self.shingle_words = threshold, num_perm, shingle_words
        # Candidates come from a lower LSH threshold weighted against misses: each candidate is
        # confirmed by the true Jaccard below, so a false positive costs one comparison while a
        # false negative would keep a near duplicate.
        self._lsh = MinHashLSH(threshold=max(0.3, threshold - 0.2), num_perm=num_perm, weights=(0.2, 0.8))
        self._shingles: dict[str, np.ndarray] = {}

    def check(self, doc_id: str, text: str) -> tuple[str, float] | None:
        """(first doc_id, Jaccard) when this text nearly duplicates a kept one; else index it."""
        grams = shingles(text, self.shingle_words)
        signature = MinHash(num_perm=self.num_perm)
        signature.update_batch(grams)
        hashes = _hashes(grams)
        best: tuple[str, float] | None = None
        for candidate in self._lsh.query(signature):
            similarity = jaccard(hashes, self._shingles[candidate])
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (candidate, similarity)
        if best is None and doc_id not in self._shingles:
            self._lsh.insert(doc_id, signature)
            self._shingles[doc_id] = hashes
        return best
