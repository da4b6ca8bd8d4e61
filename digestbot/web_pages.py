"""The public daily pages: `/d/YYYY-MM-DD`, `/d/YYYY-MM-DD/{topic}` and `/feed/{topic}.xml`.

A day page is the seed's listing (arXivDaily): a header with area, group, description,
categories and count, then every paper of that announcement that scores at least `min` for
the topic, best match first, each drawn by the same `email/_entry.html` partial as the
morning email. The Atom feed carries the last few announcement days of a topic for feed
readers. Everything comes from the store as the pipeline left it; nothing is scored here.

Custom topics (a subscriber's free text) are reachable by their slug but never listed, so
one reader's interests are not shown to everyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web as aioweb

from digestbot import render, topics, web
from digestbot.enrich.pipeline import get_enrichment
from digestbot.models import Announcement, DigestEntry, Topic, TopicHit
from digestbot.store import Store
from digestbot.subscribers import DEFAULT_THRESHOLD

# Announcement days an Atom feed spans, and the most entries it carries.
FEED_DAYS = 7
FEED_MAX_ENTRIES = 200

# Public pages may be cached briefly by browsers and proxies; they change once a day.
PUBLIC_CACHE = "public, max-age=300"

routes = aioweb.RouteTableDef()

# The version whose score counts: the one announced, else the latest scored (as digest.py).
_SCORED = """
select a.date, a.arxiv_id, a.announce_type, a.version, a.source, s.topic, s.score, s.reason
from announcements a
join scores s on s.arxiv_id = a.arxiv_id
 and s.version = coalesce(
   (select s2.version from scores s2
    where s2.arxiv_id = a.arxiv_id and s2.version = a.version and s2.topic = s.topic),
   (select max(s2.version) from scores s2 where s2.arxiv_id = a.arxiv_id and s2.topic = s.topic))
where {where} and s.score >= :min
"""


@dataclass(frozen=True)
class TopicCount:
    topic: Topic
    count: int


def setup(app: aioweb.Application) -> None:
    app.add_routes(routes)


def topic_entries(store: Store, topic: Topic, day: str, min_score: int) -> list[DigestEntry]:
    """The papers of `day` scoring ≥ `min_score` for `topic`, best first, ties by id."""
    rows = store.db.query(
        _SCORED.format(where="a.date = :date and s.topic = :topic")
        + " order by s.score desc, a.arxiv_id",
        {"date": day, "topic": topic.slug, "min": min_score},
    )
    return _entries(store, topic, list(rows))


def recent_entries(store: Store, topic: Topic, min_score: int) -> list[DigestEntry]:
    """The topic's papers over the last `FEED_DAYS` announcement days, newest day first."""
    days = store.announcement_dates()[-FEED_DAYS:]
    if not days:
        return []
    marks = ",".join(f":d{i}" for i in range(len(days)))
    rows = store.db.query(
        _SCORED.format(where=f"a.date in ({marks}) and s.topic = :topic")
        + " order by a.date desc, s.score desc, a.arxiv_id limit :limit",
        {**{f"d{i}": d for i, d in enumerate(days)}, "topic": topic.slug, "min": min_score,
         "limit": FEED_MAX_ENTRIES},
    )
    return _entries(store, topic, list(rows))


def day_counts(store: Store, day: str, min_score: int) -> dict[str, int]:
    """topic slug → papers of `day` scoring ≥ `min_score`."""
    rows = store.db.query(
        f"select topic, count(*) n from ({_SCORED.format(where='a.date = :date')}) group by topic",
        {"date": day, "min": min_score},
    )
    return {r["topic"]: r["n"] for r in rows}


def overview(store: Store, day: str, min_score: int = DEFAULT_THRESHOLD) -> list[dict[str, Any]]:
    """The catalogue tree with each topic's count for `day`: areas → groups → TopicCount."""
    counts = day_counts(store, day, min_score)
    return [
        {"area": area, "groups": [
            {"group": group, "topics": [TopicCount(t, counts.get(t.slug, 0)) for t in group.topics]}
            for group in area.groups
        ]}
        for area in topics.load_catalogue().areas
    ]


def _entries(store: Store, topic: Topic, rows: list[dict[str, Any]]) -> list[DigestEntry]:
    papers = store.papers(r["arxiv_id"] for r in rows)
    out = []
    for r in rows:
        paper = papers.get(r["arxiv_id"])
        if paper is None:
            continue
        out.append(DigestEntry(
            paper=paper,
            announcement=Announcement(r["date"], r["arxiv_id"], r["announce_type"], r["version"],
                                      r["source"]),
            hits=[TopicHit(topic.slug, render.topic_name(topic, "both"), r["score"],
                           r["reason"] or "")],
            enrichment=get_enrichment(store, paper.id, paper.version),
        ))
    return out


# -- request helpers --------------------------------------------------------------------------


def _day(text: str) -> str | None:
    try:
        return date.fromisoformat(text).isoformat() if len(text) == 10 else None
    except ValueError:
        return None


def _min_score(request: aioweb.Request) -> int:
    raw = request.query.get("min", "")
    if re.fullmatch(r"\d{1,3}", raw) and int(raw) <= 100:
        return int(raw)
    return DEFAULT_THRESHOLD


def _topic(store: Store, name: str) -> Topic | None:
    """By slug (custom ones too), else by any catalogue name or alias."""
    if len(name) > topics.CUSTOM_MAX_CHARS:
        return None
    try:
        return topics.get_topic(name, store)
    except KeyError:
        return topics.lookup(name)


