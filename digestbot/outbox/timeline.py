"""The evening as a timeline: who is due when, what each reader will get, and whether it is
final yet.

`reading_order` is what the pipeline enriches first (it sits below selection, so the
scheduler and the CLI hand it this function): the readers of a day in the order they are
due, each one's papers best first — the very selection the digest will make
(`digest.select`, followed authors and keywords included), unsifted for readers with
keywords since a Chinese keyword can only match a translation not made yet. A reader's
papers join the list after the earlier readers', so the first reader's digest is final
after their own papers, not after everyone's.

`Readiness` is what planning asks before writing a reader's row while the pipeline runs:
their topics fully scored and none of their papers still pending (`enrich.progress`).
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, time, timedelta
from datetime import date as Date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digestbot import digest as digests
from digestbot import subscribers
from digestbot.enrich import progress as day_progress
from digestbot.models import Digest, Subscriber
from digestbot.outbox.rows import DeliveryHistory, planned_for
from digestbot.sources import papers
from digestbot.store import Store

MONDAY = 0  # date.weekday()


def on_cadence(subscriber: Subscriber, date: str, *, first_of_week: bool | None = None) -> bool:
    """Does the reader get a digest dated `date` at all? A weekly reader gets the week's first
    one only (the week's best): Monday's, or after a holiday Monday the next announcement's
    (`first_of_week`, from `opens_week`; without it, Monday's). `--now` skips send times, never
    this."""
    if subscriber.cadence != "weekly":
        return True
    return Date.fromisoformat(date).weekday() == MONDAY if first_of_week is None else first_of_week


def opens_week(store: Store, date: str) -> bool:
    """Is `date` the first announcement day of its week (Monday to Sunday)? A Monday always is;
    a later day is when no announcement came earlier that week although the bot was already
    collecting before it: an arXiv holiday Monday must not cost weekly readers the whole week,
    while a bot started on a Thursday waits for Monday like everyone else."""
    day = Date.fromisoformat(date)
    if day.weekday() == MONDAY:
        return True
    monday = day - timedelta(days=day.weekday())
    earlier = papers.announcement_dates(store, before=date)
    return bool(earlier) and earlier[-1] < monday.isoformat()


def due_at(subscriber: Subscriber, date: str) -> datetime:
    """When the digest of `date` becomes due for the reader (`plan.is_due`'s instant): their
    send time on that calendar day in their zone (UTC for a zone we do not know)."""
    try:
        zone = ZoneInfo(subscriber.tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    hour, minute = (int(x) for x in (subscriber.send_at or "08:30").split(":"))
    return datetime.combine(Date.fromisoformat(date), time(hour, minute), zone).astimezone(UTC)


def reading_order(store: Store, date: str) -> list[str]:
    """The ids of the papers `date`'s readers will receive, earliest-due readers first, each
    reader's papers best first; readers who already have their row are done.

    Among readers due at the same moment, the one whose digest needs the fewest papers not
    already on the list goes next (their digests are final soonest; the counts only shrink as
    the list grows, so a lazy heap finds that reader cheaply).
    """
    have = planned_for(store, date)
    first = opens_week(store, date)
    readers = [s for s in subscribers.list_all(store, statuses=("active",))
               if s.id not in have and on_cadence(s, date, first_of_week=first)]
    library, history = digests.Library(store), DeliveryHistory(store)
    groups: dict[datetime, list[tuple[int, int, list[str]]]] = {}
    for sub in readers:
        digest = digests.select(store, sub, date, history=history, library=library,
                                superset=True)
        ids = [e.paper.id for e in digest.entries] if digest else []
        groups.setdefault(due_at(sub, date), []).append((len(ids), sub.id, ids))
    order: dict[str, None] = {}
    for due in sorted(groups):
        heap = groups[due]
        heapq.heapify(heap)
        while heap:
            _count, sub_id, ids = heapq.heappop(heap)
            new = [pid for pid in ids if pid not in order]
            if heap and len(new) > heap[0][0]:
                heapq.heappush(heap, (len(new), sub_id, ids))  # others need fewer now
                continue
            order.update(dict.fromkeys(new))
    return list(order)


# Readers found not final, with the papers that held them, per (database, date, selection
# inputs): while those inputs stand their selection cannot change, so a later plan (one every
# few seconds while the pipeline runs) skips selecting them again until one of those papers
# is final. In memory only: another process simply selects afresh.
_held: dict[tuple[str, str, str], dict[int, frozenset[str]]] = {}


class Readiness:
    """Whose digest of `date` is final, read once per planning batch.

    No progress recorded for the day: final (a database the timeline never ran on), unless
    `strict` (the pipeline is running and has not reached this day: nothing is final).
    `inputs` (planning's fingerprint of what selection reads) lets it remember who waits.
    """

    def __init__(self, store: Store, date: str, *, strict: bool, inputs: str = "") -> None:
        self.store = store
        self.progress = day_progress.get(store, date)
        self.strict = strict
        key = (str(store.path), date, inputs)
        if inputs and key not in _held:
            _held.clear()  # only the latest inputs are worth remembering
        self._held: dict[int, frozenset[str]] = _held.setdefault(key, {}) if inputs else {}

    def still_waiting(self, subscriber: Subscriber) -> bool:
        """Known not final without selecting: a paper that held them is still pending."""
        ids = self._held.get(subscriber.id)
        if ids is None or self.progress is None or self.everyone:
            return False
        if ids & self.progress.pending:
            return True
        del self._held[subscriber.id]
        return False

    @property
    def everyone(self) -> bool:
        return (self.progress is None and not self.strict) or bool(
            self.progress and self.progress.done)

    def final(self, subscriber: Subscriber, digest: Digest | None,
              full: Digest | None) -> bool:
        """`digest` is what would be sent now; `full` the superset selection (the same object
        for a reader without keywords)."""
        if self.everyone:
            return True
        if self.progress is None:
            return False
        topics = [s.topic for s in subscribers.subscriptions(self.store, subscriber.id)]
        ids = {e.paper.id for d in (digest, full) if d for e in d.entries}
        if self.progress.final(topics, ids):
            return True
        self._held[subscriber.id] = frozenset(ids & self.progress.pending)
        return False

    def needs_superset(self, subscriber: Subscriber) -> bool:
        """Whether the superset selection differs from the digest (keywords) and matters."""
        if self.everyone:
            return False
        profile = subscribers.profile.get_profile(self.store, subscriber.id)
        return bool(profile.must or profile.exclude)
