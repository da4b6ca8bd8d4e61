"""What each subscriber gets: the papers of a day (plus any missed) that hit their topics.

Selection reads only the store: announcements, the cached per-topic scores and what the
subscriber already received (`delivered_papers`), so it costs a few indexed queries per
subscriber and never an LLM call. Enrichment is looked up, not made: a paper without one
is shown in English only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date as Date
from datetime import timedelta
from typing import Any

from digestbot import subscribers, topics
from digestbot.enrich.pipeline import get_enrichment
from digestbot.models import (
    Announcement,
    Digest,
    DigestEntry,
    Enrichment,
    Paper,
    Subscriber,
    Topic,
    TopicHit,
)
from digestbot.sources.papers import get_papers
from digestbot.store import Store

# How far back a digest catches up after a pause or downtime. Older papers are stale news,
# and an unbounded window would flood someone returning after months.
CATCH_UP_DAYS = 14

# A paper's score for a topic: the version that was announced, else its latest scored version.
# `{join}` is "join" (SQLite picks the order: for `select`, the topic's passing scores first)
# or "cross join", which keeps the written order: for `rebuild`'s few paper ids, starting from
# the announcements is ~15× faster than walking every score of the subscribed topics.
_SCORED = """
select a.arxiv_id, a.date, a.announce_type, a.version, a.source,
       s.topic, s.score, s.reason, sub.threshold
from announcements a
{join} subscriptions sub on sub.subscriber_id = :sid
{join} scores s on s.arxiv_id = a.arxiv_id and s.topic = sub.topic
 and s.version = coalesce(
   (select s2.version from scores s2
    where s2.arxiv_id = a.arxiv_id and s2.version = a.version and s2.topic = sub.topic),
   (select max(s2.version) from scores s2
    where s2.arxiv_id = a.arxiv_id and s2.topic = sub.topic))
