"""How close each paper is to a reader's library (issue 16): local embeddings, no LLM call.

A paper's score is its cosine similarity to the nearest library entry, mapped to 0–100 so it
reads like a topic's; at or above the library's threshold it comes, with that entry's title as
the reason. Embeddings are never stored: a day's papers are embedded once per process and
version (the cache below, shared by every reader) and a library once per change, so selecting
for a reader costs one matrix product.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from digestbot import embed
from digestbot.models import Announcement, Paper
from digestbot.store import Store
from digestbot.subscribers.library import TOPIC, get_library, items

# Cosine similarity to a score that reads like a topic's. Measured on real arXiv data
# (wordllama l2_supercat_256): against a 30-paper LLM library, the other cs.CL papers of
# 2026-08-13 had nearest-entry cosines of 0.44/0.54/0.61/0.66 (10th/50th/90th/99th percentile),
# a general software-testing sample 0.39/0.45/0.54/0.64. So 0.30 → 0 and 0.80 → 100: the
# default threshold 60 (cosine 0.60) brings about the closest tenth of a related field.
# An entry without an abstract is a title alone, which sits ~0.10 lower against a paper's
# title and abstract (0.38/0.47/0.53 for the same library as titles): it gets that back.
COS_ZERO, COS_FULL = 0.30, 0.80
TITLE_ONLY_BONUS = 0.10


def score_of(cosine: np.ndarray) -> np.ndarray:
    """Scores 0–100 for an array of cosines (vectorised: a day has thousands of papers)."""
    scaled = (cosine - COS_ZERO) / (COS_FULL - COS_ZERO) * 100
    return np.clip(np.rint(scaled), 0, 100).astype(np.int64)


def reason(title: str, lang: str) -> str:
    if lang == "en":
        return f"close to your library: {title}"
    if lang == "zh":
        return f"与你的文库相近:{title}"
    return f"与你的文库相近 / close to your library: {title}"


class _Vectors:
    """Paper vectors per (id, version) and library matrices per reader, bounded, thread-safe.

    A day has a few thousand papers (~1 KB each); libraries are kept in float16 up to
    MAX_LIBRARY_ROWS rows in all, least recently used first out.
    """

    MAX_PAPERS = 20_000
    MAX_LIBRARY_ROWS = 200_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._papers: OrderedDict[tuple[str, int | None, int], np.ndarray] = OrderedDict()
        self._libraries: OrderedDict[int, tuple[str, np.ndarray, np.ndarray, list[str]]] = (
            OrderedDict())
        self._last: tuple[tuple[tuple[str, int | None, int], ...], np.ndarray] | None = None

    def papers(self, papers: Sequence[Paper]) -> np.ndarray:
        # (title, abstract) hashes from the strings' cached hashes: no text is built per call.
        keys = [(p.id, p.version, hash((p.title, p.abstract))) for p in papers]
        whole = tuple(keys)
        with self._lock:
            # Every reader of a batch asks for the same window's papers: the last matrix.
            if self._last is not None and self._last[0] == whole:
                return self._last[1]
        matrix = self._rows(keys, papers)
        with self._lock:
            self._last = (whole, matrix)
        return matrix

    def _rows(self, keys: list[tuple[str, int | None, int]], papers: Sequence[Paper]
              ) -> np.ndarray:
        with self._lock:
            missing = [(k, p) for k, p in zip(keys, papers, strict=True) if k not in self._papers]
        if missing:
            fresh = embed.embed_papers([p for _, p in missing])
            with self._lock:
                for (key, _), row in zip(missing, fresh, strict=True):
                    self._papers[key] = row
                while len(self._papers) > self.MAX_PAPERS:
                    self._papers.popitem(last=False)
        with self._lock:
            rows = [self._papers.get(k) for k in keys]
        # A vector evicted meanwhile (another thread's huge batch) is simply made again.
        return np.stack([r if r is not None else embed.embed_papers([p])[0]
                         for r, p in zip(rows, papers, strict=True)]) if papers else (
            np.zeros((0, embed.DIM), dtype=np.float32))

    def library(self, store: Store, subscriber_id: int, stamp: str
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The reader's entries as (unit rows, per-entry bonus, titles), made once per change."""
        with self._lock:
            hit = self._libraries.get(subscriber_id)
            if hit and hit[0] == stamp:
                self._libraries.move_to_end(subscriber_id)
                return hit[1].astype(np.float32), hit[2], hit[3]
        entries = items(store, subscriber_id)
        matrix = embed.embed([f"{e.title}\n{e.abstract}" if e.abstract else e.title
                              for e in entries])
        bonus = np.array([0.0 if e.abstract else TITLE_ONLY_BONUS for e in entries],
                         dtype=np.float32)
        titles = [e.title for e in entries]
        with self._lock:
            self._libraries[subscriber_id] = (stamp, matrix.astype(np.float16), bonus, titles)
            while sum(len(v[3]) for v in self._libraries.values()) > self.MAX_LIBRARY_ROWS:
                self._libraries.popitem(last=False)
        return matrix, bonus, titles


_vectors = _Vectors()


class Match(NamedTuple):
    """A paper's score against a library and the nearest entry's title (a tuple: thousands
    are made per reader and day)."""

    score: int
    title: str


def match_papers(store: Store, subscriber_id: int, papers: Sequence[Paper], min_score: int = 0
                 ) -> dict[str, Match]:
    """The papers scoring at least `min_score` against the reader's library, each with its
    score and nearest entry ({} without a library)."""
    info = get_library(store, subscriber_id)
    if info is None or not papers:
        return {}
    matrix, bonus, titles = _vectors.library(store, subscriber_id,
                                             f"{info.updated_at}:{info.size}")
    if not titles:
        return {}
    sims = embed.cosine(_vectors.papers(papers), matrix) + bonus
    best = sims.argmax(axis=1)
    scores = score_of(sims[np.arange(len(papers)), best])
    keep = np.flatnonzero(scores >= min_score).tolist()
    return {papers[i].id: Match(int(scores[i]), titles[int(best[i])]) for i in keep}


def score_rows(store: Store, subscriber_id: int, lang: str,
               announcements: Iterable[Announcement], papers: Mapping[str, Paper],
               *, passing_only: bool = True) -> list[dict[str, Any]]:
    """Score rows for the library, shaped like `enrich.topic_scores`' (announcement fields,
    topic, score, reason, threshold), so selection ranks, caps and explains them as it does
    a topic's: one row per announcement whose paper is in `papers`."""
    info = get_library(store, subscriber_id)
    anns = [a for a in announcements if a.arxiv_id in papers]
    if info is None or not anns:
        return []
    ids = list(dict.fromkeys(a.arxiv_id for a in anns))
    found = match_papers(store, subscriber_id, [papers[pid] for pid in ids],
                         info.threshold if passing_only else 0)
    rows = []
    for ann in anns:
        match = found.get(ann.arxiv_id)
        if match is None:
            continue
        rows.append({"arxiv_id": ann.arxiv_id, "date": ann.date,
                     "announce_type": ann.announce_type, "version": ann.version,
                     "source": ann.source, "topic": TOPIC, "score": match.score,
                     "reason": reason(match.title, lang), "threshold": info.threshold})
    return rows
