"""The outbox: every digest is a row before it is sent, so nothing is lost and nothing goes twice.

A delivery is one row per (subscriber, digest date) in `deliveries`:

    pending ──► sending ──► sent
                   │
                   ├──► failed            (transient; retried after a backoff, bounded)
                   └──► failed_permanent  (the address is dead, or attempts ran out)
    pending/failed ──► cancelled          (the subscriber left before we got to it)

`plan` writes the row and its `delivered_papers` in one transaction before anything is sent,
so selection never offers the same paper again even if the send is still to come.
`deliver_pending` moves rows on; each channel (email, Telegram, Slack) is a `ChannelSender`
that knows its own protocol, and a row is marked `sent` only after the far side accepted it.

A crash between "accepted" and "marked sent" leaves a row in `sending`. The next run sends it
again *through the same sender with the same row*, and the sender uses what the protocol
offers to avoid a duplicate: the `.eml` outbox sees its file (with this Message-ID) already
there; chat senders skip the papers of the parts recorded with `mark_part`; SMTP cannot ask a server what it
accepted, so the email goes again with the *same* Message-ID, which mail clients (Gmail,
Thunderbird, Apple Mail) use to fold duplicates. Rows are never deleted, so the digest itself
is never lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digestbot import digest as digests
from digestbot import subscribers
from digestbot.channels import build_senders
from digestbot.config import Settings
from digestbot.models import Digest, Subscriber
from digestbot.store import Store

log = logging.getLogger(__name__)

# Transient failures are retried after 5, 10, 20, 40 minutes; the fifth failure is final.
MAX_ATTEMPTS = 5
BACKOFF = timedelta(minutes=5)


class TransientError(Exception):
    """Try again later: connection refused or dropped, SMTP 4xx, rate limited, server 5xx."""


class PermanentError(Exception):
    """This recipient will never accept: stop sending to them.

    `status` is what the subscriber becomes: 'bounced' (the address does not exist, SMTP 5xx
    for the recipient, Slack channel_not_found) or 'blocked' (Telegram Forbidden: the user
    blocked the bot).
    """

    def __init__(self, message: str, status: str = "bounced") -> None:
        if status not in ("bounced", "blocked"):
            raise ValueError(f"PermanentError status must be bounced or blocked, not {status!r}")
        super().__init__(message)
        self.status = status


@dataclass
class DeliveryRow:
    """One outbox row as `deliver_pending` found it.

    `status` is the state before this attempt: 'sending' means an earlier attempt was cut
    off and may have reached the far side — a sender resumes rather than repeats.
    """

    id: int
    subscriber_id: int
    digest_date: str
    status: str
    paper_ids: list[str]
    attempts: int = 0
    more: int = 0
    message_id: str | None = None
    last_error: str | None = None
    parts_total: int | None = None
    parts_sent: int | None = None
    thread_ts: str | None = None
    next_attempt_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    sent_at: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeliveryRow:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        values["paper_ids"] = json.loads(row["paper_ids"] or "[]")
        values["attempts"] = row["attempts"] or 0
        values["more"] = row.get("more") or 0
        return cls(**values)


class ChannelSender(Protocol):
    """Sends one digest over one channel; `channel` is 'email', 'telegram' or 'slack'.

    `send` returns once the far side accepted everything, or raises `TransientError` /
    `PermanentError`. Any other exception counts as transient (and is logged with its
    traceback). A sender may also define `async def aclose()`; it is awaited after a batch.
    """

    channel: str

    async def send(self, store: Store, delivery: DeliveryRow, digest: Digest) -> None: ...


@dataclass
class DeliveryReport:
    """What one `send` did, for the command line, logs and tests."""

    planned: int = 0
    sent: int = 0
    failed: int = 0
    permanent: int = 0
    cancelled: int = 0
    empty: int = 0  # due, but nothing new passed their thresholds
    not_due: int = 0  # their local send time has not come yet
    waiting: Counter[str] = field(default_factory=Counter)  # channel → rows with no sender
    would_send: list[str] = field(default_factory=list)  # dry run: one line per digest

    def summary(self) -> str:
        parts = [f"sent {self.sent}", f"failed {self.failed}"]
        if self.permanent:
            parts.append(f"failed permanently {self.permanent}")
        if self.cancelled:
            parts.append(f"cancelled {self.cancelled}")
        if self.empty + self.not_due:
            parts.append(f"nothing due for {self.empty + self.not_due}")
        if self.not_due:
            parts[-1] += f" ({self.not_due} not yet at their send time)"
        parts += [f"{n} {ch} waiting (channel not configured)" for ch, n in self.waiting.items()]
        return "投递 / delivery: " + ", ".join(parts)


# -- who is due -----------------------------------------------------------------------------


def is_due(subscriber: Subscriber, now: datetime, date: str | None = None) -> bool:
    """Has the subscriber's local send time passed (today, or on `date` and after)?

    With `date`, the digest of that date is not due before that calendar day in the
    subscriber's zone: arXiv announces at 20:00 New York time, which is still the day before
    for the Americas, and a reader who asked for 06:00 wants it at 06:00, not the evening
    before. Local wall time through zoneinfo, so DST shifts move the instant, not the hour.
    """
    try:
        zone = ZoneInfo(subscriber.tz)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("subscriber #%s has an unknown time zone %r; using UTC", subscriber.id, subscriber.tz)
        zone = ZoneInfo("UTC")
    local = _aware(now).astimezone(zone)
    hour, minute = (int(x) for x in (subscriber.send_at or "08:30").split(":"))
    if date is not None and local.date().isoformat() != date:
        return local.date().isoformat() > date
    return local.time() >= time(hour, minute)


def due_subscribers(
    store: Store, now: datetime, force: bool, date: str | None = None
) -> list[Subscriber]:
    """Active subscribers whose send time has passed (all active ones with `force`)."""
    active = subscribers.list_all(store, statuses=("active",))
    return [s for s in active if force or is_due(s, now, date)]


def _candidates(
    store: Store, date: str, now: datetime, force: bool, report: DeliveryReport
) -> list[Subscriber]:
    """Due subscribers with no row for `date` yet; counts the ones whose time has not come."""
    have = {r["subscriber_id"] for r in store.db.query(
        "select subscriber_id from deliveries where digest_date = ?", [date])}
    waiting = [s for s in subscribers.list_all(store, statuses=("active",)) if s.id not in have]
    due = [s for s in waiting if force or is_due(s, now, date)]
    report.not_due += len(waiting) - len(due)
    return due


# -- planning -------------------------------------------------------------------------------


def plan(store: Store, settings: Settings, date: str, *, now: datetime, force: bool = False) -> list[int]:
    """Create outbox rows for `date` for every due subscriber who has none; returns their ids."""
    return _plan(store, settings, date, now=now, force=force, report=DeliveryReport())


def plan_for(
    store: Store, settings: Settings, subscriber: Subscriber, date: str, *, now: datetime
) -> int | None:
    """One subscriber's row for `date` now, whatever their send time (a chat's `/digest`).

    None when nothing new passes their thresholds or the day already has a row.
    """
    digest = digests.select(store, subscriber, date)
    if digest is None or not digest.entries:
        return None
    return _create_row(store, settings, digest, now)


def _plan(
    store: Store, settings: Settings, date: str, *, now: datetime, force: bool,
    report: DeliveryReport,
) -> list[int]:
    created: list[int] = []
    library = digests.Library(store)  # each of the day's papers is read once, not per reader
    # Taken before selecting, so a score written meanwhile invalidates what we record now.
    stamp = _selection_inputs(store)
    empty = _known_empty(store, date, stamp)
    for sub in _candidates(store, date, now, force, report):
        if sub.id in empty:
            report.empty += 1
            continue
        digest = digests.select(store, sub, date, library=library)
        if digest is None or not digest.entries:
            report.empty += 1
            empty.add(sub.id)
            continue
        row_id = _create_row(store, settings, digest, now)
        if row_id is not None:
            created.append(row_id)
    store.set_meta(EMPTY_KEY, json.dumps({"date": date, "stamp": stamp, "ids": sorted(empty)}))
    report.planned += len(created)
    return created


# A due subscriber with nothing to send gets no row, so every delivery tick (each minute in
# `run`) would select for them again. This meta row remembers who came up empty for which
# date, valid while nothing their selection reads has changed.
EMPTY_KEY = "delivery.nothing_to_send"


def _selection_inputs(store: Store) -> str:
    """A fingerprint of what can make an empty selection non-empty: new announcements or
    scores (rowids grow, REPLACE included; the sum catches in-place updates), changed
    subscriptions or subscriber settings. Sent deliveries only ever shrink a selection."""
    row = next(iter(store.db.query(
        "select (select count(*) || ':' || coalesce(max(rowid), 0) from announcements) a,"
        " (select count(*) || ':' || coalesce(max(rowid), 0) || ':' || total(score) from scores) s,"
        " (select count(*) || ':' || total(threshold) || ':' || coalesce(max(created_at), '')"
        "  from subscriptions) t,"
        " (select coalesce(max(updated_at), '') from subscribers) u")))
    return json.dumps(row, sort_keys=True)


def _known_empty(store: Store, date: str, stamp: str) -> set[int]:
    """Subscribers whose selection for `date` was empty under the same inputs."""
    saved = json.loads(store.get_meta(EMPTY_KEY) or "{}")
    if saved.get("date") != date or saved.get("stamp") != stamp:
        return set()
    return set(saved.get("ids", []))


def _create_row(store: Store, settings: Settings, digest: Digest, now: datetime) -> int | None:
    """The row and its paper list in one transaction; None if another process got there first."""
    sub = digest.subscriber
    stamp = _iso(now)
    try:
        with store.db.atomic():
            row_id = store.db["deliveries"].insert({
                "subscriber_id": sub.id, "digest_date": digest.date, "status": "pending",
                "attempts": 0, "paper_ids": json.dumps([e.paper.id for e in digest.entries]),
                "more": digest.more, "message_id": _message_id(settings, sub, digest.date),
                "created_at": stamp, "updated_at": stamp,
            }).last_pk
            store.db["delivered_papers"].insert_all(
                ({"subscriber_id": sub.id, "arxiv_id": e.paper.id, "version": e.paper.version,
                  "delivery_id": row_id} for e in digest.entries),
                # A paper already recorded (a race with another planner) stays with its first row.
                ignore=True,
            )
    except sqlite3.IntegrityError:
        # The unique (subscriber, date) index: a concurrent `send` planned this one.
        log.info("delivery for subscriber #%s on %s already planned elsewhere", sub.id, digest.date)
        return None
    return row_id


def _message_id(settings: Settings, sub: Subscriber, date: str) -> str | None:
    """Chosen before the first attempt so every retry of this email carries the same one."""
    if sub.channel != "email":
        return None
    # Short enough to stay on one header line; the random part keeps it unique even if
    # the database is recreated and ids start over.
    return f"<digest.{date}.{sub.id}.{secrets.token_hex(6)}@{settings.mail_domain}>"


# -- per-part progress (chat channels) ------------------------------------------------------


def parts_done(store: Store, delivery_id: int) -> set[int]:
    """Sequence numbers of the messages of this delivery already accepted by the chat service."""
    return {r["seq"] for r in store.db.query(
        "select seq from delivery_parts where delivery_id = ? and status = 'sent'", [delivery_id])}


def papers_sent(store: Store, delivery_id: int) -> set[str]:
    """Paper ids carried by the messages of this delivery already accepted.

    A resume skips these papers rather than message indexes: re-rendering after a /lang
    change (or a new enrichment) packs entries differently, so index N no longer holds the
    same papers.
    """
    out: set[str] = set()
    for r in store.db.query(
        "select paper_ids from delivery_parts where delivery_id = ? and status = 'sent'",
        [delivery_id],
    ):
        out.update(json.loads(r["paper_ids"] or "[]"))
    return out


def mark_part(
    store: Store, delivery_id: int, seq: int, external_id: str | None,
    *, paper_ids: Iterable[str] = (),
) -> None:
    """Record that message `seq` went out (Telegram message_id, Slack ts) with the papers it
    carried (none for a header), so a resume sends neither it nor its papers again."""
    with store.db.atomic():
        store.db["delivery_parts"].upsert(
            {"delivery_id": delivery_id, "seq": seq, "status": "sent",
             "external_id": external_id, "sent_at": _iso(datetime.now(UTC)),
             "paper_ids": json.dumps(list(paper_ids))},
            pk=("delivery_id", "seq"),
        )
        store.db.execute(
            "update deliveries set parts_sent = (select count(*) from delivery_parts"
            " where delivery_id = ? and status = 'sent') where id = ?", [delivery_id, delivery_id])


# -- delivering -----------------------------------------------------------------------------


def ready_rows(store: Store, now: datetime) -> list[tuple[DeliveryRow, str]]:
    """Rows to attempt now with their subscriber's channel, oldest first."""
    rows = store.db.query(
        "select d.*, s.channel from deliveries d join subscribers s on s.id = d.subscriber_id"
        " where d.status in ('pending', 'sending')"
        " or (d.status = 'failed' and (d.next_attempt_at is null or d.next_attempt_at <= ?))"
        " order by d.digest_date, d.id",
        [_iso(now)],
    )
    return [(DeliveryRow.from_row(r), r["channel"]) for r in rows]


