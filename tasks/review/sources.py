"""Sources for fact-checking: the corpus passages closest to a draft, and the draft's claims they lack.

The clean corpus is cut into passages (paragraphs packed up to `PASSAGE_WORDS` words; a longer
paragraph is cut into windows that overlap by `OVERLAP_WORDS`, so any shorter run of words lies whole
in one window) and indexed with BM25 (`bm25s`: a sparse matrix of precomputed term scores, so a
lookup sums a few columns instead of scoring every passage). Like the n-gram index, it is built once
per corpus version and stored beside it, `<home>/corpus/sources-index/<fingerprint>/`; the editors'
desk only loads it (`sources_index`), never builds it on a page view.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import bm25s  # type: ignore[import-untyped]
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from bm25s.tokenization import Tokenizer  # type: ignore[import-untyped]

from storage.parquet_store import PathOrURL, iter_batches, part_files
from storage.settings import Settings
from tasks.review.checks import NGRAM_SIZES, NgramIndex, words_of

PASSAGE_WORDS = 120
OVERLAP_WORDS = 30  # > the default 'copied' span (20 words): a copied span fits whole in some passage
NGRAM_INDEX_DIR = "ngram-index"
SOURCES_INDEX_DIR = "sources-index"
_WORD = re.compile(r"\w+")  # the draft checks' words: passage offsets count the same words
TERM_PATTERN = r"(?u)\b\w\w+\b"  # BM25 terms: bm25s's default (one-letter words carry no topic)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_TRAILING = re.compile(r"[^\w\s]*")
_CANDIDATES = 20  # BM25 candidates checked word by word for a verbatim span
_PASSAGE_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("title", pa.string()),
        pa.field("start", pa.int64()),
        pa.field("end", pa.int64()),
        pa.field("text", pa.large_string()),
    ]
)


@dataclass(frozen=True)
class Passage:
    """A piece of one corpus document; `start`/`end` are its character offsets in the document's text."""

    doc_id: str
    text: str
    score: float
    source: str | None = None
    title: str | None = None
    start: int = 0
    end: int = 0


def passage_spans(text: str, max_words: int = PASSAGE_WORDS, overlap: int = OVERLAP_WORDS) -> list[tuple[int, int]]:
    """(start, end) character offsets of the passages of one document, in order."""
    words = [m.span() for m in _WORD.finditer(text)]
    if not words:
        return []
    starts = [start for start, _ in words]
    # the first word of each paragraph but the first: a passage prefers to end just before one
    breaks = sorted({bisect_right(starts, m.end() - 1) for m in _BLANK_LINE.finditer(text)} - {0, len(words)})
    spans, first = [], 0
    while first < len(words):
        last = min(first + max_words, len(words))
        following = last
        if last < len(words):
            j = bisect_right(breaks, last) - 1
            if j >= 0 and breaks[j] > first + max_words // 2:
                last = following = breaks[j]  # ends with a paragraph: the next passage starts the next one
            else:
                following = last - overlap  # cut inside a paragraph: windows overlap
        end = _TRAILING.match(text, words[last - 1][1])  # with the full stop or bracket that ends it
        spans.append((words[first][0], end.end() if end else words[last - 1][1]))
        first = following
    return spans


