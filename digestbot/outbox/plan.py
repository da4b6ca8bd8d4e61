"""Who is due, and their outbox rows: written before anything is sent.

`plan` writes each row and its `delivered_papers` in one transaction, so selection never
offers the same paper again even if the send is still to come.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digestbot import digest as digests
from digestbot import subscribers
from digestbot.collecting import fewer_collections
from digestbot.config import Settings
from digestbot.enrich import topic_scores
from digestbot.models import Subscriber
from digestbot.outbox.rows import DeliveryHistory, DeliveryReport, aware, create_row, planned_for
from digestbot.outbox.timeline import Readiness, on_cadence, opens_week
from digestbot.sources import papers
from digestbot.store import Store

log = logging.getLogger(__name__)


def is_due(subscriber: Subscriber, now: datetime, date: str | None = None, *,
           first_of_week: bool | None = None) -> bool:
    """Has the subscriber's local send time passed (today, or on `date` and after)?

    With `date`, the digest of that date is not due before that calendar day in the
    subscriber's zone: arXiv announces at 20:00 New York time, which is still the day before
    for the Americas, and a reader who asked for 06:00 wants it at 06:00, not the evening
    before. Local wall time through zoneinfo, so DST shifts move the instant, not the hour.
    A weekly reader is due only for the week's first digest (`on_cadence`).
    """
    try:
        zone = ZoneInfo(subscriber.tz)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("subscriber #%s has an unknown time zone %r; using UTC", subscriber.id, subscriber.tz)
        zone = ZoneInfo("UTC")
    local = aware(now).astimezone(zone)
    if not on_cadence(subscriber, date or local.date().isoformat(), first_of_week=first_of_week):
        return False
    hour, minute = (int(x) for x in (subscriber.send_at or "08:30").split(":"))
    if date is not None and local.date().isoformat() != date:
        return local.date().isoformat() > date
    return local.time() >= time(hour, minute)


def due_subscribers(
    store: Store, now: datetime, force: bool, date: str | None = None
) -> list[Subscriber]:
    """Active subscribers whose send time has passed (all active ones with `force`)."""
    active = subscribers.list_all(store, statuses=("active",))
    today = date or aware(now).date().isoformat()
    first = opens_week(store, today)
    return [s for s in active if on_cadence(s, today, first_of_week=first)
            and (force or is_due(s, now, date, first_of_week=first))]


def _candidates(
    store: Store, date: str, now: datetime, force: bool, report: DeliveryReport
) -> list[Subscriber]:
    """Due subscribers with no row for `date` yet; counts the ones whose time has not come."""
    have = planned_for(store, date)
    waiting = [s for s in subscribers.list_all(store, statuses=("active",)) if s.id not in have]
    first = opens_week(store, date)
    due = [s for s in waiting if on_cadence(s, date, first_of_week=first)
           and (force or is_due(s, now, date, first_of_week=first))]
    report.not_due += len(waiting) - len(due)
    return due


def plan(store: Store, settings: Settings, date: str, *, now: datetime, force: bool = False) -> list[int]:
    """Create outbox rows for `date` for every due subscriber who has none; returns their ids."""
    return plan_into(store, settings, date, now=now, force=force, report=DeliveryReport())


def plan_for(
    store: Store, settings: Settings, subscriber: Subscriber, date: str, *, now: datetime
) -> int | None:
    """One subscriber's row for `date` now, whatever their send time (a chat's `/digest`).

    None when nothing new passes their thresholds, the day already has a row, or their papers
    are not final yet (the evening's pipeline is still on them: never a partial digest).
    """
    history = DeliveryHistory(store)
    digest = digests.select(store, subscriber, date, history=history)
    ready = Readiness(store, date, strict=False)
    full = (digests.select(store, subscriber, date, history=history, superset=True)
            if ready.needs_superset(subscriber) else digest)
    if digest is None or not digest.entries or not ready.final(subscriber, digest, full):
        return None
    return create_row(store, settings, digest, now)


def plan_into(
    store: Store, settings: Settings, date: str, *, now: datetime, force: bool,
    report: DeliveryReport, strict: bool = False,
) -> list[int]:
    """`plan`, counting into `report` (planned, empty, not yet due, not final yet).

    A due reader gets a row only once every paper that could be in their digest is final
    (`timeline.Readiness`: their topics scored, their papers enriched or given up), so the
    pipeline may still be enriching other readers' papers. `strict` while it runs: a day it
    has not started on is not final for anyone.
    """
    created: list[int] = []
    library = digests.Library(store)  # each of the day's papers is read once, not per reader
    history = DeliveryHistory(store)
    # Taken before selecting, so a score written meanwhile invalidates what we record now.
    stamp = _selection_inputs(store)
    ready = Readiness(store, date, strict=strict, inputs=stamp)
    empty = _known_empty(store, date, stamp)
    with fewer_collections():  # a day's readers, each a digest's worth of short-lived rows
        for sub in library.alike_together(_candidates(store, date, now, force, report)):
            if sub.id in empty:
                report.empty += 1
                continue
            if ready.still_waiting(sub):
                report.unready += 1
                continue
            digest = digests.select(store, sub, date, history=history, library=library)
            full = (digests.select(store, sub, date, history=history, library=library,
                                   superset=True) if ready.needs_superset(sub) else digest)
            if not ready.final(sub, digest, full):
                report.unready += 1
                continue
            if digest is None or not digest.entries:
                report.empty += 1
                empty.add(sub.id)
                continue
            row_id = create_row(store, settings, digest, now)
            if row_id is not None:
                created.append(row_id)
    store.set_meta(EMPTY_KEY, json.dumps({"date": date, "stamp": stamp, "ids": sorted(empty)}))
    report.planned += len(created)
    return created


def preview_into(store: Store, date: str, now: datetime, force: bool, report: DeliveryReport) -> None:
    """Dry run: who would get how many papers; selection reads, it writes nothing."""
    library, history = digests.Library(store), DeliveryHistory(store)
    for sub in _candidates(store, date, now, force, report):
        digest = digests.select(store, sub, date, history=history, library=library)
        if digest is None or not digest.entries:
            report.empty += 1
            continue
        more = f" (+{digest.more} more counted)" if digest.more else ""
        report.would_send.append(
            f"{sub.channel} #{sub.id} {sub.address} {date}: {len(digest.entries)} papers{more}")


# A due subscriber with nothing to send gets no row, so every delivery tick (each minute in
# `run`) would select for them again. This meta row remembers who came up empty for which
# date, valid while nothing their selection reads has changed.
EMPTY_KEY = "delivery.nothing_to_send"


def _selection_inputs(store: Store) -> str:
    """A fingerprint of what can make an empty selection non-empty: new announcements or
    scores, changed subscriptions or subscriber settings, each asked of its owner. Sent
    deliveries only ever shrink a selection."""
    return json.dumps({"a": papers.fingerprint(store), "s": topic_scores.fingerprint(store),
                       "t": subscribers.fingerprint(store)}, sort_keys=True)


def _known_empty(store: Store, date: str, stamp: str) -> set[int]:
    """Subscribers whose selection for `date` was empty under the same inputs."""
    saved = json.loads(store.get_meta(EMPTY_KEY) or "{}")
    if saved.get("date") != date or saved.get("stamp") != stamp:
        return set()
    return set(saved.get("ids", []))
