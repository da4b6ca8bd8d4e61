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

from aiohttp import web

from digestbot import render, topics
from digestbot.enrich import topic_scores
from digestbot.enrich.stored import get_enrichment
from digestbot.models import DigestEntry, Topic, TopicHit
from digestbot.sources.papers import (
    announcement_dates,
    announcements_on,
    get_papers,
    latest_announcement_date,
)
from digestbot.store import Store
from digestbot.subscribers import DEFAULT_THRESHOLD
from digestbot.web.common import SETTINGS, STORE, notice, page
from digestbot.web.forms import feedback_page

# Announcement days an Atom feed spans, and the most entries it carries.
FEED_DAYS = 7
FEED_MAX_ENTRIES = 200

# Public pages may be cached briefly by browsers and proxies; they change once a day.
PUBLIC_CACHE = "public, max-age=300"


@dataclass(frozen=True)
class TopicCount:
    topic: Topic
    count: int
    scored: bool  # False: no score at all that day (say "未评分", not "0 篇")
    scorer: str  # which scorer produced the counted scores (scorer_label)


def scorer_label(scorers: dict[str, int]) -> str:
    """Which scorer produced a day's scores for a topic, most papers first: the offline
    scorer, or the model's name; a mix (LLM with offline fallbacks) names both."""
    names = []
    for name, _ in sorted(scorers.items(), key=lambda kv: (-kv[1], kv[0])):
        if name.startswith("llm:"):
            names.append(f"模型评分 / model {name.removeprefix('llm:')}")
        elif name.startswith("offline"):
            names.append("离线评分 / offline scorer")
        elif name.startswith("prefilter:"):  # never sent to the model: no topic within reach
            names.append("预筛 · 离线评分 / prefiltered, offline scorer")
        else:
            names.append(name)
    return " + ".join(dict.fromkeys(names))


def _topic_count(topic: Topic, day: topic_scores.DayTopic | None) -> TopicCount:
    if day is None:
        return TopicCount(topic, 0, False, "")
    return TopicCount(topic, day.count, True, scorer_label(day.scorers))


def topic_entries(store: Store, topic: Topic, day: str, min_score: int) -> list[DigestEntry]:
    """The papers of `day` scoring ≥ `min_score` for `topic`, best first, ties by id."""
    return _entries(store, topic, topic_scores.on_day(store, topic.slug, day, min_score))


def recent_entries(store: Store, topic: Topic, min_score: int) -> list[DigestEntry]:
    """The topic's papers over the last `FEED_DAYS` announcement days, newest day first."""
    days = announcement_dates(store)[-FEED_DAYS:]
    return _entries(store, topic, topic_scores.on_days(store, topic.slug, days, min_score,
                                                       FEED_MAX_ENTRIES))


def overview(store: Store, day: str, min_score: int = DEFAULT_THRESHOLD) -> list[dict[str, Any]]:
    """The catalogue tree with each topic's count for `day`: areas → groups → TopicCount."""
    days = topic_scores.day_topics(store, day, min_score)
    return [
        {"area": area, "groups": [
            {"group": group,
             "topics": [_topic_count(t, days.get(t.slug)) for t in group.topics]}
            for group in area.groups
        ]}
        for area in topics.load_catalogue().areas
    ]


def _entries(store: Store, topic: Topic, scored: list[topic_scores.AnnouncedScore]
             ) -> list[DigestEntry]:
    papers = get_papers(store, [item.announcement.arxiv_id for item in scored])
    out = []
    for item in scored:
        paper = papers.get(item.announcement.arxiv_id)
        if paper is None:
            continue
        out.append(DigestEntry(
            paper=paper,
            announcement=item.announcement,
            hits=[TopicHit(topic.slug, render.topic_name(topic, "both"), item.score.score,
                           item.score.reason)],
            enrichment=get_enrichment(store, paper.id, paper.version),
        ))
    return out


# -- request helpers --------------------------------------------------------------------------


def _day(text: str) -> str | None:
    try:
        return date.fromisoformat(text).isoformat() if len(text) == 10 else None
    except ValueError:
        return None


def _min_score(request: web.Request) -> int:
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


def _missing() -> web.Response:
    """404 for a day or topic that does not exist (not_found.html is about emailed links)."""
    return notice("没有这个页面", "No such page", "日期或主题不存在。",
                  "That date or topic does not exist.", status=404, link="/d",
                  link_text="最新一期 / Latest day")


def _public(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Cache-Control"] = PUBLIC_CACHE
    return response


def _neighbours(dates: list[str], day: str) -> tuple[str | None, str | None]:
    earlier = [d for d in dates if d < day]
    later = [d for d in dates if d > day]
    return (earlier[-1] if earlier else None, later[0] if later else None)


def picker_context(store: Store, day: str | None, topic: Topic | None) -> dict[str, Any]:
    """What `web/_picker.html` needs: the topic list, the day and its neighbours."""
    dates = announcement_dates(store)
    prev_day, next_day = _neighbours(dates, day) if day else (None, None)
    return {"catalogue": topics.load_catalogue(), "day": day, "topic": topic,
            "prev_day": prev_day, "next_day": next_day,
            "first_day": dates[0] if dates else None, "last_day": dates[-1] if dates else None}


# -- routes -----------------------------------------------------------------------------------


async def pick(request: web.Request) -> web.StreamResponse:
    """The picker's GET form: `/d?date=…&topic=…` → the page's own address."""
    store = request.app[STORE]
    day = _day(request.query.get("date", "")) or latest_announcement_date(store)
    if day is None:
        return page("day_index.html", status=404, tree=[], min_score=DEFAULT_THRESHOLD,
                        announced=False, **picker_context(store, None, None))
    topic = _topic(store, request.query.get("topic", "").strip())
    target = f"/d/{day}/{topic.slug}" if topic else f"/d/{day}"
    raise web.HTTPSeeOther(target)


async def day_page(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    day = _day(request.match_info["day"])
    if day is None:
        return _missing()
    min_score = _min_score(request)
    announced = bool(announcements_on(store, day))
    return _public(page(
        "day_index.html", status=200 if announced else 404,
        tree=overview(store, day, min_score), min_score=min_score, announced=announced,
        **picker_context(store, day, None),
    ))


async def topic_page(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    day = _day(request.match_info["day"])
    topic = _topic(store, request.match_info["topic"])
    if day is None or topic is None:
        return _missing()
    if request.match_info["topic"] != topic.slug:
        raise web.HTTPMovedPermanently(f"/d/{day}/{topic.slug}")
    min_score = _min_score(request)
    entries = topic_entries(store, topic, day, min_score)
    announced = bool(announcements_on(store, day))
    scored = _topic_count(topic, topic_scores.day_topics(store, day, min_score, topic.slug).get(topic.slug))
    context = dict(status=200 if announced else 404, entries=entries, min_score=min_score,
                   scored=scored, header=topic, nothing=not announced, **_place(topic),
                   **picker_context(store, day, topic))
    if "token" in request.query:  # a reader from a signed 👍/👎 link: the page with buttons
        return feedback_page(request, "day.html", [e.paper.id for e in entries], **context)
    return _public(page("day.html", **context))


async def feed(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
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
    return _public(web.Response(text=_xml_safe(xml), content_type="application/atom+xml",
                                   charset="utf-8"))


def _base_url(request: web.Request) -> str:
    """Absolute links for the feed: DIGESTBOT_PUBLIC_URL, else the address we were asked at."""
    public = request.app[SETTINGS].public_url
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
