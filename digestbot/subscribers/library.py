"""A reader's paper library as a profile (issue 16): stored, scored, shown, removed.

This module alone reads and writes `libraries` and `library_items`. A library behaves like a
topic: each paper of the day gets a score 0–100 from its nearest library entry (local
embeddings, `digestbot.embed`; no LLM call, no network), a paper at or above the reader's
library threshold comes in their digest with that entry's title as the reason, and `/list`
shows its size and threshold. Importing again (a file, or a Zotero re-fetch) replaces it
whole, in one transaction, so a digest never sees half a library.

Embeddings are never stored: a day's papers are embedded once per process and version (the
cache below, shared by every reader) and a library once per change, so selecting for a reader
costs one matrix product.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from digestbot import embed
from digestbot.errors import UsageError
from digestbot.models import Announcement, Paper, Topic
from digestbot.store import Store, add_secrets, now_iso
from digestbot.subscribers.library_files import Item, parse_library
from digestbot.subscribers.validate import validate_threshold
from digestbot.subscribers.zotero import check_user_id, fetch_items

# The library's place among a digest's topics: its hits, its threshold, its line in /list.
TOPIC = "library"
DEFAULT_THRESHOLD = 60


def library_topic() -> Topic:
    return Topic(slug=TOPIC, name_zh="我的文库", name_en="My library",
                 description="papers close to the reader's own library", custom=True)


@dataclass(frozen=True)
class LibraryInfo:
    source: str  # "bibtex" | "ris" | "zotero"
    name: str  # the file's name, or "Zotero <user id>"
    threshold: int
    size: int
    updated_at: str
    zotero_user: str | None = None


def get_library(store: Store, subscriber_id: int) -> LibraryInfo | None:
    rows = list(store.db.query(
        "select source, name, threshold, size, updated_at, zotero_user from libraries"
        " where subscriber_id = ?", [subscriber_id]))
    return LibraryInfo(**rows[0]) if rows else None


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
    at = now_iso()
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
    _vectors.forget(subscriber_id)
    return get_library(store, subscriber_id)  # type: ignore[return-value]


def import_file(store: Store, subscriber_id: int, data: bytes, name: str) -> LibraryInfo:
    """Replace the reader's library with a BibTeX or RIS file's entries (UsageError: nothing
    changed)."""
    source, entries = parse_library(data, name)
    return replace_library(store, subscriber_id, source, name, entries)


def import_zotero(store: Store, subscriber_id: int, user_id: str, key: str,
                  endpoint: str) -> LibraryInfo:
    """Replace the reader's library with their Zotero library's items; the key is kept (for
    refreshing) and masked everywhere. Network first, then one short transaction."""
    user_id = check_user_id(user_id)
    entries = fetch_items(user_id, key, endpoint)
    return replace_library(store, subscriber_id, "zotero", f"Zotero {user_id}", entries,
                           zotero_user=user_id, zotero_key=key.strip())


def refresh(store: Store, subscriber_id: int, endpoint: str) -> LibraryInfo:
    """Fetch a Zotero library again; a file library is refreshed by sending the file again."""
    source = zotero_source(store, subscriber_id)
    if source is None:
        raise UsageError(zh="只有 Zotero 文库可以直接刷新;文件导入的文库请重新上传文件。",
                         en="Only a Zotero library can be refreshed; for a file library, send "
                            "the file again.")
    return import_zotero(store, subscriber_id, source[0], source[1], endpoint)


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
    _vectors.forget(subscriber_id)
    return bool(gone)


def _touch(store: Store, subscriber_id: int) -> None:
    """A changed library is a changed subscriber: the outbox forgets its empty selections."""
    store.db.execute("update subscribers set updated_at = ? where id = ?", [now_iso(), subscriber_id])


def fingerprint(store: Store) -> str:
    row = next(iter(store.db.query(
        "select count(*) || ':' || coalesce(max(updated_at), '') || ':' || total(threshold) f"
        " from libraries")))
    return str(row["f"])


# -- scoring ---------------------------------------------------------------------------------

# Cosine similarity to a score that reads like a topic's. Measured on real arXiv data
# (wordllama l2_supercat_256): against a 30-paper LLM library, the other cs.CL papers of
# 2026-08-13 had nearest-entry cosines of 0.44/0.54/0.61/0.66 (10th/50th/90th/99th percentile),
# a general software-testing sample 0.39/0.45/0.54/0.64. So 0.30 → 0 and 0.80 → 100: the
# default threshold 60 (cosine 0.60) brings about the closest tenth of a related field.
# An entry without an abstract is a title alone, which sits ~0.10 lower against a paper's
# title and abstract (0.38/0.47/0.53 for the same library as titles): it gets that back.
COS_ZERO, COS_FULL = 0.30, 0.80
TITLE_ONLY_BONUS = 0.10


def score_of(cosine: float) -> int:
    return int(np.clip(round((cosine - COS_ZERO) / (COS_FULL - COS_ZERO) * 100), 0, 100))


def reason(title: str, lang: str) -> str:
    if lang == "en":
        return f"close to your library: {title}"
    if lang == "zh":
        return f"与你的文库相近:{title}"
    return f"与你的文库相近 / close to your library: {title}"


class _Vectors:
    """Paper vectors per (id, version) and library matrices per reader, bounded, thread-safe.

    A day has a few thousand papers (~1 KB each); libraries are kept in float16 up to
    MAX_LIBRARY_ROWS rows in all, least recently used first out.
    """

    MAX_PAPERS = 20_000
    MAX_LIBRARY_ROWS = 200_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._papers: OrderedDict[tuple[str, int | None, int], np.ndarray] = OrderedDict()
        self._libraries: OrderedDict[int, tuple[str, np.ndarray, np.ndarray, list[str]]] = (
            OrderedDict())

    def papers(self, papers: Sequence[Paper]) -> np.ndarray:
        keys = [(p.id, p.version, hash(embed.paper_text(p))) for p in papers]
        with self._lock:
            missing = [(k, p) for k, p in zip(keys, papers, strict=True) if k not in self._papers]
        if missing:
            fresh = embed.embed_papers([p for _, p in missing])
            with self._lock:
                for (key, _), row in zip(missing, fresh, strict=True):
                    self._papers[key] = row
                while len(self._papers) > self.MAX_PAPERS:
                    self._papers.popitem(last=False)
        with self._lock:
            rows = [self._papers.get(k) for k in keys]
        # A vector evicted meanwhile (another thread's huge batch) is simply made again.
        return np.stack([r if r is not None else embed.embed_papers([p])[0]
                         for r, p in zip(rows, papers, strict=True)]) if papers else (
            np.zeros((0, embed.DIM), dtype=np.float32))

    def library(self, store: Store, subscriber_id: int, stamp: str
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The reader's entries as (unit rows, per-entry bonus, titles), made once per change."""
        with self._lock:
            hit = self._libraries.get(subscriber_id)
            if hit and hit[0] == stamp:
                self._libraries.move_to_end(subscriber_id)
                return hit[1].astype(np.float32), hit[2], hit[3]
        entries = items(store, subscriber_id)
        matrix = embed.embed([f"{e.title}\n{e.abstract}" if e.abstract else e.title
                              for e in entries])
        bonus = np.array([0.0 if e.abstract else TITLE_ONLY_BONUS for e in entries],
                         dtype=np.float32)
        titles = [e.title for e in entries]
        with self._lock:
            self._libraries[subscriber_id] = (stamp, matrix.astype(np.float16), bonus, titles)
            while sum(len(v[3]) for v in self._libraries.values()) > self.MAX_LIBRARY_ROWS:
                self._libraries.popitem(last=False)
        return matrix, bonus, titles

    def forget(self, subscriber_id: int) -> None:
        with self._lock:
            self._libraries.pop(subscriber_id, None)