async def deliver_pending(
    store: Store,
    senders: dict[str, ChannelSender],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    report: DeliveryReport | None = None,
) -> DeliveryReport:
    """Attempt every ready row: one worker per channel, so a slow chat never holds up email.

    Within a channel at most the sender's `concurrency` rows are in flight (SMTP keeps a few
    connections open, chat senders pace each chat themselves); a failure marks that row and
    the batch goes on.
    """
    now = _aware(now or datetime.now(UTC))
    report = report or DeliveryReport()
    queues: dict[str, list[DeliveryRow]] = defaultdict(list)
    for row, channel in ready_rows(store, now):
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
    await asyncio.gather(*(
        _drain(store, senders[channel], rows, report, now) for channel, rows in queues.items()
    ))
    return report


async def deliver_row(
    store: Store, sender: ChannelSender, row_id: int, *, now: datetime | None = None
) -> DeliveryReport:
    """Attempt one row now, whatever else is queued (a chat's `/digest`)."""
    now = _aware(now or datetime.now(UTC))
    report = DeliveryReport()
    row = DeliveryRow.from_row(store.db["deliveries"].get(row_id))
    await _deliver_one(store, sender, row, report, now)
    return report


async def _drain(
    store: Store, sender: ChannelSender, rows: list[DeliveryRow], report: DeliveryReport,
    now: datetime,
) -> None:
    # The batch's digests share the day's papers: read each once for all of them.
    library = digests.Library(store)
    # A chat sender paces itself per chat and serves many chats at once (`concurrency`):
    # one chat at a time would make 1,000 Telegram digests take an hour at 1 message/s.
    width = getattr(sender, "concurrency", 1)
    if width <= 1:
        for row in rows:
            await _deliver_one(store, sender, row, report, now, library)
        return
    gate = asyncio.Semaphore(width)

    async def one(row: DeliveryRow) -> None:
        async with gate:
            await _deliver_one(store, sender, row, report, now, library)

    await asyncio.gather(*(one(row) for row in rows))


