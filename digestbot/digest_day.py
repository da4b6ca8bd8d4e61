"""A day's passing score rows as a batch holds them (`HeldDay`), and the order selection puts
papers in: best score first, ties by paper id (`best_first`)."""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Iterable, Sequence
from typing import Any

# A held row's rank (a key beside its columns: no column name has a space).
RANK = "the rank"
RANKED = operator.itemgetter(RANK)
_PAPER = operator.itemgetter("arxiv_id")


def rank(row: dict[str, Any]) -> str:
    """(-score, id) as one string, so sorting compares strings in C rather than tuples: the
    score offset into 20 digits (any SQLite integer), then the id."""
    return f"{2**63 - row['score']:020d}{row['arxiv_id']}"


def best_first(rows: list[dict[str, Any]]) -> list[str]:
    """The papers of ranked rows by their best score, ties by id: sorted by (-score, id) in
    C, each paper where its best row is (its first)."""
    return list(dict.fromkeys(map(_PAPER, sorted(rows, key=RANKED))))


class HeldDay:
    """A day's score rows at or above `floor` (each with its `RANK`), by topic best first.

    Beside each topic's rows, its papers, ranks and negated scores in the same order: a set of
    subscriptions (topic, threshold) is ranked by bisecting, slicing and sorting strings, with
    no Python call per row. A day's thousands of readers share a few thousand sets, each
    ranking ~100 papers, so this is most of what a reader's selection costs on a miss."""

    def __init__(self, floor: int, rows: Iterable[dict[str, Any]]) -> None:
        self.floor = floor
        self.by_topic: dict[str, list[dict[str, Any]]] = {}
        self.by_paper: dict[str, dict[str, dict[str, Any]]] = {}  # paper → topic → row
        for row in rows:
            self.by_topic.setdefault(row["topic"], []).append(row)
            # One row a paper and topic: the announcement is one a paper a day, its score
            # one a topic (`topic_scores.passing_on`).
            self.by_paper.setdefault(row["arxiv_id"], {})[row["topic"]] = row
        self._papers: dict[str, list[str]] = {}
        self._ranks: dict[str, list[str]] = {}
        self._negated: dict[str, list[int]] = {}
        self._paper_of: dict[str, str] = {}  # rank → its paper id (the id object, not a slice)
        for topic, held in self.by_topic.items():
            held.sort(key=RANKED)
            self._papers[topic] = list(map(_PAPER, held))
            self._ranks[topic] = list(map(RANKED, held))
            self._negated[topic] = [-row["score"] for row in held]
            self._paper_of.update(zip(self._ranks[topic], self._papers[topic], strict=True))

    def _passing(self, topic: str, threshold: int) -> int:
        """How many of the topic's rows (best first) score at least `threshold`."""
        return bisect.bisect_right(self._negated.get(topic, ()), -threshold)

    def passing(self, topic: str, threshold: int) -> list[dict[str, Any]]:
        """The topic's rows scoring at least `threshold`, best first."""
        return self.by_topic.get(topic, [])[:self._passing(topic, threshold)]

    def ranked(self, subscriptions: Sequence[tuple[str, int]]) -> list[str]:
        """`best_first` of the rows passing any of `subscriptions` (topic, threshold)."""
        if len(subscriptions) == 1:  # already in order, each paper once
            topic, threshold = subscriptions[0]
            return self._papers.get(topic, [])[:self._passing(topic, threshold)]
        ranks: list[str] = []
        for topic, threshold in subscriptions:
            ranks += self._ranks.get(topic, [])[:self._passing(topic, threshold)]
        ranks.sort()
        return list(dict.fromkeys(map(self._paper_of.__getitem__, ranks)))

    def rows(self, paper_ids: Iterable[str], subscriptions: Sequence[tuple[str, int]]
             ) -> list[list[dict[str, Any]]]:
        """Each paper's rows passing `subscriptions`, in their order (in one loop: a set of
        subscriptions asks this for each of its ~50 papers)."""
        on_papers = map(self.by_paper.get, paper_ids, itertools.repeat(_NONE))
        if len(subscriptions) == 1:
            topic, threshold = subscriptions[0]
            return [[row] if (row := on.get(topic)) is not None and row["score"] >= threshold
                    else [] for on in on_papers]
        return [[row for topic, threshold in subscriptions
                 if (row := on.get(topic)) is not None and row["score"] >= threshold]
                for on in on_papers]


_NONE: dict[str, dict[str, Any]] = {}  # a paper with no rows (read only)
