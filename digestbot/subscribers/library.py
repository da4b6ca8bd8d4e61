"""A reader's paper library as a profile (issue 16): stored, shown, removed.

This module alone reads and writes `libraries` and `library_items`. A library behaves like a
topic: each paper of the day gets a score 0–100 from its nearest library entry
(`library_score`: local embeddings, no LLM call, no network), a paper at or above the
reader's library threshold comes in their digest with that entry's title as the reason, and
`/list` shows its size and threshold. Importing again (`library_import`: a file, or a Zotero
re-fetch) replaces it whole, in one transaction, so a digest never sees half a library.

Kept light on purpose (no embedding model, no BibTeX parser): every command that touches a
subscriber imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from digestbot.models import Topic
from digestbot.store import Store, add_secrets, now_iso
from digestbot.subscribers.validate import validate_threshold

# The library's place among a digest's topics: its hits, its threshold, its line in /list.
TOPIC = "library"
DEFAULT_THRESHOLD = 60


@dataclass(frozen=True)
class Item:
    """One library entry as stored: where it came from (`key`), its title, its abstract."""

    key: str
    title: str
    abstract: str = ""


def library_topic() -> Topic:
    return Topic(slug=TOPIC, name_zh="我的文库", name_en="My library",
                 description="papers close to the reader's own library", custom=True)


@dataclass(frozen=True)
class LibraryInfo:
    source: str  # "bibtex" | "ris" | "zotero"
    name: str  # the file's name, or "Zotero <user id>"
    threshold: int
    size: int
    # To the microsecond: it names the import, and a cache of the library's vectors is keyed
    # by it (two imports within a second must not share one).
    updated_at: str
    zotero_user: str | None = None


def get_library(store: Store, subscriber_id: int) -> LibraryInfo | None:
    rows = list(store.db.query(
        "select source, name, threshold, size, updated_at, zotero_user from libraries"
        " where subscriber_id = ?", [subscriber_id]))
    return LibraryInfo(**rows[0]) if rows else None


def all_libraries(store: Store) -> dict[int, LibraryInfo]:
    """Every reader's library by subscriber id (a batch of digests reads them once)."""
    return {r["subscriber_id"]: LibraryInfo(**{k: v for k, v in r.items() if k != "subscriber_id"})
            for r in store.db.query(
                "select subscriber_id, source, name, threshold, size, updated_at, zotero_user"
                " from libraries")}


def items(store: Store, subscriber_id: int) -> list[Item]:
    return [Item(r["key"], r["title"], r["abstract"] or "") for r in store.db.query(
        "select key, title, abstract from library_items where subscriber_id = ? order by pos",
        [subscriber_id])]


def replace_library(store: Store, subscriber_id: int, source: str, name: str,
                    entries: Sequence[Item], *, zotero_user: str | None = None,
                    zotero_key: str | None = None) -> LibraryInfo:
    """Make the reader's library exactly `entries` (already checked: non-empty, capped),
    keeping their threshold; a file import forgets any Zotero key kept before."""
    if zotero_key:
        add_secrets(zotero_key)
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    with store.db.atomic():
        old = get_library(store, subscriber_id)
        store.db.execute("delete from library_items where subscriber_id = ?", [subscriber_id])
        store.db.execute(
            "insert into libraries (subscriber_id, source, name, zotero_user, zotero_key,"
            " threshold, size, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " on conflict (subscriber_id) do update set source = excluded.source,"
            " name = excluded.name, zotero_user = excluded.zotero_user,"
            " zotero_key = excluded.zotero_key, size = excluded.size,"
            " updated_at = excluded.updated_at",
            [subscriber_id, source, name[:200], zotero_user, zotero_key,
             old.threshold if old else DEFAULT_THRESHOLD, len(entries), at, at])
        store.db.conn.executemany(
            "insert into library_items (subscriber_id, key, title, abstract, pos)"
            " values (?, ?, ?, ?, ?)",
            [(subscriber_id, e.key, e.title, e.abstract, i) for i, e in enumerate(entries)])
        _touch(store, subscriber_id)
    return get_library(store, subscriber_id)  # type: ignore[return-value]


def describe(info: LibraryInfo | None, lang: str) -> str:
    """The library's line in /list and the CLI."""
    if info is None:
        zh, en = "我的文库:(无)", "My library: (none)"
    else:
        day = info.updated_at[:10]
        zh = f"我的文库:{info.size} 篇(来自 {info.name},{day} 更新),阈值 ≥ {info.threshold}%"
        en = (f"My library: {info.size} papers (from {info.name}, updated {day}), threshold "
              f"≥ {info.threshold}%")
    return en if lang == "en" else zh if lang == "zh" else f"{zh}\n{en}"


def set_threshold(store: Store, subscriber_id: int, threshold: int | str) -> bool:
    """Change the library's threshold; False when the reader has no library."""
    value = validate_threshold(threshold)
    with store.db.atomic():
        changed = store.db.execute("update libraries set threshold = ? where subscriber_id = ?",
                                   [value, subscriber_id]).rowcount
        if changed:
            _touch(store, subscriber_id)
    return bool(changed)


def zotero_source(store: Store, subscriber_id: int) -> tuple[str, str] | None:
    """(user id, key) of a Zotero library, for a refresh; the key is masked from here on."""
    rows = list(store.db.query(
        "select zotero_user, zotero_key from libraries where subscriber_id = ? and"
        " source = 'zotero' and zotero_key is not null", [subscriber_id]))
    if not rows:
        return None
    add_secrets(rows[0]["zotero_key"])
    return rows[0]["zotero_user"], rows[0]["zotero_key"]


def delete_library(store: Store, subscriber_id: int) -> bool:
    """Forget the reader's library, its entries and any Zotero key (a removal, `/library
    clear`); inside the caller's transaction when there is one."""
    with store.db.atomic():
        store.db.execute("delete from library_items where subscriber_id = ?", [subscriber_id])
        gone = store.db.execute("delete from libraries where subscriber_id = ?",
                                [subscriber_id]).rowcount
        if gone:
            _touch(store, subscriber_id)
    return bool(gone)


def _touch(store: Store, subscriber_id: int) -> None:
    """A changed library is a changed subscriber: the outbox forgets its empty selections."""
    store.db.execute("update subscribers set updated_at = ? where id = ?", [now_iso(), subscriber_id])


def fingerprint(store: Store) -> str:
    row = next(iter(store.db.query(
        "select count(*) || ':' || coalesce(max(updated_at), '') || ':' || total(threshold) f"
        " from libraries")))
    return str(row["f"])


