"""The one SQLite file: connection, schema and migrations, `meta`, and generic helpers.

Each table's rows are read and written by the stage that owns it (sources, enrich,
subscribers, outbox…); this module only creates the tables.

sqlite-utils connections belong to the thread that opened them, so each thread (or the
asyncio loop's thread) opens its own `Store` on the same path; WAL lets readers and one
writer work side by side. Multi-row writes go through `db.atomic()` so a failure leaves
nothing half-written.

It also holds the one redaction filter (`redact`, `protect`, `add_secrets`): every log record
and every error text a stage stores (`deliveries.last_error`, `llm_calls.error`, subscriber
status reasons, `fetch_log.detail`) passes through it, so a token or webhook URL that a peer
echoes back in an error never reaches a log or a row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import sqlite_utils
from sqlite_utils.migrations import Migrations

from digestbot.config import Secret, Settings

migrations = Migrations("digestbot")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["papers"].create(
        {
            "id": str, "version": int, "title": str, "abstract": str, "authors": str,
            "categories": str, "primary_category": str, "comment": str, "journal_ref": str,
            "doi": str, "license": str, "published": str, "updated": str, "fetched_at": str,
        },
        pk="id",
    )
    db["announcements"].create(
        {"date": str, "arxiv_id": str, "announce_type": str, "version": int, "source": str},
        pk=("date", "arxiv_id"),
        foreign_keys=[("arxiv_id", "papers", "id")],
    )
    db["announcements"].create_index(["arxiv_id"])
    db["fetch_log"].create(
        {"id": int, "at": str, "source": str, "date": str, "status": str, "items": int,
         "detail": str},
        pk="id",
    )
    db["custom_topics"].create(
        {"slug": str, "text": str, "text_key": str, "created_at": str}, pk="slug"
    )
    db["custom_topics"].create_index(["text_key"], unique=True)
    db["scores"].create(
        {"arxiv_id": str, "version": int, "topic": str, "score": int, "reason": str,
         "scorer": str, "created_at": str},
        pk=("arxiv_id", "version", "topic"),
    )
    db["scores"].create_index(["topic", "score"])
    db["first_pages"].create(
        {"arxiv_id": str, "version": int, "text": str, "source": str, "fetched_at": str},
        pk=("arxiv_id", "version"),
    )
    db["enrichments"].create(
        {"arxiv_id": str, "version": int, "prompt_version": str, "model": str,
         "title_zh": str, "summary_zh": str, "summary_en": str, "abstract_zh": str,
         "institutions": str, "created_at": str},
        pk=("arxiv_id", "version", "prompt_version", "model"),
    )
    db["llm_calls"].create(
        {"id": int, "kind": str, "arxiv_id": str, "version": int, "model": str,
         "prompt_tokens": int, "completion_tokens": int, "cached_tokens": int,
         "latency_ms": int, "outcome": str, "error": str, "created_at": str},
        pk="id",
    )
    db["subscribers"].create(
        {"id": int, "channel": str, "address": str, "lang": str, "tz": str, "send_at": str,
         "max_papers": int, "status": str, "status_reason": str, "token": str,
         "webhook_url": str, "created_at": str, "updated_at": str},
        pk="id",
        not_null={"channel", "address", "status", "token"},
    )
    db["subscribers"].create_index(["channel", "address"], unique=True)
    db["subscribers"].create_index(["token"], unique=True)
    db["subscriptions"].create(
        {"subscriber_id": int, "topic": str, "threshold": int, "created_at": str},
        pk=("subscriber_id", "topic"),
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )
    db["deliveries"].create(
        {"id": int, "subscriber_id": int, "digest_date": str, "status": str, "attempts": int,
         "last_error": str, "message_id": str, "paper_ids": str, "parts_total": int,
         "parts_sent": int, "thread_ts": str, "next_attempt_at": str, "created_at": str,
         "updated_at": str, "sent_at": str},
        pk="id",
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )
    db["deliveries"].create_index(["subscriber_id", "digest_date"], unique=True)
    db["deliveries"].create_index(["status"])
    db["delivery_parts"].create(
        {"delivery_id": int, "seq": int, "status": str, "external_id": str, "sent_at": str},
        pk=("delivery_id", "seq"),
        foreign_keys=[("delivery_id", "deliveries", "id")],
    )
    db["delivered_papers"].create(
        {"subscriber_id": int, "arxiv_id": str, "version": int, "delivery_id": int},
        pk=("subscriber_id", "arxiv_id"),
    )
    db["meta"].create({"key": str, "value": str}, pk="key")


@migrations()
def m002_deliveries_more(db: sqlite_utils.Database) -> None:
    """How many matching papers a digest left out ("另有 K 篇"), so a retry rebuilds it exactly."""
    db["deliveries"].add_column("more", int, not_null_default=0)


@migrations()
def m003_delivery_parts_papers(db: sqlite_utils.Database) -> None:
    """The paper ids each sent chat message carried (JSON), so a resumed send skips papers,
    not message indexes: a /lang change between crash and restart moves the split points."""
    db["delivery_parts"].add_column("paper_ids", str)


@migrations()
def m004_subscriber_link_gen(db: sqlite_utils.Database) -> None:
    """The generation signed links are bound to (`Subscriber.link_gen`): 0 for everyone, as
    links mailed before it existed carry none and stay valid until the reader leaves."""
    db["subscribers"].add_column("link_gen", int, not_null_default=0)


@migrations()
def m005_reader_profile(db: sqlite_utils.Database) -> None:
    """A reader's followed authors and keywords in and out (issue 16), owned by `subscribers`.

    `key` is the folded form two spellings share ("Bengio, Yoshua" = "yoshua bengio"), so the
    same name or word is stored once; `name` and `word` keep what the reader typed.
    """
    db["followed_authors"].create(
        {"subscriber_id": int, "key": str, "name": str, "created_at": str},
        pk=("subscriber_id", "key"),
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )
    db["keyword_filters"].create(
        {"subscriber_id": int, "kind": str, "key": str, "word": str, "created_at": str},
        pk=("subscriber_id", "kind", "key"),
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )


@migrations()
def m006_reader_notices(db: sqlite_utils.Database) -> None:
    """`/notify on` (issue 18): who wants one-line notices, and each notice sent, so a restart
    never sends one twice. Owned by `subscribers` (`subscribers.notices`)."""
    fk = [("subscriber_id", "subscribers", "id")]
    db["notice_optins"].create({"subscriber_id": int, "created_at": str}, pk="subscriber_id",
                               foreign_keys=fk)
    db["notices_sent"].create({"subscriber_id": int, "day": str, "kind": str, "sent_at": str},
                              pk=("subscriber_id", "day", "kind"), foreign_keys=fk)


# How long a write waits for another process's write to finish before it gives up.
BUSY_TIMEOUT_S = 30.0


class _Database(sqlite_utils.Database):
    """sqlite-utils' Database whose transactions take the write lock when they begin.

    A deferred `BEGIN` that reads and then writes cannot wait for a busy database: SQLite
    answers "database is locked" at once rather than risk a deadlock, and busy_timeout never
    applies. `BEGIN IMMEDIATE` queues for the write lock up front (busy_timeout applies), so
    two processes writing at once wait their turn instead of failing.
    """

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite_utils.Database]:
        if self.conn.in_transaction:  # nested: sqlite-utils' savepoint
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.rollback()
            raise


def describe_error(path: str, exc: sqlite3.Error) -> str:
    """One line for a database that cannot be used, saying what to do (never a traceback).

    Whatever failed was inside a transaction, which SQLite rolled back: the file is unchanged.
    """
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return (f"{path} 不是可用的 SQLite 数据库 / is not a usable SQLite database ({text}); "
                "point DIGESTBOT_DB at the right file, or move this one away")
    if "readonly" in text or "read-only" in text:
        return (f"数据库只读 / the database {path} is read-only; make the file and its folder "
                "writable for this user (nothing was changed)")
    if "full" in text:
        return (f"磁盘已满 / the disk holding {path} is full; free some space and run again "
                "(nothing was changed)")
    if "unable to open" in text:
        return (f"无法打开数据库 / cannot open the database {path}; check that its folder exists "
                "and is writable (DIGESTBOT_DB)")
    if "locked" in text or "busy" in text:
        return (f"数据库忙 / the database {path} stayed locked by another process for "
                f"{BUSY_TIMEOUT_S:.0f} s; try again when it is done (nothing was changed)")
    return f"数据库错误 / database {path}: {text}"


class Store:
    """One connection to the database, migrated on open."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level IMMEDIATE: the transactions Python opens by itself before an
        # INSERT/UPDATE/DELETE (sqlite-utils' single writes) also take the write lock first.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level="IMMEDIATE")
        self.db = _Database(conn)
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if self.path != ":memory:":
                self.db.enable_wal()
            self.db.execute("PRAGMA foreign_keys = ON")
            migrations.apply(self.db)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    def delete_meta(self, key: str) -> None:
        self.db.execute("delete from meta where key = ?", [key])

    def meta_items(self, prefix: str) -> dict[str, str]:
        """Every `prefix…` entry, by key."""
        return {r["key"]: r["value"] for r in self.db.query(
            "select key, value from meta where key like ? order by key", [prefix + "%"])}

    def prune_meta(self, prefix: str, before: str) -> None:
        """Drop the `prefix…` entries whose JSON value's `at` is before `before` (ISO time),
        or that carry no time at all (written before entries did)."""
        self.db.execute(
            "delete from meta where key like ? and coalesce(case when json_valid(value)"
            " then json_extract(value, '$.at') end, '') < ?", [prefix + "%", before])


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    """`items` in slices of at most `size` (SQLite's variable limit, the API's id_list cap)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]



# -- the one redaction filter ---------------------------------------------------------------

MASK = "***"
# Shorter registered values are left alone: masking a 4-letter password everywhere would turn
# "passed" into "***ed" all over the logs. The URL-shaped patterns below still catch them.
MIN_SECRET = 6
# Credentials with a recognisable shape, masked even before anyone registered them: a token in
# a query string (our signed links in aiohttp's access log, Socket Mode's `ticket=`), a JSON or
# form `token`/`response_url` field (slack-sdk's debug payloads), Slack's webhook paths and
# token prefixes, Telegram's `/bot<id>:<token>` path, and the password in `scheme://user:pw@`.
_SHAPES = re.compile(
    r"""(?P<keep>(?<![\w])["']?(?:token|response_url)["']?\s*[:=]\s*["']?|[?&;](?:token|ticket)="""
    r"""|hooks\.slack\.com[\\/]+|/bot(?=\d+:)|://[^/\s:@]*:(?=[^@\s/]+@))"""
    r"""(?:\d+:[\w-]+|[^\s"'&,;@]+)"""
    r"""|\b(?:xox[abposre]|xapp)-[\w-]+""")


