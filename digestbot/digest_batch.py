"""The day in memory for a batch of digests (`Library`): what every reader's selection and
rendering share, read once per batch (see `digest`)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Hashable, Iterable
from typing import Any

from digestbot import rerank, subscribers, topics
from digestbot.digest_day import RANK, HeldDay, best_first, rank
from digestbot.enrich.stored import get_enrichment, get_enrichments
from digestbot.enrich.topic_scores import passing_on
from digestbot.models import (
    Announcement,
    AuthorHit,
    DigestEntry,
    Enrichment,
    Paper,
    Subscriber,
    Subscription,
    Topic,
    TopicHit,
)
from digestbot.sources.papers import announcement_dates, announcements_on, get_papers
from digestbot.store import Store
from digestbot.subscribers import feedback, profile
from digestbot.subscribers import library as libraries


class _Names:
    """Content → a short name no other content ever gets (a counter, never reused; the oldest
    name is forgotten past `size`, which only costs a fresh name for it later)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[Hashable, int] = {}
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def of(self, content: Hashable) -> int:
        try:
            return self._items[content]
        except KeyError:
            pass
        with self._lock:
            if len(self._items) >= self.size:
                del self._items[next(iter(self._items))]
            return self._items.setdefault(content, next(self._count))


# Renderers cache a paper's rows and an entry's filled parts under these names
# (`DigestEntry.key`): the same content has the same name in every batch, so the next batch
# renders only what changed, and changed content (re-scored, enriched, replaced) a new name.
_PAPERS, _ENTRIES = _Names(50_000), _Names(200_000)
# And the entries of a digest as a whole (`Digest.key`): a day has one a set of subscriptions.
_LINEUPS = _Names(50_000)


def _content(obj: Any) -> tuple[Any, ...]:
    """A dataclass's values as a hashable key of plain tuples (lists of dataclasses such as
    authors become tuples of their values: hashed and compared in C, not by dataclass
    methods, as a batch looks each paper up by it)."""
    return tuple(tuple(tuple(vars(i).values()) if hasattr(i, "__dataclass_fields__") else i
                       for i in v) if isinstance(v, list) else v for v in vars(obj).values())


