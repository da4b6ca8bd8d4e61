"""Operator alerts (DIGESTBOT_ADMIN): one message when an incident begins, one when it
clears, over the local fakes of arXiv, Telegram, Slack and SMTP; never a secret in the text."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digestbot import breaker as breakers
from digestbot import status, subscribers
from digestbot.channels import email as email_channel
from digestbot.channels.admin import send_admin
from digestbot.clock import ET
from digestbot.config import load_settings
from digestbot.outbox.batch import LATE_KEY
from digestbot.render import render_email
from digestbot.render.slack import render_slack
from digestbot.scheduler import Service
from digestbot.sources import http as arxiv_http
from digestbot.status import alerts
from digestbot.store import Store
from tests.fakes.arxiv_day import ArxivDay, served_day
from tests.fakes.digests import DAY, TOPIC, add_paper, add_subscriber
from tests.fakes.slack import BOT_TOKEN as SLACK_TOKEN
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import HungServer, SmtpServer
from tests.fakes.telegram import FakeTelegram
from tests.test_scheduler_service import ManualClock
from tests.test_slack import make_digest

TG_TOKEN = "987654:ALERT-test-token-xyz"
OPS_CHAT = -100777
SMTP_PASSWORD = "s3cret-smtp-pass"


@pytest.fixture
def arxiv(monkeypatch: pytest.MonkeyPatch):
    with served_day(monkeypatch) as day:
        yield day


def texts(tg: FakeTelegram) -> list[str]:
    return [m["text"] for m in tg.sent_to(OPS_CHAT)]


async def test_arxiv_down_all_evening_is_one_alert_at_the_deadline_then_one_resolved(
    arxiv: ArxivDay, monkeypatch: pytest.MonkeyPatch,
) -> None:
    arxiv.publish("2026-08-12")
    with FakeTelegram(TG_TOKEN) as tg:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TG_TOKEN)
        monkeypatch.setenv("DIGESTBOT_TELEGRAM_API_URL", tg.base_url)
        monkeypatch.setenv("DIGESTBOT_ADMIN", f"telegram:{OPS_CHAT}")
        conf = load_settings()
        with Store(conf.db) as store:
            clock = ManualClock(datetime(2026, 8, 11, 20, 0, tzinfo=ET))
            # arXiv's breaker keeps the service's time: its cooldown passes as the hours do.
            monkeypatch.setattr(arxiv_http.GATE, "clock", lambda: clock.now().timestamp())
            service = Service(conf, store, clock)
            await service.fetch_cycle()  # Tuesday's batch (2026-08-12) arrives
            arxiv.publish("2026-08-13")
            arxiv.down = True  # Wednesday: 503 all evening
            for when in (datetime(2026, 8, 12, 20, 0), datetime(2026, 8, 12, 23, 0),
                         datetime(2026, 8, 13, 2, 58)):
                clock.set(when.replace(tzinfo=ET))
                await service.fetch_cycle()
                await service.deliver_tick()
                if when.hour != 2:
                    assert texts(tg) == []  # still retrying: not an incident yet
            clock.set(datetime(2026, 8, 13, 4, 0, tzinfo=ET))
            await service.deliver_tick()
            [alert] = texts(tg)  # one message, however many failed attempts and ticks
            assert "incident: fetch" in alert and "2026-08-13" in alert
            snap = status.snapshot(conf, store, clock.now())
            assert snap["expected"]["state"] == "missed" and snap["fetch"]["failing_since"]
            assert snap["fetch"]["last_status"] == "error"
            assert store.get_meta(LATE_KEY + "2026-08-13") == "fetch"  # its digests say why late

            # Thursday 20:00: still down; tonight's retries are the same incident.
            clock.set(datetime(2026, 8, 13, 20, 0, tzinfo=ET))
            await service.fetch_cycle()
            await service.deliver_tick()
            assert len(texts(tg)) == 1
            arxiv.down = False  # 20:05: arXiv answers again
            arxiv.publish("2026-08-14")
            clock.set(datetime(2026, 8, 13, 20, 5, tzinfo=ET))
            await service.fetch_cycle()
            await service.deliver_tick()
            assert len(texts(tg)) == 2 and "resolved: fetch" in texts(tg)[1]
            for text in texts(tg):
                assert TG_TOKEN not in text and "TEST" not in text


async def test_an_smtp_breaker_opening_is_one_alert_on_slack(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(breakers, "_BREAKERS", {})
    monkeypatch.setattr(email_channel, "SMTP_TIMEOUT", 0.3)
    add_paper(store, "2608.00001", 90)
    for i in range(4):
        add_subscriber(store, f"r{i}@example.org")
    with FakeSlack() as slack, HungServer() as hung:
        monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
        monkeypatch.setenv("DIGESTBOT_SLACK_API_URL", slack.api_url)
        monkeypatch.setenv("DIGESTBOT_ADMIN", "slack:C0PS")
        monkeypatch.setenv("DIGESTBOT_SMTP_URL", hung.url.replace("://", f"://u:{SMTP_PASSWORD}@"))
        conf = load_settings()
        service = Service(conf, store, ManualClock(datetime(2026, 8, 13, 1, 0, tzinfo=UTC)))
        await service.deliver_tick()
        await service.deliver_tick()  # still open: no second message
        posts = [p for p in slack.posted if p["channel"] == "C0PS"]
        assert len(posts) == 1
        assert "incident: breaker:SMTP" in posts[0]["text"]
        assert SMTP_PASSWORD not in posts[0]["text"] and "127.0.0.1" not in posts[0]["text"]


async def test_permanent_failures_above_the_rate_are_mailed_once(store: Store) -> None:
    now = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)
    add_paper(store, "2608.00001", 90)
    for i in range(4):
        sub = add_subscriber(store, f"r{i}@example.org")
        store.db["deliveries"].insert({
            "subscriber_id": sub.id, "digest_date": DAY, "attempts": 5, "paper_ids": "[]",
            "status": "failed_permanent" if i else "sent", "last_error": "550 no such user",
            "created_at": now.isoformat(), "updated_at": now.isoformat()})
    with SmtpServer() as smtp:
        conf = load_settings(admin="ops@example.org", smtp_url=smtp.url)
        snap = status.snapshot(conf, store, now)
        [alert] = alerts.check(store, snap, now)
        assert alert.opened and alert.key == "failures" and "3 of 4" in alert.text
        await send_admin(conf, alert.subject, alert.text)
        alerts.mark(store, alert, now)
        assert alerts.check(store, snap, now) == []  # told once
        [mail] = smtp.messages
        assert "ops@example.org" in mail.rcpt_tos and "r1@example.org" not in str(mail.message)
        later = now + timedelta(hours=2)  # the hour's failures are past: resolved
        [resolved] = alerts.check(store, status.snapshot(conf, store, later), later)
        assert not resolved.opened and "resolved" in resolved.subject


@pytest.mark.parametrize("value", ["ops@example.org", "telegram:-100123", "telegram:@ops_room",
                                   "slack:C0PS", "slack:#ops"])
def test_admin_accepts_an_address_a_chat_or_a_channel(value: str) -> None:
    assert load_settings(admin=value).admin == value


@pytest.mark.parametrize("value", ["ops", "telegram:", "telegram:ops room", "slack:", "sms:123"])
def test_admin_refuses_anything_else(value: str) -> None:
    with pytest.raises(Exception, match="admin: expected an email address"):
        load_settings(admin=value)


async def test_a_database_refusing_writes_is_one_alert_then_one_resolved(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_paper(store, "2608.00001", 90)
    with FakeTelegram(TG_TOKEN) as tg:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TG_TOKEN)
        monkeypatch.setenv("DIGESTBOT_TELEGRAM_API_URL", tg.base_url)
        monkeypatch.setenv("DIGESTBOT_ADMIN", f"telegram:{OPS_CHAT}")
        conf = load_settings()
        service = Service(conf, store, ManualClock(datetime(2026, 8, 13, 1, 0, tzinfo=UTC)))
        await service.deliver_tick()
        assert texts(tg) == []
        store.db.execute("PRAGMA query_only = ON")  # every write now fails as on a read-only file
        for _ in range(3):
            with pytest.raises(sqlite3.OperationalError):
                await service.deliver_tick()  # the tick fails; the operator hears of it once
        [alert] = texts(tg)
        assert "incident: storage" in alert and "read-only" in alert
        assert str(Path(store.path).parent) not in alert and TG_TOKEN not in alert
        store.db.execute("PRAGMA query_only = OFF")
        await service.deliver_tick()
        await service.deliver_tick()
        assert len(texts(tg)) == 2 and "resolved: storage" in texts(tg)[1]
        assert "alert:storage" not in store.meta_items(alerts.KEY)  # nothing left open


def test_an_incident_that_opens_while_writes_fail_is_held_then_written(store: Store) -> None:
    now = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)
    snap = status.snapshot(load_settings(), store, now)
    held: dict = {}
    store.db.execute("PRAGMA query_only = ON")
    error = alerts.probe_writes(store, now)
    [alert] = alerts.check(store, snap, now, error, held)
    alerts.mark(store, alert, now, held)  # cannot be written: held, not raised
    assert alerts.check(store, snap, now, error, held) == []  # and not told twice
    store.db.execute("PRAGMA query_only = OFF")
    [resolved] = alerts.check(store, snap, now, alerts.probe_writes(store, now), held)
    assert not resolved.opened and held == {}
    assert "alert:storage" in store.meta_items(alerts.KEY)  # written out once writes worked


async def test_without_an_operator_the_incident_is_still_recorded_for_the_late_line(
    arxiv: ArxivDay, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No DIGESTBOT_ADMIN: nobody is alerted, but the day's digests still say they are late."""
    monkeypatch.setattr(arxiv_http.time, "sleep", lambda s: None)
    arxiv.publish("2026-08-12")
    conf = load_settings()
    assert not conf.admin
    with Store(conf.db) as store:
        clock = ManualClock(datetime(2026, 8, 11, 20, 0, tzinfo=ET))
        service = Service(conf, store, clock)
        await service.fetch_cycle()
        arxiv.publish("2026-08-13")
        arxiv.down = True
        for when in (datetime(2026, 8, 12, 20, 0), datetime(2026, 8, 13, 2, 58),
                     datetime(2026, 8, 13, 4, 0)):
            clock.set(when.replace(tzinfo=ET))
            await service.fetch_cycle()
            await service.deliver_tick()
        assert await service.check_alerts() == []  # nothing sent: there is no operator
        assert store.get_meta(LATE_KEY + "2026-08-13") == "fetch"


