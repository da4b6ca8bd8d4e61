"""A reader's profile beyond topics: followed authors and keywords in and out (issue 16).

This module alone reads and writes `followed_authors` and `keyword_filters`. Every change
validates all of its input before the first write and writes in one transaction; selection
reads the profile when it builds the reader's next digest, so a change takes effect then.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from digestbot.errors import UsageError
from digestbot.store import Store, now_iso
from digestbot.subscribers.matching import keyword_key, name_key

KeywordKind = Literal["must", "exclude"]
KINDS: tuple[KeywordKind, ...] = ("must", "exclude")

# Enough for a lab's worth of people and a page of words; more is a paste gone wrong.
MAX_FOLLOWS = 100
MAX_KEYWORDS = 50
MAX_NAME_CHARS = 100
MAX_KEYWORD_CHARS = 60


@dataclass(frozen=True)
class Profile:
    """What a reader follows and filters, as they typed it (oldest first)."""

    follows: tuple[str, ...] = ()
    must: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.follows or self.must or self.exclude)


def get_profile(store: Store, subscriber_id: int) -> Profile:
    follows = [r["name"] for r in store.db.query(
        "select name from followed_authors where subscriber_id = ? order by created_at, rowid",
        [subscriber_id])]
    words: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for row in store.db.query(
        "select kind, word from keyword_filters where subscriber_id = ? order by created_at, rowid",
        [subscriber_id],
    ):
        words.setdefault(row["kind"], []).append(row["word"])
    return Profile(tuple(follows), tuple(words["must"]), tuple(words["exclude"]))


def all_profiles(store: Store) -> dict[int, Profile]:
    """Every reader's non-empty profile by subscriber id (`get_profile` for a planning pass:
    two queries, not two per reader); a reader without one is absent."""
    follows: dict[int, list[str]] = {}
    for row in store.db.query(
            "select subscriber_id, name from followed_authors order by created_at, rowid"):
        follows.setdefault(row["subscriber_id"], []).append(row["name"])
    words: dict[int, dict[str, list[str]]] = {}
    for row in store.db.query(
            "select subscriber_id, kind, word from keyword_filters order by created_at, rowid"):
        words.setdefault(row["subscriber_id"], {}).setdefault(row["kind"], []).append(row["word"])
    return {sid: Profile(tuple(follows.get(sid, ())), tuple(words.get(sid, {}).get("must", ())),
                         tuple(words.get(sid, {}).get("exclude", ())))
            for sid in {*follows, *words}}


def _clean(text: str, what_zh: str, what_en: str, limit: int) -> str:
    text = " ".join(text.split())
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise UsageError(zh=f"{what_zh}含有控制字符。", en=f"The {what_en} contains control characters.")
    if not any(c.isalnum() for c in text):
        raise UsageError(zh=f"{what_zh}不能为空。", en=f"The {what_en} is empty.")
    if len(text) > limit:
        raise UsageError(zh=f"{what_zh}太长(最多 {limit} 个字符)。",
                         en=f"The {what_en} is too long (at most {limit} characters).")
    return text


def clean_name(name: str) -> str:
    """A followed name as it will be stored and shown; UsageError when it cannot be one."""
    return _clean(name, "作者姓名", "author name", MAX_NAME_CHARS)


def clean_keyword(word: str) -> str:
    return _clean(word, "关键词", "keyword", MAX_KEYWORD_CHARS)


def _add(store: Store, subscriber_id: int, table: str, column: str, scope: dict[str, str],
         wanted: dict[str, str], cap: int, too_many: UsageError) -> list[str]:
    """Insert the `wanted` {key: text} rows of `table` (`column` holds the text) that the
    subscriber does not have yet within `scope` (e.g. one keyword kind), at most `cap` rows in
    all; the texts added."""
    where = "".join(f" and {name} = ?" for name in scope)
    columns = ["subscriber_id", *scope, "key", column, "created_at"]
    insert = (f"insert into {table} ({', '.join(columns)}) "
              f"values ({', '.join('?' * len(columns))})")
    with store.db.atomic():
        have = {r["key"] for r in store.db.query(
            f"select key from {table} where subscriber_id = ?{where}",
            [subscriber_id, *scope.values()])}
        added = {key: text for key, text in wanted.items() if key not in have}
        if len(have) + len(added) > cap:
            raise too_many
        at = now_iso()
        for key, text in added.items():
            store.db.execute(insert, [subscriber_id, *scope.values(), key, text, at])
        if added:
            _touch(store, subscriber_id)
    return list(added.values())


def follow(store: Store, subscriber_id: int, names: Sequence[str]) -> list[str]:
    """Follow each name (already followed ones are kept as they were); the new ones."""
    cleaned = list(dict.fromkeys(clean_name(n) for n in names))
    return _add(store, subscriber_id, "followed_authors", "name", {},
                {name_key(n): n for n in cleaned}, MAX_FOLLOWS,
                UsageError(zh=f"最多关注 {MAX_FOLLOWS} 位作者。",
                           en=f"You can follow at most {MAX_FOLLOWS} authors."))


def unfollow(store: Store, subscriber_id: int, names: Sequence[str] | None) -> list[str]:
    """Stop following the names (None: everyone); the stored names that went."""
    with store.db.atomic():
        rows = list(store.db.query(
            "select key, name from followed_authors where subscriber_id = ?", [subscriber_id]))
        keys = None if names is None else {name_key(n) for n in names}
        gone = [r for r in rows if keys is None or r["key"] in keys]
        for row in gone:
            store.db.execute("delete from followed_authors where subscriber_id = ? and key = ?",
                             [subscriber_id, row["key"]])
        if gone:
            _touch(store, subscriber_id)
    return [r["name"] for r in gone]


def add_keywords(store: Store, subscriber_id: int, kind: KeywordKind,
                 words: Sequence[str]) -> list[str]:
    """Add `must` or `exclude` words (one already there is kept); the new ones."""
    cleaned = list(dict.fromkeys(clean_keyword(w) for w in words))
    return _add(store, subscriber_id, "keyword_filters", "word", {"kind": kind},
                {keyword_key(w): w for w in cleaned}, MAX_KEYWORDS,
                UsageError(zh=f"每类关键词最多 {MAX_KEYWORDS} 个。",
                           en=f"At most {MAX_KEYWORDS} keywords of each kind."))


def remove_keywords(store: Store, subscriber_id: int, kind: KeywordKind | None,
                    words: Sequence[str] | None) -> list[str]:
    """Drop the words of `kind` (None: both kinds; words None: all of them); those that went."""
    with store.db.atomic():
        rows = list(store.db.query(
            "select kind, key, word from keyword_filters where subscriber_id = ?", [subscriber_id]))
        keys = None if words is None else {keyword_key(w) for w in words}
        gone = [r for r in rows
                if (kind is None or r["kind"] == kind) and (keys is None or r["key"] in keys)]
        for row in gone:
            store.db.execute(
                "delete from keyword_filters where subscriber_id = ? and kind = ? and key = ?",
                [subscriber_id, row["kind"], row["key"]])
        if gone:
            _touch(store, subscriber_id)
    return [r["word"] for r in gone]


def replace_profile(store: Store, subscriber_id: int, follows: Sequence[str],
                    must: Sequence[str], exclude: Sequence[str]) -> None:
    """Make the profile exactly these lists (the preferences form): all validated first."""
    for name in follows:
        clean_name(name)
    for word in [*must, *exclude]:
        clean_keyword(word)
    with store.db.atomic():
        current = get_profile(store, subscriber_id)
        keep = {name_key(n) for n in follows}
        gone = [n for n in current.follows if name_key(n) not in keep]
        if gone:
            unfollow(store, subscriber_id, gone)
        follow(store, subscriber_id, follows)
        for kind, words in (("must", must), ("exclude", exclude)):
            keep = {keyword_key(w) for w in words}
            gone = [w for w in getattr(current, kind) if keyword_key(w) not in keep]
            if gone:
                remove_keywords(store, subscriber_id, kind, gone)
            add_keywords(store, subscriber_id, kind, words)


def _touch(store: Store, subscriber_id: int) -> None:
    """A changed profile is a changed subscriber: the outbox forgets its empty selections."""
    store.db.execute("update subscribers set updated_at = ? where id = ?", [now_iso(), subscriber_id])


def fingerprint(store: Store) -> str:
    """Changes whenever a follow or keyword is added or removed anywhere."""
    row = next(iter(store.db.query(
        "select (select count(*) || ':' || coalesce(max(created_at), '') from followed_authors) f,"
        " (select count(*) || ':' || coalesce(max(created_at), '') from keyword_filters) k")))
    return f"{row['f']}|{row['k']}"


def delete_profile(store: Store, subscriber_id: int) -> None:
    """Forget everything a removed reader followed or filtered (inside the caller's transaction)."""
    store.db.execute("delete from followed_authors where subscriber_id = ?", [subscriber_id])
    store.db.execute("delete from keyword_filters where subscriber_id = ?", [subscriber_id])
