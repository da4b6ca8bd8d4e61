"""The outbox's tables — `deliveries`, `delivery_parts`, `delivered_papers` — and all their SQL.

No other module reads or writes these tables except through the functions here; selection's
"never twice" reads them through `DeliveryHistory`, which the outbox hands to `digest.select`.
Rows are never deleted: a removed subscriber's rows stay, pending ones end as 'cancelled'.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from digestbot import digest as digests
from digestbot.config import Settings
from digestbot.models import Digest, Subscriber, TopicHit
from digestbot.store import Store, redact

log = logging.getLogger(__name__)


@dataclass
class DeliveryRow:
    """One outbox row.

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
    # "You may like" papers' reasons as planned (paper id → TopicHit): rebuilt as they were.
    suggested: dict[str, TopicHit] = field(default_factory=dict)
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
        values = {k: v for k, v in row.items() if k in _ROW_FIELDS}
        values["paper_ids"] = json.loads(row["paper_ids"] or "[]")
        values["attempts"] = row["attempts"] or 0
        values["more"] = row.get("more") or 0
        suggested = row.get("suggested")  # most rows: none
        values["suggested"] = {pid: TopicHit(**hit) for pid, hit in
                               json.loads(suggested).items()} if suggested else {}
        return cls(**values)


_ROW_FIELDS = frozenset(f.name for f in fields(DeliveryRow))


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
    unready: int = 0  # due, but some paper of theirs is not final yet (scored, enriched)
    waiting: Counter[str] = field(default_factory=Counter)  # channel → rows with no sender
    would_send: list[str] = field(default_factory=list)  # dry run: one line per digest

    def add_sending(self, part: DeliveryReport) -> None:
        """Another sender's (a channel's, a worker's) sending counts into this report."""
        for name in ("sent", "failed", "permanent", "cancelled"):
            setattr(self, name, getattr(self, name) + getattr(part, name))

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
        if self.unready:
            parts.append(f"{self.unready} waiting for their papers to be final")
        parts += [f"{n} {ch} waiting (channel not configured)" for ch, n in self.waiting.items()]
        return "投递 / delivery: " + ", ".join(parts)


# -- reading rows ---------------------------------------------------------------------------


def get_row(store: Store, row_id: int) -> DeliveryRow | None:
    rows = list(store.db.query("select * from deliveries where id = ?", [row_id]))
    return DeliveryRow.from_row(rows[0]) if rows else None


def unchanged(store: Store, row: DeliveryRow) -> bool:
    """Whether the row still has the status and attempts it was read with: a read (no write
    lock), to pass over a row another process has moved on without trying to claim it."""
    return bool(list(store.db.execute(
        "select 1 from deliveries where id = ? and status = ? and coalesce(attempts, 0) = ?",
        [row.id, row.status, row.attempts])))


def day_row(store: Store, subscriber_id: int, date: str) -> DeliveryRow | None:
    """The subscriber's row for the digest of `date` (at most one: a unique index)."""
    rows = list(store.db.query(
        "select * from deliveries where subscriber_id = ? and digest_date = ?",
        [subscriber_id, date]))
    return DeliveryRow.from_row(rows[0]) if rows else None


def last_sent(store: Store, subscriber_id: int) -> DeliveryRow | None:
    """The subscriber's latest digest that went out."""
    rows = list(store.db.query(
        "select * from deliveries where subscriber_id = ? and status = 'sent'"
        " order by digest_date desc limit 1", [subscriber_id]))
    return DeliveryRow.from_row(rows[0]) if rows else None


