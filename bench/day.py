"""An announcement evening in real time, with production politeness, from "announcement
visible" to "last digest accepted".

    .venv/bin/python bench/day.py [--papers 1500] [--readers 1000] [--tick 60]

Everything is local and speaks the real wire formats:
- arXiv (one fake server): the RSS feed of `--papers` real papers (titles, abstracts and
  authors from the recorded arXiv responses in /work/shared/fixtures/arxiv, tests/fixtures
  as a fallback), a fifth of them on the readers' topics, a third of those (and a few
  others) with affiliations in `dc:creator` so they need no PDF; every other first page is
  a real small PDF made with fpdf2, with the affiliations on page 1. The export API answers
  id_list queries with entries made from a recorded answer (the same affiliations as
  `arxiv:affiliation`). Every arXiv request, API and PDFs included, waits for the production politeness (DIGESTBOT_ARXIV_DELAY is left at its
  default, 3 s; the bench refuses to run with less).
- The LLM: the OpenAI-compatible fake (tests/fakes/openai.py), 2 s an answer, at most
  DIGESTBOT_LLM_CONCURRENCY (8) in flight; a paper's scores come from a table made here
  (on-topic papers 55–98 on one or two topics, the rest 5–45).
- Readers: aiosmtpd for email, the Telegram Bot API fake enforcing Telegram's flood limits,
  the Slack Web API fake; each answer after `--latency-ms`. Half the readers are due at the
  announcement (09:00 in Beijing on a winter Thursday), the rest one a minute later each
  up to 25 minutes after; some follow an author, some have must/exclude keywords.

The clock starts at Wednesday 18 November 2026, 20:00 ET and runs in real time:
`Service.fetch_cycle` fetches and runs the pipeline (which nudges deliveries as digests
become final), a delivery tick runs every `--tick` seconds as in `run`. A monitor reads the
outbox twice a second. Printed: the settings, then minutes from the announcement to the
first, median and last delivery (targets ≤ 5, ≤ 15, ≤ 30), PDFs fetched, LLM requests and
tokens. Not run by the test suite; the full size takes 20–30 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

# The repo root instead of bench/ itself: bench/telegram.py would shadow the `telegram` package.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from fpdf import FPDF  # noqa: E402
from lxml import etree  # noqa: E402

from digestbot import subscribers  # noqa: E402
from digestbot.cli import setup_logging  # noqa: E402
from digestbot.clock import ET, Clock  # noqa: E402
from digestbot.config import load_settings  # noqa: E402
from digestbot.scheduler import Service  # noqa: E402
from digestbot.sources.parsers import api_papers, parse_rss, parse_xml  # noqa: E402
from digestbot.store import Store  # noqa: E402
from digestbot.subscribers import profile  # noqa: E402
from tests.fakes.arxiv import api_answer  # noqa: E402
from tests.fakes.arxiv_day import paper_id  # noqa: E402
from tests.fakes.http import FakeServer, Request, Response  # noqa: E402
from tests.fakes.openai import FakeOpenAI  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.fakes.smtp import SmtpServer  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

ANNOUNCE = datetime(2026, 11, 18, 20, 0, tzinfo=ET)  # 09:00 Thursday in Beijing
BATCH = "2026-11-19"
TOPICS = ["post-training", "reasoning", "agents", "evaluation"]
FIXTURES = [ROOT.parent / "shared" / "fixtures" / "arxiv", ROOT / "tests" / "fixtures"]
INSTITUTIONS = ["Tsinghua University", "Peking University", "Shanghai AI Laboratory",
                "Stanford University", "Massachusetts Institute of Technology",
                "University of Edinburgh", "Max Planck Institute for Informatics",
                "Carnegie Mellon University", "Zhejiang University", "ETH Zurich"]
# Minutes after the announcement over which the other half is due (`--spread`).
LATER_READERS_SPREAD = 25
ATOM, ARXIV = "{http://www.w3.org/2005/Atom}", "{http://arxiv.org/schemas/atom}"


# -- the day's papers, from real arXiv records ------------------------------------------------

def real_records() -> list[tuple[str, str, list[str]]]:
    """(title, abstract, authors) of every recorded paper, deduplicated by title: the modern
    cs.CL/cs.AI ones first (they become the on-topic fifth), then the OAI harvests."""
    folder = next((f for f in FIXTURES if (f / "rss_new_cs.CL_2026-08-13.xml").exists()), None)
    if folder is None:
        sys.exit("bench/day.py: the recorded arXiv fixtures are missing")
    out: list[tuple[str, str, list[str]]] = []
    for name in ("rss_new_cs.CL_2026-08-13.xml",):
        batch = parse_rss(parse_xml((folder / name).read_bytes(), name))
        out += [(p.title, p.abstract, [a.name for a in p.authors]) for p in batch.papers]
    for path in sorted(folder.glob("api_query_*entries*.xml")):
        out += [(p.title, p.abstract, [a.name for a in p.authors])
                for p in api_papers(parse_xml(path.read_bytes(), path.name))]
    for path in sorted(folder.glob("oai_*1000records*.xml")):
        out += _oai(path)
    seen: set[str] = set()
    unique = []
    for title, abstract, authors in out:
        key = " ".join(title.split()).casefold()
        if key and abstract and key not in seen:
            seen.add(key)
            unique.append((" ".join(title.split()), " ".join(abstract.split()), authors or ["Anonymous"]))
    return unique


def _oai(path: Path) -> list[tuple[str, str, list[str]]]:
    root = etree.parse(str(path)).getroot()
    out = []
    for rec in root.iter("{*}arXiv", "{*}arXivRaw"):
        title = rec.findtext("{*}title") or ""
        abstract = rec.findtext("{*}abstract") or ""
        names = [" ".join(filter(None, [a.findtext("{*}forenames"), a.findtext("{*}keyname")]))
                 for a in rec.iter("{*}author")]
        if not names:  # arXivRaw: one comma-separated string
            names = [n.strip() for n in (rec.findtext("{*}authors") or "").replace(" and ", ",").split(",")]
        out.append((title, abstract, [n for n in names if n][:8]))
    return out


class Day:
    """The announced papers, their scores per topic (the fake model's answers), which carry
    affiliations in the feed, and their first pages."""

    def __init__(self, n: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        records = real_records()
        if len(records) < n:  # recycle with a part number rather than repeat a title
            records = [(f"{t} (part {k + 2})" if k else t, a, au)
                       for k in range(n // len(records) + 1) for t, a, au in records]
        on_topic = n // 5
        chosen = records[:on_topic] + rng.sample(records[on_topic:], n - on_topic)
        flags = [True] * on_topic + [False] * (n - on_topic)
        order = list(range(n))
        rng.shuffle(order)  # on-topic papers anywhere in the id order, as on a real day
        self.papers: list[dict] = []
        self.scores: dict[str, dict[str, int]] = {}
        for n_id, k in enumerate(order):
            title, abstract, authors = chosen[k]
            hit = flags[k]
            if hit:
                main = rng.choice(TOPICS)
                scores = {t: rng.randint(5, 40) for t in TOPICS}
                scores[main] = rng.randint(60, 98)
                if rng.random() < 0.3:
                    scores[rng.choice([t for t in TOPICS if t != main])] = rng.randint(55, 85)
            else:
                scores = {t: rng.randint(5, 45) for t in TOPICS}
            feed_affiliations = rng.random() < (1 / 3 if hit else 0.05)
            institutions = rng.sample(INSTITUTIONS, rng.randint(1, 3))
            self.scores[title] = scores
            self.papers.append({"id": paper_id(BATCH, n_id), "title": title, "abstract": abstract,
                                "authors": authors, "feed_affiliations": feed_affiliations,
                                "institutions": institutions, "on_topic": hit})
        self.by_id = {p["id"]: p for p in self.papers}
        self._pdfs: dict[str, bytes] = {}
        self._api: bytes | None = None
        self._lock = threading.Lock()

    def score_for(self, title: str, slug: str) -> int:
        return self.scores.get(title, {}).get(slug, 10)

    def rss(self) -> str:
        pub = format_datetime(datetime.combine(date.fromisoformat(BATCH), datetime.min.time(), ET))
        items = []
        for p in self.papers:
            creators = ", ".join(
                f"{name} ({p['institutions'][i % len(p['institutions'])]})"
                if p["feed_affiliations"] else name for i, name in enumerate(p["authors"]))
            items.append(f"""<item><title>{escape(p['title'])}</title>
<link>https://arxiv.org/abs/{p['id']}</link>
<description>arXiv:{p['id']}v1 Announce Type: new
Abstract: {escape(p['abstract'])}</description>
<guid isPermaLink="false">oai:arXiv.org:{p['id']}v1</guid><category>cs.CL</category>
<pubDate>{pub}</pubDate><arxiv:announce_type>new</arxiv:announce_type>
<dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
<dc:creator>{escape(creators)}</dc:creator></item>""")
        return f"""<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0">
<channel><title>cs.CL updates on arXiv.org</title><link>http://rss.arxiv.org/rss/cs.CL</link>
<description>cs.CL updates on the arXiv.org e-print archive.</description>
<lastBuildDate>{pub}</lastBuildDate><pubDate>{pub}</pubDate>
{chr(10).join(items)}
</channel></rss>
"""

    def api_feed(self) -> bytes:
        """Every paper as the export API answers an id_list query: a real recorded answer with
        its entries replaced by ours, each made from its first entry (so the elements and
        namespaces are arXiv's, not ours); `arxiv:affiliation` for the authors whose
        affiliations the feed carries, as the API gives them when authors supplied them."""
        if self._api is None:
            root = etree.fromstring(_recorded_api_answer())
            entries = root.findall(f"{ATOM}entry")
            template = entries[0]
            for e in entries:
                root.remove(e)
            for p in self.papers:
                root.append(_api_entry(template, p))
            self._api = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return self._api

    def pdf(self, arxiv_id: str) -> bytes | None:
        """A real one-page-plus PDF: title, authors with marks, affiliations, abstract."""
        paper = self.by_id.get(arxiv_id)
        if paper is None:
            return None
        with self._lock:
            if arxiv_id not in self._pdfs:
                self._pdfs[arxiv_id] = _make_pdf(paper)
            return self._pdfs[arxiv_id]


def _recorded_api_answer() -> bytes:
    """A real export API answer (the shared recordings, else the repo's excerpt)."""
    for path in (FIXTURES[0] / "api_query_cat_cs.LG_OR_cs.AI_20entries_2026-04-30.xml",
                 FIXTURES[1] / "arxiv" / "api_answer.xml"):
        if path.exists():
            return path.read_bytes()
    sys.exit("bench/day.py: no recorded arXiv API answer found")


def _api_entry(template: etree._Element, paper: dict) -> etree._Element:
    """`template` (a recorded API entry) carrying `paper`: submitted the day before."""
    entry = copy.deepcopy(template)
    url = f"http://arxiv.org/abs/{paper['id']}v1"
    entry.find(f"{ATOM}id").text = url
    entry.find(f"{ATOM}title").text = paper["title"]
    entry.find(f"{ATOM}summary").text = paper["abstract"]
    for tag in ("updated", "published"):
        entry.find(f"{ATOM}{tag}").text = "2026-11-18T17:59:01Z"
    for link in entry.findall(f"{ATOM}link"):
        kind = "pdf" if link.get("title") == "pdf" else "abs"
        link.set("href", f"https://arxiv.org/{kind}/{paper['id']}v1")
    for cat in entry.findall(f"{ATOM}category"):
        entry.remove(cat)
    entry.find(f"{ARXIV}primary_category").set("term", "cs.CL")
    template_author = entry.find(f"{ATOM}author")
    for author in entry.findall(f"{ATOM}author"):
        entry.remove(author)
    for i, name in enumerate(paper["authors"]):
        author = copy.deepcopy(template_author)
        author.find(f"{ATOM}name").text = name
        if paper["feed_affiliations"]:
            affiliation = etree.SubElement(author, f"{ARXIV}affiliation")
            affiliation.text = paper["institutions"][i % len(paper["institutions"])]
        entry.append(author)
    category = etree.Element(f"{ATOM}category", term="cs.CL", scheme="http://arxiv.org/schemas/atom")
    entry.find(f"{ATOM}summary").addnext(category)
    return entry


def _latin(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _make_pdf(paper: dict) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=10)
    pdf.add_page()
    pdf.multi_cell(0, 6, _latin(paper["title"]), new_x="LMARGIN", new_y="NEXT")
    marks = [f"{name} {i % len(paper['institutions']) + 1}" for i, name in enumerate(paper["authors"])]
    pdf.multi_cell(0, 6, _latin(", ".join(marks)), new_x="LMARGIN", new_y="NEXT")
    for i, inst in enumerate(paper["institutions"], 1):
        pdf.cell(0, 6, f"{i} {inst}", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 5, _latin("Abstract. " + paper["abstract"][:1200]), new_x="LMARGIN", new_y="NEXT")
    pdf.add_page()
    pdf.multi_cell(0, 5, "1 Introduction. " + "Large language models are studied here. " * 20)
    return bytes(pdf.output())


class FakeArxiv:
    """RSS at /rss/cs.CL, the export API (id_list queries) at /api/, PDFs at /pdf/{id}v1;
    counts what was asked. The listing 404s: the bench reads the feed
    (DIGESTBOT_SOURCES=rss), as arXiv's own RSS users do, and the API fills what the feed
    lacks, each of its requests under the same politeness as the rest."""

    def __init__(self, day: Day, latency: float) -> None:
        self.day, self.latency = day, latency
        self.pdf_requests = self.api_requests = 0
        self.requests: list[tuple[float, str]] = []
        self.server = FakeServer(self.handle)

    def handle(self, req: Request) -> Response:
        self.requests.append((time.monotonic(), req.path))
        if req.path.startswith("/rss/"):
            resp = Response(200, self.day.rss(), {"Content-Type": "application/rss+xml"})
        elif req.path.startswith("/api/"):
            self.api_requests += 1
            ids = [i for i in req.query.get("id_list", [""])[0].split(",") if i]
            resp = Response(200, api_answer(self.day.api_feed(), ids),
                            {"Content-Type": "application/atom+xml"})
        elif req.path.startswith("/pdf/"):
            self.pdf_requests += 1
            data = self.day.pdf(req.path.removeprefix("/pdf/").split("v")[0])
            resp = (Response(200, data, {"Content-Type": "application/pdf"}) if data
                    else Response(404, "not found"))
        else:
            resp = Response(404, "not here")
        resp.delay = max(resp.delay, self.latency)
        return resp


def with_latency(server, seconds: float) -> None:
    """Every answer of a FakeServer-based fake waits `seconds`, like a real API across the net."""
    inner = server.handle

    def slow(req):
        resp: Response = inner(req)
        resp.delay = max(resp.delay, seconds)
        return resp

    server.handle = slow


# -- readers -------------------------------------------------------------------------------------

def add_readers(db: str, n: int, day: Day, spread: int) -> dict[str, int]:
    """n readers in Beijing: 60 % email, 30 % Telegram, 10 % Slack; even ones due at the
    announcement (08:30 or 09:00), odd ones one a minute later each up to 25 minutes; 1–3
    topics at 60/70/80, a few with a smaller cap, a followed author or keywords."""
    rng = random.Random(11)
    counts = {"email": 0, "telegram": 0, "slack": 0, "due at the announcement": 0}
    authors = [p["authors"][0] for p in day.papers if not p["on_topic"]][:50]
    with Store(db) as store:
        for i in range(n):
            channel = "email" if i % 10 < 6 else "telegram" if i % 10 < 9 else "slack"
            address = {"email": f"reader{i}@example.org", "telegram": str(100000 + i),
                       "slack": f"C{i:08d}"}[channel]
            if i % 2 == 0:
                at = rng.choice(["08:30", "09:00"])
                counts["due at the announcement"] += 1
            else:
                at = f"09:{1 + (i // 2) % spread:02d}"
            sub = subscribers.add_or_update(
                store, channel=channel, address=address, topics=rng.sample(TOPICS, rng.randint(1, 3)),
                threshold=rng.choice([60, 70, 80]), tz="Asia/Shanghai", send_at=at)
            if rng.random() < 0.2:
                subscribers.update_settings(store, sub.id, max_papers=rng.choice([10, 20]))
            if rng.random() < 0.05 and authors:
                profile.follow(store, sub.id, [rng.choice(authors)])
            if rng.random() < 0.05:
                profile.add_keywords(store, sub.id, "exclude", ["survey"])
            counts[channel] += 1
    return counts


class Monitor:
    """Reads the outbox from its own connection; notes when each digest was accepted."""

    def __init__(self, db: str, start: float) -> None:
        self.db, self.start = db, start
        self.times: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            while not stop.is_set():
                sent = conn.execute("select count(*) from deliveries where status = 'sent'").fetchone()[0]
                now = time.monotonic() - self.start
                self.times += [now] * (sent - len(self.times))
                await asyncio.sleep(0.5)
        finally:
            conn.close()

    def unfinished(self) -> int:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(
                "select count(*) from deliveries where status not in ('sent', 'failed_permanent')"
            ).fetchone()[0]


async def ticker(service: Service, every: float, stop: asyncio.Event) -> None:
    """The `run` delivery tick (APScheduler's job there), beside the fetch."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            await service.deliver_tick()


async def simulate(args: argparse.Namespace, folder: Path) -> None:
    latency = args.latency_ms / 1000
    day = Day(args.papers)
    arxiv = FakeArxiv(day, latency)
    with arxiv.server, SmtpServer() as smtp, FakeTelegram(enforce_limits=True) as tg, \
            FakeSlack() as slack, FakeOpenAI(score_for=day.score_for, delay=args.llm_latency) as llm:
        with_latency(tg.server, latency)
        with_latency(slack.server, latency)
        base = arxiv.server.url
        os.environ.update({
            "DIGESTBOT_DB": str(folder / "day.db"), "DIGESTBOT_OUTBOX": str(folder / "outbox"),
            "DIGESTBOT_SOURCES": "rss", "DIGESTBOT_CATEGORIES": "cs.CL",
            "DIGESTBOT_ARXIV_RSS_URL": f"{base}/rss/", "DIGESTBOT_ARXIV_API_URL": f"{base}/api/",
            "DIGESTBOT_ARXIV_LIST_URL": f"{base}/list/", "DIGESTBOT_ARXIV_PDF_URL": f"{base}/pdf/",
            "DIGESTBOT_SMTP_URL": smtp.url,
            "TELEGRAM_BOT_TOKEN": tg.token, "DIGESTBOT_TELEGRAM_API_URL": tg.base_url,
            "SLACK_BOT_TOKEN": slack.bot_token, "DIGESTBOT_SLACK_API_URL": slack.api_url,
            "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": llm.url,
        })
        settings = load_settings()
        if settings.arxiv_delay < 3.0:
            sys.exit(f"DIGESTBOT_ARXIV_DELAY={settings.arxiv_delay}: the bench runs at arXiv's 3 s")
        readers = add_readers(settings.db, args.readers, day, args.spread)
        print(f"settings: papers {args.papers} ({sum(p['on_topic'] for p in day.papers)} on topic, "
              f"{sum(p['feed_affiliations'] for p in day.papers)} with feed affiliations), "
              f"readers {args.readers} {readers}, the others due over {args.spread} min; "
              f"arXiv delay {settings.arxiv_delay:g} s (every request, PDFs included); "
              f"LLM {args.llm_latency:g} s an answer, {settings.llm_concurrency} in flight "
              f"({settings.llm_json}); API latency {args.latency_ms:g} ms; tick {args.tick:g} s",
              flush=True)
        with Store(settings.db) as store:
            service = Service(settings, store, Clock(ANNOUNCE))
            start = time.monotonic()
            monitor = Monitor(settings.db, start)
            stop, stop_ticks = asyncio.Event(), asyncio.Event()
            watcher = asyncio.create_task(monitor.run(stop))
            ticks = asyncio.create_task(ticker(service, args.tick, stop_ticks))
            await service.fetch_cycle()
            pipeline_done = time.monotonic() - start
            while True:
                report = await service.deliver_tick()
                idle = report is not None and not (report.planned or report.not_due
                                                   or report.unready)
                if idle and not monitor.unfinished():
                    break
                await asyncio.sleep(args.tick)
            stop_ticks.set()
            await ticks
            await asyncio.sleep(0.6)  # one more monitor reading
            stop.set()
            await watcher
            kinds = {r["kind"]: r["n"] for r in store.db.query(
                "select kind, count(*) n from llm_calls group by kind")}
            digests = {r["status"]: r["n"] for r in store.db.query(
                "select status, count(*) n from deliveries group by status")}

    times = monitor.times

    def minutes(t: float | None) -> str:
        return "never" if t is None else f"{t / 60:.1f} min"

    usage = llm.usages
    print(f"first delivery   {minutes(times[0] if times else None)}  (target ≤ 5 min)")
    print(f"median delivery  {minutes(statistics.median(times) if times else None)}  (target ≤ 15 min)")
    print(f"last delivery    {minutes(times[-1] if times else None)}  (target ≤ 30 min)")
    print(f"pipeline done    {minutes(pipeline_done)}")
    print(f"digests          {digests}")
    print(f"PDFs fetched     {arxiv.pdf_requests}, API requests {arxiv.api_requests} "
          f"(arXiv requests in all: {len(arxiv.requests)})")
    print(f"LLM requests     {len(usage)} (logical calls by kind: {kinds})")
    print(f"LLM tokens       prompt {sum(u['prompt_tokens'] for u in usage)}, completion "
          f"{sum(u['completion_tokens'] for u in usage)}, cached "
          f"{sum(u['prompt_tokens_details']['cached_tokens'] for u in usage)}")
    print(f"messages         email {len(smtp.messages)}, telegram {len(tg.sent)} "
          f"(429s: {tg.too_many_requests} {dict(tg.refusals)}), slack {len(slack.posted)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--papers", type=int, default=1500)
    p.add_argument("--readers", type=int, default=1000)
    p.add_argument("--spread", type=int, default=LATER_READERS_SPREAD,
                   help="minutes after the announcement over which the other half is due")
    p.add_argument("--tick", type=float, default=60.0, help="seconds between delivery ticks")
    p.add_argument("--latency-ms", type=float, default=80.0, help="latency of each API answer")
    p.add_argument("--llm-latency", type=float, default=2.0,
                   help="seconds per LLM answer (a hosted model: 1–5 s)")
    args = p.parse_args()
    if args.papers < 5 or args.papers >= 2000 or args.readers < 1 or not 1 <= args.spread <= 58:
        p.error("--papers must be 5–1999 (arXiv ids of one day), --readers ≥ 1, --spread 1–58")
    setup_logging(verbose=False, as_json=False)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP line
    with tempfile.TemporaryDirectory(prefix="digestbot-day-") as folder:
        asyncio.run(simulate(args, Path(folder)))


if __name__ == "__main__":
    main()