class SourcesIndex:
    """BM25 over the corpus passages; `passages` holds each passage's document, offsets and text."""

    def __init__(self, bm25: Any, passages: pa.Table) -> None:
        self.bm25 = bm25
        self.passages = passages
        self.vocab: dict[str, int] = bm25.vocab_dict

    @classmethod
    def build(cls, clean_dir: PathOrURL) -> SourcesIndex:
        """Index the clean corpus, streamed in record batches: memory holds the passages (Arrow buffers)
        and their term ids, never the corpus as Python rows."""
        tokenizer = Tokenizer(stopwords="english", splitter=TERM_PATTERN)
        term_ids: list[list[int]] = []
        batches = []
        for batch in iter_batches(clean_dir, columns=["doc_id", "source", "title", "text"], batch_size=512):
            rows: dict[str, list[Any]] = {name: [] for name in _PASSAGE_SCHEMA.names}
            for doc in batch.to_pylist():
                for start, end in passage_spans(doc["text"]):
                    for name, value in (("start", start), ("end", end), ("text", doc["text"][start:end])):
                        rows[name].append(value)
                    for name in ("doc_id", "source", "title"):
                        rows[name].append(doc[name])
            # the title is indexed with each passage: it names the topic the passage may not repeat
            indexed = [f"{title or ''}\n{text}" for title, text in zip(rows["title"], rows["text"], strict=True)]
            term_ids += tokenizer.streaming_tokenize(indexed, update_vocab=True)
            batches.append(pa.RecordBatch.from_pydict(rows, schema=_PASSAGE_SCHEMA))
        bm25 = bm25s.BM25()
        if term_ids:
            bm25.index((term_ids, tokenizer.word_to_id), show_progress=False)
        else:  # an empty corpus: an index that finds nothing
            bm25.index(([[0]], {"": 0}), show_progress=False)
        return cls(bm25, pa.Table.from_batches(batches, schema=_PASSAGE_SCHEMA))

    @classmethod
    def load(cls, cache_root: Path, fingerprint: str) -> SourcesIndex | None:
        """The stored index of this corpus version, or None when it was never built. Arrays and passages
        are memory-mapped: loading costs little more than reading the vocabulary."""
        folder = cache_root / fingerprint
        if not is_built(cache_root, fingerprint):
            return None
        bm25 = bm25s.BM25.load(str(folder / "bm25"), mmap=True, load_vocab=True, show_progress=False, verbosity=0)
        passages = pa.ipc.open_file(pa.memory_map(str(folder / "passages.arrow"))).read_all()
        return cls(bm25, passages)

    @classmethod
    def load_or_build(cls, clean_dir: PathOrURL, fingerprint: str, cache_root: Path) -> SourcesIndex:
        """The index of this corpus version, built on first use and then read from disk."""
        stored = cls.load(cache_root, fingerprint)
        if stored is not None:
            return stored
        index = cls.build(clean_dir)
        index.save(cache_root, fingerprint)
        return index

    def save(self, cache_root: Path, fingerprint: str) -> None:
        """Store under `<cache_root>/<fingerprint>/`, written into a temporary folder and renamed into
        place: a reader sees a whole index or none, and of two concurrent builders the first one wins."""
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = cache_root / f".{fingerprint}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.bm25.save(str(tmp / "bm25"), show_progress=False)
            with pa.ipc.new_file(str(tmp / "passages.arrow"), _PASSAGE_SCHEMA) as out:
                out.write_table(self.passages)
            meta = {"passages": self.passages.num_rows, "terms": len(self.vocab), "bm25s": bm25s.__version__}
            (tmp / "meta.json").write_text(json.dumps(meta))
            if not (cache_root / fingerprint).exists():
                tmp.rename(cache_root / fingerprint)
        except OSError:
            if not is_built(cache_root, fingerprint):
                raise  # not a lost race with another builder
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @property
    def nbytes(self) -> int:
        """Bytes of the term-score matrix and the passages (what the stored index holds, less the vocabulary)."""
        matrix = sum(np.asarray(self.bm25.scores[key]).nbytes for key in ("data", "indices", "indptr"))
        return int(matrix + self.passages.nbytes)

    def term_ids(self, text: str) -> list[int]:
        """The indexed terms of a text, each once (a term repeated in a draft is not more relevant)."""
        return sorted({self.vocab[w] for w in re.findall(TERM_PATTERN, text.lower()) if w in self.vocab})

    def scores(self, text: str) -> np.ndarray:
        """The BM25 score of every passage for `text` as the query."""
        ids = self.term_ids(text)
        if not ids:
            return np.zeros(self.passages.num_rows, dtype=np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids))

    def closest(self, text: str, k: int = 3) -> list[Passage]:
        """The k passages that best match the text (BM25), best first; a passage repeated word for word
        elsewhere in the corpus is listed once; passages that share no term with the text are left out."""
        found, seen = [], set()
        for passage in self._top(text, 3 * k):
            if passage.text not in seen:
                seen.add(passage.text)
                found.append(passage)
        return found[:k]

    def containing(self, span: str) -> Passage | None:
        """The best-scoring passage that holds the span's words verbatim (case-insensitive, punctuation
        and spacing ignored), or None. A span longer than `OVERLAP_WORDS` can cross from one passage into
        the next; then the passage that holds the longest opening of the span, at least
        `NGRAM_SIZES[0]` words, is returned, so a copied span still leads to its document."""
        wanted = words_of(span)
        if not wanted:
            return None
        best: tuple[int, Passage] | None = None
        for passage in self._top(span, _CANDIDATES):
            have = f" {' '.join(words_of(passage.text))} "
            held = _longest_held_prefix(wanted, have)
            if held == len(wanted):
                return passage
            if held >= min(NGRAM_SIZES[0], len(wanted)) and (best is None or held > best[0]):
                best = (held, passage)
        return best[1] if best else None

    def _top(self, text: str, k: int) -> Iterator[Passage]:
        scores = self.scores(text)
        k = min(k, scores.size)
        if not k:
            return
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[scores[top] > 0]
        rows = self.passages.take(pa.array(top, type=pa.int64())).to_pylist()
        for row, i in zip(rows, top, strict=True):
            yield Passage(score=float(scores[i]), **row)