def _place(topic: Topic) -> dict[str, Any]:
    """The catalogue area and group a topic sits in (none for custom topics)."""
    for area in topics.load_catalogue().areas:
        for group in area.groups:
            if any(t.slug == topic.slug for t in group.topics):
                return {"area": area, "group": group}
    return {"area": None, "group": None}


def _missing() -> aioweb.Response:
    """404 for a day or topic that does not exist (not_found.html is about emailed links)."""
    return web.page("notice.html", status=404, title_zh="没有这个页面", title_en="No such page",
                    text_zh="日期或主题不存在。", text_en="That date or topic does not exist.",
                    link="/d", link_text="最新一期 / Latest day")


def _public(response: aioweb.StreamResponse) -> aioweb.StreamResponse:
    response.headers["Cache-Control"] = PUBLIC_CACHE
    return response


def _neighbours(dates: list[str], day: str) -> tuple[str | None, str | None]:
    earlier = [d for d in dates if d < day]
    later = [d for d in dates if d > day]
    return (earlier[-1] if earlier else None, later[0] if later else None)


def picker_context(store: Store, day: str | None, topic: Topic | None) -> dict[str, Any]:
    """What `web/_picker.html` needs: the topic list, the day and its neighbours."""
    dates = store.announcement_dates()
    prev_day, next_day = _neighbours(dates, day) if day else (None, None)
    return {"catalogue": topics.load_catalogue(), "day": day, "topic": topic,
            "prev_day": prev_day, "next_day": next_day,
            "first_day": dates[0] if dates else None, "last_day": dates[-1] if dates else None}


# -- routes -----------------------------------------------------------------------------------


@routes.get("/d")
async def pick(request: aioweb.Request) -> aioweb.StreamResponse:
    """The picker's GET form: `/d?date=…&topic=…` → the page's own address."""
    store = request.app[web.STORE]
    day = _day(request.query.get("date", "")) or store.latest_announcement_date()
    if day is None:
        return web.page("day_index.html", status=404, tree=[], min_score=DEFAULT_THRESHOLD,
                        announced=False, **picker_context(store, None, None))
    topic = _topic(store, request.query.get("topic", "").strip())
    target = f"/d/{day}/{topic.slug}" if topic else f"/d/{day}"
    raise aioweb.HTTPSeeOther(target)


@routes.get(r"/d/{day:\d{4}-\d{2}-\d{2}}")
async def day_page(request: aioweb.Request) -> aioweb.StreamResponse:
    store = request.app[web.STORE]
    day = _day(request.match_info["day"])
    if day is None:
        return _missing()
    min_score = _min_score(request)
    announced = bool(store.announcements_on(day))
    return _public(web.page(
        "day_index.html", status=200 if announced else 404,
        tree=overview(store, day, min_score), min_score=min_score, announced=announced,
        **picker_context(store, day, None),
    ))


@routes.get(r"/d/{day:\d{4}-\d{2}-\d{2}}/{topic}")
async def topic_page(request: aioweb.Request) -> aioweb.StreamResponse:
    store = request.app[web.STORE]
    day = _day(request.match_info["day"])
    topic = _topic(store, request.match_info["topic"])
    if day is None or topic is None:
        return _missing()
    if request.match_info["topic"] != topic.slug:
        raise aioweb.HTTPMovedPermanently(f"/d/{day}/{topic.slug}")
    min_score = _min_score(request)
    entries = topic_entries(store, topic, day, min_score)
    announced = bool(store.announcements_on(day))
    return _public(web.page(
        "day.html", status=200 if announced else 404, entries=entries, min_score=min_score,
        header=topic, nothing=not announced, **_place(topic), **picker_context(store, day, topic),
    ))


@routes.get("/feed/{topic}.xml")
async def feed(request: aioweb.Request) -> aioweb.StreamResponse:
    store = request.app[web.STORE]
    topic = _topic(store, request.match_info["topic"])
    if topic is None:
        return _missing()
    min_score = _min_score(request)
    entries = recent_entries(store, topic, min_score)
    base = _base_url(request)
    xml = render.environment().get_template("web/feed.xml").render(
        lang="both", topic=topic, entries=entries, base=base,
        self_url=f"{base}/feed/{topic.slug}.xml",
        updated=_feed_updated(entries), entry_html=_entry_html,
    )
    return _public(aioweb.Response(text=_xml_safe(xml), content_type="application/atom+xml",
                                   charset="utf-8"))


def _base_url(request: aioweb.Request) -> str:
    """Absolute links for the feed: DIGESTBOT_PUBLIC_URL, else the address we were asked at."""
    public = request.app[web.SETTINGS].public_url
    return public.rstrip("/") if public else f"{request.scheme}://{request.host}"


def _feed_updated(entries: list[DigestEntry]) -> str:
    """RFC 3339 time of the newest announcement day (its date at 00:00 UTC), or the epoch."""
    if not entries:
        return "1970-01-01T00:00:00Z"
    newest = max(e.announcement.date for e in entries)
    return datetime.fromisoformat(newest).replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry_html(entry: DigestEntry) -> str:
    """The entry partial as an HTML string, for an Atom <content type="html"> (escaped there)."""
    template = render.environment().get_template("email/_entry.html")
    return template.render(entry=entry, lang="both")


# XML 1.0 forbids most control characters; arXiv metadata has carried stray ones.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_INVALID.sub("", text)
