"""Operator alerts: one message when an incident begins, one "resolved" when it clears.

An incident is a condition the status shows, not a single failure:

    fetch      tonight's batch was not fetched by the 03:00 ET deadline and the last
               attempt failed (arXiv unreachable, not a holiday); it lasts until a fetch
               succeeds
    breaker:X  a sender's circuit breaker is open (X = SMTP…)
    failures   in the last hour, at least MIN_FAILURES digests ended failed_permanent and
               they are at least FAILURE_RATE of the digests that ended
    storage    the database refuses writes (disk full, file read-only, I/O error): a probe
               write at each check fails; it clears at the first probe that succeeds

The open incidents are kept in `meta` (`alert:<key>`), so a restart neither repeats an alert
nor forgets to resolve one. `check` says what changed; the entry point sends each message
(`channels.admin`) and then `mark`s it, so a message that could not be sent goes again at the
next check. Texts carry counts, times and kinds of server only, and pass `store.redact`.
While writes are refused `meta` cannot record anything, so the entry point keeps what `mark`
could not write in a `held` dict and `check` writes it out once the database takes writes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from digestbot import outbox
from digestbot.outbox.batch import LATE_KEY
from digestbot.store import Store, describe_error, redact

KEY = "alert:"
MIN_FAILURES = 3
FAILURE_RATE = 0.2
FAILURE_WINDOW = timedelta(hours=1)
WRITE_PROBE = "status:write_probe"


@dataclass(frozen=True)
class Alert:
    key: str
    opened: bool  # False: resolved
    subject: str
    text: str
    day: str = ""  # the announcement date it makes late (the fetch incident)


def _iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds")


def probe_writes(store: Store, now: datetime) -> str | None:
    """None when the database takes a write; else one line saying what refuses it."""
    try:
        store.set_meta(WRITE_PROBE, _iso(now))
    except sqlite3.Error as exc:
        # The file's name only: where the operator's disks are mounted is not for the chat.
        return describe_error(Path(store.path).name, exc)
    return None


def incidents(store: Store, snap: dict[str, Any], now: datetime,
              write_error: str | None = None) -> dict[str, str]:
    """The incidents open at `now`, each with a one-line description (Chinese / English)."""
    found = {}
    if write_error:
        found["storage"] = f"数据库拒绝写入 / the database refuses writes: {write_error}"
    fetch, expected = snap["fetch"], snap["expected"]
    if expected["state"] == "missed" and fetch["failing_since"]:
        found["fetch"] = (f"{expected['date']} 的公告未能抓取 / the batch of {expected['date']} "
                          f"was not fetched by the 03:00 ET deadline; fetching has failed since "
                          f"{fetch['failing_since']}")
    for b in snap["breakers"]:
        found[f"breaker:{b['name']}"] = (
            f"{b['name']} 熔断 / the {b['name']} server stopped answering: breaker {b['state']} "
            f"since {b['since'] or '?'} ({b['failures']} failures in a row)")
    since = (now - FAILURE_WINDOW).astimezone(UTC).isoformat(timespec="seconds")
    ended = outbox.finished_since(store, since)
    failed = ended.get("failed_permanent", 0)
    if failed >= MIN_FAILURES and failed >= FAILURE_RATE * sum(ended.values()):
        found["failures"] = (f"推送永久失败 / {failed} of {sum(ended.values())} digests that "
                             f"ended in the last hour failed permanently")
    return found


def check(store: Store, snap: dict[str, Any], now: datetime, write_error: str | None = None,
          held: dict[str, dict[str, str] | None] | None = None) -> list[Alert]:
    """What changed since the last check: incidents that began, incidents that cleared.

    `write_error` is `probe_writes`' answer; `held` what `mark` could not write (None: a
    resolved incident whose entry is still in `meta`), written out here once writes work.
    """
    held = {} if held is None else held
    if not write_error and held:
        for key, entry in list(held.items()):
            _write(store, key, entry)
            del held[key]
    current = incidents(store, snap, now, write_error)
    known = {k.removeprefix(KEY): json.loads(v) for k, v in store.meta_items(KEY).items()}
    for key, entry in held.items():
        if entry is None:
            known.pop(key, None)
        else:
            known[key] = entry
    if "fetch" in known and snap["fetch"]["failing_since"]:
        # Next evening's retries make the state "waiting" again: still the same incident
        # until a fetch succeeds, not a "resolved" and a new alert every night.
        current.setdefault("fetch", known["fetch"]["text"])
    late_day = snap["expected"]["date"] if snap["expected"]["state"] == "missed" else ""
    out = [Alert(key, True, f"[digestbot] 故障 / incident: {key}", redact(text),
                 late_day if key == "fetch" else "")
           for key, text in sorted(current.items()) if key not in known]
    out += [Alert(key, False, f"[digestbot] 已恢复 / resolved: {key}",
                  redact(f"已恢复 / resolved: {entry['text']} (open since {entry['since']})"))
            for key, entry in sorted(known.items()) if key not in current]
    return out


def mark(store: Store, alert: Alert, now: datetime,
         held: dict[str, dict[str, str] | None] | None = None) -> None:
    """The alert was sent: remember the incident as open, or forget it as resolved.

    With `held`, a database refusing the write keeps it there (see `check`) instead of
    raising, so the incident is neither told twice nor lost while the disk is full.
    """
    entry = {"since": _iso(now), "text": alert.text} if alert.opened else None
    if alert.day:  # that day's digests, whenever they come, say why they are late
        with contextlib.suppress(sqlite3.Error):  # best effort: the alert matters more
            store.set_meta(LATE_KEY + alert.day, alert.key)
    if held is None:
        _write(store, alert.key, entry)
        return
    try:
        _write(store, alert.key, entry)
    except sqlite3.Error:
        held[alert.key] = entry
    else:
        held.pop(alert.key, None)


def _write(store: Store, key: str, entry: dict[str, str] | None) -> None:
    if entry is None:
        store.delete_meta(KEY + key)
    else:
        store.set_meta(KEY + key, json.dumps(entry, ensure_ascii=False))
