"""Claiming an outbox row: a compare-and-set in the database, and a live owner's kernel lock."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from digestbot import subscribers
from digestbot.config import Settings
from digestbot.outbox import deliver_pending, get_row, plan
from digestbot.outbox.claims import claims_dir, row_lock
from digestbot.outbox.rows import claim
from digestbot.store import Store
from tests.fakes.digests import DAY, add_paper, add_subscriber

NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)


class Slow:
    """Accepts every digest after a pause, so two workers overlap."""

    channel = "email"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, store, row, digest) -> None:
        await asyncio.sleep(0.01)
        self.sent.append(digest.subscriber.address)


def test_a_stale_read_cannot_claim(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    [row_id] = plan(store, settings, DAY, now=NOW)
    first, second = get_row(store, row_id), get_row(store, row_id)
    assert claim(store, first, NOW, status="sending", attempts=1)
    assert not claim(store, second, NOW, status="sending", attempts=1)  # rowcount 0
    assert get_row(store, row_id).attempts == 1


async def test_two_workers_over_one_outbox_send_each_row_once(settings: Settings) -> None:
    with Store(settings.db) as setup:
        add_paper(setup, "2608.00001", 90)
        for i in range(12):
            add_subscriber(setup, f"r{i}@example.org")
        plan(setup, settings, DAY, now=NOW)
    one, two = Store(settings.db), Store(settings.db)
    a, b = Slow(), Slow()
    try:
        await asyncio.gather(deliver_pending(one, {"email": a}, now=NOW),
                             deliver_pending(two, {"email": b}, now=NOW))
    finally:
        one.close()
        two.close()
    assert sorted(a.sent + b.sent) == sorted(f"r{i}@example.org" for i in range(12))


async def test_a_sending_row_is_left_alone_while_its_owner_lives(
    settings: Settings, store: Store
) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    [row_id] = plan(store, settings, DAY, now=NOW)
    assert claim(store, get_row(store, row_id), NOW, status="sending", attempts=1)
    sender = Slow()
    # Another process owns the row: it holds the row's lock and is alive.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time;"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600);"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(claims_dir(store) / f"{row_id}.lock")], stdout=subprocess.PIPE, text=True)
    try:
        claims_dir(store).mkdir(parents=True, exist_ok=True)
        assert holder.stdout.readline().strip() == "held"
        later = NOW + timedelta(days=1)  # no lease runs out: only the owner's death counts
        await deliver_pending(store, {"email": sender}, now=later)
        assert sender.sent == [] and get_row(store, row_id).status == "sending"
    finally:
        holder.kill()  # kill -9: the kernel drops its lock
        holder.wait()
    await deliver_pending(store, {"email": sender}, now=NOW)
    assert sender.sent == ["ada@example.org"]
    row = get_row(store, row_id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert not (claims_dir(store) / f"{row_id}.lock").exists()  # cleaned up after the outcome


def test_row_lock_is_exclusive_within_a_process_too(store: Store) -> None:
    with row_lock(store, 7) as first, row_lock(store, 7) as second:
        assert (first, second) == (True, False)
    with row_lock(store, 7) as again:
        assert again
    assert os.listdir(claims_dir(store)) == []


async def test_a_reader_who_leaves_during_the_batch_gets_nothing(
    settings: Settings, store: Store
) -> None:
    """The batch reads its readers once; the claim checks each is still active, so someone
    who unsubscribes while the batch is sending others' digests gets none."""
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    bob = add_subscriber(store, "bob@example.org")
    plan(store, settings, DAY, now=NOW)

    class Leaving(Slow):
        async def send(self, store, row, digest) -> None:
            await super().send(store, row, digest)
            # Bob unsubscribes while Ada's digest goes out.
            subscribers.set_status(store, bob.id if digest.subscriber.id == ada.id else ada.id,
                                   "unsubscribed")

    sender = Leaving()
    report = await deliver_pending(store, {"email": sender}, now=NOW)
    assert report.sent == 1 and report.cancelled == 1 and len(sender.sent) == 1
    assert sorted(r["status"] for r in store.db.query("select status from deliveries")) == [
        "cancelled", "sent"]
