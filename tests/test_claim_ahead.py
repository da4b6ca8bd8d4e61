"""Claims a few rows at a time and sent marks riding along (`outbox.batch`): what the send
path of a parallel sender (email over SMTP) does, with fewer commits than two a message."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import pytest

from digestbot.config import Settings
from digestbot.outbox import batch as batch_module
from digestbot.outbox import deliver_pending, get_row, plan
from digestbot.outbox.batch import Batch
from digestbot.outbox.claims import claims_dir, row_lock
from digestbot.store import Store
from tests.fakes.digests import DAY, add_paper, add_subscriber

NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)


class Parallel:
    """A sender as the outbox sees EmailSender: several in flight, several processes may
    share its rows. Records each accepted digest; from the `block_from`-th send on, never
    answers (a server that hangs)."""

    channel = "email"
    concurrency = 6
    parallel = True

    def __init__(self, store: Store, block_from: int | None = None) -> None:
        self.store = store
        self.block_from = block_from
        self.calls = 0
        self.accepted: list[tuple[int, str]] = []  # (row id, address)
        self.hung = asyncio.Event()

    async def send(self, store, row, digest) -> None:
        self.calls += 1
        if self.block_from is not None and self.calls >= self.block_from:
            self.hung.set()
            await asyncio.Event().wait()
        self.check_earlier_rows()
        await asyncio.sleep(0)
        self.accepted.append((row.id, digest.subscriber.address))

    def check_earlier_rows(self) -> None:
        """Every row accepted before is marked sent on disk or still locked by its owner:
        never 'sending' and free, which another process would take over and send again."""
        for row_id, _ in self.accepted:
            status = self.store.db.execute(
                "select status from deliveries where id = ?", [row_id]).fetchone()[0]
            if status != "sent":
                with row_lock(self.store, row_id) as free:
                    assert not free, f"row {row_id} accepted, {status} and unlocked"


def readers(store: Store, settings: Settings, count: int) -> list[int]:
    add_paper(store, "2608.00001", 90)
    for i in range(count):
        add_subscriber(store, f"r{i}@example.org")
    return plan(store, settings, DAY, now=NOW)


def no_lock_held(store: Store, row_ids: list[int]) -> bool:
    for row_id in row_ids:
        with row_lock(store, row_id) as free:
            if not free:
                return False
    return True


def statuses(store: Store) -> dict[int, str]:
    return {r["id"]: r["status"] for r in store.db.query("select id, status from deliveries")}


async def test_rows_are_claimed_a_few_a_commit_and_each_sent_once(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    row_ids = readers(store, settings, 30)
    commits: list[tuple[int, int]] = []  # (claims, marks) of each commit
    real = batch_module._claim_and_mark

    def counted(store_, rows, now, marks):
        commits.append((len(rows), len(marks)))
        return real(store_, rows, now, marks)

    monkeypatch.setattr(batch_module, "_claim_and_mark", counted)
    # No commit for a lone mark after a pause (a slow machine's): the count below is then
    # at most 4 commits of claims, 10 of three marks and the batch's last.
    monkeypatch.setattr(batch_module, "MARK_DELAY_S", 60.0)
    sender = Parallel(store)
    report = await deliver_pending(store, {"email": sender}, now=NOW)
    assert report.sent == 30
    assert sorted(a for _, a in sender.accepted) == sorted(f"r{i}@example.org" for i in range(30))
    assert set(statuses(store).values()) == {"sent"}
    assert all(r["sent_at"] for r in store.db.query("select sent_at from deliveries"))
    # 30 claims and 30 marks in far fewer commits than one each; never more claims in one
    # than CLAIM_AHEAD.
    assert sum(c for c, _ in commits) == 30 and sum(m for _, m in commits) == 30
    assert len(commits) <= 30 // 2
    assert max(c for c, _ in commits) <= batch_module.CLAIM_AHEAD
    assert no_lock_held(store, row_ids) and not any(claims_dir(store).iterdir())


async def test_a_slow_disk_with_many_marks_waiting_still_finishes(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits slower than the sends: marks pile up and several commits of them are under
    way at once; the batch still ends with every row sent (none waits on another)."""
    readers(store, settings, 60)
    real = batch_module._claim_and_mark

    def slow(store_, rows, now, marks):
        time.sleep(0.02)  # on the writer thread: a disk sync that takes its time
        return real(store_, rows, now, marks)

    monkeypatch.setattr(batch_module, "_claim_and_mark", slow)
    sender = Parallel(store)
    report = await asyncio.wait_for(deliver_pending(store, {"email": sender}, now=NOW), 60)
    assert report.sent == 60 and len(sender.accepted) == 60
    assert set(statuses(store).values()) == {"sent"}


async def test_a_cancelled_batch_keeps_what_was_accepted_and_the_next_sends_the_rest_once(
    settings: Settings, store: Store
) -> None:
    row_ids = readers(store, settings, 30)
    hanging = Parallel(store, block_from=9)
    task = asyncio.create_task(deliver_pending(store, {"email": hanging}, now=NOW))
    await asyncio.wait_for(hanging.hung.wait(), 30)
    while len(hanging.accepted) < 8:
        await asyncio.sleep(0)
    task.cancel()  # while the marks of the last rows accepted still wait for a commit
    with pytest.raises(asyncio.CancelledError):
        await task
    first = {row_id for row_id, _ in hanging.accepted}
    assert len(first) == 8
    after = statuses(store)
    # Accepted: marked sent all the same. Claimed and not sent: 'sending' with no owner.
    assert all((after[row_id] == "sent") == (row_id in first) for row_id in row_ids)
    assert no_lock_held(store, row_ids)

    again = Parallel(store)
    await deliver_pending(store, {"email": again}, now=NOW)
    second = [row_id for row_id, _ in again.accepted]
    assert sorted(second) == sorted(set(row_ids) - first)  # the rest, each once
    assert set(statuses(store).values()) == {"sent"}


@pytest.mark.parametrize("closing", ["aclose", "close"])
async def test_a_mark_still_waiting_when_the_batch_ends_is_committed_before_its_lock_goes(
    settings: Settings, store: Store, closing: str
) -> None:
    [row_id] = readers(store, settings, 1)
    batch = Batch(store, set())
    lock = contextlib.ExitStack()
    assert lock.enter_context(row_lock(store, row_id))
    assert await batch.claim_rows([get_row(store, row_id)], NOW) == {row_id}
    batch.mark_sent(row_id, NOW, lock)  # not yet committed: the timer has not run
    assert statuses(store)[row_id] == "sending" and not no_lock_held(store, [row_id])
    if closing == "aclose":
        await batch.aclose()
    else:
        batch.close()  # where nothing can be awaited any more
    assert statuses(store)[row_id] == "sent" and no_lock_held(store, [row_id])
