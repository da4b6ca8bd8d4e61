"""Many readers at once: `sub import` and `sub export`.

An import is one transaction: every row is checked with the validators `sub add` uses and its
topics looked up as `sub add` looks them up; one bad row and nothing is written, and every bad
row is reported by its line. A good file is written with a handful of bulk statements (not a
call of `add_or_update` per row, whose per-row queries make 10,000 readers take minutes).

A row for an address already subscribed updates it as `sub add` does: the settings it gives
replace the stored ones, its topics are (re)subscribed at its threshold, other subscriptions
stay, and a reader who had left becomes active again. Imported readers are active at once,
email ones included: like `sub add`, an import is the operator's word (no confirmation mail).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from digestbot import topics
from digestbot.errors import Rollback, UsageError
from digestbot.models import CHANNELS, Cadence, Channel, Lang, Subscriber, Topic
from digestbot.store import Store, now_iso
from digestbot.subscribers import (
    DEFAULT_LANG,
    DEFAULT_MAX_PAPERS,
    DEFAULT_SEND_AT,
    DEFAULT_THRESHOLD,
    DEFAULT_TZ,
    MAX_CUSTOM_TOPICS,
    REMOVED,
    _leaving_changes,
    _row_to_subscriber,
)
from digestbot.subscribers.files import Format, RawRow, problem, read_rows
from digestbot.subscribers.validate import (
    _unknown_channel,
    validate_address,
    validate_cadence,
    validate_lang,
    validate_max_papers,
    validate_threshold,
    validate_time,
    validate_tz,
)


@dataclass(frozen=True)
class ImportRow:
    """A validated row: topics are slugs, settings left out are None (keep / default)."""

    line: int
    channel: Channel
    address: str
    topics: tuple[str, ...]
    threshold: int
    tz: str | None = None
    send_at: str | None = None
    lang: Lang | None = None
    max_papers: int | None = None
    cadence: Cadence | None = None


@dataclass
class ImportReport:
    """What an import did, or (with `problems`) why it did nothing."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    subscriptions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def import_readers(store: Store, data: bytes, fmt: Format, *, custom: bool = False) -> ImportReport:
    """Import every reader in `data` (CSV or JSONL), or none of them.

    With `custom`, a topic name that is no catalogue topic becomes a custom topic (as
    `sub add --custom`); without it, it is a bad row. A file that is not UTF-8 or has no usable
    header raises UsageError; bad rows come back in the report's `problems`, nothing written.
    """
    raw_rows, problems = read_rows(data, fmt)
    # Records whose shape was already bad count as rows too: "3 bad of 5", not "3 bad of 2".
    report = ImportReport(rows=len(raw_rows) + len(problems))
    try:
        with store.db.atomic():
            looked_up: dict[str, Topic | None] = {}
            rows: list[ImportRow] = []
            for raw in raw_rows:
                row, errors = _validate(store, raw, looked_up, custom)
                if errors:
                    problems.append(problem(raw.line, "; ".join(errors)))
                elif row is not None:
                    rows.append(row)
            if not problems:
                problems += _write(store, rows, report)
            if problems:
                # Undoes the custom topics created for a rejected file, too.
                raise Rollback
    except Rollback:
        lines = {p: int(p.split(" ", 2)[1]) for p in problems}
        return ImportReport(rows=report.rows, problems=sorted(problems, key=lines.__getitem__))
    return report