class Library:
    """The day in memory for a batch of digests (a plan, a delivery run): papers, their
    enrichments, the announcements and the scores that pass, each read once.

    A day's digests share a few hundred papers among thousands of readers; reading each paper
    and each day's scores once per batch rather than once per reader is most of what selection
    costs. The digests of a batch share these objects (renderers only read them, and cache a
    paper's rendered entry under `DigestEntry.key`, which names its content). Keep one only
    for the length of a batch, so a paper fetched, scored or enriched afterwards is read fresh
    by the next.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._papers: dict[str, Paper] = {}
        self._enrichments: dict[tuple[str, int], Enrichment | None] = {}
        self._dates: list[str] | None = None
        self._announced: dict[str, list[Announcement]] = {}
        self._announced_sets: dict[str, set[str]] = {}
        # day → its rows at or above the lowest threshold asked so far
        self._scores: dict[str, HeldDay] = {}
        self._topics: dict[str, Topic] = {}
        self._entries: dict[tuple[Any, ...], DigestEntry] = {}
        self._names: dict[tuple[str, Announcement], int] = {}
        self._subscriptions: dict[int, list[Subscription]] | None = None
        self._profiles: dict[int, profile.Profile] | None = None
        self._shelves: dict[int, libraries.LibraryInfo] | None = None
        self._voters: set[int] | None = None
        # (lang, the held score rows of a paper in hit order) → its entry (see `held_entry`)
        # (lang, ids of the rows) → (the rows, kept alive so no id is reused, their entry)
        self._held: dict[tuple[Any, ...], tuple[list[Any], DigestEntry | None]] = {}
        # day → paper id → topic → its score row, for every followed topic (see `scored_on`)
        self._all_scores: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self._memos: dict[Hashable, dict[Any, Any]] = {}
        self._keys: dict[int, tuple[tuple[str, int], ...]] = {}

    def subscriptions(self, subscriber_id: int) -> list[Subscription]:
        """The reader's subscriptions (everyone's are read on the first ask)."""
        return self._all_subscriptions().get(subscriber_id, [])

    def _all_subscriptions(self) -> dict[int, list[Subscription]]:
        if self._subscriptions is None:
            self._subscriptions = subscribers.all_subscriptions(self.store)
        return self._subscriptions

    def subscription_key(self, subscriber_id: int) -> tuple[tuple[str, int], ...]:
        """The reader's (topic, threshold) pairs in the order they subscribed: readers alike
        in it are alike to `passing` and to their entries' hits."""
        key = self._keys.get(subscriber_id)
        if key is None:
            key = self._keys[subscriber_id] = tuple(
                (s.topic, s.threshold) for s in self.subscriptions(subscriber_id))
        return key

    def alike_together(self, readers: Iterable[Subscriber]) -> list[Subscriber]:
        """`readers` in the order a batch best selects for them: those with the same
        subscriptions and language next to each other, and sets that share their first
        topics near each other (otherwise as given). A set's ranking, entries and rendered
        lineup are made for its first reader; its other readers then find them still in the
        CPU's caches, and the next set finds its topics' rows there: ~10 % of a batch's CPU
        (`bench/fanout.py`). Every reader is still planned in the same pass."""
        return sorted(readers, key=lambda s: (self.subscription_key(s.id), s.lang))

    def memo(self, key: Hashable) -> dict[Any, Any]:
        """A dict kept for the batch under `key`: what selection works out once for all the
        readers alike (see `digest`), read fresh with the next batch like the rest."""
        memo = self._memos.get(key)
        if memo is None:
            memo = self._memos[key] = {}
        return memo

    def profile(self, subscriber_id: int) -> profile.Profile:
        """The reader's followed authors and keywords (everyone's are read on the first ask)."""
        if self._profiles is None:
            self._profiles = profile.all_profiles(self.store)
        return self._profiles.get(subscriber_id) or profile.Profile()

    def shelf(self, subscriber_id: int) -> libraries.LibraryInfo | None:
        """The reader's library, if they have one (everyone's are read on the first ask)."""
        if self._shelves is None:
            self._shelves = libraries.all_libraries(self.store)
        return self._shelves.get(subscriber_id)

    def may_learn(self, subscriber_id: int) -> bool:
        """Whether the reader has the votes `rerank.learn` needs (all voters are read on the
        first ask); for anyone else it would return None, so there is nothing to train."""
        if self._voters is None:
            self._voters = feedback.voters(self.store, rerank.MIN_VOTES)
        return subscriber_id in self._voters

    def dates(self, *, after: str, before: str) -> list[str]:
        """Days with announcements strictly between `after` and `before`, oldest first."""
        if self._dates is None:
            self._dates = announcement_dates(self.store)
        return [d for d in self._dates if after < d < before]

    def announcements(self, day: str) -> list[Announcement]:
        """The day's announcements (a window's days are the same for every reader)."""
        if day not in self._announced:
            self._announced[day] = announcements_on(self.store, day)
        return self._announced[day]

    def entry(self, paper: Paper, ann: Announcement, hits: list[TopicHit],
              authors: list[AuthorHit]) -> DigestEntry:
        """The paper as a digest entry with these reasons: one shared object for every reader
        it comes to alike, so renderers cache it whole under its `key` — (a name for the
        paper as shown, one for the entry) — which no entry with other content can carry."""
        shown = (paper.id, paper.version, ann.date, ann.announce_type)
        content = (shown, tuple(hits), tuple(authors))
        entry = self._entries.get(content)
        if entry is None:
            enrichment = self.enrichment(paper)
            name = self._names.get((paper.id, ann))
            if name is None:
                name = self._names[(paper.id, ann)] = _PAPERS.of((
                    _content(paper), ann, _content(enrichment) if enrichment else None))
            entry = self._entries[content] = DigestEntry(
                paper=paper, announcement=ann, hits=hits, enrichment=enrichment,
                authors=authors, key=(name, _ENTRIES.of((
                    name, *(tuple(vars(h).values()) for h in hits), None,
                    *(tuple(vars(a).values()) for a in authors)))))
        return entry

    def lineup(self, entries: list[DigestEntry]) -> int | None:
        """A name for these entries in this order (`Digest.key`); None if one has no key."""
        keys = tuple([e.key for e in entries])
        return None if None in keys else _LINEUPS.of(keys)

    def held_entry(self, rows: list[dict[str, Any]], lang: str) -> DigestEntry | None:
        """The entry of a paper that came through `passing` alone, its hits being `rows` in
        the reader's order: kept in a lone row itself, else looked up by the rows (held by
        this Library, so their ids name them for its life) instead of hashing its content
        each time. None for a paper not read."""
        if len(rows) == 1:  # most entries
            try:
                return rows[0][_LONE][lang]
            except KeyError:
                entry = rows[0][_LONE][lang] = self._held_entry(rows, lang)
                return entry
        key = (lang, *map(id, rows))
        try:
            return self._held[key][1]
        except KeyError:
            entry = self._held_entry(rows, lang)
            self._held[key] = (rows, entry)
            return entry

    def lone_entries(self, found: list[list[dict[str, Any]]], lang: str
                     ) -> list[DigestEntry | None]:
        """`held_entry` of each paper's rows where that is a lone held row's kept entry (most
        of a digest), in one loop; None where `held_entry` (or more) must be asked."""
        return [rows[0][_LONE].get(lang) if len(rows) == 1 and _LONE in rows[0] else None
                for rows in found]

    def _held_entry(self, rows: list[dict[str, Any]], lang: str) -> DigestEntry | None:
        row = rows[0]
        paper = self.papers([row["arxiv_id"]]).get(row["arxiv_id"])
        return None if paper is None else self.entry(
            paper, row[_ANNOUNCEMENT], [r[_HITS][lang] for r in rows], [])

    def topic(self, slug: str) -> Topic:
        if slug not in self._topics:
            self._topics[slug] = _topic(self.store, slug)
        return self._topics[slug]

    def passing(self, subscriptions: list[Subscription], window: list[str]) -> list[dict[str, Any]]:
        """Score rows of papers announced in `window` that pass one of `subscriptions`'
        thresholds, each paper only at its latest announcement in the window (a v2 that lost
        relevance is not rescued by the v1 announced a few days earlier)."""
        if not subscriptions:
            return []
        floor = min(s.threshold for s in subscriptions)
        days = sorted(set(window))
        rows = []
        for day in days:
            held = self.passing_day(day, floor)
            for sub in subscriptions:
                rows += held.passing(sub.topic, sub.threshold)
        if len(days) > 1:
            latest = self.memo(("latest", *days))  # the same for every reader with these days
            if not latest:
                latest.update((a.arxiv_id, day) for day in days for a in self.announcements(day))
            rows = [r for r in rows if latest[r["arxiv_id"]] == r["date"]]
        return rows

    def ranked(self, subscriptions: list[Subscription], window: list[str]) -> tuple[str, ...]:
        """`best_first` of `passing`: for a window of one day (most readers), ranked from the
        held day's columns without touching a row."""
        held = self._one_day(subscriptions, window)
        if held is None:
            return tuple(best_first(self.passing(subscriptions, window)))
        return tuple(held.ranked([(s.topic, s.threshold) for s in subscriptions]))

    def passing_rows(self, ids: list[str], subscriptions: list[Subscription], window: list[str]
                     ) -> list[list[dict[str, Any]]]:
        """The rows of `passing` of each paper of `ids`, in subscription order (found by id
        for a window of one day)."""
        held = self._one_day(subscriptions, window)
        if held is None:
            found: dict[str, list[dict[str, Any]]] = {pid: [] for pid in ids}
            for row in self.passing(subscriptions, window):
                rows = found.get(row["arxiv_id"])
                if rows is not None:
                    rows.append(row)
            return [found[pid] for pid in ids]
        return held.rows(ids, [(s.topic, s.threshold) for s in subscriptions])

    def _one_day(self, subscriptions: list[Subscription], window: list[str]) -> HeldDay | None:
        """The held day a one-day window's `passing` reads (at these subscriptions' lowest
        threshold); None for a longer window or no subscriptions, which `passing` reads."""
        if len(set(window)) > 1 or not subscriptions:
            return None
        return self.passing_day(window[0], min(s.threshold for s in subscriptions))

    def scored_on(self, day: str, subscriptions: list[Subscription], ids: list[str]
                  ) -> list[dict[str, Any]] | None:
        """What `topic_scores.subscribed_scores` gives for papers `ids` up to `day` (score rows
        on these subscriptions' topics, passing or not, each with its threshold), read once
        for the whole batch — when every paper was announced on `day`, so its latest
        announcement is that day's; None otherwise."""
        if not self.announced_on(day, ids):
            return None
        by_paper = self.held_scores(day)
        out = []
        for pid in ids:
            on = by_paper.get(pid)
            for sub in subscriptions if on else ():
                row = on.get(sub.topic)
                if row is not None:
                    out.append({**row, "threshold": sub.threshold})
        return out

    def held_scores(self, day: str) -> dict[str, dict[str, dict[str, Any]]]:
        """paper id → topic → its score row of `day`, passing or not, for every followed
        topic: held rows (`held_entry` takes them), read once for the batch."""
        by_paper = self._all_scores.get(day)
        if by_paper is None:
            # Only topics someone follows: a catalogue's other topics are scored too.
            followed = {s.topic for subs in self._all_subscriptions().values() for s in subs}
            by_paper = self._all_scores[day] = {}
            for row in passing_on(self.store, day, _ANY_SCORE):
                if row["topic"] in followed:
                    by_paper.setdefault(row["arxiv_id"], {})[row["topic"]] = row
        return by_paper

    def hold(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`rows` (of `held_scores`) made held rows, each once, as `held_entry` takes them."""
        for row in rows:
            if _HITS not in row:
                self._hold(row)
        return rows

    def announced_on(self, day: str, ids: list[str]) -> bool:
        """Whether every paper of `ids` was announced on `day`."""
        return self._announced_ids(day).issuperset(ids)

    def _announced_ids(self, day: str) -> set[str]:
        if day not in self._announced_sets:
            self._announced_sets[day] = {a.arxiv_id for a in self.announcements(day)}
        return self._announced_sets[day]

    def passing_day(self, day: str, floor: int) -> HeldDay:
        """`day`'s score rows at or above `floor` (read again only for a reader whose
        threshold is lower than any before)."""
        held = self._scores.get(day)
        if held is None or held.floor > floor:
            rows = passing_on(self.store, day, floor)
            for row in rows:
                self._hold(row)
            held = self._scores[day] = HeldDay(floor, rows)
            # Their papers in a few queries, rather than one each as readers come to them.
            self.papers(list(held.by_paper))
        return held

    def _hold(self, row: dict[str, Any]) -> None:
        # What every reader's entry makes of the row, made once (see `held_entry`).
        row[_ANNOUNCEMENT] = announcement(row)
        row[RANK] = rank(row)
        row[_LONE] = {}
        topic = self.topic(row["topic"])
        row[_HITS] = {lang: TopicHit(topic=row["topic"], topic_name=topic.display(lang),
                                     score=row["score"], reason=row["reason"] or "")
                      for lang in ("zh", "en")}

    def papers(self, ids: list[str]) -> dict[str, Paper]:
        missing = [pid for pid in ids if pid not in self._papers]
        if missing:
            found = get_papers(self.store, missing)
            self._papers.update(found)
            # Their enrichments in the same breath: the renderers ask for each.
            keys = [(p.id, p.version) for p in found.values()
                    if (p.id, p.version) not in self._enrichments]
            extras = get_enrichments(self.store, keys)
            self._enrichments.update({key: extras.get(key) for key in keys})
        return {pid: self._papers[pid] for pid in ids if pid in self._papers}

    def enrichment(self, paper: Paper) -> Enrichment | None:
        key = (paper.id, paper.version)
        if key not in self._enrichments:
            self._enrichments[key] = get_enrichment(self.store, paper.id, paper.version)
        return self._enrichments[key]


# Below every score: `passing_on` at it gives every row, as `subscribed_scores` would.
_ANY_SCORE = -(2**62)
# Keys a held score row carries besides its columns and `RANK` (no column name has a space).
_ANNOUNCEMENT, _HITS, _LONE = "the announcement", "the hits", "the entries"


def held(row: dict[str, Any]) -> bool:
    """Whether a score row is one of a Library's (see `held_entry`)."""
    return _HITS in row


def announcement(row: dict[str, Any]) -> Announcement:
    """The announcement a score row carries (a held row has it made already)."""
    try:
        return row[_ANNOUNCEMENT]
    except KeyError:
        return Announcement(date=row["date"], arxiv_id=row["arxiv_id"],
                            announce_type=row["announce_type"], version=row["version"],
                            source=row["source"])


def _topic(store: Store, slug: str) -> Topic:
    try:
        return topics.get_topic(slug, store)
    except KeyError:
        # A topic dropped from the catalogue keeps its subscriptions and scores; show the slug.
        return Topic(slug=slug, name_zh=slug, name_en=slug, description="")