_vectors = _Vectors()


@dataclass(frozen=True)
class Match:
    score: int
    title: str  # the nearest library entry's


def match_papers(store: Store, subscriber_id: int, papers: Sequence[Paper]) -> dict[str, Match]:
    """Each paper's score against the reader's library and its nearest entry ({} without one)."""
    info = get_library(store, subscriber_id)
    if info is None or not papers:
        return {}
    matrix, bonus, titles = _vectors.library(store, subscriber_id,
                                             f"{info.updated_at}:{info.size}")
    if not titles:
        return {}
    sims = embed.cosine(_vectors.papers(papers), matrix) + bonus
    best = sims.argmax(axis=1)
    return {p.id: Match(score_of(float(sims[i, j])), titles[j])
            for i, (p, j) in enumerate(zip(papers, best, strict=True))}


def score_rows(store: Store, subscriber_id: int, lang: str,
               announcements: Iterable[Announcement], papers: Mapping[str, Paper],
               *, passing_only: bool = True) -> list[dict[str, Any]]:
    """Score rows for the library, shaped like `enrich.topic_scores`' (announcement fields,
    topic, score, reason, threshold), so selection ranks, caps and explains them as it does
    a topic's: one row per announcement whose paper is in `papers`."""
    info = get_library(store, subscriber_id)
    anns = [a for a in announcements if a.arxiv_id in papers]
    if info is None or not anns:
        return []
    ids = list(dict.fromkeys(a.arxiv_id for a in anns))
    found = match_papers(store, subscriber_id, [papers[pid] for pid in ids])
    rows = []
    for ann in anns:
        match = found.get(ann.arxiv_id)
        if match is None or (passing_only and match.score < info.threshold):
            continue
        rows.append({"arxiv_id": ann.arxiv_id, "date": ann.date,
                     "announce_type": ann.announce_type, "version": ann.version,
                     "source": ann.source, "topic": TOPIC, "score": match.score,
                     "reason": reason(match.title, lang), "threshold": info.threshold})
    return rows
