"""A dead SMTP server: the circuit breaker stops calling it, rows wait with a next attempt,
and in `run` delivery never holds up the evening's fetch and enrichment."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from digestbot.breaker import Breaker, breaker_for
from digestbot.channels import email as email_channel
from digestbot.channels.email import EmailSender
from digestbot.config import Settings, load_settings
from digestbot.errors import ServiceDown
from digestbot.outbox import deliver_pending, plan, run_send
from digestbot.scheduler import Service
from digestbot.store import Store
from tests.fakes.digests import DAY, add_paper, add_subscriber
from tests.fakes.smtp import HungServer, SmtpServer
from tests.test_scheduler_service import ManualClock

NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)


def test_breaker_opens_fails_fast_then_lets_one_trial_through() -> None:
    now = [0.0]
    breaker = Breaker("SMTP x:25", threshold=3, cooldown=60, clock=lambda: now[0])
    for _ in range(3):
        breaker.before()
        breaker.failed()
    assert breaker.state == "open"
    with pytest.raises(ServiceDown) as down:
        breaker.before()
    assert down.value.retry_after == 60
    now[0] = 61
    breaker.before()  # the half-open trial
    with pytest.raises(ServiceDown):
        breaker.before()  # only one at a time
    breaker.failed()
    assert breaker.state == "open"  # one failed trial reopens it
    now[0] = 200
    breaker.before()
    breaker.succeeded()
    assert (breaker.state, breaker.failures) == ("closed", 0)


def test_check_fails_fast_while_open_but_never_takes_the_trial() -> None:
    now = [0.0]
    breaker = Breaker("SMTP x:25", threshold=1, cooldown=60, clock=lambda: now[0])
    breaker.check()  # closed: nothing to say
    breaker.failed()
    with pytest.raises(ServiceDown):
        breaker.check()
    now[0] = 61
    breaker.check()  # the cooldown is over: may try, but the trial is still free...
    breaker.check()
    breaker.before()  # ...for the one caller that then makes the attempt
    with pytest.raises(ServiceDown):
        breaker.before()


def test_a_server_saying_stop_trips_it_for_as_long_as_it_asks() -> None:
    now = [0.0]
    breaker = Breaker("arXiv", threshold=2, cooldown=300, clock=lambda: now[0])
    breaker.before()
    breaker.trip(7.0)  # one 503 with Retry-After: 7, below the threshold all the same
    assert (breaker.state, breaker.remaining()) == ("open", 7.0)
    now[0] = 7
    breaker.before()  # the trial
    breaker.trip()  # refused again, without a Retry-After: the whole cooldown
    assert breaker.remaining() == 300 and breaker.snapshot().name == "arXiv"


def rows(store: Store) -> list[dict]:
    return list(store.db.query("select * from deliveries order by id"))


async def test_a_hung_server_costs_a_timeout_or_two_not_one_per_reader(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_channel, "SMTP_TIMEOUT", 0.5)
    add_paper(store, "2608.00001", 90)
    for i in range(12):
        add_subscriber(store, f"r{i}@example.org")
    with HungServer() as hung:
        settings = load_settings(smtp_url=hung.url)
        plan(store, settings, DAY, now=NOW)
        started = time.monotonic()
        report = await run_send(settings, store, {"email": EmailSender(settings)}, now=NOW)
        took = time.monotonic() - started
    # 12 readers × 0.5 s one after the other (3 at a time) would be 2 s and more; the
    # breaker opens after 3 failures and the rest fail at once.
    assert took < 1.6, took
    assert (report.sent, report.failed) == (0, 12)
    got = rows(store)
    assert {r["status"] for r in got} == {"failed"}
    assert all(r["next_attempt_at"] > NOW.isoformat() for r in got)
    # No answer is not the reader's fault: no attempt counted, whether tried or not.
    assert {r["attempts"] for r in got} == {0}
    tried = [r for r in got if r["last_error"].startswith("SmtpUnreachable")]
    assert 3 <= len(tried) <= 5
    assert all(r["last_error"].startswith("ServiceDown") for r in got if r not in tried)

    # The server comes back on the same port; once the cooldown is over, all twelve go out.
    with SmtpServer(port=hung.port) as smtp:
        later = NOW + timedelta(hours=1)
        assert (await deliver_pending(store, {"email": EmailSender(settings)}, now=later)).sent == 0
        breaker_for(f"SMTP 127.0.0.1:{hung.port}").opened_at -= 10_000  # cooldown passed
        report = await deliver_pending(store, {"email": EmailSender(settings)},
                                       now=later + timedelta(hours=1))
        assert report.sent == 12 and len(smtp.messages) == 12


async def test_delivery_to_a_hung_server_does_not_hold_up_the_fetch(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setattr(email_channel, "SMTP_TIMEOUT", 4.0)
    monkeypatch.setenv("DIGESTBOT_ARXIV_RSS_URL", "http://127.0.0.1:9/")  # refused at once
    monkeypatch.setenv("DIGESTBOT_SOURCES", "rss")
    with HungServer() as hung:
        monkeypatch.setenv("DIGESTBOT_SMTP_URL", hung.url)
        conf = load_settings()
        with Store(conf.db) as store:
            add_paper(store, "2608.00001", 90)
            add_subscriber(store, "ada@example.org")
            service = Service(conf, store, ManualClock(NOW))
            sending = asyncio.create_task(service.deliver_tick())
            while hung.accepted == 0:  # the digest is on its way to the wedged server
                await asyncio.sleep(0.05)
            await asyncio.wait_for(service.fetch_cycle(), timeout=3.5)
            assert not sending.done()  # the fetch ran beside the stuck delivery
            report = await sending
            assert report.failed == 1
