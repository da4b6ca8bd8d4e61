"""An injectable clock, so a whole announcement day can be replayed in seconds.

Production uses the wall clock. `digestbot run --now ISO_TIME --speed FACTOR` starts a virtual
clock at ISO_TIME that runs FACTOR times faster than real time; the scheduling logic asks
`clock.now()` and never `datetime.now()`, and APScheduler (which only knows real time) gets
its triggers through `ScaledTrigger`, which translates between the two time lines.

arXiv's announcement calendar lives here too, as plain functions of an aware datetime, so
every rule (which evenings, which date a batch carries, when to stop retrying) is tested
without sleeping through real hours.
"""

from __future__ import annotations

import calendar
import math
from datetime import UTC, date, datetime, timedelta
from datetime import time as daytime
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from digestbot.errors import UsageError

_MICROSECOND = timedelta(microseconds=1)


class Clock:
    """Virtual time = `start + (real elapsed) × speed`; the identity when neither is given."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise UsageError(f"--speed must be > 0, got {speed}")
        if start is not None and start.tzinfo is None:
            raise UsageError("--now needs a UTC offset, e.g. 2026-08-12T19:58:00-04:00")
        self.speed = speed
        self.is_real = start is None and speed == 1.0
        self._real0 = datetime.now(UTC)
        self._virtual0 = (start or self._real0).astimezone(UTC)

    def now(self) -> datetime:
        return self.to_virtual(datetime.now(UTC))

    # timedelta arithmetic keeps microseconds exact; float timestamps would drift.
    def to_virtual(self, real: datetime) -> datetime:
        return self._virtual0 + (real - self._real0) * self.speed

    def to_real(self, virtual: datetime) -> datetime:
        """Rounded up, so a job fired then never reads a clock short of its time (19:59:59.999)."""
        micros = (virtual - self._virtual0) / _MICROSECOND
        return self._real0 + math.ceil(micros / self.speed) * _MICROSECOND

    def real_seconds(self, virtual: timedelta) -> float:
        """How long a virtual span lasts on the wall clock (for timeouts and sleeps)."""
        return virtual.total_seconds() / self.speed


def parse_now(value: str | None) -> datetime | None:
    """`--now` as an aware datetime; a clear usage error for anything else."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--now: expected an ISO time like 2026-08-12T19:58:00-04:00, got {value!r}") from None
    if when.tzinfo is None:
        raise UsageError(f"--now: {value!r} lacks a UTC offset (e.g. -04:00 or Z)")
    return when


class ScaledTrigger(BaseTrigger):
    """Wraps any APScheduler trigger so it fires on the virtual clock's time line.

    APScheduler hands us real times; we ask the inner trigger in virtual time and hand the
    answer back as the real instant at which the virtual clock will show it.
    """

    __slots__ = ("inner", "clock")

    def __init__(self, inner: BaseTrigger, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        prev = self.clock.to_virtual(previous_fire_time) if previous_fire_time else None
        nxt = self.inner.get_next_fire_time(prev, self.clock.to_virtual(now))
        return self.clock.to_real(nxt) if nxt else None

    def __str__(self) -> str:
        return f"{self.inner} (×{self.clock.speed:g})"


# -- the announcement calendar ------------------------------------------------------------

ET = ZoneInfo("America/New_York")
# Day names, never numbers: APScheduler counts Monday as 0, python-telegram-bot Sunday as 0.
ANNOUNCE_DAY_NAMES = "sun,mon,tue,wed,thu"
_ANNOUNCE_WEEKDAYS = frozenset(
    {calendar.SUNDAY, calendar.MONDAY, calendar.TUESDAY, calendar.WEDNESDAY, calendar.THURSDAY}
)
ANNOUNCE_AT = daytime(20, 0)  # listing pages turn over
RSS_CONFIRM_AT = daytime(0, 10)  # the RSS feed turns over at midnight ET; ask once more after it
GIVE_UP_AT = daytime(3, 0)  # no batch by now: a holiday
FETCH_RETRY = timedelta(minutes=5)
DELIVERY_TICK = timedelta(minutes=1)


def is_announcement_day(day: date) -> bool:
    """arXiv announces on this US Eastern calendar day at 20:00 (holidays aside)."""
    return day.weekday() in _ANNOUNCE_WEEKDAYS


def announcement_trigger() -> CronTrigger:
    """APScheduler's trigger for the fetch job: Sunday–Thursday 20:00 America/New_York."""
    return CronTrigger(day_of_week=ANNOUNCE_DAY_NAMES, hour=ANNOUNCE_AT.hour,
                       minute=ANNOUNCE_AT.minute, timezone=ET)


def _et(day: date, at: daytime) -> datetime:
    # zoneinfo resolves the offset of that day, so 20:00 ET is 00:00 UTC in summer, 01:00 in winter.
    return datetime.combine(day, at, tzinfo=ET)


def last_announcement(now: datetime) -> datetime:
    """The latest announcement instant at or before `now` (Sun–Thu 20:00 ET)."""
    today = now.astimezone(ET).date()
    for back in range(8):
        day = today - timedelta(days=back)
        if is_announcement_day(day) and _et(day, ANNOUNCE_AT) <= now:
            return _et(day, ANNOUNCE_AT)
    raise AssertionError("a week always holds an announcement day")


def next_fetch_time(now: datetime) -> datetime:
    """The first announcement instant strictly after `now`."""
    today = now.astimezone(ET).date()
    for ahead in range(8):
        day = today + timedelta(days=ahead)
        if is_announcement_day(day) and _et(day, ANNOUNCE_AT) > now:
            return _et(day, ANNOUNCE_AT)
    raise AssertionError("a week always holds an announcement day")


def announcement_date(instant: datetime) -> str:
    """The date arXiv gives the batch announced at `instant`: the next ET day.

    Wednesday 20:00 ET's batch is Thursday's (RSS pubDate Thu 00:00 -0400, "new listings for
    Thursday"), which is what subscribers in Asia read on Thursday morning.
    """
    return (instant.astimezone(ET).date() + timedelta(days=1)).isoformat()


def expected_announcement_date(now: datetime) -> str:
    """The newest announcement date that should exist at `now` (if it was not a holiday)."""
    return announcement_date(last_announcement(now))


def next_attempt(now: datetime, seen: bool) -> datetime | None:
    """When to fetch again after an attempt at `now`; None ends tonight's fetching.

    Not seen yet: every FETCH_RETRY until 03:00 ET (after that it was a holiday, or the
    catch-up at the next start will find it). Seen: once more just after midnight ET, when the
    RSS feed carries the batch too (cross-lists and replacements the listing may lack).
    """
    start = last_announcement(now)
    morning = start.astimezone(ET).date() + timedelta(days=1)
    deadline, rss = _et(morning, GIVE_UP_AT), _et(morning, RSS_CONFIRM_AT)
    if now >= deadline:
        return None
    if not seen:
        retry = now + FETCH_RETRY
        return retry if retry < deadline else None
    return rss if now < rss else None