class DeliveryHistory:
    """What each reader already got, for `digest.select` (a `digest.History`). Keep one for
    a planning pass: the last sent dates are read for every reader at once, and which papers
    anyone has got at all once per paper (most of a day's papers: nobody yet)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._last_sent: dict[str, dict[int, str]] = {}
        # Papers asked about, and those of them some reader had, as of `_seen`, the highest
        # delivered_papers rowid read. Rows are only ever inserted (never deleted or replaced:
        # `create_row` ignores a duplicate), so a row written since (by this pass planning,
        # or another process) has a higher rowid and is read as the tail before each answer.
        self._asked: set[str] = set()
        self._had: set[str] = set()
        self._seen: int | None = None
        # Tuples of ids none of which anyone had, by identity (each held, so no id is reused),
        # with how many papers some reader had then: a batch asks about the same ranking for
        # every reader of the same subscriptions, and while nobody had any of those papers
        # since (`_had` only grows), nobody has them, with no look at each id again.
        self._none_had: dict[int, tuple[tuple[str, ...], int]] = {}

    def last_sent(self, subscriber_id: int, before: str) -> str | None:
        if before not in self._last_sent:
            self._last_sent[before] = {r["subscriber_id"]: r["d"] for r in self.store.db.query(
                "select subscriber_id, max(digest_date) d from deliveries"
                " where status = 'sent' and digest_date < ? group by subscriber_id", [before])}
        return self._last_sent[before].get(subscriber_id)

    def delivered(self, subscriber_id: int, arxiv_ids: Sequence[str]) -> set[str]:
        # `delivered_papers` is written with the row at plan time, so "planned" counts too.
        # Plain reads (no sqlite-utils savepoint around them); ids as one JSON parameter so
        # each statement is the same text every time (sqlite3 keeps it prepared).
        db = self.store.db
        if self._seen is None:
            self._seen = db.execute("select coalesce(max(rowid), 0) from delivered_papers"
                                    ).fetchone()[0]
        else:
            for rowid, arxiv_id in db.execute(
                    "select rowid, arxiv_id from delivered_papers where rowid > ?", [self._seen]):
                self._had.add(arxiv_id)
                self._seen = max(self._seen, rowid)
        if isinstance(arxiv_ids, tuple):
            known = self._none_had.get(id(arxiv_ids))
            if known is not None and known[0] is arxiv_ids and known[1] == len(self._had):
                return set()
        # Set operations in C over the ids, no set of them built: most calls ask about
        # papers asked about before, which no reader had.
        if not self._asked.issuperset(arxiv_ids):
            unknown = set(arxiv_ids) - self._asked
            self._had.update(r[0] for r in db.execute(
                "select value from json_each(?) where exists (select 1 from delivered_papers"
                " where arxiv_id = value)", [json.dumps(list(unknown))]))
            self._asked |= unknown
        if self._had.isdisjoint(arxiv_ids):
            if isinstance(arxiv_ids, tuple):
                self._none_had[id(arxiv_ids)] = (arxiv_ids, len(self._had))
            return set()
        return {r[0] for r in db.execute(
            "select arxiv_id from delivered_papers where subscriber_id = ?"
            " and arxiv_id in (select value from json_each(?))",
            [subscriber_id, json.dumps(list(self._had.intersection(arxiv_ids)))])}


def planned_for(store: Store, date: str) -> set[int]:
    """Subscribers who already have a row for `date`, whatever its status."""
    return {r["subscriber_id"] for r in store.db.query(
        "select subscriber_id from deliveries where digest_date = ?", [date])}


def ready_rows(store: Store, now: datetime) -> list[tuple[DeliveryRow, str]]:
    """Rows to attempt now with their subscriber's channel, oldest first."""
    rows = store.db.query(
        "select d.*, s.channel from deliveries d join subscribers s on s.id = d.subscriber_id"
        " where d.status in ('pending', 'sending')"
        " or (d.status = 'failed' and (d.next_attempt_at is null or d.next_attempt_at <= ?))"
        " order by d.digest_date, d.id",
        [iso(now)],
    )
    return [(DeliveryRow.from_row(r), r["channel"]) for r in rows]


# -- writing rows ---------------------------------------------------------------------------


def _suggested(digest: Digest) -> str | None:
    """The digest's "you may like" reasons as the row keeps them (None when there are none)."""
    hits = digests.suggestions(digest)
    return json.dumps({pid: dataclasses.asdict(hit) for pid, hit in hits.items()},
                      ensure_ascii=False) if hits else None


def create_row(store: Store, settings: Settings, digest: Digest, now: datetime) -> int | None:
    """The row and its paper list in one transaction; None if another process got there first."""
    sub = digest.subscriber
    stamp = iso(now)
    try:
        # Plain SQL: the table API looks the schema up on every call (most of a planning
        # pass's time went there).
        with store.db.atomic():
            row_id = store.db.execute(
                "insert into deliveries (subscriber_id, digest_date, status, attempts, paper_ids,"
                " more, message_id, suggested, created_at, updated_at)"
                " values (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?)",
                [sub.id, digest.date, json.dumps([e.paper.id for e in digest.entries]),
                 digest.more, _message_id(settings, sub, digest.date), _suggested(digest),
                 stamp, stamp]).lastrowid
            # A paper already recorded (a race with another planner) stays with its first row.
            store.db.conn.executemany(
                "insert or ignore into delivered_papers (subscriber_id, arxiv_id, version,"
                " delivery_id) values (?, ?, ?, ?)",
                [(sub.id, e.paper.id, e.paper.version, row_id) for e in digest.entries])
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


# How much of an error text a row keeps (the log line has the rest).
ERROR_CHARS = 500


