"""Reading the stored scores back per topic and announcement day, for the public pages.

The scores table is this stage's; these are the only queries the web app needs of it. The
version whose score counts is the one announced, else the latest scored (as digest.py does).
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


def counts_on_day(store: Store, day: str, min_score: int) -> dict[str, int]:
    """topic slug → papers of `day` scoring ≥ `min_score`."""
    rows = store.db.query(
        f"select topic, count(*) n from ({_SCORED.format(where='a.date = :date')}) group by topic",
        {"date": day, "min": min_score},
    )
    return {r["topic"]: r["n"] for r in rows}


def _announced(row: dict[str, Any]) -> AnnouncedScore:
    return AnnouncedScore(
        Announcement(row["date"], row["arxiv_id"], row["announce_type"], row["version"],
                     row["source"]),
        Score(row["arxiv_id"], row["score_version"], row["topic"], row["score"],
              row["reason"] or "", row["scorer"] or ""),
    )
