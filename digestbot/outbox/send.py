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
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from digestbot import digest as digests
from digestbot import subscribers
from digestbot.config import Settings
from digestbot.errors import PermanentError, ServiceDown, TransientError
from digestbot.models import Digest, Subscriber
from digestbot.outbox.claims import row_lock
from digestbot.outbox.plan import plan_into, preview_into
from digestbot.outbox.rows import (
    DeliveryReport,
    DeliveryRow,
    aware,
    claim,
    get_row,
    iso,
    ready_rows,
    unchanged,
    update,
)
from digestbot.sources.papers import latest_announcement_date
from digestbot.store import Store, StoreThread

# `late:<announcement date>` in meta: that day's digests come late because of an incident
# (written by `status.alerts` when the evening's fetch incident opens).
LATE_KEY = "late:"

log = logging.getLogger(__name__)
T = TypeVar("T")

# Transient failures are retried after 5, 10, 20, 40 minutes; the fifth failure is final.
MAX_ATTEMPTS = 5
BACKOFF = timedelta(minutes=5)


class ChannelSender(Protocol):
    """Sends one digest over one channel; `channel` is 'email', 'telegram' or 'slack'.

    `send` returns once the far side accepted everything, or raises `TransientError` /
    `PermanentError`. Any other exception counts as transient (and is logged with its
    traceback). A sender may also define `async def aclose()`; it is awaited after a batch,
    and `parallel = True` when several processes may send its rows at once (`shard`): email
    may, a chat bot may not (its flood limits are the bot's, across processes).
    """

    channel: str

    async def send(self, store: Store, delivery: DeliveryRow, digest: Digest) -> None: ...


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
    batch = _Batch(store, others)
    try:
        await _drain_batch(store, sender, rows, report, now, batch)
    finally:
        batch.close()


async def _drain_batch(
    store: Store, sender: ChannelSender, rows: list[DeliveryRow], report: DeliveryReport,
    now: datetime, batch: _Batch,
) -> None:
    # A chat sender paces itself per chat and serves many chats at once (`concurrency`):
    # one chat at a time would make 1,000 Telegram digests take an hour at 1 message/s.
    width = getattr(sender, "concurrency", 1)
    if width <= 1:
        for row in rows:
            await _deliver_one(store, sender, row, report, now, batch)
        return
    gate = asyncio.Semaphore(width)

    async def one(row: DeliveryRow) -> None:
        async with gate:
            await _deliver_one(store, sender, row, report, now, batch)

    await asyncio.gather(*(one(row) for row in rows))


class _Batch:
    """What a delivery run reads once for all its rows: the day's papers and scores (the
    digests share them), the active readers, and each day's late note. A reader who leaves
    meanwhile gets nothing all the same: the claim checks they are still active."""

    def __init__(self, store: Store, others: set[int]) -> None:
        self.store = store
        self.others = others  # rows of other shares: taken only while still as read
        self.library = digests.Library(store)
        self.readers = {s.id: s for s in subscribers.list_all(store, ("active",))}
        self._late: dict[str, str] = {}
        # The claim and the sent mark are each a commit, and a commit waits for the disk
        # (synchronous FULL): in a thread of their own, the loop builds the next message
        # meanwhile. An in-memory database has no second connection: written here.
        self._writer = StoreThread(store.path) if store.path != ":memory:" else None

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(store, *args, **kwargs)`, a write, on the batch's writer thread. Shielded: a
        cancelled send still waits for nothing, and a write begun lands (`close` waits)."""
        if self._writer is None:
            return fn(self.store, *args, **kwargs)
        return await asyncio.shield(self._writer.run(fn, *args, **kwargs))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def late(self, date: str) -> str:
        if date not in self._late:
            self._late[date] = self.store.get_meta(LATE_KEY + date) or ""
        return self._late[date]


async def _deliver_one(
    store: Store, sender: ChannelSender, row: DeliveryRow, report: DeliveryReport, now: datetime,
    batch: _Batch | None = None,
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
    batch: _Batch | None,
) -> None:
    sub = (batch.readers.get(row.subscriber_id) if batch else None) or subscribers.get(
        store, row.subscriber_id)
    if sub is None or sub.status != "active":
        _cancel(store, row, now, report, sub)
        return
    # Counted before the attempt, so a row that crashes the process every time still runs
    # out of attempts instead of looping forever.
    attempts = row.attempts + 1
    claimed = (await batch.write(claim, row, now, status="sending", attempts=attempts,
                                 reader_active=True) if batch else
               claim(store, row, now, status="sending", attempts=attempts, reader_active=True))
    if not claimed:
        # Another worker moved it on since we read it, or the reader left since the batch
        # read them (then the row is cancelled).
        sub = subscribers.get(store, row.subscriber_id)
        if sub is None or sub.status != "active":
            _cancel(store, row, now, report, sub)
        return
    try:
        digest = digests.rebuild(store, sub, row.digest_date, row.paper_ids, row.more,
                                 library=batch.library if batch else None,
                                 suggested=row.suggested)
        late = batch.late(row.digest_date) if batch else store.get_meta(
            LATE_KEY + row.digest_date) or ""
        digest = replace(digest, late=late)
        await sender.send(store, row, digest)
    except ServiceDown as exc:
        # The server is down (or the breaker knows it is): no attempt counted.
        update(store, row.id, now, status="failed", attempts=row.attempts,
               last_error=f"{type(exc).__name__}: {exc}"[:500],
               next_attempt_at=iso(now + timedelta(seconds=exc.retry_after)))
        report.failed += 1
        log.log(logging.WARNING if exc.tried else logging.INFO, "%s #%s %s: deferred: %s",
                sender.channel, sub.id, row.digest_date, exc)
    except PermanentError as exc:
        update(store, row.id, now, status="failed_permanent", last_error=str(exc))
        subscribers.set_status(store, sub.id, exc.status, reason=str(exc))
        log.warning("%s #%s %s: permanent failure, subscriber now %s: %s",
                    sender.channel, sub.id, row.digest_date, exc.status, exc)
        report.permanent += 1
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
        if not isinstance(exc, TransientError):
            log.exception("%s #%s %s: unexpected error", sender.channel, sub.id, row.digest_date)
        error = f"{type(exc).__name__}: {exc}"
        if attempts >= MAX_ATTEMPTS:
            update(store, row.id, now, status="failed_permanent",
                   last_error=f"gave up after {attempts} attempts; {error}")
            report.permanent += 1
        else:
            retry = now + BACKOFF * 2 ** (attempts - 1)
            update(store, row.id, now, status="failed", last_error=error,
                   next_attempt_at=iso(retry))
            report.failed += 1
        log.warning("%s #%s %s: attempt %d failed: %s", sender.channel, sub.id,
                    row.digest_date, attempts, error)
    else:
        sent = {"status": "sent", "sent_at": iso(now), "last_error": None, "next_attempt_at": None}
        if batch:
            await batch.write(update, row.id, now, **sent)
        else:
            update(store, row.id, now, **sent)
        report.sent += 1


def _cancel(store: Store, row: DeliveryRow, now: datetime, report: DeliveryReport,
            sub: Subscriber | None) -> None:
    """The row of a reader who is no longer active ends as 'cancelled' (unless another worker
    moved it on meanwhile)."""
    status = sub.status if sub else "removed"
    if claim(store, row, now, status="cancelled", last_error=f"subscriber is {status}"):
        report.cancelled += 1