class Redactor(logging.Filter):
    """Masks every registered secret, and credential-shaped text, in log records and strings.

    As a handler filter it also sees `extra` fields (aiohttp's access log hands formatters the
    request line as `first_request_line`); as the log record factory (`protect` installs both)
    it reaches records of every logger, third-party ones included, whatever handler (a test's
    capture, a later `setup_logging`) ends up printing them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        """Register values to mask, with the spellings they travel in (percent-, JSON-escaped)."""
        found = set()
        for value in values:
            if value and len(value) >= MIN_SECRET:
                found |= {value, quote(value, safe=""), json.dumps(value)[1:-1],
                          value.replace("/", "\\/")}
        with self._lock:
            if found - self._secrets:
                self._secrets |= found
                spelled = sorted(self._secrets, key=len, reverse=True)  # longest first
                # Case-blind: some libraries lower-case an error text (PTB does), and a
                # lower-cased token is still most of a token.
                self._pattern = re.compile("|".join(map(re.escape, spelled)), re.IGNORECASE)

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return _SHAPES.sub(lambda m: (m.group("keep") or "") + MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        self.scrub_record(record)
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name not in ("msg", "exc_text"):
                setattr(record, name, self.scrub(value))
        return True

    def scrub_record(self, record: logging.LogRecord) -> None:
        """The message (args merged in when that hides something) and the traceback text."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is logging's to report, at emit time
            return
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if (clean := self.scrub(text)) != text:
                record.exc_text = clean
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)


