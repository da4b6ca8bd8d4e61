"""Reading the stored scores back: per topic and announcement day for the public pages, and
per subscriber for the digest's selection.

The scores table is this stage's; these are the only queries the web app and `digest` need of
it. The version whose score counts is the one announced, else the latest scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from digestbot.models import Announcement, Score
from digestbot.store import Store

_SCORED = """
select a.date, a.arxiv_id, a.announce_type, a.version, a.source,
       s.version score_version, s.topic, s.score, s.reason, s.scorer
from announcements a
join scores s on s.arxiv_id = a.arxiv_id
 and s.version = coalesce(
   (select s2.version from scores s2
    where s2.arxiv_id = a.arxiv_id and s2.version = a.version and s2.topic = s.topic),
   (select max(s2.version) from scores s2 where s2.arxiv_id = a.arxiv_id and s2.topic = s.topic))
where {where} and s.score >= :min
"""


@dataclass(frozen=True)
class AnnouncedScore:
    """One announced paper and its score for one topic."""

    announcement: Announcement
    score: Score


def on_day(store: Store, topic: str, day: str, min_score: int) -> list[AnnouncedScore]:
    """The papers of `day` scoring ≥ `min_score` for `topic`, best first, ties by id."""
    rows = store.db.query(
        _SCORED.format(where="a.date = :date and s.topic = :topic")
        + " order by s.score desc, a.arxiv_id",
        {"date": day, "topic": topic, "min": min_score},
    )
    return [_announced(r) for r in rows]


def on_days(store: Store, topic: str, days: Sequence[str], min_score: int, limit: int
            ) -> list[AnnouncedScore]:
    """The topic's papers over `days`, newest day first, best first within a day, at most
    `limit`."""
    if not days:
        return []
    marks = ",".join(f":d{i}" for i in range(len(days)))
    rows = store.db.query(
        _SCORED.format(where=f"a.date in ({marks}) and s.topic = :topic")
        + " order by a.date desc, s.score desc, a.arxiv_id limit :limit",
        {**{f"d{i}": d for i, d in enumerate(days)}, "topic": topic, "min": min_score,
         "limit": limit},
    )
    return [_announced(r) for r in rows]


def passing_on(store: Store, day: str, min_score: int) -> list[dict[str, Any]]:
    """Every score row of `day`'s announcements at or above `min_score`, any topic: what a
    planning pass holds in memory to select for thousands of readers without a query each
    (`digest.Library`). Rows carry the announcement and the version rule of `_SCORED`."""
    return list(store.db.query(_SCORED.format(where="a.date = :date"),
                               {"date": day, "min": min_score}))


@dataclass(frozen=True)
class DayTopic:
    """One topic on one announcement day: papers at or above the cut, papers scored at all,
    and how many of those each scorer (`offline-v1`, `llm:MODEL`) produced."""

    count: int
    scored: int
    scorers: dict[str, int]


def day_topics(store: Store, day: str, min_score: int, topic: str | None = None
               ) -> dict[str, DayTopic]:
    """topic slug → its DayTopic for `day` (only `topic`'s when given: a topic's page need not
    read the whole catalogue's scores); a topic with no score that day is absent (never scored,
    which is not the same as no paper passing)."""
    where = "a.date = :date" + (" and s.topic = :topic" if topic else "")
    rows = store.db.query(
        "select topic, scorer, count(*) scored, sum(score >= :cut) n"
        f" from ({_SCORED.format(where=where)}) group by topic, scorer",
        {"date": day, "min": 0, "cut": min_score, "topic": topic},
    )
    parts: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        parts.setdefault(r["topic"], []).append(r)
    return {topic: DayTopic(sum(r["n"] for r in rs), sum(r["scored"] for r in rs),
                            {r["scorer"] or "": r["scored"] for r in rs})
            for topic, rs in parts.items()}


def fingerprint(store: Store) -> str:
    """Changes whenever a score is written (rowids grow, REPLACE included; the sum catches
    in-place updates)."""
    row = next(iter(store.db.query(
        "select count(*) || ':' || coalesce(max(rowid), 0) || ':' || total(score) s from scores")))
    return str(row["s"])


def _announced(row: dict[str, Any]) -> AnnouncedScore:
    return AnnouncedScore(
        Announcement(row["date"], row["arxiv_id"], row["announce_type"], row["version"],
                     row["source"]),
        Score(row["arxiv_id"], row["score_version"], row["topic"], row["score"],
              row["reason"] or "", row["scorer"] or ""),
    )


# A subscriber's scores: the announcements (the sources' table) joined with their subscriptions
# (the subscribers') and the scores. A cross-table read kept here, beside the scores it mostly
# reads, for speed: one indexed query per reader is what keeps selecting for thousands of
# readers cheap (three stages' round trips per paper would not). It only reads.
# `{join}` is "join" (SQLite picks the order: for a window, the topic's passing scores first)
# or "cross join", which keeps the written order: for a rebuild's few paper ids, starting from
# the announcements is ~15× faster than walking every score of the subscribed topics.
_SUBSCRIBED = """
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


def subscribed_scores(store: Store, subscriber_id: int, ids: Sequence[str], until: str
                      ) -> list[dict[str, Any]]:
    """Score rows of papers `ids` for the subscriber's topics, passing or not, from their
    announcements up to `until`."""
    params: dict[str, Any] = {"sid": subscriber_id, "date": until}
    in_ids = _in(params, "p", ids)
    return list(store.db.query(_SUBSCRIBED.format(
        join="cross join", where=f"a.arxiv_id in ({in_ids}) and a.date <= :date"), params))


def _in(params: dict[str, Any], prefix: str, values: Sequence[str]) -> str:
    """Named placeholders for an IN list (sqlite3 cannot mix named and positional ones)."""
    params.update({f"{prefix}{i}": v for i, v in enumerate(values)})
    return ",".join(f":{prefix}{i}" for i in range(len(values)))
