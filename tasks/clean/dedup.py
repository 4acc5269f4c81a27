"""Deduplication: exact (hash of normalized text) and near-duplicate (MinHash LSH, then true Jaccard).

The first occurrence survives; a duplicate is rejected with a pointer to it. Near dedup compares
word 5-grams of the text as datatrove simplifies it (`simplify_text`). The near-duplicate
index holds the MinHash of every kept document plus its 32-bit shingle hashes, so an LSH candidate is
confirmed by the Jaccard similarity of the shingle sets, not the MinHash estimate.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
from datasketch import MinHash, MinHashLSH

from tasks.clean.punctuation import PUNCTUATION
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


_NUMBERS = re.compile(r"\d+([.,،٫⎖⎗⎘]\d+)?")  # \d: digits of any script, as datatrove's \p{Nd}
_NO_PUNCTUATION = str.maketrans(dict.fromkeys(PUNCTUATION, " "))
_SPACES = re.compile(r"\s+")


def simplify_text(text: str) -> str:
    """datatrove's `simplify_text` with its default settings, the view near dedup compares: lower case,
    every number as 0, punctuation as spaces, whitespace collapsed, diacritics removed. Two copies of a
    quote that differ only in quote marks, dashes or indentation simplify to the same text."""
    text = _NUMBERS.sub("0", text.lower()).translate(_NO_PUNCTUATION)
    text = _SPACES.sub(" ", text.strip())
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn").strip()


def shingles(text: str, n: int) -> list[bytes]:
    """Word n-grams of the simplified text (the whole text when it has fewer than n words)."""
    words = simplify_text(text).split(" ")
    if len(words) <= n:
        return [" ".join(words).encode()]
    return list({" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)})


def _hashes(items: list[bytes]) -> np.ndarray:
    """32-bit hashes of the shingles (MinHash's own hash width), unique and sorted."""
    return np.unique(
        np.fromiter(
            (int.from_bytes(hashlib.blake2b(s, digest_size=4).digest(), "little") for s in items),
            dtype=np.uint64,
            count=len(items),
        )
    )


def _identity(value: int) -> int:
    return value


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a.astype(np.uint64, copy=False), b.astype(np.uint64, copy=False), assume_unique=True).size
    return inter / (a.size + b.size - inter) if (a.size or b.size) else 1.0


class _BandIndex:
    """LSH banding over MinHash signatures, stored compactly.

    datasketch's MinHashLSH keeps a Python set per bucket (~8 KB per document at 22 bands); here a
    bucket holds a bare int (one document) or a list (several), about 2 KB per document. The band
    count and width still come from datasketch's optimizer.
    """

    def __init__(self, bands: int, rows: int) -> None:
        self.bands, self.rows = bands, rows
        self.tables: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]

    def keys(self, hashvalues: np.ndarray) -> list[int]:
        block = hashvalues[: self.bands * self.rows].reshape(self.bands, self.rows)
        return [hash(block[i].tobytes()) for i in range(self.bands)]

    def query(self, keys: list[int]) -> list[int]:
        found: set[int] = set()
        for table, key in zip(self.tables, keys, strict=True):
            bucket = table.get(key)
            if isinstance(bucket, int):
                found.add(bucket)
            elif bucket is not None:
                found.update(bucket)
        return sorted(found)  # first-kept order: ties resolve the same way every run

    def insert(self, keys: list[int], index: int) -> None:
        for table, key in zip(self.tables, keys, strict=True):
            bucket = table.get(key)
            if bucket is None:
                table[key] = index
            elif isinstance(bucket, int):
                table[key] = [bucket, index]
            else:
                bucket.append(index)


class NearDeduper:
    def __init__(self, threshold: float = 0.8, num_perm: int = 112, shingle_words: int = 5) -> None:
        self.threshold, self.num_perm, self.shingle_words = threshold, num_perm, shingle_words
        # Candidates come from a lower LSH threshold weighted against misses: each candidate is
        # confirmed by the true Jaccard below, so a false positive costs one comparison while a
        # false negative would keep a near duplicate (recall at Jaccard 0.8: 0.9998).
        params = MinHashLSH(threshold=max(0.3, threshold - 0.2), num_perm=num_perm, weights=(0.2, 0.8))
        self._index = _BandIndex(params.b, params.r)
        self._ids: list[str] = []
        self._shingles: list[np.ndarray] = []
        # MinHash draws its permutations from a seeded RNG on every construction (~35% of this
        # step's time); draw them once and hand them to each signature.
        template = MinHash(num_perm=num_perm)
        self._permutations, self._scheme = template.permutations, template.scheme

    def check(self, doc_id: str, text: str) -> tuple[str, float] | None:
        """(first doc_id, Jaccard) when this text nearly duplicates a kept one; else index it."""
        hashes = _hashes(shingles(text, self.shingle_words))
        # the shingles are hashed once; MinHash permutes those values instead of re-hashing with sha1
        signature = MinHash(
            num_perm=self.num_perm, hashfunc=_identity, permutations=self._permutations, scheme=self._scheme
        )
        signature.update_batch(hashes.tolist())
        keys = self._index.keys(signature.hashvalues)
        best: tuple[str, float] | None = None
        for candidate in self._index.query(keys):
            similarity = jaccard(hashes, self._shingles[candidate])
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (self._ids[candidate], similarity)
        if best is None:
            self._index.insert(keys, len(self._ids))
            self._ids.append(doc_id)
            self._shingles.append(hashes.astype(np.uint32))
        return best
