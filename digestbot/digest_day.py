"""A day's passing score rows as a batch holds them (`HeldDay`), and the order selection puts
papers in: best score first, ties by paper id (`best_first`)."""

from __future__ import annotations

import bisect
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

    The rows are numbered in one day-wide order, best first (`RANK`); beside each topic's
    rows are their numbers and negated scores. A set of subscriptions (topic, threshold) is
    ranked by bisecting, slicing and sorting small integers, and its papers' rows found by
    number, with no Python call and no look into a row per paper. A day's thousands of
    readers share a few thousand sets, each ranking ~100 papers, so this is most of what a
    reader's selection costs on a miss; and it runs between readers' emails, which push
    rows out of the CPU's caches, so what it does not touch counts as much as what it does
    not compute."""

    def __init__(self, floor: int, rows: Iterable[dict[str, Any]]) -> None:
        self.floor = floor
        self.by_topic: dict[str, list[dict[str, Any]]] = {}
        self.by_paper: dict[str, dict[str, dict[str, Any]]] = {}  # paper → topic → row
        self._row_at = sorted(rows, key=RANKED)  # number → row, best first
        self._paper_at = list(map(_PAPER, self._row_at))  # number → its paper's id
        self._numbers: dict[str, list[int]] = {}  # topic → its rows' numbers, ascending
        for number, row in enumerate(self._row_at):
            self.by_topic.setdefault(row["topic"], []).append(row)
            self._numbers.setdefault(row["topic"], []).append(number)
            # One row a paper and topic: the announcement is one a paper a day, its score
            # one a topic (`topic_scores.passing_on`).
            self.by_paper.setdefault(row["arxiv_id"], {})[row["topic"]] = row
        self._papers = {topic: list(map(_PAPER, held)) for topic, held in self.by_topic.items()}
        self._negated = {topic: [-row["score"] for row in held]
                         for topic, held in self.by_topic.items()}

    def _passing(self, topic: str, threshold: int) -> int:
        """How many of the topic's rows (best first) score at least `threshold`."""
        return bisect.bisect_right(self._negated.get(topic, ()), -threshold)

    def passing(self, topic: str, threshold: int) -> list[dict[str, Any]]:
        """The topic's rows scoring at least `threshold`, best first."""
        return self.by_topic.get(topic, [])[:self._passing(topic, threshold)]

    def _passing_numbers(self, subscriptions: Sequence[tuple[str, int]]) -> list[int]:
        """The numbers of the rows passing `subscriptions`, in subscription order."""
        numbers: list[int] = []
        for topic, threshold in subscriptions:
            numbers += self._numbers.get(topic, [])[:self._passing(topic, threshold)]
        return numbers

    def ranked(self, subscriptions: Sequence[tuple[str, int]]) -> list[str]:
        """`best_first` of the rows passing any of `subscriptions` (topic, threshold)."""
        if len(subscriptions) == 1:  # already in order, each paper once
            topic, threshold = subscriptions[0]
            return self._papers.get(topic, [])[:self._passing(topic, threshold)]
        numbers = self._passing_numbers(subscriptions)
        numbers.sort()
        return list(dict.fromkeys(map(self._paper_at.__getitem__, numbers)))

    def rows(self, paper_ids: Iterable[str], subscriptions: Sequence[tuple[str, int]]
             ) -> list[list[dict[str, Any]]]:
        """Each paper's rows passing `subscriptions`, in their order. Most papers pass one
        of a set's subscriptions: its row is found by number, the others' rows as `passing`
        has them."""
        numbers = self._passing_numbers(subscriptions)
        papers = list(map(self._paper_at.__getitem__, numbers))
        # A paper's first and last passing row, by number: the same row if it has one.
        first = dict(zip(reversed(papers), reversed(numbers), strict=True))
        last = dict(zip(papers, numbers, strict=True))
        row_at, by_paper = self._row_at, self.by_paper
        return [[] if (number := last.get(pid)) is None
                else [row_at[number]] if number == first[pid]
                else [row for topic, threshold in subscriptions
                      if (row := by_paper[pid].get(topic)) is not None
                      and row["score"] >= threshold]
                for pid in paper_ids]


