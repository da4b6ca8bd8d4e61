"""The jobs of `digestbot run` on a hand-set clock: real fetch (RSS on loopback), real offline
pipeline, real delivery into the .eml outbox — only time is simulated."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

# The run loop drives ingest and the pipeline; until those stages land there is nothing to run.
pytest.importorskip("digestbot.sources.arxiv")
pytest.importorskip("digestbot.enrich.pipeline")

from digestbot import subscribers, topics  # noqa: E402
from digestbot.clock import ET, Clock, announcement_date
from digestbot.config import Settings, load_settings
from digestbot.errors import DigestbotError
from digestbot.scheduler import Service, instance_lock
from digestbot.store import Store
from tests.fakes.arxiv_day import ArxivDay, served_day
from tests.fakes.smtp import free_port

SHANGHAI = ZoneInfo("Asia/Shanghai")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


class ManualClock(Clock):
    """A clock that shows what the test sets, and nothing else."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.current = start

    def now(self) -> datetime:
        return self.current

    def set(self, when: datetime) -> None:
        self.current = when


@pytest.fixture
def arxiv(monkeypatch: pytest.MonkeyPatch):
    with served_day(monkeypatch) as day:
        yield day


@pytest.fixture
def conf(arxiv: ArxivDay) -> Settings:
    return load_settings()


def _readers(store: Store) -> tuple[int, int]:
    shanghai = subscribers.add_or_update(store, channel="email", address="bj@example.org",
                                         topics=["post-training"], tz="Asia/Shanghai", send_at="08:30")
    la = subscribers.add_or_update(store, channel="email", address="la@example.org",
                                   topics=["post-training"], tz="America/Los_Angeles", send_at="07:00")
    return shanghai.id, la.id


def _sent(store: Store, subscriber_id: int) -> list[str]:
    return [r["digest_date"] for r in store.db.query(
        "select digest_date from deliveries where subscriber_id = ? and status = 'sent'"
        " order by digest_date", [subscriber_id])]


def _service(conf: Settings, store: Store, when: datetime) -> tuple[Service, ManualClock]:
    clock = ManualClock(when)
    return Service(conf, store, clock), clock


@pytest.mark.parametrize(("announce", "shanghai_at"), [
    # Summer (EDT): 20:00 ET is 08:00 in Beijing, so the 08:30 reader waits for 08:30.
    (datetime(2026, 8, 12, 20, 0, tzinfo=ET), datetime(2026, 8, 13, 8, 30, tzinfo=SHANGHAI)),
    # Winter (EST): 20:00 ET is 09:00 in Beijing, past 08:30: sent as soon as it is enriched.
    (datetime(2026, 11, 18, 20, 0, tzinfo=ET), None),
    # The US DST weeks (China has none): the Thursday before and the Sunday after fall-back…
    (datetime(2026, 10, 29, 20, 0, tzinfo=ET), datetime(2026, 10, 30, 8, 30, tzinfo=SHANGHAI)),
    (datetime(2026, 11, 1, 20, 0, tzinfo=ET), None),
    # …and around spring-forward on Sunday 8 March.
    (datetime(2026, 3, 5, 20, 0, tzinfo=ET), None),
    (datetime(2026, 3, 8, 20, 0, tzinfo=ET), datetime(2026, 3, 9, 8, 30, tzinfo=SHANGHAI)),
])
async def test_the_announcement_reaches_beijing_and_los_angeles_readers_on_time(
    conf: Settings, store: Store, arxiv: ArxivDay, announce: datetime, shanghai_at: datetime | None,
) -> None:
    bj, la = _readers(store)
    service, clock = _service(conf, store, announce - timedelta(hours=1))
    await service.deliver_tick()
    assert _sent(store, bj) == []

    batch = announcement_date(announce)
    arxiv.publish(batch)
    clock.set(announce)
    nxt = await service.fetch_cycle()
    assert nxt is not None and nxt.astimezone(ET).hour == 0  # the RSS confirmation after midnight

    if shanghai_at is None:
        # Within the same cycle: the pipeline hands straight over to a delivery.
        assert _sent(store, bj) == [batch]
    else:
        clock.set(shanghai_at.replace(minute=29))
        await service.deliver_tick()
        assert _sent(store, bj) == []
        clock.set(shanghai_at)
        await service.deliver_tick()
        assert _sent(store, bj) == [batch]

    # Los Angeles, 07:00 local on the batch's own date.
    la_at = datetime.combine(date.fromisoformat(batch), time(0), LOS_ANGELES)
    clock.set(la_at.replace(hour=6, minute=59))
    await service.deliver_tick()
    assert _sent(store, la) == []
    clock.set(la_at.replace(hour=7))
    await service.deliver_tick()
    assert _sent(store, la) == [batch]

    await service.deliver_tick()
    assert (_sent(store, bj), _sent(store, la)) == ([batch], [batch])
    assert len(list(Path(conf.outbox).glob("*.eml"))) == 2