def claim(store: Store, row: DeliveryRow, now: datetime, *, reader_active: bool = False,
          **values: Any) -> bool:
    """Move `row` on to `values` only if it is still exactly as it was read; True if it was.

    One UPDATE … WHERE on what the caller saw (status and attempts), so of two workers that
    read the same row only the first one's write lands; the other sees rowcount 0 and leaves
    the row alone. `attempts` makes it a version: a row retried and failed again meanwhile
    reads 'failed' as before but no longer matches. `reader_active`: and only while its
    subscriber is still active, checked in the same statement (a sender that read its
    readers at the start of a batch still sends nothing to someone who left since).
    """
    values = {**values, "updated_at": iso(now)}
    sets = ", ".join(f"{name} = ?" for name in values)
    active = (" and exists (select 1 from subscribers s where s.id = deliveries.subscriber_id"
              " and s.status = 'active')") if reader_active else ""
    with store.db.atomic():
        cursor = store.db.execute(
            f"update deliveries set {sets} where id = ? and status = ?"
            f" and coalesce(attempts, 0) = ?{active}",
            [*values.values(), row.id, row.status, row.attempts])
    return cursor.rowcount == 1


def update(store: Store, row_id: int, now: datetime, **values: Any) -> None:
    if values.get("last_error"):
        # Masked before it is cut, so a cut cannot leave half a token unrecognised.
        values["last_error"] = redact(values["last_error"])[:ERROR_CHARS]
    values = {**values, "updated_at": iso(now)}
    sets = ", ".join(f"{name} = ?" for name in values)
    # Plain SQL: the table API looks the schema up on every call (three reads per message).
    with store.db.atomic():
        store.db.execute(f"update deliveries set {sets} where id = ?", [*values.values(), row_id])


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


def part_external_id(store: Store, delivery_id: int, seq: int) -> str | None:
    """What the chat service called message `seq` once accepted (Telegram message_id, Slack ts)."""
    rows = list(store.db.query(
        "select external_id from delivery_parts where delivery_id = ? and seq = ? and status = 'sent'",
        [delivery_id, seq]))
    return rows[0]["external_id"] if rows else None


def mark_part(
    store: Store, delivery_id: int, seq: int, external_id: str | None,
    *, paper_ids: Iterable[str] = (),
) -> None:
    """Record that message `seq` went out (Telegram message_id, Slack ts) with the papers it
    carried (none for a header), so a resume sends neither it nor its papers again."""
    with store.db.atomic():
        store.db["delivery_parts"].upsert(
            {"delivery_id": delivery_id, "seq": seq, "status": "sent",
             "external_id": external_id, "sent_at": iso(datetime.now(UTC)),
             "paper_ids": json.dumps(list(paper_ids))},
            pk=("delivery_id", "seq"),
        )
        store.db.execute(
            "update deliveries set parts_sent = (select count(*) from delivery_parts"
            " where delivery_id = ? and status = 'sent') where id = ?", [delivery_id, delivery_id])


def set_parts_total(store: Store, delivery_id: int, total: int) -> None:
    """How many messages this chat digest takes, for `status` and a resume."""
    store.db["deliveries"].update(delivery_id, {"parts_total": total})


def set_thread_ts(store: Store, delivery_id: int, ts: str) -> None:
    """The Slack thread the digest's later messages reply in (the summary message's ts)."""
    store.db["deliveries"].update(delivery_id, {"thread_ts": ts})


def count_by_status(store: Store) -> dict[str, int]:
    """Delivery rows per status, for stats."""
    return {r["status"]: r["n"] for r in store.db.query(
        "select status, count(*) n from deliveries group by status order by status")}


def day_summary(store: Store, date: str) -> dict[str, Any]:
    """The digests of `date`: first and last sent, and rows per channel and status (no reader)."""
    db = store.db
    times = next(iter(db.query("select min(sent_at) first, max(sent_at) last from deliveries"
                               " where digest_date = ? and status = 'sent'", [date])))
    return {"first_sent_at": times["first"], "last_sent_at": times["last"],
            "by_channel": by_channel_and_status(store, date)}


def by_channel_and_status(store: Store, date: str | None = None) -> dict[str, dict[str, int]]:
    """Delivery rows per reader channel and status (all days, or only `date`'s)."""
    out: dict[str, dict[str, int]] = {}
    for r in store.db.query(
            "select s.channel, d.status, count(*) n from deliveries d"
            " join subscribers s on s.id = d.subscriber_id"
            " where ? is null or d.digest_date = ?"
            " group by s.channel, d.status order by s.channel, d.status", [date, date]):
        out.setdefault(r["channel"], {})[r["status"]] = r["n"]
    return out


def finished_since(store: Store, since: str) -> dict[str, int]:
    """Rows that ended (`sent`, `failed_permanent`) at or after `since` (ISO), by status."""
    return {r["status"]: r["n"] for r in store.db.query(
        "select status, count(*) n from deliveries where status in ('sent', 'failed_permanent')"
        " and updated_at >= ? group by status", [since])}


def aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so a caller's slip cannot shift everyone's send time."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return aware(moment).astimezone(UTC).isoformat(timespec="seconds")
