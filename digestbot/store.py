"""The one SQLite file: connection, schema and migrations, `meta`, and generic helpers.

Each table's rows are read and written by the stage that owns it (sources, enrich,
subscribers, outbox…); this module only creates the tables.

sqlite-utils connections belong to the thread that opened them, so each thread (or the
asyncio loop's thread) opens its own `Store` on the same path; WAL lets readers and one
writer work side by side. Multi-row writes go through `db.atomic()` so a failure leaves
nothing half-written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

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


class Store:
    """One connection to the database, migrated on open."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        self.db = sqlite_utils.Database(conn)
        if self.path != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA busy_timeout = 30000")
        migrations.apply(self.db)

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


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    """`items` in slices of at most `size` (SQLite's variable limit, the API's id_list cap)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]

