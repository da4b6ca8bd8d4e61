"""arXiv as the run loop sees it: an RSS feed that turns over when an announcement is published.

`ArxivDay` serves `GET /rss/{categories}` in arXiv's RSS 2.0 shape (the items of
rss.arxiv.org: `arXiv:ID vN Announce Type: …` descriptions, `arxiv:announce_type`, categories,
`dc:creator`) for the newest published announcement date. A test publishes a date (or lets a
`published_for(now)` function decide from a virtual clock) and the feed changes; before any
publication it serves an empty channel, like arXiv on a holiday. Listing pages and the API
answer 404, so a fetch configured with `sources=rss` only reads the feed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from tests.fakes.http import FakeServer, Request, Response

ET = ZoneInfo("America/New_York")

# Titles the offline scorer files under 后训练 (post-training) and under nothing in particular.
ON_TOPIC = ("Direct Preference Optimization for Post-Training Language Models with Verifiable "
            "Rewards, part {n}")
ON_TOPIC_ABSTRACT = ("We study post-training of large language models with reinforcement "
                     "learning from human feedback (RLHF), direct preference optimization (DPO) "
                     "and GRPO with verifiable rewards. Supervised fine-tuning (SFT) precedes "
                     "preference optimization; a reward model scores rollouts.")
OFF_TOPIC = "Crystal Lattice Vibrations in Granite Samples, part {n}"
OFF_TOPIC_ABSTRACT = "We measure phonon spectra of granite from three quarries at low temperature."


def paper_id(day: str, n: int) -> str:
    """Distinct, well-formed new-style ids per announcement date (YYMM.NNNNN, n < 2000)."""
    d = date.fromisoformat(day)
    return f"{d:%y%m}.{d.day * 2000 + n:05d}"


def rss(day: str, categories: list[str], on_topic: int, off_topic: int) -> str:
    """One announcement's RSS: `on_topic` post-training papers, then `off_topic` others."""
    pub = format_datetime(datetime.combine(date.fromisoformat(day), time(0), tzinfo=ET))
    items = []
    for n in range(on_topic + off_topic):
        hit = n < on_topic
        title = (ON_TOPIC if hit else OFF_TOPIC).format(n=n)
        abstract = ON_TOPIC_ABSTRACT if hit else OFF_TOPIC_ABSTRACT
        aid = paper_id(day, n)
        cats = "".join(f"<category>{c}</category>" for c in categories)
        items.append(f"""    <item>
      <title>{escape(title)}</title>
      <link>https://arxiv.org/abs/{aid}</link>
      <description>arXiv:{aid}v1 Announce Type: new
Abstract: {escape(abstract)}</description>
      <guid isPermaLink="false">oai:arXiv.org:{aid}v1</guid>
      {cats}
      <pubDate>{pub}</pubDate>
      <arxiv:announce_type>new</arxiv:announce_type>
      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
      <dc:creator>Ada Lovelace, Grace Hopper</dc:creator>
    </item>""")
    cat = "+".join(categories)
    return f"""<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:content="http://purl.org/rss/1.0/modules/content/" version="2.0">
  <channel>
    <title>{cat} updates on arXiv.org</title>
    <link>http://rss.arxiv.org/rss/{cat}</link>
    <description>{cat} updates on the arXiv.org e-print archive.</description>
    <language>en-us</language>
    <lastBuildDate>{pub}</lastBuildDate>
    <pubDate>{pub}</pubDate>
{chr(10).join(items)}
  </channel>
</rss>
"""


class ArxivDay:
    """`with ArxivDay(on_topic=3) as arxiv:` → `arxiv.rss_url` for DIGESTBOT_ARXIV_RSS_URL."""

    def __init__(self, *, on_topic: int = 3, off_topic: int = 2,
                 published_for: Callable[[], str | None] | None = None) -> None:
        self.on_topic = on_topic
        self.off_topic = off_topic
        self.published_for = published_for
        self._published: list[str] = []
        self.down = False  # True: every request answers 503, as arXiv does when overloaded
        self._lock = threading.Lock()
        self.server = FakeServer(self.handle)

    @property
    def rss_url(self) -> str:
        return f"{self.server.url}/rss/"

    @property
    def url(self) -> str:
        return self.server.url

    def publish(self, day: str) -> None:
        with self._lock:
            self._published.append(day)

    def current(self) -> str | None:
        if self.published_for is not None:
            return self.published_for()
        with self._lock:
            return max(self._published, default=None)

    def handle(self, req: Request) -> Response:
        if self.down:
            return Response(503, "Service Unavailable")
        if not req.path.startswith("/rss/"):
            return Response(404, "not here")
        categories = req.path.removeprefix("/rss/").split("+")
        day = self.current()
        if day is None:
            return Response(200, rss("2000-01-03", categories, 0, 0),
                            {"Content-Type": "application/rss+xml"})
        return Response(200, rss(day, categories, self.on_topic, self.off_topic),
                        {"Content-Type": "application/rss+xml"})

    def __enter__(self) -> ArxivDay:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)


@contextlib.contextmanager
def served_day(monkeypatch: Any, **counts: int) -> Iterator[ArxivDay]:
    """An `ArxivDay` (3 papers on topic, 2 off unless `counts` say) that the settings point
    at: RSS for cs.CL, and the API, listing and PDF bases on the same server."""
    with ArxivDay(**{"on_topic": 3, "off_topic": 2, **counts}) as day:
        monkeypatch.setenv("DIGESTBOT_SOURCES", "rss")
        monkeypatch.setenv("DIGESTBOT_CATEGORIES", "cs.CL")
        monkeypatch.setenv("DIGESTBOT_ARXIV_RSS_URL", day.rss_url)
        for name in ("API", "LIST", "PDF"):
            monkeypatch.setenv(f"DIGESTBOT_ARXIV_{name}_URL", f"{day.url}/{name.lower()}/")
        yield day