REDACTOR = Redactor()
_make_record = logging.getLogRecordFactory()


def _scrubbed_record(*args: object, **kwargs: object) -> logging.LogRecord:
    record = _make_record(*args, **kwargs)
    REDACTOR.scrub_record(record)
    return record


def redact(text: str) -> str:
    """`text` with every known secret masked: for error texts before they are stored."""
    return REDACTOR.scrub(text) if text else text


def add_secrets(*values: str | None) -> None:
    """Register more secrets (a subscriber's webhook URL and its path) and install the filter."""
    REDACTOR.add(*values)
    for value in values:
        if value and "://" in value:
            path = value.split("://", 1)[1].partition("/")[2]
            REDACTOR.add("/" + path if len(path) >= MIN_SECRET else None)
    install_redaction()


def protect(settings: Settings) -> None:
    """Register every secret in `settings` (the SMTP URL's password too) and install the filter."""
    for f in dataclasses.fields(settings):
        secret = getattr(settings, f.name)
        if isinstance(secret, Secret) and secret:
            REDACTOR.add(secret.get())
            if "://" in secret.get() and (password := urlsplit(secret.get()).password):
                REDACTOR.add(password, unquote(password))
    install_redaction()


def install_redaction() -> None:
    """Filter every record: as it is made (any logger) and on the root handlers (extras)."""
    if logging.getLogRecordFactory() is not _scrubbed_record:
        logging.setLogRecordFactory(_scrubbed_record)
    # aiohttp's access logger hands formatters the request line again as `extra` fields, which
    # the factory cannot see; a filter on the logger itself reaches them whatever the handler.
    for where in (*logging.getLogger().handlers, logging.getLogger("aiohttp.access")):
        if REDACTOR not in where.filters:
            where.addFilter(REDACTOR)
