"""`send_workers`: a big email batch split among processes (channels.workers), each digest
accepted once by the server, chat rows sent by this process alone, the workers' log records
back in this process's handlers."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections import Counter
from datetime import UTC, datetime

import pytest

from digestbot import subscribers
from digestbot.channels import build_senders
from digestbot.channels.email import SMTP_CONNECTIONS
from digestbot.channels.workers import deliver_in_workers
from digestbot.cli import main
from digestbot.config import load_settings
from digestbot.outbox import plan
from digestbot.store import Store
from tests.fakes.digests import DAY, TOPIC, add_paper, add_subscriber
from tests.fakes.smtp import FaultyHandler, SmtpServer
from tests.fakes.telegram import TOKEN, FakeTelegram

NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)
CHAT = 4242


def readers(store: Store, n: int) -> list[str]:
    add_paper(store, "2608.00001", 90)
    add_paper(store, "2608.00002", 80)
    addresses = [f"reader{i}@example.org" for i in range(n)]
    for address in addresses:
        add_subscriber(store, address)
    chat = subscribers.add_or_update(store, channel="telegram", address=str(CHAT), topics=[TOPIC])
    store.db["subscribers"].update(chat.id, {"created_at": "2026-08-01T00:00:00+00:00"})
    return addresses


def test_three_processes_send_each_digest_once_and_chats_stay_here(store: Store, caplog) -> None:
    addresses = readers(store, 9)
    with SmtpServer() as server, FakeTelegram(TOKEN) as tg:
        settings = load_settings(smtp_url=server.url, telegram_bot_token=TOKEN,
                                 telegram_api_url=tg.base_url, send_workers=3)
        plan(store, settings, DAY, now=NOW)
        # A bounce in another process's share.
        rows = {r["address"]: r["id"] for r in store.db.query(
            "select s.address, d.id from deliveries d join subscribers s on s.id = d.subscriber_id")}
        bounced = next(a for a in addresses if rows[a] % 3 != 0)
        server.script(bounced, "550 5.1.1 no such user")
        with caplog.at_level(logging.INFO):
            report = asyncio.run(deliver_in_workers(
                settings, store, build_senders(settings), now=NOW, workers=3, min_rows=1))
        received = Counter(m.rcpt_tos[0] for m in server.messages)
        chat_messages = tg.sent_to(CHAT)
    assert received == Counter(a for a in addresses if a != bounced)  # each once
    assert chat_messages and len({m["text"] for m in chat_messages}) == len(chat_messages)
    assert (report.sent, report.permanent) == (9, 1)
    statuses = Counter(r["status"] for r in store.db.query("select status from deliveries"))
    assert statuses == {"sent": 9, "failed_permanent": 1}
    # Whichever process sent it (a share done first takes on the others' rows), the bounce
    # is logged once, and the workers' records come back here.
    assert len([r for r in caplog.records if "permanent failure" in r.getMessage()]) == 1
    assert {r.processName for r in caplog.records if r.getMessage().startswith(
        "sending process")} == {"digestbot-send-1", "digestbot-send-2"}


def test_cancelled_workers_stop_and_the_next_send_finishes_the_batch(store: Store) -> None:
    """`run` stopping cancels the send: the workers get SIGTERM and stop soon, and the next
    send delivers what was left; nothing is lost, and only a message in flight at the cancel
    (sent, its answer not yet read) may come twice."""
    addresses = readers(store, 30)
    with SmtpServer(handler=FaultyHandler(delay=0.2)) as server:
        settings = load_settings(smtp_url=server.url, send_workers=3)
        plan(store, settings, DAY, now=NOW)

        async def cancel_midway() -> None:
            task = asyncio.create_task(deliver_in_workers(
                settings, store, build_senders(settings), now=NOW, workers=3, min_rows=1))
            while len(server.messages) < 4:
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)

        asyncio.run(cancel_midway())
        assert not multiprocessing.active_children()  # the workers are gone
        assert len(server.messages) < 30
        report = asyncio.run(deliver_in_workers(settings, store, build_senders(settings),
                                                now=NOW, workers=3, min_rows=1))
        received = Counter(m.rcpt_tos[0] for m in server.messages)
    assert set(received) == set(addresses)  # nothing lost
    twice = [a for a, n in received.items() if n > 1]
    assert len(twice) <= 3 * SMTP_CONNECTIONS  # at most the messages in flight at the cancel
    assert 0 < report.sent < 30  # the rest went before the cancel
    statuses = Counter(r["status"] for r in store.db.query(
        "select d.status from deliveries d join subscribers s on s.id = d.subscriber_id"
        " where s.channel = 'email'"))
    assert statuses == {"sent": 30}


def test_a_small_batch_stays_in_this_process(store: Store) -> None:
    addresses = readers(store, 3)
    with SmtpServer() as server:
        settings = load_settings(smtp_url=server.url, send_workers=4)
        plan(store, settings, DAY, now=NOW)
        report = asyncio.run(deliver_in_workers(settings, store, build_senders(settings),
                                                now=NOW, workers=4))
        assert Counter(m.rcpt_tos[0] for m in server.messages) == Counter(addresses)
    assert report.sent == 3


@pytest.mark.parametrize("workers", ["0", "17", "x"])
def test_send_refuses_a_bad_worker_count_and_sends_nothing(store: Store, capsys, workers):
    readers(store, 2)
    code = main(["send", "--now", "--workers", workers])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--workers" in err
    assert store.db["deliveries"].count == 0
