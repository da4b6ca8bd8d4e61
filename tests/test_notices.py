"""Holiday notices (issue 18 item 4): `/notify on` readers in Telegram hear once that arXiv
announced nothing; nobody else hears anything; a restart does not tell them twice."""

from __future__ import annotations

from datetime import datetime

import pytest

from digestbot import subscribers
from digestbot.clock import ET
from digestbot.commands import CommandContext, execute
from digestbot.config import load_settings
from digestbot.scheduler import Service
from digestbot.sources import http as arxiv_http
from digestbot.store import Store
from digestbot.subscribers import notices
from tests.fakes.arxiv_day import ArxivDay
from tests.fakes.digests import TOPIC
from tests.fakes.telegram import FakeTelegram
from tests.test_scheduler_service import ManualClock

TG_TOKEN = "987654:NOTICE-test-token-xyz"
HOLIDAY_LINE = "今天 arXiv 无公告（假日） / No arXiv announcement today (holiday)"


@pytest.fixture
def arxiv_day(monkeypatch: pytest.MonkeyPatch):
    with ArxivDay(on_topic=3, off_topic=2) as day:
        monkeypatch.setenv("DIGESTBOT_SOURCES", "rss")
        monkeypatch.setenv("DIGESTBOT_CATEGORIES", "cs.CL")
        monkeypatch.setenv("DIGESTBOT_ARXIV_RSS_URL", day.rss_url)
        for name in ("API", "LIST", "PDF"):
            monkeypatch.setenv(f"DIGESTBOT_ARXIV_{name}_URL", f"{day.url}/{name.lower()}/")
        yield day


def chat(store: Store, address: str, lang: str = "both") -> int:
    sub = subscribers.add_or_update(store, channel="telegram", address=address, topics=[TOPIC],
                                    threshold=60, lang=lang)
    return sub.id


async def test_a_holiday_is_one_line_to_readers_who_opted_in_once_even_after_a_restart(
    arxiv_day: ArxivDay, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(arxiv_http.time, "sleep", lambda s: None)
    arxiv_day.publish("2026-08-12")
    with FakeTelegram(TG_TOKEN) as tg:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TG_TOKEN)
        monkeypatch.setenv("DIGESTBOT_TELEGRAM_API_URL", tg.base_url)
        conf = load_settings()
        with Store(conf.db) as store:
            for address in ("101", "102", "103"):
                chat(store, address)
            for address in ("101", "103"):
                reply = execute(store, conf, CommandContext("telegram", address), "notify", "on")
                assert "On" in reply.text
            execute(store, conf, CommandContext("telegram", "103"), "notify", "off")
            assert "Holiday notices: on" in execute(
                store, conf, CommandContext("telegram", "101"), "list", "").text
            clock = ManualClock(datetime(2026, 8, 11, 20, 0, tzinfo=ET))
            service = Service(conf, store, clock)
            await service.fetch_cycle()  # Tuesday's batch (2026-08-12) arrives
            before = {a: len(tg.sent_to(a)) for a in (101, 102, 103)}
            # Wednesday: arXiv answers all evening, but with Tuesday's batch (a holiday).
            for when in (datetime(2026, 8, 12, 20, 0), datetime(2026, 8, 12, 23, 0)):
                clock.set(when.replace(tzinfo=ET))
                assert await service.fetch_cycle() is not None  # still trying
            assert {a: len(tg.sent_to(a)) for a in (101, 102, 103)} == before
            clock.set(datetime(2026, 8, 13, 2, 58, tzinfo=ET))
            assert await service.fetch_cycle() is None  # gives up: a holiday
            [notice] = tg.sent_to(101)[before[101]:]
            assert notice["text"] == HOLIDAY_LINE
            assert len(tg.sent_to(102)) == before[102]  # never opted in
            assert len(tg.sent_to(103)) == before[103]  # opted out again

            # A restart after the deadline fetches and gives up again: nobody is told twice.
            clock.set(datetime(2026, 8, 13, 4, 0, tzinfo=ET))
            await Service(conf, store, clock).catch_up()
            assert [m["text"] for m in tg.sent_to(101)].count(HOLIDAY_LINE) == 1
            assert HOLIDAY_LINE not in [m["text"] for m in tg.sent_to(102) + tg.sent_to(103)]


async def test_no_holiday_notice_when_arxiv_was_unreachable(
    arxiv_day: ArxivDay, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(arxiv_http.time, "sleep", lambda s: None)
    arxiv_day.publish("2026-08-12")
    with FakeTelegram(TG_TOKEN) as tg:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TG_TOKEN)
        monkeypatch.setenv("DIGESTBOT_TELEGRAM_API_URL", tg.base_url)
        conf = load_settings()
        with Store(conf.db) as store:
            notices.set_notify(store, chat(store, "101"), on=True)
            clock = ManualClock(datetime(2026, 8, 11, 20, 0, tzinfo=ET))
            service = Service(conf, store, clock)
            await service.fetch_cycle()
            sent = len(tg.sent_to(101))
            arxiv_day.down = True  # an incident, not a holiday: readers are not told "holiday"
            clock.set(datetime(2026, 8, 13, 2, 58, tzinfo=ET))
            assert await service.fetch_cycle() is None
            assert len(tg.sent_to(101)) == sent


def test_notify_is_for_chats_and_shows_in_help(store: Store) -> None:
    conf = load_settings()
    assert "/notify" in execute(store, conf, CommandContext("telegram", "7"), "help", "").text
    reply = execute(store, conf, CommandContext("email", "a@example.org"), "notify", "on")
    assert "Telegram" in reply.text
    assert "off" in execute(store, conf, CommandContext("slack", "C1"), "notify", "").text
    execute(store, conf, CommandContext("slack", "C1"), "notify", "on")
    sub = subscribers.by_address(store, "slack", "C1")
    assert sub is not None and notices.wants_notices(store, sub.id)
