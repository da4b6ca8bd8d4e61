"""One row's attempt once it is claimed: its reader still there, its digest rebuilt and sent
through the channel's sender, a failure written by its kind (retried with backoff, given up,
or the reader bounced); and the row of a reader who left, cancelled.

The outbox's drains (`send`) decide when rows are claimed and marked sent; what happens to a
row in between is the same whichever drain took it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from digestbot import digest as digests
from digestbot import subscribers
from digestbot.errors import PermanentError, ServiceDown, TransientError
from digestbot.models import Digest, Subscriber
from digestbot.outbox.batch import LATE_KEY, Batch
from digestbot.outbox.rows import DeliveryReport, DeliveryRow, claim, iso, update
from digestbot.store import Store

log = logging.getLogger(__name__)

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


def active_reader(store: Store, row: DeliveryRow, now: datetime, report: DeliveryReport,
                   batch: Batch | None) -> Subscriber | None:
    """The row's reader if still active; else the row is cancelled and None."""
    sub = (batch.readers.get(row.subscriber_id) if batch else None) or subscribers.get(
        store, row.subscriber_id)
    if sub is None or sub.status != "active":
        cancel(store, row, now, report, sub)
        return None
    return sub


def lost_claim(store: Store, row: DeliveryRow, now: datetime, report: DeliveryReport) -> None:
    """A claim that did not land: another worker moved the row on since we read it, or the
    reader left since the batch read them (then the row is cancelled)."""
    sub = subscribers.get(store, row.subscriber_id)
    if sub is None or sub.status != "active":
        cancel(store, row, now, report, sub)


async def send_claimed(
    store: Store, sender: ChannelSender, row: DeliveryRow, sub: Subscriber,
    report: DeliveryReport, now: datetime, batch: Batch | None,
) -> bool:
    """Build and send a claimed row's digest: True once the far side accepted it (the caller
    marks it sent); a failure is written here, by its kind."""
    attempts = row.attempts + 1
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
        return True
    return False


def cancel(store: Store, row: DeliveryRow, now: datetime, report: DeliveryReport,
            sub: Subscriber | None) -> None:
    """The row of a reader who is no longer active ends as 'cancelled' (unless another worker
    moved it on meanwhile)."""
    status = sub.status if sub else "removed"
    if claim(store, row, now, status="cancelled", last_error=f"subscriber is {status}"):
        report.cancelled += 1
