"""Telegram fan-out: 1,000 subscribers' digests through the outbox to a local Bot API.

    .venv/bin/python bench/telegram.py [--subscribers 1000] [--papers 12] [--latency-ms 30]

The fake Bot API (tests/fakes/telegram.py) enforces Telegram's flood limits — 30 messages/s
per bot, 1 message/s per chat — and answers 429 with retry_after when they are exceeded. The
digests go through `outbox.run_send` with the real TelegramSender and its FloodLimiter.
Printed: messages, seconds, sustained messages/s (target ≥ 25) and the 429s the server had
to return (target 0). Not run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

# Replace (not prepend to) the script's folder: from bench/, `import telegram` would find
# this file instead of python-telegram-bot.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from digestbot import outbox, subscribers  # noqa: E402
from digestbot.channels.telegram import make_sender  # noqa: E402
from digestbot.config import load_settings  # noqa: E402
from digestbot.store import Store  # noqa: E402
from tests.fakes.digests import TOPIC, add_paper  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402


def with_latency(fake: FakeTelegram, seconds: float) -> None:
    """Answer like a server across the internet, not like loopback."""
    handle = fake.server.handle

    def slow(req):
        time.sleep(seconds)
        return handle(req)

    fake.server.handle = slow


def seed(store: Store, n_subscribers: int, n_papers: int) -> None:
    with store.db.atomic():
        for i in range(n_papers):
            add_paper(store, f"2608.{i:05d}", 95 - i,
                      title=f"Preference optimization study #{i} with a reasonably long title")
        for i in range(n_subscribers):
            subscribers.add_or_update(store, channel="telegram", address=str(100_000 + i),
                                      topics=[TOPIC])


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder, FakeTelegram(enforce_limits=True) as tg:
        with_latency(tg, args.latency_ms / 1000)
        os.environ["DIGESTBOT_DB"] = str(Path(folder) / "bench.db")
        settings = load_settings(telegram_bot_token=tg.token, telegram_api_url=tg.base_url)
        with Store(settings.db) as store:
            seed(store, args.subscribers, args.papers)
            sender = make_sender(settings)
            assert sender is not None
            start = time.monotonic()
            report = await outbox.run_send(settings, store, {"telegram": sender}, force=True)
            seconds = time.monotonic() - start
            errors = [r["last_error"] for r in store.db.query(
                "select last_error from deliveries where status != 'sent' limit 3")]
        messages = len(tg.sent)
        # Sustained: between the first and the last message the server accepted.
        span = tg.sent[-1]["at"] - tg.sent[0]["at"] if messages > 1 else 0.0
        print(f"digests          {report.sent} sent, {report.failed} failed, "
              f"{report.permanent} permanent")
        print(f"messages         {messages} in {seconds:.1f} s "
              f"({messages / report.sent if report.sent else 0:.1f} per digest)")
        print(f"sustained        {(messages - 1) / span if span else 0:.1f} messages/s"
              "  (target ≥ 25)")
        for error in errors:
            print(f"  e.g. {error}")
        print(f"429 responses    {tg.too_many_requests}  (target 0) {dict(tg.refusals)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--papers", type=int, default=12)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    asyncio.run(main(parser.parse_args()))
