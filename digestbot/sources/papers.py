"""The papers, announcements and fetch_log tables: the sources stage is their only owner.

Every other module reads papers and announcements through these functions; store.py only
creates the tables (migrations) and hands out the connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import sqlite_utils

from digestbot.models import Announcement, Author, FeedBatch, Paper
from digestbot.store import Store, chunks, now_iso, redact


def save_batch(store: Store, batch: FeedBatch) -> dict[str, int]:
    """Store a source's papers and announcements in one transaction; idempotent.

    Returns counts of papers inserted/updated and announcements added, so callers can
    say what changed (all zero when the same feed is ingested twice). Reads what is held
    in a few queries and writes with executemany: a 2,000-item evening is one pass.
    """
    db = store.db
    counts = {"papers_new": 0, "papers_updated": 0, "announcements_new": 0}
    with db.atomic():
        held = _paper_rows(store, [p.id for p in batch.papers])
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
        _insert(store, "papers", inserts)
        if updates:
            cols = [c for c in updates[0] if c != "id"]
            db.conn.executemany(
                f"update papers set {', '.join(c + ' = ?' for c in cols)} where id = ?",
                [[r[c] for c in cols] + [r["id"]] for r in updates])
        counts["papers_new"], counts["papers_updated"] = len(inserts), len(updates)
        new_anns, versions = [], []
        for date in {a.date for a in batch.announcements}:
            day = {r["arxiv_id"]: r["version"] for r in db.query(
                "select arxiv_id, version from announcements where date = ?", [date])}
            for ann in (a for a in batch.announcements if a.date == date):
                if ann.arxiv_id not in day:
                    new_anns.append(asdict(ann))
                    day[ann.arxiv_id] = ann.version
                elif day[ann.arxiv_id] is None and ann.version is not None:
                    # A listing left the version unknown; RSS or the API now says which.
                    versions.append((ann.version, ann.date, ann.arxiv_id))
        _insert(store, "announcements", new_anns)
        db.conn.executemany("update announcements set version = ? where date = ? and "
                            "arxiv_id = ? and version is null", versions)
        counts["announcements_new"] = len(new_anns)
    return counts


def _paper_rows(store: Store, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        for row in store.db.query(f"select * from papers where id in ({marks})", chunk):
            out[row["id"]] = row
    return out


def _insert(store: Store, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        cols = list(rows[0])
        store.db.conn.executemany(
            f"insert into {table} ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
            [[r[c] for c in cols] for r in rows])


def get_paper(store: Store, arxiv_id: str) -> Paper | None:
    try:
        return row_to_paper(store.db["papers"].get(arxiv_id))
    except sqlite_utils.db.NotFoundError:
        return None


def get_papers(store: Store, ids: Iterable[str]) -> dict[str, Paper]:
    """The stored papers among `ids`, by id (unknown ids are left out)."""
    return {i: row_to_paper(row) for i, row in _paper_rows(store, list(ids)).items()}


def announcements_on(store: Store, date: str) -> list[Announcement]:
    rows = store.db.query("select * from announcements where date = ? order by arxiv_id", [date])
    return [Announcement(**row) for row in rows]


def announcement_dates(store: Store, *, after: str = "", before: str = "9999") -> list[str]:
    """Days with announcements, oldest first; only those strictly between `after` and `before`."""
    rows = store.db.query("select distinct date from announcements where date > ? and date < ?"
                          " order by date", [after, before])
    return [r["date"] for r in rows]


def last_announcements(store: Store, ids: Iterable[str], until: str) -> dict[str, Announcement]:
    """Each paper's last announcement up to `until` (a later one only if there is none)."""
    out: dict[str, Announcement] = {}
    for chunk in chunks(list(ids), 500):
        marks = ",".join("?" * len(chunk))
        for row in store.db.query(
                f"select * from announcements where arxiv_id in ({marks})"
                " order by date <= ?, date", [*chunk, until]):
            out[row["arxiv_id"]] = Announcement(**row)
    return out


def latest_announcement_date(store: Store) -> str | None:
    # Asked on every delivery tick: max() reads one end of the (date, arxiv_id) key.
    return next(iter(store.db.query("select max(date) d from announcements")))["d"]


def fingerprint(store: Store) -> str:
    """Changes whenever an announcement is added (rowids only grow)."""
    row = next(iter(store.db.query(
        "select count(*) || ':' || coalesce(max(rowid), 0) a from announcements")))
    return str(row["a"])


def log_fetch(store: Store, source: str, date: str | None, status: str, items: int,
              detail: str = "") -> None:
    store.db["fetch_log"].insert(
        {"at": now_iso(), "source": source, "date": date, "status": status,
         "items": items, "detail": redact(detail)[:500]}
    )


def counts(store: Store) -> dict[str, Any]:
    """This stage's part of `digestbot stats --json`."""
    db = store.db
    return {
        "papers": next(iter(db.query("select count(*) n from papers")))["n"],
        "announcements": {r["announce_type"]: r["n"] for r in db.query(
            "select announce_type, count(*) n from announcements group by announce_type"
            " order by announce_type")},
        "announcement_dates": next(iter(db.query(
            "select count(distinct date) n from announcements")))["n"],
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


def last_announcement_seen(store: Store) -> dict[str, Any] | None:
    """The newest announcement date: when a fetch first brought it, from where, papers by type.

    For the public status page: no fetch error text (`fetch_log.detail`) leaves this function.
    """
    date = latest_announcement_date(store)
    if date is None:
        return None
    db = store.db
    by_type = {r["announce_type"]: r["n"] for r in db.query(
        "select announce_type, count(*) n from announcements where date = ?"
        " group by announce_type order by announce_type", [date])}
    seen = next(iter(db.query(
        "select at, source from fetch_log where date = ? and status = 'ok' and items > 0"
        " order by at limit 1", [date])), None)
    if seen is None:  # stored by an older version, or by a fetch that logged nothing
        seen = next(iter(db.query(
            "select min(source) source from announcements where date = ?", [date])))
    return {"date": date, "seen_at": seen.get("at"), "source": seen["source"],
            "papers": by_type, "total": sum(by_type.values())}


def fetch_times(store: Store) -> dict[str, Any]:
    """The last fetch attempt (its time and status) and the last one that brought a batch."""
    db = store.db
    last = next(iter(db.query("select at, status from fetch_log order by id desc limit 1")), None)
    ok = next(iter(db.query(
        "select max(at) at from fetch_log where status != 'error'")))["at"]  # arXiv answered
    failing_since = None
    if last and last["status"] == "error":
        failing_since = next(iter(db.query(
            "select min(at) at from fetch_log where status = 'error' and id > coalesce("
            "(select max(id) from fetch_log where status != 'error'), 0)")))["at"]
    return {"last_attempt_at": last["at"] if last else None,
            "last_status": last["status"] if last else None,
            "last_ok_at": ok, "failing_since": failing_since}