async def test_a_digest_late_because_of_the_fetch_incident_says_so_in_every_channel(
    store: Store,
) -> None:
    add_paper(store, "2608.00001", 90)
    sub = subscribers.add_or_update(store, channel="telegram", address="555", topics=[TOPIC],
                                    threshold=60, lang="both")
    store.db["subscribers"].update(sub.id, {"created_at": "2026-08-01T00:00:00+00:00"})
    store.set_meta(LATE_KEY + DAY, "fetch")  # the fetch incident opened for DAY
    with FakeTelegram(TG_TOKEN) as tg:
        conf = load_settings(telegram_bot_token=TG_TOKEN, telegram_api_url=tg.base_url)
        service = Service(conf, store, ManualClock(datetime(2026, 8, 13, 12, 0, tzinfo=UTC)))
        await service.deliver_tick()
        header = tg.sent_to(555)[0]["text"]
        assert "本期推迟" in header and "arXiv could not be reached" in header
    digest = replace(make_digest(3, lang="en"), late="fetch")
    line = "Late: arXiv could not be reached at announcement time"
    assert line in render_email(digest).text and line in render_email(digest).html
    assert line in str(render_slack(digest)[0].blocks)
    on_time = make_digest(3, lang="en")
    assert line not in render_email(on_time).text + str(render_slack(on_time)[0].blocks)
