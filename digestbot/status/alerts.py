"""Operator alerts: one message when an incident begins, one "resolved" when it clears.

An incident is a condition the status shows, not a single failure:

    fetch      tonight's batch was not fetched by the 03:00 ET deadline and the last
               attempt failed (arXiv unreachable, not a holiday); it lasts until a fetch
               succeeds
    breaker:X  a sender's circuit breaker is open (X = SMTP…)
    failures   in the last hour, at least MIN_FAILURES digests ended failed_permanent and
               they are at least FAILURE_RATE of the digests that ended

The open incidents are kept in `meta` (`alert:<key>`), so a restart neither repeats an alert
nor forgets to resolve one. `check` says what changed; the entry point sends each message
(`channels.admin`) and then `mark`s it, so a message that could not be sent goes again at the
next check. Texts carry counts, times and kinds of server only, and pass `store.redact`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from digestbot import outbox
from digestbot.store import Store, redact

KEY = "alert:"
MIN_FAILURES = 3
FAILURE_RATE = 0.2
FAILURE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Alert:
    key: str
    opened: bool  # False: resolved
    subject: str
    text: str


def incidents(store: Store, snap: dict[str, Any], now: datetime) -> dict[str, str]:
    """The incidents open at `now`, each with a one-line description (Chinese / English)."""
    found = {}
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


def check(store: Store, snap: dict[str, Any], now: datetime) -> list[Alert]:
    """What changed since the last check: incidents that began, incidents that cleared."""
    current = incidents(store, snap, now)
    known = {k.removeprefix(KEY): json.loads(v) for k, v in store.meta_items(KEY).items()}
    if "fetch" in known and snap["fetch"]["failing_since"]:
        # Next evening's retries make the state "waiting" again: still the same incident
        # until a fetch succeeds, not a "resolved" and a new alert every night.
        current.setdefault("fetch", known["fetch"]["text"])
    out = [Alert(key, True, f"[digestbot] 故障 / incident: {key}", redact(text))
           for key, text in sorted(current.items()) if key not in known]
    out += [Alert(key, False, f"[digestbot] 已恢复 / resolved: {key}",
                  redact(f"已恢复 / resolved: {entry['text']} (open since {entry['since']})"))
            for key, entry in sorted(known.items()) if key not in current]
    return out


def mark(store: Store, alert: Alert, now: datetime) -> None:
    """The alert was sent: remember the incident as open, or forget it as resolved."""
    if alert.opened:
        store.set_meta(KEY + alert.key, json.dumps(
            {"since": now.astimezone(UTC).isoformat(timespec="seconds"), "text": alert.text},
            ensure_ascii=False))
    else:
        store.delete_meta(KEY + alert.key)
