"""Subscribers and their topic subscriptions: the only owner of their tables.

What people type is checked by `subscribers.validate` (re-exported here, so callers write
`subscribers.validate_tz`). Writes that belong together happen in one transaction: a command
with one bad argument changes nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import fields
from typing import Any

from digestbot import topics
from digestbot.errors import UsageError
from digestbot.models import (
    CHANNELS,
    LANGS,
    Cadence,
    Channel,
    Lang,
    Subscriber,
    SubscriberStatus,
    Subscription,
)
from digestbot.store import Store, add_secrets, now_iso, redact
from digestbot.subscribers import feedback, library, notices, profile
from digestbot.subscribers.validate import (
    _check_status,
    _unknown_channel,
    validate_address,
    validate_cadence,
    validate_lang,
    validate_max_papers,
    validate_threshold,
    validate_time,
    validate_tz,
    validate_webhook_url,
)
from digestbot.subscribers.validate import (
    validate_email as validate_email,  # re-exported for the front doors
)

DEFAULT_THRESHOLD = 60
DEFAULT_TZ = "Asia/Shanghai"
DEFAULT_SEND_AT = "08:30"
DEFAULT_LANG: Lang = "zh"
DEFAULT_MAX_PAPERS = 50
MAX_CUSTOM_TOPICS = 10

_SETTINGS_FIELDS = ("tz", "send_at", "lang", "max_papers", "address", "webhook_url", "cadence")

# -- store queries ----------------------------------------------------------------------------


_SUBSCRIBER_FIELDS = frozenset(f.name for f in fields(Subscriber))


def _row_to_subscriber(row: dict[str, Any]) -> Subscriber:
    # A webhook URL is a credential: known to the log filter from the moment it is read.
    if row.get("webhook_url"):
        add_secrets(row["webhook_url"])
    # Only the dataclass's fields: a later migration may add columns.
    return Subscriber(**{k: v for k, v in row.items() if k in _SUBSCRIBER_FIELDS})


def get(store: Store, id: int) -> Subscriber | None:
    rows = list(store.db.query(
        "select * from subscribers where id = ? and status != ?", [id, REMOVED]))
    return _row_to_subscriber(rows[0]) if rows else None


def by_token(store: Store, token: str) -> Subscriber | None:
    """The subscriber holding this unsubscribe token (an indexed SQL equality).

    The token is kept as is, not hashed, because every digest must carry it and
    DIGESTBOT_SECRET (which could derive it instead) is optional for sending. It is 256
    random bits (`secrets.token_urlsafe(32)`), so neither guessing nor timing the index
    lookup finds one; it never appears in `sub list`, logs or errors.
    """
    if not token:
        return None
    rows = list(store.db.query(
        "select * from subscribers where token = ? and status != ?", [token, REMOVED]))
    return _row_to_subscriber(rows[0]) if rows else None


def by_address(store: Store, channel: str, address: str) -> Subscriber | None:
    rows = list(store.db.query(
        "select * from subscribers where channel = ? and address = ? and status != ?",
        [channel, address, REMOVED],
    ))
    return _row_to_subscriber(rows[0]) if rows else None


def list_all(store: Store, statuses: tuple[SubscriberStatus, ...] | None = None) -> list[Subscriber]:
    if statuses is None:
        rows = store.db.query("select * from subscribers where status != ? order by id", [REMOVED])
    else:
        marks = ",".join("?" * len(statuses))
        rows = store.db.query(
            f"select * from subscribers where status in ({marks}) order by id", list(statuses)
        )
    return [_row_to_subscriber(r) for r in rows]


def count_by_status(store: Store) -> dict[str, int]:
    """Subscribers per status (removed ones included: they stay as tombstones), for stats."""
    return {r["status"]: r["n"] for r in store.db.query(
        "select status, count(*) n from subscribers group by status order by status")}


def has_webhooks(store: Store) -> bool:
    """Does some Slack subscriber post through an incoming webhook (no bot token needed)?"""
    return bool(list(store.db.query(
        "select 1 from subscribers where channel = 'slack' and webhook_url is not null"
        " and webhook_url != '' limit 1")))


def fingerprint(store: Store) -> str:
    """Changes whenever a subscription or a subscriber's settings change (for the outbox's
    memory of empty selections)."""
    row = next(iter(store.db.query(
        "select (select count(*) || ':' || total(threshold) || ':' || coalesce(max(created_at), '')"
        "  from subscriptions) t, (select coalesce(max(updated_at), '') from subscribers) u")))
    return f"{row['t']}|{row['u']}|{profile.fingerprint(store)}|{library.fingerprint(store)}"


def active_fingerprint(store: Store) -> tuple[Any, ...]:
    """Changes whenever an active subscriber's subscriptions change (the scheduler then scores
    the new topics at once)."""
    row = next(iter(store.db.query(
        "select count(*) n, coalesce(sum(s.threshold), 0) t, max(s.created_at) c,"
        " max(u.updated_at) u from subscriptions s join subscribers u on u.id = s.subscriber_id"
        " where u.status = 'active'")))
    return tuple(row.values())


def subscriptions(store: Store, subscriber_id: int) -> list[Subscription]:
    rows = store.db.query(
        "select subscriber_id, topic, threshold from subscriptions where subscriber_id = ?"
        " order by rowid",  # the order they were subscribed in
        [subscriber_id],
    )
    return [Subscription(**r) for r in rows]


def all_subscriptions(store: Store) -> dict[int, list[Subscription]]:
    """Every subscriber's subscriptions by subscriber id, as `subscriptions` orders them: one
    query for a planning pass over thousands of readers."""
    out: dict[int, list[Subscription]] = {}
    for r in store.db.query("select subscriber_id, topic, threshold from subscriptions"
                            " order by rowid"):
        out.setdefault(r["subscriber_id"], []).append(Subscription(**r))
    return out


def set_subscription(store: Store, subscriber_id: int, topic: str, threshold: int) -> None:
    """Subscribe to `topic` (a slug) or change its threshold; keeps the original created_at.

    A reader has at most MAX_CUSTOM_TOPICS custom topics: each one is scored against every
    paper, so a hundred would make every scoring prompt many times larger. Every front door
    (chat, web, CLI) comes through here and shows the UsageError.
    """
    threshold = validate_threshold(threshold)
    if topic.startswith(topics.CUSTOM_PREFIX):
        others = store.db.execute(
            "select count(*) from subscriptions where subscriber_id = ? and topic like ?"
            " and topic != ?", [subscriber_id, topics.CUSTOM_PREFIX + "%", topic]).fetchone()[0]
        if others >= MAX_CUSTOM_TOPICS:
            raise UsageError(
                zh=f"每位读者最多 {MAX_CUSTOM_TOPICS} 个自定义主题，请先退订一个",
                en=f"at most {MAX_CUSTOM_TOPICS} custom topics per reader; unsubscribe one first")
    store.db.execute(
        "insert into subscriptions (subscriber_id, topic, threshold, created_at)"
        " values (?, ?, ?, ?) on conflict (subscriber_id, topic)"
        " do update set threshold = excluded.threshold",
        [subscriber_id, topic, threshold, now_iso()],
    )
    _touch(store, subscriber_id)


def remove_subscription(store: Store, subscriber_id: int, topic: str | None) -> int:
    """Unsubscribe from one topic, or from all when `topic` is None; returns rows removed."""
    if topic is None:
        cursor = store.db.execute("delete from subscriptions where subscriber_id = ?", [subscriber_id])
    else:
        cursor = store.db.execute(
            "delete from subscriptions where subscriber_id = ? and topic = ?", [subscriber_id, topic]
        )
    _touch(store, subscriber_id)
    return cursor.rowcount


def set_status(store: Store, id: int, status: SubscriberStatus, reason: str | None = None) -> None:
    # The reason is often a peer's error text, which may echo a token: masked, then cut.
    reason = redact(reason)[:500] if reason else reason
    with store.db.atomic():
        current = get(store, id)
        changes = _leaving_changes(current, status) if current else {}
        store.db["subscribers"].update(id, {
            "status": _check_status(status), "status_reason": reason, "updated_at": now_iso(),
            **changes,
        })


def _leaving_changes(current: Subscriber, new: SubscriberStatus) -> dict[str, Any]:
    """Link changes that go with a status change: unsubscribing kills every signed link handed
    out so far (the unsubscribe link itself keeps answering "already unsubscribed"); coming
    back gets a new unsubscribe token, so links from the old subscription's emails are dead.
    """
    old = current.status
    if new in ("unsubscribed", REMOVED) and old not in ("unsubscribed", REMOVED):
        return {"link_gen": current.link_gen + 1}
    if old == "unsubscribed" and new != "unsubscribed":
        return {"token": secrets.token_urlsafe(32)}
    return {}


def update_settings(store: Store, id: int, **fields: Any) -> Subscriber:
    """Change tz, send_at, lang, max_papers, address, webhook_url or cadence; validated."""
    unknown = sorted(set(fields) - set(_SETTINGS_FIELDS))
    if unknown:
        raise TypeError(f"update_settings: unknown field(s) {', '.join(unknown)}")
    current = get(store, id)
    if current is None:
        raise UsageError(zh=f"没有编号为 {id} 的订阅者", en=f"no subscriber #{id}")
    validators = {
        "tz": validate_tz, "send_at": validate_time, "lang": validate_lang,
        "max_papers": validate_max_papers, "webhook_url": validate_webhook_url,
        "cadence": validate_cadence, "address": lambda v: validate_address(current.channel, v),
    }
    values = {k: validators[k](v) for k, v in fields.items() if v is not None}
    if "address" in values:
        other = by_address(store, current.channel, values["address"])
        if other is not None and other.id != id:
            raise UsageError(zh=f"该地址已被订阅者 #{other.id} 使用",
                             en=f"that address belongs to subscriber #{other.id}")
    if values:
        store.db["subscribers"].update(id, {**values, "updated_at": now_iso()})
    return get(store, id)  # type: ignore[return-value]


def add_or_update(
    store: Store,
    *,
    channel: Channel,
    address: str,
    topics: list[str],
    threshold: int = DEFAULT_THRESHOLD,
    tz: str | None = None,
    send_at: str | None = None,
    lang: Lang | None = None,
    max_papers: int | None = None,
    webhook_url: str | None = None,
    status: SubscriberStatus = "active",
    cadence: Cadence | None = None,
) -> Subscriber:
    """Create a subscriber, or update the one with this (channel, address), and subscribe topics.

    `topics` are slugs; each is (re)subscribed at `threshold`, other subscriptions are kept.
    Settings left as None keep their stored value (or the default for a new subscriber); the
    token of an existing subscriber never changes, so links in old emails keep working.
    Callers validate user input with the validate_* functions first.
    """
    if channel not in CHANNELS:
        raise _unknown_channel(channel)
    if lang is not None and lang not in LANGS:
        raise UsageError(zh="语言应为 zh、en 或 both", en=f"language must be zh, en or both: {lang!r}")
    _check_status(status)
    threshold = validate_threshold(threshold)
    now = now_iso()
    settings = {"tz": tz, "send_at": send_at, "lang": lang, "max_papers": max_papers,
                "webhook_url": webhook_url, "cadence": cadence}
    with store.db.atomic():
        existing = by_address(store, channel, address)
        if existing is None:
            defaults = {"tz": DEFAULT_TZ, "send_at": DEFAULT_SEND_AT, "lang": DEFAULT_LANG,
                        "max_papers": DEFAULT_MAX_PAPERS, "webhook_url": None, "cadence": "daily"}
            row = {k: settings[k] if settings[k] is not None else v for k, v in defaults.items()}
            sub_id = store.db["subscribers"].insert({
                "channel": channel, "address": address, **row, "status": status,
                "status_reason": None, "token": secrets.token_urlsafe(32),
                "created_at": now, "updated_at": now,
            }).last_pk
        else:
            sub_id = existing.id
            changes = {k: v for k, v in settings.items() if v is not None}
            if status != existing.status:
                changes.update(status=status, status_reason=None,
                               **_leaving_changes(existing, status))
            store.db["subscribers"].update(sub_id, {**changes, "updated_at": now})
        for slug in topics:
            set_subscription(store, sub_id, slug, threshold)
    return get(store, sub_id)  # type: ignore[return-value]


# A removed subscriber's row stays as a tombstone: the outbox's rows point at it and are never
# deleted (what was sent stays on record), and the id is never handed to someone else who
# would then inherit this reader's history. Nothing here reads it as a subscriber again.
REMOVED = "removed"


def remove(store: Store, id: int) -> bool:
    """Remove a subscriber; False when there was none.

    Their subscriptions, followed authors, keywords, votes and library go; the row keeps only its id and channel (address and token are
    replaced, the webhook dropped), so the address can subscribe afresh and old links do
    nothing. Their outbox rows stay: pending ones are cancelled when the outbox reaches them.
    """
    with store.db.atomic():
        current = get(store, id)
        if current is None:
            return False
        store.db.execute("delete from subscriptions where subscriber_id = ?", [id])
        profile.delete_profile(store, id)
        feedback.delete_feedback(store, id)
        library.delete_library(store, id)
        notices.set_notify(store, id, on=False)
        store.db["subscribers"].update(id, {
            "status": REMOVED, "status_reason": None, "address": f"{REMOVED}:{id}",
            "token": secrets.token_urlsafe(32), "webhook_url": None, "updated_at": now_iso(),
            **_leaving_changes(current, REMOVED),
        })
    return True


def _touch(store: Store, subscriber_id: int) -> None:
    store.db.execute("update subscribers set updated_at = ? where id = ?", [now_iso(), subscriber_id])


def anyone_subscribed(store: Store) -> bool:
    """Whether anyone ever subscribed: a removed subscriber's row stays, so they count."""
    return store.db["subscribers"].count > 0
