"""A reader's side of a digest (`ReaderContext`): their subscriptions, topics, library and
profile as the batch's `Library` holds them, and what turns a paper's score rows into their
entry. Selection (`digest.select`) and sending (`digest.rebuild`) both go through it."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, cast

from digestbot.digest_batch import Library, announcement, held
from digestbot.models import (
    Announcement,
    AuthorHit,
    Digest,
    DigestEntry,
    Subscriber,
    Topic,
    TopicHit,
)
from digestbot.store import Store
from digestbot.subscribers import library as libraries
from digestbot.subscribers import library_score
from digestbot.subscribers.matching import find_keyword, haystack, keyword_key, match_author


class ReaderContext:
    """A subscriber's subscriptions and topics, loaded once per digest."""

    def __init__(self, store: Store, subscriber: Subscriber, library: Library | None) -> None:
        self.store = store
        self.library = library or Library(store)
        self.subscriber = subscriber
        self.subscriptions = self.library.subscriptions(subscriber.id)
        self.shelf = self.library.shelf(subscriber.id)
        # Alike for every reader with these subscriptions (and library or not): made once.
        known = self.library.memo(("topics", self.library.subscription_key(subscriber.id),
                                   self.shelf is not None))
        if not known:
            topics = {s.topic: self.library.topic(s.topic) for s in self.subscriptions}
            if self.shelf is not None:
                topics[libraries.TOPIC] = libraries.library_topic()
            known.update(topics=topics, order={slug: i for i, slug in enumerate(topics)})
        self.topics: dict[str, Topic] = known["topics"]  # shared: read only
        self.order: dict[str, int] = known["order"]
        self.profile = self.library.profile(subscriber.id)
        # The language of topic names and reasons ("both" reads them in Chinese).
        self.lang = "en" if subscriber.lang == "en" else "zh"

    def latest_in(self, window: list[str]) -> dict[str, Announcement]:
        """Every paper announced in the window, at its latest announcement there."""
        latest: dict[str, Announcement] = {}
        for day in sorted(set(window)):
            for ann in self.library.announcements(day):
                latest[ann.arxiv_id] = ann
        return latest

    def library_rows(self, anns: Iterable[Announcement] = (), passing_only: bool = True, *,
                     window: list[str] | None = None) -> list[dict[str, Any]]:
        """Score rows of these announcements' papers (or of every paper announced in the
        window) against the reader's library; nothing to read for a reader without one."""
        if self.shelf is None:
            return []
        anns = list(self.latest_in(window).values()) if window is not None else list(anns)
        papers = self.library.papers([a.arxiv_id for a in anns])
        return library_score.score_rows(self.store, self.subscriber.id, self.subscriber.lang, anns,
                                    papers, passing_only=passing_only)

    def followed_in(self, window: list[str]) -> dict[str, tuple[Announcement, list[AuthorHit]]]:
        """Papers announced in the window with a followed author, at their latest announcement."""
        if not self.profile.follows:
            return {}
        latest = self.latest_in(window)
        out = {}
        for pid in sorted(latest):
            authors = self.authors_of(pid)
            if authors:
                out[pid] = (latest[pid], authors)
        return out

    def authors_of(self, pid: str) -> list[AuthorHit]:
        """The followed authors on a paper, each with the paper's spelling of the name."""
        if not self.profile.follows:
            return []
        paper = self.library.papers([pid]).get(pid)
        names = [a.name for a in paper.authors] if paper else []
        hits = []
        for followed in self.profile.follows:
            spelling = match_author(followed, names)
            if spelling is not None:
                hits.append(AuthorHit(followed=followed, spelling=spelling))
        return hits

    def filtered_out(self, ids: list[str]) -> list[str]:
        """Those of `ids` an `exclude` keyword hits, or that no `must` keyword hits."""
        must = [keyword_key(w) for w in self.profile.must]
        exclude = [keyword_key(w) for w in self.profile.exclude]
        if not (must or exclude):
            return []
        papers = self.library.papers(ids)
        out = []
        for pid in ids:
            paper = papers.get(pid)
            if paper is None:
                continue
            extra = self.library.enrichment(paper)
            text = haystack(paper.title, paper.abstract,
                            extra.title_zh if extra else None, extra.abstract_zh if extra else None)
            if find_keyword(exclude, text) or (must and not find_keyword(must, text)):
                out.append(pid)
        return out


    def _in_order(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A paper's score rows as its hits are listed: best score first, then in the order
        the reader subscribed."""
        if len(rows) == 1:
            return rows
        return sorted(rows, key=lambda r: (-r["score"], self.order.get(r["topic"], 0)))

    def held(self, rows: list[dict[str, Any]]
             ) -> DigestEntry | tuple[Announcement, list[TopicHit], list[AuthorHit]]:
        """The entry of a paper its topics alone bring, shared by the batch when all its rows
        are the Library's; else what `digest` makes one of."""
        if len(rows) > 1:
            rows = self._in_order(rows)
            if not all(held(r) for r in rows):
                return announcement(rows[0]), self.hits(rows), []
        elif not held(rows[0]):
            return announcement(rows[0]), self.hits(rows), []
        return self.library.held_entry(rows, self.lang) or (announcement(rows[0]), [], [])

    def held_all(self, found: list[list[dict[str, Any]]]
                 ) -> list[DigestEntry | tuple[Announcement, list[TopicHit], list[AuthorHit]]]:
        """`held` of each paper's rows, most of them the Library's kept entries."""
        return [entry or self.held(rows) for entry, rows in
                zip(self.library.lone_entries(found, self.lang), found, strict=True)]

    def hits(self, rows: list[dict[str, Any]]) -> list[TopicHit]:
        """Why the paper is here: each subscribed topic it hit, best score first."""
        lang = self.lang
        rows = self._in_order(rows)
        return [
            TopicHit(topic=r["topic"], topic_name=self.topics[r["topic"]].display(lang),
                     score=r["score"], reason=r["reason"] or "")
            for r in rows
        ]

    def entries(
        self, picks: list[DigestEntry | tuple[Announcement, list[TopicHit], list[AuthorHit]]]
    ) -> list[DigestEntry]:
        """These entries, with announcements and their reasons made entries (one whose paper
        is not in the store left out)."""
        if set(map(type, picks)) <= {DigestEntry}:  # most digests: the batch's entries
            return cast(list[DigestEntry], picks)
        papers = self.library.papers([p[0].arxiv_id for p in picks if isinstance(p, tuple)])
        return [p if not isinstance(p, tuple) else self.library.entry(papers[p[0].arxiv_id], *p)
                for p in picks if not isinstance(p, tuple) or p[0].arxiv_id in papers]

    def digest(self, date: str, entries: list[DigestEntry], more: int, *,
               key: Hashable | None = None) -> Digest:
        """The reader's digest of these entries (`key`: see `Digest.key`)."""
        return Digest(
            subscriber=self.subscriber, date=date, topics=list(self.topics.values()),
            entries=entries, more=more, key=key,
            thresholds={s.topic: s.threshold for s in self.subscriptions}
            | ({libraries.TOPIC: self.shelf.threshold} if self.shelf else {}),
        )
