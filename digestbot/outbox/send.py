"""Moving rows on: claim, send through a channel's sender, mark sent or failed, retry.

Each channel (email, Telegram, Slack) is a `ChannelSender` that knows its own protocol; the
entry points build them and pass them in (the outbox never imports a channel). A row is
marked `sent` only after the far side accepted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from digestbot.collecting import fewer_collections
from digestbot.config import Settings
from digestbot.models import Subscriber
from digestbot.outbox.attempt import (
    ChannelSender,
    active_reader,
    lost_claim,
    send_claimed,
)
from digestbot.outbox.batch import CLAIM_AHEAD, Batch, claim_to_send, sent
from digestbot.outbox.claims import row_lock
from digestbot.outbox.plan import plan_into, preview_into
from digestbot.outbox.rows import (
    DeliveryReport,
    DeliveryRow,
    aware,
    get_row,
    ready_rows,
    unchanged,
    update,
)
from digestbot.sources.papers import latest_announcement_date
from digestbot.store import Store

log = logging.getLogger(__name__)


async def run_send(
    settings: Settings,
    store: Store,
    senders: dict[str, ChannelSender],
    *,
    now: datetime | None = None,
    force: bool = False,
    dry_run: bool = False,
    date: str | None = None,
) -> DeliveryReport:
    """Plan the latest announcement's digests for due subscribers, then deliver every ready row.

    Catch-up needs no loop over past dates: `digest.select` already folds papers announced
    since a subscriber's last sent digest into today's, so someone back after downtime gets
    one digest rather than a pile; rows of earlier dates still pending or failed are retried
    by `deliver_pending` whatever their date. The senders are closed afterwards.
    """
    now = aware(now or datetime.now(UTC))
    report = plan_due(settings, store, now=now, force=force, dry_run=dry_run, date=date)
    return await deliver_and_close(store, senders, now=now, dry_run=dry_run, report=report)


def plan_due(
    settings: Settings, store: Store, *, now: datetime, force: bool = False,
    dry_run: bool = False, date: str | None = None, strict: bool = False,
) -> DeliveryReport:
    """`run_send`'s first half: rows for the latest announcement's due subscribers whose
    papers are final (`plan.plan_into`; `strict` while the pipeline runs)."""
    report = DeliveryReport()
    date = date or latest_announcement_date(store)
    if date and dry_run:
        preview_into(store, date, now, force, report)
    elif date:
        plan_into(store, settings, date, now=aware(now), force=force, report=report,
                  strict=strict)
    return report


async def deliver_and_close(
    store: Store, senders: dict[str, ChannelSender], *, now: datetime, dry_run: bool = False,
    report: DeliveryReport | None = None, shard: tuple[int, int] | None = None,
) -> DeliveryReport:
    """`run_send`'s second half: every ready row, then the senders are closed (slow when a
    server is: `run` does it beside the pipeline, never in its way)."""
    try:
        return await deliver_pending(store, senders, dry_run=dry_run, now=now, report=report,
                                     shard=shard)
    finally:
        await close_senders(senders.values())


async def close_senders(senders: Iterable[ChannelSender]) -> None:
    """Each sender's `aclose`, if it has one; a failure to close is not the batch's."""
    for sender in senders:
        closer = getattr(sender, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()


async def deliver_pending(
    store: Store,
    senders: dict[str, ChannelSender],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    report: DeliveryReport | None = None,
    shard: tuple[int, int] | None = None,
) -> DeliveryReport:
    """Attempt every ready row: one worker per channel, so a slow chat never holds up email.

    Within a channel at most the sender's `concurrency` rows are in flight (SMTP keeps a few
    connections open, chat senders pace each chat themselves); a failure marks that row and
    the batch goes on. `shard=(k, n)`: n processes split a batch among them (more CPU for
    building messages). Share k takes first the rows whose id is k modulo n of the channels
    whose sender is `parallel` (every other row only in share 0), then the other shares'
    parallel rows from the end of their queues, those still as read: a share that finishes
    first (the others still starting up, or slower) helps with the rest instead of waiting.
    The claims keep each row's delivery exactly-once whoever takes it.
    """
    now = aware(now or datetime.now(UTC))
    report = report or DeliveryReport()
    queues: dict[str, list[DeliveryRow]] = defaultdict(list)
    others: dict[str, list[DeliveryRow]] = defaultdict(list)
    for row, channel in ready_rows(store, now):
        sender = senders.get(channel)
        if shard is not None and not in_share(row.id, sender, shard):
            if getattr(sender, "parallel", False):
                others[channel].append(row)
            continue
        if channel in senders:
            queues[channel].append(row)
        else:
            report.waiting[channel] += 1
    if dry_run:
        for channel, rows in queues.items():
            report.would_send += [
                f"retry {channel} #{r.subscriber_id} {r.digest_date}: {len(r.paper_ids)} papers"
                f" (status {r.status}, attempt {r.attempts + 1})" for r in rows]
        return report
    for channel, rows in others.items():
        queues[channel].extend(reversed(rows))
    with fewer_collections():  # each message a digest rebuilt and rendered, then dropped
        await asyncio.gather(*(
            _drain(store, senders[channel], rows, report, now,
                   {r.id for r in others.get(channel, ())})
            for channel, rows in queues.items()))
    return report


def in_share(row_id: int, sender: ChannelSender | None, shard: tuple[int, int]) -> bool:
    """Whether share `shard` = (k, n) takes this row: a parallel channel's rows are split by
    id, the rest (and rows with no sender here, counted as waiting once) are share 0's."""
    if getattr(sender, "parallel", False):
        return row_id % shard[1] == shard[0]
    return shard[0] == 0