async def _deliver_one(
    store: Store, sender: ChannelSender, row: DeliveryRow, report: DeliveryReport, now: datetime,
    library: digests.Library | None = None,
) -> None:
    sub = subscribers.get(store, row.subscriber_id)
    if sub is None or sub.status != "active":
        status = sub.status if sub else "removed"
        _update(store, row.id, now, status="cancelled", last_error=f"subscriber is {status}")
        report.cancelled += 1
        return
    # Counted before the attempt, so a row that crashes the process every time still runs
    # out of attempts instead of looping forever.
    attempts = row.attempts + 1
    _update(store, row.id, now, status="sending", attempts=attempts)
    try:
        digest = digests.rebuild(store, sub, row.digest_date, row.paper_ids, row.more,
                                 library=library)
        await sender.send(store, row, digest)
    except PermanentError as exc:
        _update(store, row.id, now, status="failed_permanent", last_error=str(exc)[:500])
        subscribers.set_status(store, sub.id, exc.status, reason=str(exc)[:500])
        log.warning("%s #%s %s: permanent failure, subscriber now %s: %s",
                    sender.channel, sub.id, row.digest_date, exc.status, exc)
        report.permanent += 1
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
        if not isinstance(exc, TransientError):
            log.exception("%s #%s %s: unexpected error", sender.channel, sub.id, row.digest_date)
        error = f"{type(exc).__name__}: {exc}"[:500]
        if attempts >= MAX_ATTEMPTS:
            _update(store, row.id, now, status="failed_permanent",
                    last_error=f"gave up after {attempts} attempts; {error}")
            report.permanent += 1
        else:
            retry = now + BACKOFF * 2 ** (attempts - 1)
            _update(store, row.id, now, status="failed", last_error=error,
                    next_attempt_at=_iso(retry))
            report.failed += 1
        log.warning("%s #%s %s: attempt %d failed: %s", sender.channel, sub.id,
                    row.digest_date, attempts, error)
    else:
        _update(store, row.id, now, status="sent", sent_at=_iso(now), last_error=None,
                next_attempt_at=None)
        report.sent += 1


