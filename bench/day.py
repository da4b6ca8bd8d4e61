"""A simulated announcement day, from "announcement visible" to "last digest accepted".

    .venv/bin/python bench/day.py [--papers 1500] [--subscribers 1000] [--tick 60]

Everything is local: arXiv's RSS (tests/fakes/arxiv_day.py, `--papers` items of which a fifth
are about post-training), aiosmtpd for email, the Telegram Bot API fake enforcing Telegram's
flood limits (30 messages/s per bot, 1/s per chat), the Slack Web API fake, and — when
`--llm` is given — the OpenAI-compatible fake of tests/fakes/openai.py; otherwise the
offline scorer. Each fake answers with a realistic latency (`--latency-ms`, `--llm-latency`).

The clock starts at Wednesday 18 November 2026, 20:00 ET (09:00 in Beijing, so every 08:30
reader is due the moment their digest is ready) and runs in real time: `Service.fetch_cycle`
fetches, scores, enriches and hands over to a delivery, then a delivery tick every `--tick`
seconds (a minute in production) sends what is left. A monitor reads the outbox twice a
second. Printed: minutes to the first and the last delivery (targets: ≤ 10 and ≤ 30), LLM
calls, and messages per channel. Not run by the test suite.

On this machine (2 cores), 1,500 papers and 1,000 subscribers: offline scorer — first 0.1 min,
last 6.9 min; `--llm` at 2 s an answer, 8 in flight — first 7.6 min (1,800 LLM calls: every
paper scored before anything is enriched), last 14.5 min; 600 emails, 2,400 Telegram and 500
Slack messages either way.

Why the first delivery waits for the whole scoring pass, and is not sped up by reordering in
scheduler/: a digest holds every paper of the day above the reader's threshold, best match
first, and each paper goes to a reader at most once — so no reader's digest is final before
every paper is scored for their topics, and one request scores a paper for all topics at once.
Sending digests between chunks of the pipeline would send partial digests and push the rest of
the day into tomorrow's. Enriching while scoring would save at most the enrichment phase
(~1 of the 7.6 minutes). The lever is the scoring wall time, papers ÷ DIGESTBOT_LLM_CONCURRENCY
× seconds per answer: 16 in flight would halve it, if the provider's rate limit allows.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

# The repo root instead of bench/ itself: bench/telegram.py would shadow the `telegram` package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from digestbot import subscribers  # noqa: E402
from digestbot.cli import setup_logging  # noqa: E402
from digestbot.clock import ET, Clock  # noqa: E402
from digestbot.config import load_settings  # noqa: E402
from digestbot.enrich.counts import counts as enrich_counts  # noqa: E402
from digestbot.scheduler import Service  # noqa: E402
from digestbot.store import Store  # noqa: E402
from tests.fakes.arxiv_day import ArxivDay  # noqa: E402
from tests.fakes.http import Response  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.fakes.smtp import SmtpServer  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

ANNOUNCE = datetime(2026, 11, 18, 20, 0, tzinfo=ET)
BATCH = "2026-11-19"
TOPICS = ["post-training", "reasoning", "agents", "evaluation"]


def with_latency(server, seconds: float) -> None:
    """Every answer of a FakeServer-based fake waits `seconds`, like a real API across the net."""
    inner = server.handle

    def slow(req):
        resp: Response = inner(req)
        resp.delay = max(resp.delay, seconds)
        return resp

    server.handle = slow


def add_subscribers(db: str, n: int) -> dict[str, int]:
    """n readers in Beijing at 08:30: 60 % email, 30 % Telegram, 10 % Slack channels."""
    rng = random.Random(7)
    counts = {"email": 0, "telegram": 0, "slack": 0}
    with Store(db) as store:
        for i in range(n):
            channel = "email" if i % 10 < 6 else "telegram" if i % 10 < 9 else "slack"
            address = {"email": f"reader{i}@example.org", "telegram": str(100000 + i),
                       "slack": f"C{i:08d}"}[channel]
            topics = ["post-training", *rng.sample(TOPICS[1:], rng.randint(0, 2))]
            subscribers.add_or_update(store, channel=channel, address=address, topics=topics,
                                      tz="Asia/Shanghai", send_at="08:30")
            counts[channel] += 1
    return counts


class Monitor:
    """Reads the outbox from its own connection; notes when the first and last digests went."""

    def __init__(self, db: str, start: float) -> None:
        self.db, self.start = db, start
        self.first: float | None = None
        self.last: float | None = None
        self.sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            while not stop.is_set():
                sent = conn.execute("select count(*) from deliveries where status = 'sent'").fetchone()[0]
                now = time.monotonic() - self.start
                if sent and self.first is None:
                    self.first = now
                if sent > self.sent:
                    self.sent, self.last = sent, now
                await asyncio.sleep(0.5)
        finally:
            conn.close()

    def unfinished(self) -> int:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute("select count(*) from deliveries where status != 'sent'").fetchone()[0]


async def simulate(args: argparse.Namespace, folder: Path) -> None:
    latency = args.latency_ms / 1000
    on_topic = args.papers // 5
    with ArxivDay(on_topic=on_topic, off_topic=args.papers - on_topic) as arxiv, \
            SmtpServer() as smtp, FakeTelegram(enforce_limits=True) as tg, FakeSlack() as slack:
        with_latency(tg.server, latency)
        with_latency(slack.server, latency)
        os.environ.update({
            "DIGESTBOT_DB": str(folder / "day.db"), "DIGESTBOT_OUTBOX": str(folder / "outbox"),
            "DIGESTBOT_SOURCES": "rss", "DIGESTBOT_CATEGORIES": "cs.CL",
            "DIGESTBOT_ARXIV_RSS_URL": arxiv.rss_url, "DIGESTBOT_ARXIV_DELAY": "0",
            "DIGESTBOT_ARXIV_API_URL": f"{arxiv.url}/api/", "DIGESTBOT_ARXIV_LIST_URL": f"{arxiv.url}/list/",
            "DIGESTBOT_ARXIV_PDF_URL": f"{arxiv.url}/pdf/",
            "DIGESTBOT_SMTP_URL": smtp.url,
            "TELEGRAM_BOT_TOKEN": tg.token, "DIGESTBOT_TELEGRAM_API_URL": tg.base_url,
            "SLACK_BOT_TOKEN": slack.bot_token, "DIGESTBOT_SLACK_API_URL": slack.api_url,
        })
        llm = None
        if args.llm:
            llm = start_llm(args.llm_latency)
            os.environ.update({"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": llm.url})
        try:
            settings = load_settings()
            channels = add_subscribers(settings.db, args.subscribers)
            arxiv.publish(BATCH)
            with Store(settings.db) as store:
                service = Service(settings, store, Clock(ANNOUNCE))
                start = time.monotonic()
                monitor = Monitor(settings.db, start)
                stop = asyncio.Event()
                watcher = asyncio.create_task(monitor.run(stop))
                await service.fetch_cycle()
                while True:
                    report = await service.deliver_tick()
                    idle = report is not None and not (report.planned or report.sent or report.failed)
                    if idle and not monitor.unfinished():
                        break
                    await asyncio.sleep(args.tick)
                await asyncio.sleep(0.6)  # one more monitor reading
                stop.set()
                await watcher
                calls = enrich_counts(store)["llm"]["calls"]
        finally:
            if llm is not None:
                llm.__exit__(None, None, None)

    def minutes(t: float | None) -> str:
        return "never" if t is None else f"{t / 60:.1f} min"

    print(f"papers {args.papers}, subscribers {channels} (all due at enrichment)")
    print(f"first delivery   {minutes(monitor.first)}  (target ≤ 10 min)")
    print(f"last delivery    {minutes(monitor.last)}  (target ≤ 30 min)")
    print(f"digests sent     {monitor.sent}")
    print(f"LLM calls        {calls}" + ("" if args.llm else " (offline scorer)"))
    print(f"messages         email {len(smtp.messages)}, telegram {len(tg.sent)} "
          f"(429s: {tg.too_many_requests}), slack {len(slack.posted)}")


def start_llm(latency: float):
    """The OpenAI-compatible fake of tests/fakes/openai.py, answering after `latency` seconds."""
    from tests.fakes.openai import FakeOpenAI

    return FakeOpenAI(delay=latency).__enter__()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--papers", type=int, default=1500)
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--tick", type=float, default=60.0, help="seconds between delivery ticks")
    p.add_argument("--latency-ms", type=float, default=80.0, help="latency of each API answer")
    p.add_argument("--llm", action="store_true", help="score and enrich through the LLM fake")
    p.add_argument("--llm-latency", type=float, default=2.0,
                   help="seconds per LLM answer (a hosted model: 1–5 s)")
    args = p.parse_args()
    setup_logging(verbose=False, as_json=False)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP line
    with tempfile.TemporaryDirectory(prefix="digestbot-day-") as folder:
        asyncio.run(simulate(args, Path(folder)))


if __name__ == "__main__":
    main()