async def deliver_row(
    store: Store, sender: ChannelSender, row_id: int, *, now: datetime | None = None
) -> DeliveryReport:
    """Attempt one row now, whatever else is queued (a chat's `/digest`)."""
    now = aware(now or datetime.now(UTC))
    report = DeliveryReport()
    row = get_row(store, row_id)
    if row is None:
        raise KeyError(f"no outbox row #{row_id}")
    await _deliver_one(store, sender, row, report, now)
    return report


async def _drain(
    store: Store, sender: ChannelSender, rows: list[DeliveryRow], report: DeliveryReport,
    now: datetime, others: set[int],
) -> None:
    batch = Batch(store, others)
    try:
        # A chat sender paces itself per chat and serves many chats at once (`concurrency`):
        # one chat at a time would make 1,000 Telegram digests take an hour at 1 message/s.
        width = getattr(sender, "concurrency", 1)
        if width > 1 and batch.claim_ahead and getattr(sender, "parallel", False):
            await _drain_ahead(store, sender, rows, report, now, batch, width)
        else:
            await _drain_each(store, sender, rows, report, now, batch, width)
    finally:
        await batch.aclose()


async def _drain_each(
    store: Store, sender: ChannelSender, rows: list[DeliveryRow], report: DeliveryReport,
    now: datetime, batch: Batch, width: int,
) -> None:
    """Each row claimed, sent and marked on its own, `width` at a time."""
    if width <= 1:
        for row in rows:
            await _deliver_one(store, sender, row, report, now, batch)
        return
    gate = asyncio.Semaphore(width)

    async def one(row: DeliveryRow) -> None:
        async with gate:
            await _deliver_one(store, sender, row, report, now, batch)

    await asyncio.gather(*(one(row) for row in rows))