where {where}
"""


def select(
    store: Store, subscriber: Subscriber, date: str, *, library: Library | None = None
) -> Digest | None:
    """The digest of `date` for `subscriber`, or None when nothing passes (no empty mail).

    Papers announced on `date`, and on earlier days not yet covered by a sent digest (at
    most `CATCH_UP_DAYS` back, and for a subscriber who never got one, not before they
    subscribed), that score at least the threshold on any subscribed topic and that the
    subscriber has never received — so a replaced version comes only to those who missed
    the paper. Best score first, ties by id; beyond `max_papers` only counted. Pass one
    `library` for a batch of subscribers to read each paper once.
    """
    params: dict[str, Any] = {"sid": subscriber.id}
    in_dates = _in(params, "d", _window(store, subscriber, date))
    # Judged by its latest announcement in the window: a v2 that lost relevance is not
    # rescued by the v1 announced a few days earlier.
    found = _latest_per_paper(store.db.query(_SCORED.format(join="join", where=(
        f"a.date in ({in_dates}) and s.score >= sub.threshold"
        " and not exists (select 1 from delivered_papers d"
        "  where d.subscriber_id = :sid and d.arxiv_id = a.arxiv_id)"
        " and not exists (select 1 from announcements later"
        f"  where later.arxiv_id = a.arxiv_id and later.date > a.date and later.date in ({in_dates}))"
    )), params))
    if not found:
        return None
    ranked = sorted(found, key=lambda pid: (-max(r["score"] for r in found[pid]), pid))
    cap = subscriber.max_papers
    context = _Context(store, subscriber, library)
    picks = [(_announcement(found[pid][0]), context.hits(found[pid])) for pid in ranked[:cap]]
    return context.digest(date, picks, more=len(ranked[cap:]))


def rebuild(
    store: Store, subscriber: Subscriber, date: str, paper_ids: list[str], more: int,
    *, library: Library | None = None,
) -> Digest:
    """The digest an outbox row planned, from its paper ids, in their order.

    Used after a restart so what is sent is what was planned, even if scores, thresholds or
    deliveries changed meanwhile: every listed paper is kept (if a threshold was raised
    since, the entry still names its subscribed topics' scores as the reason).
    """
    ids = list(dict.fromkeys(paper_ids))
    params: dict[str, Any] = {"sid": subscriber.id, "date": date}
    in_ids = _in(params, "p", ids)
    scored = _latest_per_paper(store.db.query(
        _SCORED.format(join="cross join", where=f"a.arxiv_id in ({in_ids}) and a.date <= :date"),
        params,
    ))
    # The paper's last announcement up to `date` (later ones only if there is none).
    announced = {
        row["arxiv_id"]: _announcement(row)
        for row in store.db.query(
            f"select * from announcements where arxiv_id in ({in_ids})"
            " order by date <= :date, date", params,
        )
    }
    context = _Context(store, subscriber, library)
    picks = []
    for pid in ids:
        rows = scored.get(pid, [])
        passing = [r for r in rows if r["score"] >= r["threshold"]]
        ann = _announcement(rows[0]) if rows else announced.get(pid)
        if ann is not None:
            picks.append((ann, context.hits(passing or rows)))
    return context.digest(date, picks, more=more)


def _in(params: dict[str, Any], prefix: str, values: list[str]) -> str:
    """Named placeholders for an IN list (sqlite3 cannot mix named and positional ones)."""
    params.update({f"{prefix}{i}": v for i, v in enumerate(values)})
    return ",".join(f":{prefix}{i}" for i in range(len(values)))


def _window(store: Store, subscriber: Subscriber, date: str) -> list[str]:
    """Announcement dates this digest covers: `date` and the uncovered days before it."""
    floor = (Date.fromisoformat(date) - timedelta(days=CATCH_UP_DAYS)).isoformat()
    last_sent = next(iter(store.db.query(
        "select max(digest_date) d from deliveries"
        " where subscriber_id = ? and status = 'sent' and digest_date < ?",
        [subscriber.id, date],
    )))["d"]
    if last_sent:
        after = max(last_sent, floor)
    elif subscriber.created_at:
        # Never sent anything: catch up from the day they subscribed, no earlier.
        joined = Date.fromisoformat(subscriber.created_at[:10]) - timedelta(days=1)
        after = max(joined.isoformat(), floor)
    else:
        after = date
    rows = store.db.query(
        "select distinct date from announcements where date > ? and date < ? order by date",
        [after, date],
    )
    # The date asked for is always covered, even for someone who subscribed after it.
    return [r["date"] for r in rows] + [date]


def _latest_per_paper(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Score rows grouped by paper, keeping only those of the paper's latest announcement."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        kept = out.setdefault(row["arxiv_id"], [])
        if kept and kept[0]["date"] > row["date"]:
            continue
        if kept and kept[0]["date"] < row["date"]:
            kept.clear()
        kept.append(row)
    return out


def _announcement(row: dict[str, Any]) -> Announcement:
    return Announcement(date=row["date"], arxiv_id=row["arxiv_id"],
                        announce_type=row["announce_type"], version=row["version"],
                        source=row["source"])


class Library:
    """Papers and their enrichments, read once for a batch of digests (a plan, a delivery run).

    A day's digests share a few hundred papers among thousands of readers; reading each paper
    once per batch rather than once per reader is most of what selection costs. The digests
    of a batch share these objects (renderers only read them). Keep one only for the length
    of a batch, so a paper fetched or enriched afterwards is read fresh by the next.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._papers: dict[str, Paper] = {}
        self._enrichments: dict[tuple[str, int], Enrichment | None] = {}

    def papers(self, ids: list[str]) -> dict[str, Paper]:
        missing = [pid for pid in ids if pid not in self._papers]
        if missing:
            self._papers.update(get_papers(self.store, missing))
        return {pid: self._papers[pid] for pid in ids if pid in self._papers}

    def enrichment(self, paper: Paper) -> Enrichment | None:
        key = (paper.id, paper.version)
        if key not in self._enrichments:
            self._enrichments[key] = get_enrichment(self.store, paper.id, paper.version)
        return self._enrichments[key]


class _Context:
    """A subscriber's subscriptions and topics, loaded once per digest."""

    def __init__(self, store: Store, subscriber: Subscriber, library: Library | None) -> None:
        self.store = store
        self.library = library or Library(store)
        self.subscriber = subscriber
        self.subscriptions = subscribers.subscriptions(store, subscriber.id)
        self.topics = {s.topic: _topic(store, s.topic) for s in self.subscriptions}
        self.order = {slug: i for i, slug in enumerate(self.topics)}

    def hits(self, rows: list[dict[str, Any]]) -> list[TopicHit]:
        """Why the paper is here: each subscribed topic it hit, best score first."""
        lang = "en" if self.subscriber.lang == "en" else "zh"
        rows = sorted(rows, key=lambda r: (-r["score"], self.order.get(r["topic"], 0)))
        return [
            TopicHit(topic=r["topic"], topic_name=self.topics[r["topic"]].display(lang),
                     score=r["score"], reason=r["reason"] or "")
            for r in rows
        ]

    def digest(
        self, date: str, picks: list[tuple[Announcement, list[TopicHit]]], more: int
    ) -> Digest:
        papers = self.library.papers([ann.arxiv_id for ann, _ in picks])
        entries = [
            DigestEntry(
                paper=papers[ann.arxiv_id], announcement=ann, hits=hits,
                enrichment=self.library.enrichment(papers[ann.arxiv_id]),
            )
            for ann, hits in picks
            if ann.arxiv_id in papers
        ]
        return Digest(
            subscriber=self.subscriber, date=date, topics=list(self.topics.values()),
            entries=entries, more=more,
            thresholds={s.topic: s.threshold for s in self.subscriptions},
        )


def _topic(store: Store, slug: str) -> Topic:
    try:
        return topics.get_topic(slug, store)
    except KeyError:
        # A topic dropped from the catalogue keeps its subscriptions and scores; show the slug.
        return Topic(slug=slug, name_zh=slug, name_en=slug, description="")