def _update(store: Store, row_id: int, now: datetime, **values: Any) -> None:
    with store.db.atomic():
        store.db["deliveries"].update(row_id, {**values, "updated_at": _iso(now)})


# -- one `send` -----------------------------------------------------------------------------


async def run_send_async(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    force: bool = False,
    dry_run: bool = False,
    date: str | None = None,
    senders: dict[str, ChannelSender] | None = None,
) -> DeliveryReport:
    """Plan the latest announcement's digests for due subscribers, then deliver every ready row.

    Catch-up needs no loop over past dates: `digest.select` already folds papers announced
    since a subscriber's last sent digest into today's, so someone back after downtime gets
    one digest rather than a pile; rows of earlier dates still pending or failed are retried
    by `deliver_pending` whatever their date. `senders` defaults to what settings enable.
    """
    now = _aware(now or datetime.now(UTC))
    report = DeliveryReport()
    date = date or store.latest_announcement_date()
    if date and dry_run:
        _preview(store, date, now, force, report)
    elif date:
        _plan(store, settings, date, now=now, force=force, report=report)
    senders = senders if senders is not None else build_senders(settings)
    try:
        return await deliver_pending(store, senders, dry_run=dry_run, now=now,
                                     report=report)
    finally:
        for sender in senders.values():
            closer = getattr(sender, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()


def _preview(store: Store, date: str, now: datetime, force: bool, report: DeliveryReport) -> None:
    """Dry run: who would get how many papers; selection reads, it writes nothing."""
    library = digests.Library(store)
    for sub in _candidates(store, date, now, force, report):
        digest = digests.select(store, sub, date, library=library)
        if digest is None or not digest.entries:
            report.empty += 1
            continue
        more = f" (+{digest.more} more counted)" if digest.more else ""
        report.would_send.append(
            f"{sub.channel} #{sub.id} {sub.address} {date}: {len(digest.entries)} papers{more}")


def run_send(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    force: bool = False,
    dry_run: bool = False,
    date: str | None = None,
    senders: dict[str, ChannelSender] | None = None,
) -> DeliveryReport:
    """`run_send_async` for synchronous callers (`send`, `once`)."""
    return asyncio.run(run_send_async(settings, store, now=now, force=force, dry_run=dry_run,
                                      date=date, senders=senders))


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        report = run_send(settings, store, force=args.now, dry_run=args.dry_run)
    if args.dry_run:
        for line in report.would_send:
            print(f"would send / 将发送: {line}")
        if not report.would_send:
            print("nothing would be sent / 没有待发送的摘要")
        print(f"(试运行 / dry run) 无需发送 / nothing due for {report.empty + report.not_due}"
              f" ({report.not_due} not yet at their send time)")
        return 0
    print(report.summary())
    return 0


def _aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so a caller's slip cannot shift everyone's send time."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).isoformat(timespec="seconds")