def _longest_held_prefix(wanted: list[str], have: str) -> int:
    """How many of the first words of `wanted` appear in a row in `have` (words joined and padded by
    spaces). Holding n words implies holding fewer: a binary search."""
    lo, hi = 0, len(wanted)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if f" {' '.join(wanted[:mid])} " in have:
            lo = mid
        else:
            hi = mid - 1
    return lo


def is_built(cache_root: Path, fingerprint: str) -> bool:
    return (cache_root / fingerprint / "meta.json").is_file()


def ngram_cache_root(settings: Settings) -> Path:
    """Indexes stay in the local home even when the corpus lives at a URL: they are read per draft."""
    return settings.home / "corpus" / NGRAM_INDEX_DIR


def sources_cache_root(settings: Settings) -> Path:
    return settings.home / "corpus" / SOURCES_INDEX_DIR


# --- claims -------------------------------------------------------------------------------------------

_UNITS = (
    r"%|percent\b|per\s?cent\b|(?:thousand|million|billion|trillion)\b|"
    r"(?:[kmgt]b|bytes?|ms|km|kg|mm|cm|mph|[kmg]?hz|px|bn|st|nd|rd|th|x)\b"
)
# A number: an optional currency sign, digits with thousands commas or none, decimals or a dotted
# version, then a unit written against it or after one space. Not the digits of a word ("utf8",
# "x86_64"), nor of a hyphenated name ("GPT-2", "utf-8").
_NUMBER = re.compile(
    rf"(?<![\w.])(?<![A-Za-z]-)(?P<currency>[$€£¥]\s?)?(?P<value>\d{{1,3}}(?:,\d{{3}})+|\d+)(?P<decimals>(?:\.\d+)*)"
    rf"(?:\s?(?:{_UNITS}))?(?!\w)",
    re.IGNORECASE,
)
_NAME_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_POSSESSIVE = re.compile(r"(?:['’]s?|[-'’])$")
# Joins capitalised words into one name: "Bank of England", "Ludwig van Beethoven".
_NAME_LINKS = {"of", "de", "da", "del", "der", "di", "du", "la", "le", "van", "von", "bin", "al"}
_SENTENCE_END = ".!?:;\n"
_OPENERS = "\"'“‘([*#>•-–— \t\r"  # between a sentence end and its first word
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "e.g", "i.e", "etc", "no", "fig", "cf"}
# Words capitalised because they open a sentence or a heading, which are no names when they are
# the first word of a longer capitalised run ("The Python Software Foundation").
_STARTER_WORDS = """a an the this that these those there here it its in on at by for from to of with without as
    and but or nor so yet if when while after before since because although though however
    therefore thus then also meanwhile moreover furthermore instead still once now today yesterday
    tomorrow finally first second third next last some many most all each every both few several
    no not any such his her their our your my we you he she they i what which who whom whose where
    why how yes please note see use is are was were be do does did can could will would should may
    might must later earlier soon eventually recently initially originally usually often sometimes
    afterwards besides nevertheless nonetheless indeed perhaps maybe only even just unlike like despite
    during under over between among through about around above below across against along behind
    beyond near within upon toward towards until unless whether whereas other another one two three
    much more less own same thanks according every overall unfortunately fortunately clearly"""
