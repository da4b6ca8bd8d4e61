"""The one SQLite file: connection (migrations from `schema`), `meta`, and generic helpers.

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

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import sqlite_utils

from digestbot.config import Secret, Settings
from digestbot.schema import migrations

T = TypeVar("T")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


class StoreThread:
    """One worker thread with its own `Store`, where an asyncio app's writes run (the web
    app's, each bot's).

    A write may wait up to the busy timeout for another process (a `send`, the pipeline) to
    finish its transaction; on the event loop that wait would stall everything else the loop
    serves: every web request (`/healthz` included), the bots, the delivery ticks.
    sqlite-utils connections belong to one thread, so the Store is opened in, used by and
    closed on this one thread. Reads stay on the loop's own Store: in WAL mode a read never
    waits for a writer.
    """

    def __init__(self, path: str, name: str = "digestbot-store") -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._store: Store | None = None

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        call = functools.partial(self._call, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(store, *args, **kwargs)` on the thread, waited for by the caller: where no
        event loop runs any more (a cancelled batch's last writes)."""
        return self._pool.submit(self._call, fn, *args, **kwargs).result()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._store is None:
            self._store = Store(self.path)
        return fn(self._store, *args, **kwargs)

    def close(self) -> None:
        def close_store() -> None:
            if self._store is not None:
                self._store.close()

        self._pool.submit(close_store).result()
        self._pool.shutdown()
