"""How far the evening's pipeline is with one announcement day: which followed topics are
fully scored, and which papers some reader will receive are not final yet.

Delivery reads this to send a reader's digest as soon as every paper that could be in it is
final for them, while the rest of the day is still being enriched (`outbox.timeline`). One
meta row per day (`timeline:<date>`), written by the pipeline only:

- absent: the day was never run through a timeline-aware pipeline (an old database, papers
  scored by hand); everything stored counts as final, as before;
- `{"scored": [...], "pending": [...], "done": false}` while the pipeline runs: a reader's
  topics must all be in `scored`, and none of their papers in `pending`;
- `{"done": true}`: the pipeline finished; everything is final.

A pipeline that dies half-way leaves `done: false`, so nobody gets a partial digest; the next
run (the service runs one at start) finishes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from digestbot.store import Store

KEY = "timeline:"


@dataclass
class DayProgress:
    """One day's progress; `save` writes it (the pipeline's side)."""

    date: str
    scored: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    done: bool = False
    stored: bool = True  # False: kept in memory only (a partial run's)

    def final(self, topics: Iterable[str], arxiv_ids: Iterable[str]) -> bool:
        """Are these topics fully scored and these papers final (enriched or given up)?"""
        if self.done:
            return True
        return set(topics) <= self.scored and not (set(arxiv_ids) & self.pending)

    def save(self, store: Store) -> None:
        if not self.stored:
            return
        store.set_meta(KEY + self.date, json.dumps(
            {"scored": sorted(self.scored), "pending": sorted(self.pending), "done": self.done}))


def begin(store: Store, date: str) -> DayProgress:
    """The pipeline starts on `date`: nothing is final until it says so. Topics scored by an
    earlier run stay scored (a re-run for a new subscriber's topic only adds work)."""
    earlier = get(store, date)
    progress = DayProgress(date, scored=earlier.scored if earlier else set())
    progress.save(store)
    return progress


def get(store: Store, date: str) -> DayProgress | None:
    """The day's progress; None when no timeline-aware pipeline ever ran for it."""
    raw = store.get_meta(KEY + date)
    if raw is None:
        return None
    data = json.loads(raw)
    return DayProgress(date, set(data.get("scored", [])), set(data.get("pending", [])),
                       bool(data.get("done")))