SENTENCE_STARTERS = frozenset(_STARTER_WORDS.split())


@dataclass(frozen=True)
class Claim:
    """A checkable statement in a draft: a number or a name, at `start:end` of the draft's text."""

    start: int
    end: int
    text: str
    kind: str  # "number" | "name"


def normalise_number(match: re.Match[str]) -> str:
    """ "1,000" and "1000" alike, "3.50" as "3.5"; a dotted version ("3.12.1") as written."""
    value = match.group("value").replace(",", "") + match.group("decimals")
    if value.count(".") == 1:
        value = value.rstrip("0").rstrip(".")
    return value


def number_claims(text: str) -> list[Claim]:
    return [Claim(m.start(), m.end(), m.group(0), "number") for m in _NUMBER.finditer(text)]


def name_claims(text: str) -> list[Claim]:
    """Capitalised words and runs of them ("Ada Lovelace", "Bank of England"), not counting a single
    capitalised word that opens a sentence, line or heading, or "I"."""
    claims: list[Claim] = []
    run: list[re.Match[str]] = []
    for match in [*_NAME_WORD.finditer(text), None]:
        if match is not None and _continues(text, run, match):
            run.append(match)
            continue
        claims += _name_of(text, run)
        run = [match] if match is not None and match.group(0)[0].isupper() else []
    return claims


def _continues(text: str, run: list[re.Match[str]], match: re.Match[str]) -> bool:
    """Whether the word extends the capitalised run: separated by one space, capitalised or a linking
    word followed by a capitalised one (a run never ends with the link)."""
    if not run or text[run[-1].end() : match.start()] != " ":
        return False
    word = match.group(0)
    if word[0].isupper():
        return True
    after = _NAME_WORD.match(text, match.end() + 1)
    return (
        word in _NAME_LINKS
        and text[match.end() : match.end() + 1] == " "
        and after is not None
        and after.group(0)[0].isupper()
    )


def _name_of(text: str, run: list[re.Match[str]]) -> list[Claim]:
    while run and run[0].group(0).lower() in _ABBREVIATIONS:
        run = run[1:]  # a title: "Dr" of "Dr. Smith" (which ends the run at its full stop)
    while run and (run[0].group(0) in _NAME_LINKS or _at_sentence_start(text, run[0].start())):
        opener = run[0].group(0).lower()
        if len(run) == 1 or opener in SENTENCE_STARTERS or opener in _NAME_LINKS:
            run = run[1:]  # "The", "In", or one word that only a sentence start capitalised
        else:
            break  # "New York is..." opens the sentence and is a name
    while run and run[-1].group(0) in _NAME_LINKS:
        run = run[:-1]
    if not run:
        return []
    start = run[0].start()
    name = _POSSESSIVE.sub("", text[start : run[-1].end()])  # "Ada's" is Ada
    if name in {"I", "I'm", "I've", "I'd", "I'll"} or len(name) < 2:
        return []
    return [Claim(start, start + len(name), name, "name")]


def _at_sentence_start(text: str, position: int) -> bool:
    """Whether only openers (spaces, quotes, brackets, list and heading marks) stand between the word
    and a sentence end, a line break (a heading, a list item) or the start of the text."""
    before = text[max(0, position - 200) : position].rstrip(_OPENERS)
    if not before:
        return True
    if before[-1] not in _SENTENCE_END:
        return False
    if before[-1] == ".":
        previous = re.search(r"(\S+)\.$", before)
        if previous and previous.group(1).lower() in _ABBREVIATIONS:
            return False  # "Dr. Smith"
    return True