def _validate(store: Store, raw: RawRow, looked_up: dict[str, Topic | None],
              custom: bool) -> tuple[ImportRow | None, list[str]]:
    """The row checked value by value; every problem of the row, not only the first."""
    f = raw.fields
    errors: list[str] = []

    def check(func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except UsageError as exc:
            errors.append(str(exc))
            return None

    channel = (f.get("channel") or "").strip().lower()
    address = f.get("address")
    if not channel:
        errors.append("缺少 channel / channel is missing (email, telegram or slack)")
    elif channel not in CHANNELS:
        errors.append(str(_unknown_channel(channel)))
    elif not address:
        errors.append("缺少 address / address is missing")
    else:
        address = check(validate_address, channel, address)
    slugs: list[str] = []
    for name in f.get("topics") or []:
        topic = check(_topic, store, name, looked_up, custom)
        if topic is not None:
            slugs.append(topic.slug)
    threshold = check(validate_threshold, f["threshold"]) if f.get("threshold") else DEFAULT_THRESHOLD
    values = {key: check(func, f[column]) if f.get(column) else None
              for key, column, func in (("tz", "zone", validate_tz), ("send_at", "time", validate_time),
                                        ("lang", "lang", validate_lang),
                                        ("max_papers", "max", validate_max_papers),
                                        ("cadence", "cadence", validate_cadence))}
    if errors:
        return None, errors
    return ImportRow(raw.line, channel, address, tuple(dict.fromkeys(slugs)), threshold,  # type: ignore[arg-type]
                     **values), []


def _topic(store: Store, name: str, looked_up: dict[str, Topic | None], custom: bool) -> Topic:
    """`topics.lookup` once per distinct name; with `custom`, unknown names become custom topics."""
    if name not in looked_up:
        topic = topics.lookup(name, store)
        if topic is None and custom:
            topic = topics.custom_topic(store, name)
        looked_up[name] = topic
    topic = looked_up[name]
    if topic is None:
        raise UsageError(topics.unknown_topic_message(name) + ";或加 --custom 作为自定义主题 / "
                         "or add --custom to make it a custom topic")
    return topic


# The reader settings a row may give; one left out keeps its stored value (or the default).
_SETTINGS = ("tz", "send_at", "lang", "max_papers", "cadence")


@dataclass
class _Reader:
    """The rows for one (channel, address) merged in file order, as repeated `sub add`s would."""

    lines: list[int]
    settings: dict[str, Any]
    subscriptions: dict[str, int]  # slug -> threshold, first subscribed first


def _merge(rows: list[ImportRow]) -> dict[tuple[str, str], _Reader]:
    readers: dict[tuple[str, str], _Reader] = {}
    for row in rows:
        reader = readers.setdefault((row.channel, row.address), _Reader([], {}, {}))
        reader.lines.append(row.line)
        reader.settings.update({k: v for k in _SETTINGS if (v := getattr(row, k)) is not None})
        for slug in row.topics:
            reader.subscriptions[slug] = row.threshold
    return readers


def _write(store: Store, rows: list[ImportRow], report: ImportReport) -> list[str]:
    """The bulk writes, inside the caller's transaction; problems found only now (too many
    custom topics for a reader) come back, and the caller rolls everything back."""
    readers = _merge(rows)
    db, now = store.db, now_iso()
    existing = {(r["channel"], r["address"]): r for r in db.query(
        "select * from subscribers where status != ?", [REMOVED])}
    new = [(key, r) for key, r in readers.items() if key not in existing]
    old = [(existing[key], r) for key, r in readers.items() if key in existing]
    db.conn.executemany(
        "insert into subscribers (channel, address, tz, send_at, lang, max_papers, cadence,"
        " webhook_url, status, status_reason, token, created_at, updated_at)"
        " values (?, ?, ?, ?, ?, ?, ?, null, 'active', null, ?, ?, ?)",
        [(channel, address, r.settings.get("tz", DEFAULT_TZ),
          r.settings.get("send_at", DEFAULT_SEND_AT), r.settings.get("lang", DEFAULT_LANG),
          r.settings.get("max_papers", DEFAULT_MAX_PAPERS), r.settings.get("cadence", "daily"),
          secrets.token_urlsafe(32), now, now)
         for (channel, address), r in new])
    # Settings the file leaves out keep their stored value (coalesce), as in `sub add`.
    db.conn.executemany(
        "update subscribers set tz = coalesce(?, tz), send_at = coalesce(?, send_at),"
        " lang = coalesce(?, lang), max_papers = coalesce(?, max_papers),"
        " cadence = coalesce(?, cadence), updated_at = ? where id = ?",
        [(*(r.settings.get(k) for k in _SETTINGS), now, row["id"]) for row, r in old])
    for row, _ in old:
        if row["status"] != "active":  # coming back, as `sub add` brings them back
            current: Subscriber = _row_to_subscriber(row)
            db["subscribers"].update(current.id, {
                "status": "active", "status_reason": None, **_leaving_changes(current, "active")})
    ids = {(r["channel"], r["address"]): r["id"] for r in db.query(
        "select id, channel, address from subscribers where status != ?", [REMOVED])}
    subscriptions = [(ids[key], slug, threshold, now)
                     for key, r in readers.items() for slug, threshold in r.subscriptions.items()]
    db.conn.executemany(
        "insert into subscriptions (subscriber_id, topic, threshold, created_at)"
        " values (?, ?, ?, ?) on conflict (subscriber_id, topic)"
        " do update set threshold = excluded.threshold", subscriptions)
    report.added, report.updated, report.subscriptions = len(new), len(old), len(subscriptions)
    return _too_many_custom(store, readers, ids)


def _too_many_custom(store: Store, readers: dict[tuple[str, str], _Reader],
                     ids: dict[tuple[str, str], int]) -> list[str]:
    """The cap `set_subscription` keeps (MAX_CUSTOM_TOPICS per reader), checked once for all."""
    over = {r["subscriber_id"]: r["n"] for r in store.db.query(
        "select subscriber_id, count(*) n from subscriptions where topic like ?"
        " group by subscriber_id having n > ?", [topics.CUSTOM_PREFIX + "%", MAX_CUSTOM_TOPICS])}
    return [problem(reader.lines[-1], f"每位读者最多 {MAX_CUSTOM_TOPICS} 个自定义主题(此读者 {over[ids[key]]} 个)/ "
                                      f"at most {MAX_CUSTOM_TOPICS} custom topics per reader "
                                      f"(this one would have {over[ids[key]]})")
            for key, reader in readers.items() if ids[key] in over]


def export_records(store: Store) -> Iterator[dict[str, Any]]:
    """Active readers as `sub import` reads them, in id order; no token, no webhook URL.

    Only active readers: importing makes a reader active, so exporting someone who
    unsubscribed (or never confirmed) would sign them up again. A reader whose topics have
    different thresholds gets one record per threshold (importing them in order rebuilds the
    same subscriptions); custom topics are written as their text (import with --custom).
    """
    custom = {t.slug: t.description for t in topics.custom_topics(store)}
    subs: dict[int, list[tuple[str, int]]] = {}
    for r in store.db.query("select subscriber_id, topic, threshold from subscriptions"
                            " order by rowid"):
        subs.setdefault(r["subscriber_id"], []).append((r["topic"], r["threshold"]))
    for r in store.db.query("select * from subscribers where status = 'active' order by id"):
        by_threshold: dict[int | None, list[str]] = {}
        for slug, threshold in subs.get(r["id"], []):
            by_threshold.setdefault(threshold, []).append(custom.get(slug, slug))
        for threshold, names in (by_threshold or {None: []}).items():
            yield {"channel": r["channel"], "address": r["address"], "topics": names,
                   "threshold": threshold, "zone": r["tz"], "time": r["send_at"],
                   "lang": r["lang"], "max": r["max_papers"], "cadence": r["cadence"]}