async def test_downtime_over_an_announcement_is_caught_up_at_start_and_sent_once(
    conf: Settings, store: Store, arxiv: ArxivDay,
) -> None:
    bj, la = _readers(store)
    arxiv.publish("2026-08-12")
    service, clock = _service(conf, store, datetime(2026, 8, 11, 20, 0, tzinfo=ET))
    await service.fetch_cycle()
    clock.set(datetime(2026, 8, 12, 12, 0, tzinfo=ET))
    await service.deliver_tick()
    assert (_sent(store, bj), _sent(store, la)) == (["2026-08-12"], ["2026-08-12"])

    # Down from Wednesday morning to Thursday noon: Wednesday evening's batch was missed.
    arxiv.publish("2026-08-13")
    restarted, _ = _service(conf, store, datetime(2026, 8, 13, 12, 0, tzinfo=ET))
    await restarted.catch_up()
    assert _sent(store, bj) == ["2026-08-12", "2026-08-13"]
    assert _sent(store, la) == ["2026-08-12", "2026-08-13"]

    again, _ = _service(conf, store, datetime(2026, 8, 13, 12, 5, tzinfo=ET))
    await again.catch_up()
    await again.deliver_tick()
    assert _sent(store, bj) == ["2026-08-12", "2026-08-13"]
    assert len(list(Path(conf.outbox).glob("*.eml"))) == 4
    twice = list(store.db.query(
        "select subscriber_id, arxiv_id, count(*) n from delivered_papers"
        " group by subscriber_id, arxiv_id having n > 1"))
    assert twice == []


async def test_a_holiday_ends_the_retries_quietly_by_three(
    conf: Settings, store: Store, arxiv: ArxivDay, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="digestbot.scheduler")
    arxiv.publish("2026-08-13")
    service, clock = _service(conf, store, datetime(2026, 8, 12, 20, 0, tzinfo=ET))
    await service.fetch_cycle()
    # Thursday evening: nothing new appears (the feed keeps Thursday's batch).
    clock.set(datetime(2026, 8, 13, 20, 0, tzinfo=ET))
    assert await service.fetch_cycle() == datetime(2026, 8, 13, 20, 5, tzinfo=ET)
    assert "arXiv feed is stale (still the batch of 2026-08-13)" in caplog.text
    clock.set(datetime(2026, 8, 14, 2, 58, tzinfo=ET))
    assert await service.fetch_cycle() is None
    assert "no announcement for 2026-08-14 (holiday?)" in caplog.text
    assert "next fetch Sun 2026-08-16 20:00" in caplog.text


async def test_a_new_subscribers_topic_is_scored_before_delivery(
    conf: Settings, store: Store, arxiv: ArxivDay,
) -> None:
    _readers(store)
    arxiv.publish("2026-08-13")
    service, clock = _service(conf, store, datetime(2026, 8, 12, 20, 0, tzinfo=ET))
    await service.fetch_cycle()
    # Every catalogue topic is scored (offline) for the public pages; a custom topic is
    # scored only once someone follows it.
    assert list(store.db.query("select 1 from scores where topic = 'agents'"))
    custom = topics.custom_topic(store, "phonon spectra of granite")
    assert not list(store.db.query("select 1 from scores where topic = ?", [custom.slug]))
    subscribers.add_or_update(store, channel="email", address="new@example.org",
                              topics=[custom.slug], tz="Asia/Shanghai", send_at="08:30")
    clock.set(datetime(2026, 8, 12, 21, 0, tzinfo=ET))
    await service.deliver_tick()
    assert list(store.db.query("select 1 from scores where topic = ?", [custom.slug]))


def test_a_second_instance_on_the_same_database_is_refused(settings: Settings) -> None:
    with instance_lock(settings.db), pytest.raises(DigestbotError, match="already using"), \
            instance_lock(settings.db):
        pass
    with instance_lock(settings.db):  # released on exit
        pass


async def test_arxiv_unreachable_is_one_warning_per_attempt_then_a_retry(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("RSS", "API", "LIST", "PDF"):
        monkeypatch.setenv(f"DIGESTBOT_ARXIV_{name}_URL", f"{dead}/{name.lower()}/")
    caplog.set_level(logging.INFO)
    service, _ = _service(load_settings(), store, datetime(2026, 8, 12, 20, 0, tzinfo=ET))
    assert await service.fetch_cycle() == datetime(2026, 8, 12, 20, 5, tzinfo=ET)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("fetch failed: 无法访问 arXiv / arXiv unreachable")
    assert "not seen; next attempt Wed 20:05 ET" in warnings[0]