def unsupported_claims(text: str, passages: list[Passage]) -> list[Claim]:
    """The numbers and names of a draft that none of the passages mentions, in order of appearance.

    Numbers match by value as written: "1,000" is "1000" and "3.50" is "3.5", whatever their units
    ("5 MB" is supported by a passage's "5 GB"); "1k", "one thousand" and "1,000,000" vs "1 million"
    do not match. Names are capitalised words that a sentence start did not capitalise; they match
    case-insensitively at word boundaries, the whole run at once ("Ada Lovelace" is not supported by
    "Lovelace" alone); "and" separates names ("Stockton and Darlington" is two).

    Limits of the heuristics: a single-word name that opens a sentence is not seen ("Paris is..."),
    while an ordinary capitalised word inside a sentence is ("the Python Software ..." is fine, but
    so is a Title Cased Heading written mid-line); abbreviations other than the common titles end a
    sentence for this purpose ("e.g. Alice" is seen, "approx. Alice" is not); languages without
    capitals yield no names; and support is lexical: a passage that mentions the number or the name
    in another context still counts as support.
    """
    corpus = "\n".join(passage.text for passage in passages)
    numbers = {normalise_number(m) for m in _NUMBER.finditer(corpus)}
    lowered = corpus.lower()
    values = {match.start(): normalise_number(match) for match in _NUMBER.finditer(text)}
    unsupported = []
    for claim in claims(text):
        if claim.kind == "number":
            supported = values[claim.start] in numbers
        else:
            words = r"\s+".join(re.escape(word) for word in claim.text.lower().split())
            supported = re.search(rf"(?<!\w){words}(?!\w)", lowered) is not None
        if not supported:
            unsupported.append(claim)
    return unsupported


def claims(text: str) -> list[Claim]:
    """Every number and name of a text, in order; a unit written after a number is not a name ("5 MB")."""
    numbers = number_claims(text)
    starts = [claim.start for claim in numbers]

    def in_a_number(claim: Claim) -> bool:
        i = bisect_right(starts, claim.start) - 1
        return i >= 0 and numbers[i].end > claim.start

    names = [claim for claim in name_claims(text) if not in_a_number(claim)]
    return sorted([*numbers, *names], key=lambda claim: (claim.start, claim.end))


# --- corpus documents ---------------------------------------------------------------------------------


def corpus_document(clean_dir: PathOrURL, doc_id: str) -> dict[str, Any] | None:
    """One document's row of the clean corpus (doc_id, source, title, uri, text, scores...), or None:
    streamed batch by batch with a filter on doc_id, so memory holds a batch, never the corpus."""
    files = part_files(clean_dir)
    if not files:
        return None
    if isinstance(files[0], Path):
        dataset = ds.dataset([str(path) for path in files], format="parquet")
    else:
        filesystem, _ = files[0].arrow()
        inner = [path.arrow()[1] for path in files if not isinstance(path, Path)]
        dataset = ds.dataset(inner, format="parquet", filesystem=filesystem)
    for batch in dataset.to_batches(filter=pc.field("doc_id") == doc_id, batch_size=256):
        if batch.num_rows:
            row: dict[str, Any] = batch.slice(0, 1).to_pylist()[0]
            return row
    return None


# --- indexes for the desk -----------------------------------------------------------------------------

T = TypeVar("T")


class _Recent(Generic[T]):
    """The last few loaded indexes: a desk page reuses them instead of reading them from disk again.
    An index never changes once built (it is named by its corpus fingerprint), so nothing goes stale."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self.items: OrderedDict[tuple[Path, str], T] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, root: Path, fingerprint: str, load: Callable[[], T | None]) -> T | None:
        key = (root, fingerprint)
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = load()  # outside the lock: a slow load does not hold up pages of other corpora
        if value is not None:  # not built yet: ask again next time, it may be built by then
            with self.lock:
                self.items[key] = value
                while len(self.items) > self.size:
                    self.items.popitem(last=False)
        return value


_SOURCES: _Recent[SourcesIndex] = _Recent()
_NGRAMS: _Recent[NgramIndex] = _Recent()


def sources_index(settings: Settings, fingerprint: str | None) -> SourcesIndex | None:
    """The sources index of a corpus version (a model's `corpus_fingerprint`), loaded, never built: None
    when the fingerprint is unknown or the queue stage has not built it."""
    if not fingerprint:
        return None
    root = sources_cache_root(settings)
    return _SOURCES.get(root, fingerprint, lambda: SourcesIndex.load(root, fingerprint))


def ngram_index(settings: Settings, fingerprint: str | None) -> NgramIndex | None:
    """The n-gram index of a corpus version, loaded, never built (see `sources_index`)."""
    if not fingerprint:
        return None
    root = ngram_cache_root(settings)
    return _NGRAMS.get(root, fingerprint, lambda: NgramIndex.load(root, fingerprint))
