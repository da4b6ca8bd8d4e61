"""The one SQLite file: schema, migrations and the queries shared by every stage.

sqlite-utils connections belong to the thread that opened them, so each thread (or the
asyncio loop's thread) opens its own `Store` on the same path; WAL lets readers and one
writer work side by side. Multi-row writes go through `db.atomic()` so a failure leaves
nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from digestbot.models import Announcement, Author, FeedBatch, Paper

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

    # -- papers and announcements -----------------------------------------------------------

    def save_batch(self, batch: FeedBatch) -> dict[str, int]:
        """Store a source's papers and announcements in one transaction; idempotent.

        Returns counts of papers inserted/updated and announcements added, so callers can
        say what changed (all zero when the same feed is ingested twice). Reads what is held
        in a few queries and writes with executemany: a 2,000-item evening is one pass.
        """
        counts = {"papers_new": 0, "papers_updated": 0, "announcements_new": 0}
        with self.db.atomic():
            held = self._rows("papers", "id", [p.id for p in batch.papers])
            pending: dict[str, tuple[str, dict[str, Any]]] = {}  # id → (insert|update, row)
            stamp = now_iso()
            for paper in batch.papers:
                row = paper_to_row(paper)
                kind, base = pending.get(paper.id, ("update", held.get(paper.id)))
                if base is None:
                    pending[paper.id] = ("insert", {**row, "fetched_at": stamp})
                elif (merged := _merge_row(base, row, paper.version)) is not None:
                    pending[paper.id] = (kind, {**merged, "fetched_at": stamp})
            inserts = [r for k, r in pending.values() if k == "insert"]
            updates = [r for k, r in pending.values() if k == "update"]
            self._write("insert into papers", inserts)
            if updates:
                cols = [c for c in updates[0] if c != "id"]
                self.db.conn.executemany(
                    f"update papers set {', '.join(c + ' = ?' for c in cols)} where id = ?",
                    [[r[c] for c in cols] + [r["id"]] for r in updates])
            counts["papers_new"], counts["papers_updated"] = len(inserts), len(updates)
            new_anns, versions = [], []
            for date in {a.date for a in batch.announcements}:
                day = {r["arxiv_id"]: r["version"] for r in self.db.query(
                    "select arxiv_id, version from announcements where date = ?", [date])}
                for ann in (a for a in batch.announcements if a.date == date):
                    if ann.arxiv_id not in day:
                        new_anns.append(asdict(ann))
                        day[ann.arxiv_id] = ann.version
                    elif day[ann.arxiv_id] is None and ann.version is not None:
                        # A listing left the version unknown; RSS or the API now says which.
                        versions.append((ann.version, ann.date, ann.arxiv_id))
            self._write("insert into announcements", new_anns)
            self.db.conn.executemany("update announcements set version = ? where date = ? and "
                                     "arxiv_id = ? and version is null", versions)
            counts["announcements_new"] = len(new_anns)
        return counts

    def _rows(self, table: str, key: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"select * from {table} where {key} in ({marks})", chunk):
                out[row[key]] = row
        return out

    def _write(self, verb: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            cols = list(rows[0])
            self.db.conn.executemany(
                f"{verb} ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                [[r[c] for c in cols] for r in rows])

    def get_paper(self, arxiv_id: str) -> Paper | None:
        try:
            return row_to_paper(self.db["papers"].get(arxiv_id))
        except sqlite_utils.db.NotFoundError:
            return None

    def papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        ids = list(ids)
        out: dict[str, Paper] = {}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"select * from papers where id in ({marks})", chunk):
                out[row["id"]] = row_to_paper(row)
        return out

    def announcements_on(self, date: str) -> list[Announcement]:
        rows = self.db.query(
            "select * from announcements where date = ? order by arxiv_id", [date]
        )
        return [Announcement(**row) for row in rows]

    def announcement_dates(self) -> list[str]:
        rows = self.db.query("select distinct date from announcements order by date")
        return [r["date"] for r in rows]

    def latest_announcement_date(self) -> str | None:
        # Asked on every delivery tick: max() reads one end of the (date, arxiv_id) key.
        return next(iter(self.db.query("select max(date) d from announcements")))["d"]

    def log_fetch(self, source: str, date: str | None, status: str, items: int, detail: str = "") -> None:
        self.db["fetch_log"].insert(
            {"at": now_iso(), "source": source, "date": date, "status": status,
             "items": items, "detail": detail[:500]}
        )

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The contract's `digestbot stats --json` object."""
        db = self.db

        def count(sql: str) -> int:
            return next(iter(db.query(sql)))["n"]

        def by(table: str, col: str) -> dict[str, int]:
            return {r[col]: r["n"] for r in db.query(
                f"select {col}, count(*) n from {table} group by {col} order by {col}")}

        llm = next(iter(db.query(
            "select count(*) calls, coalesce(sum(outcome not in ('ok', 'retried')), 0) failures,"
            " coalesce(sum(prompt_tokens), 0) prompt_tokens,"
            " coalesce(sum(completion_tokens), 0) completion_tokens,"
            " coalesce(sum(cached_tokens), 0) cached_tokens from llm_calls"
        )))
        return {
            "papers": count("select count(*) n from papers"),
            "announcements": by("announcements", "announce_type"),
            "announcement_dates": count("select count(distinct date) n from announcements"),
            "scores": count("select count(*) n from scores"),
            "enriched": count(
                "select count(*) n from (select distinct arxiv_id, version from enrichments)"
            ),
            "llm": dict(llm),
            "subscribers": by("subscribers", "status"),
            "deliveries": by("deliveries", "status"),
        }


def _merge_row(old: dict[str, Any], row: dict[str, Any], version: int | None) -> dict[str, Any] | None:
    """The stored row with this source's fields merged in; None when nothing changed.

    A later version replaces the text; for the same version the first source wins and
    later ones only fill gaps (RSS has no comments, the API has affiliations), so a
    poorer source never blanks a richer one and re-ingesting changes nothing.
    """
    merged = dict(old)
    newer = version is not None and version > (old["version"] or 0)
    # `published` only comes from the API: its first arrival brings the authors' UTF-8 names,
    # which beat a feed's (TeX-converted) spelling stored earlier.
    api_names = bool(row.get("published")) and not old.get("published")
    for key, value in row.items():
        if value in (None, "", "[]"):
            continue
        richer_authors = key == "authors" and (api_names or (
            _has_affiliations(value) and not _has_affiliations(old[key])))
        if newer or not old[key] or richer_authors:
            merged[key] = value
    merged.pop("fetched_at", None)
    return None if merged == {k: v for k, v in old.items() if k != "fetched_at"} else merged


def _has_affiliations(authors_json: str) -> bool:
    return any(a.get("affiliations") for a in json.loads(authors_json or "[]"))


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    """`items` in slices of at most `size` (SQLite's variable limit, the API's id_list cap)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def paper_to_row(paper: Paper) -> dict[str, Any]:
    row = asdict(paper)
    row["authors"] = json.dumps(
        [{"name": a.name, "affiliations": list(a.affiliations)} for a in paper.authors],
        ensure_ascii=False,
    )
    row["categories"] = json.dumps(paper.categories)
    return row


def row_to_paper(row: dict[str, Any]) -> Paper:
    fields = {k: v for k, v in row.items() if k != "fetched_at"}
    fields["authors"] = [
        Author(a["name"], tuple(a.get("affiliations") or ()))
        for a in json.loads(row["authors"] or "[]")
    ]
    fields["categories"] = json.loads(row["categories"] or "[]")
    return Paper(**fields)