async def _drain_ahead(
    store: Store, sender: ChannelSender, rows: list[DeliveryRow], report: DeliveryReport,
    now: datetime, batch: Batch, width: int,
) -> None:
    """`width` senders fed by rows claimed `CLAIM_AHEAD` at a time, one commit each, which
    also carries the sent marks of the rows finished meanwhile (see `batch`): 0.38 of a
    commit a message in bench/fanout.py instead of two. Each row's lock is held from before its
    claim until its outcome is committed, as in `_deliver_one`; a row claimed but not sent
    when the run is cancelled stays 'sending' with no owner, and the next run sends it."""
    claimed: asyncio.Queue[_Claimed | None] = asyncio.Queue()
    room = asyncio.Semaphore(width)  # claimed rows waiting for a sender, at most
    locks: set[contextlib.ExitStack] = set()  # taken, and not yet let go of or handed on

    async def feed() -> None:
        try:
            for start in range(0, len(rows), CLAIM_AHEAD):
                for item in await _claim_chunk(store, rows[start:start + CLAIM_AHEAD],
                                               report, now, batch, locks):
                    await room.acquire()
                    claimed.put_nowait(item)
        finally:
            for _ in range(width):
                claimed.put_nowait(None)

    async def sender_loop() -> None:
        while (item := await claimed.get()) is not None:
            room.release()
            row, sub, lock = item
            accepted = False
            try:
                accepted = await send_claimed(store, sender, row, sub, report, now, batch)
            finally:
                if accepted:
                    locks.discard(lock)
                    batch.mark_sent(row.id, now, lock)
                    report.sent += 1

    try:
        outcomes = await asyncio.gather(feed(), *(sender_loop() for _ in range(width)),
                                        return_exceptions=True)
        await batch.flush()
    finally:
        for lock in locks:  # rows claimed and not sent (a failure, a cancel): let go of
            lock.close()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


_Claimed = tuple[DeliveryRow, Subscriber, contextlib.ExitStack]


async def _claim_chunk(
    store: Store, chunk: list[DeliveryRow], report: DeliveryReport, now: datetime,
    batch: Batch, locks: set[contextlib.ExitStack],
) -> list[_Claimed]:
    """The rows of `chunk` this process locked and claimed (in one commit), with their
    readers and locks; the others skipped (another owner's) or cancelled (reader left)."""
    held: list[_Claimed] = []
    for row in chunk:
        if row.id in batch.others and not unchanged(store, row):
            continue  # another share's row, moved on by it meanwhile
        lock = contextlib.ExitStack()
        locks.add(lock)
        sub = (active_reader(store, row, now, report, batch)
               if lock.enter_context(row_lock(store, row.id)) else None)
        if sub is None:
            locks.discard(lock)
            lock.close()
            continue
        held.append((row, sub, lock))
    won = await batch.claim_rows([row for row, _, _ in held], now) if held else set()
    for row, _, lock in held:
        if row.id not in won:
            lost_claim(store, row, now, report)
            locks.discard(lock)
            lock.close()
    return [item for item in held if item[0].id in won]


async def _deliver_one(
    store: Store, sender: ChannelSender, row: DeliveryRow, report: DeliveryReport, now: datetime,
    batch: Batch | None = None,
) -> None:
    # Held from the claim until the outcome is written: a second process (another `send`, a
    # `once`, `run`) skips this row meanwhile, and takes a 'sending' row over only once its
    # owner is dead (see `claims`).
    if batch is not None and row.id in batch.others and not unchanged(store, row):
        return  # another share's row, moved on by it meanwhile
    with row_lock(store, row.id) as mine:
        if mine:
            await _attempt(store, sender, row, report, now, batch)


async def _attempt(
    store: Store, sender: ChannelSender, row: DeliveryRow, report: DeliveryReport, now: datetime,
    batch: Batch | None,
) -> None:
    sub = active_reader(store, row, now, report, batch)
    if sub is None:
        return
    claimed = (await batch.write(claim_to_send, row, now) if batch else
               claim_to_send(store, row, now))
    if not claimed:
        lost_claim(store, row, now, report)
        return
    if await send_claimed(store, sender, row, sub, report, now, batch):
        if batch:
            await batch.write(update, row.id, now, **sent(now))
        else:
            update(store, row.id, now, **sent(now))
        report.sent += 1
