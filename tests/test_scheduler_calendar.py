"""arXiv's announcement calendar and the virtual clock, without sleeping through real hours."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.date import DateTrigger

from digestbot.clock import (
    ET,
    Clock,
    ScaledTrigger,
    announcement_date,
    announcement_trigger,
    expected_announcement_date,
    is_announcement_day,
    last_announcement,
    next_attempt,
    next_fetch_time,
    parse_now,
)
from digestbot.errors import UsageError

SHANGHAI = ZoneInfo("Asia/Shanghai")


def et(*args: int) -> datetime:
    return datetime(*args, tzinfo=ET)


def _close(a: datetime, b: datetime) -> bool:
    """Never early, and late by less than the rounding of one real microsecond (× speed)."""
    return timedelta(0) <= a - b < timedelta(milliseconds=4)


def test_the_cron_trigger_fires_sunday_to_thursday_at_20_et_all_year() -> None:
    trigger = announcement_trigger()
    now = et(2026, 1, 1, 0, 0)
    fired = []
    prev = None
    while True:
        nxt = trigger.get_next_fire_time(prev, now)
        if nxt.year > 2026:
            break
        fired.append(nxt)
        # The pure function and APScheduler agree on every evening of the year.
        assert nxt == next_fetch_time(now)
        prev, now = nxt, nxt + timedelta(seconds=1)
    local = [f.astimezone(ET) for f in fired]
    assert {d.strftime("%a") for d in local} == {"Sun", "Mon", "Tue", "Wed", "Thu"}
    assert all((d.hour, d.minute) == (20, 0) for d in local)
    assert len(fired) == 261  # 2026: 52 weeks × 5 evenings + Thursday 31 Dec


@pytest.mark.parametrize("friday_or_saturday", [
    et(2026, 8, 14, 19, 59), et(2026, 8, 14, 20, 0), et(2026, 8, 15, 20, 0), et(2026, 8, 16, 19, 59),
])
def test_no_fetch_on_friday_or_saturday_evenings(friday_or_saturday: datetime) -> None:
    assert next_fetch_time(friday_or_saturday) == et(2026, 8, 16, 20, 0)  # Sunday
    assert announcement_trigger().get_next_fire_time(None, friday_or_saturday) == et(2026, 8, 16, 20, 0)
    assert not is_announcement_day(date(2026, 8, 14)) and not is_announcement_day(date(2026, 8, 15))


def test_a_batch_carries_the_next_eastern_day_as_its_date() -> None:
    assert announcement_date(et(2026, 8, 12, 20, 0)) == "2026-08-13"  # Wed evening → Thursday
    assert announcement_date(et(2026, 8, 16, 20, 0)) == "2026-08-17"  # Sun evening → Monday
    assert expected_announcement_date(et(2026, 8, 12, 19, 59)) == "2026-08-12"
    assert expected_announcement_date(et(2026, 8, 12, 20, 0)) == "2026-08-13"
    # Through the weekend Friday's batch (announced Thursday evening) stays the newest.
    for when in (et(2026, 8, 14, 9, 0), et(2026, 8, 15, 23, 0), et(2026, 8, 16, 19, 59)):
        assert expected_announcement_date(when) == "2026-08-14"
    assert last_announcement(et(2026, 8, 16, 12, 0)) == et(2026, 8, 13, 20, 0)


def test_us_dst_moves_the_announcement_in_utc_and_in_beijing() -> None:
    # Spring forward on Sunday 8 March 2026: that evening's 20:00 is already EDT.
    assert next_fetch_time(et(2026, 3, 7, 12, 0)).astimezone(UTC) == datetime(2026, 3, 9, 0, 0, tzinfo=UTC)
    assert next_fetch_time(et(2026, 3, 5, 12, 0)).astimezone(UTC) == datetime(2026, 3, 6, 1, 0, tzinfo=UTC)
    # Fall back on Sunday 1 November 2026: that evening's 20:00 is EST again.
    assert next_fetch_time(et(2026, 10, 31, 12, 0)).astimezone(UTC) == datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    # China keeps no DST, so Beijing sees it at 09:00 before March and 08:00 after.
    assert next_fetch_time(et(2026, 3, 4, 12, 0)).astimezone(SHANGHAI).hour == 9
    assert next_fetch_time(et(2026, 3, 10, 12, 0)).astimezone(SHANGHAI).hour == 8
    assert next_fetch_time(et(2026, 11, 2, 12, 0)).astimezone(SHANGHAI).hour == 9


def test_retries_every_few_minutes_then_once_after_midnight_then_stop() -> None:
    assert next_attempt(et(2026, 8, 12, 20, 0), seen=False) == et(2026, 8, 12, 20, 5)
    assert next_attempt(et(2026, 8, 12, 20, 5), seen=True) == et(2026, 8, 13, 0, 10)
    assert next_attempt(et(2026, 8, 13, 0, 10), seen=True) is None
    # A holiday: nothing appears; retries end quietly before 03:00 ET.
    assert next_attempt(et(2026, 8, 13, 2, 50), seen=False) == et(2026, 8, 13, 2, 55)
    assert next_attempt(et(2026, 8, 13, 2, 56), seen=False) is None
    assert next_attempt(et(2026, 8, 13, 3, 0), seen=False) is None
    # Outside the window (a Friday afternoon catch-up) there is nothing to retry.
    assert next_attempt(et(2026, 8, 14, 15, 0), seen=False) is None


def test_the_virtual_clock_runs_fast_from_the_given_time() -> None:
    start = et(2026, 8, 12, 19, 58)
    clock = Clock(start, speed=3600)
    time.sleep(0.05)
    elapsed = clock.now() - start
    assert timedelta(minutes=2) < elapsed < timedelta(minutes=30)
    assert _close(clock.to_virtual(clock.to_real(et(2026, 8, 13, 8, 30))), et(2026, 8, 13, 8, 30))
    assert clock.real_seconds(timedelta(hours=1)) == 1.0
    assert Clock().is_real and not clock.is_real


def test_a_scaled_trigger_fires_when_the_virtual_clock_shows_the_time() -> None:
    clock = Clock(et(2026, 8, 14, 19, 0), speed=3600)  # Friday evening
    real_now = datetime.now(UTC)
    fire = ScaledTrigger(announcement_trigger(), clock).get_next_fire_time(None, real_now)
    # Sunday 20:00 is 49 virtual hours away: 49 real seconds at ×3600.
    assert 48 < (fire - real_now).total_seconds() < 50
    assert _close(clock.to_virtual(fire), et(2026, 8, 16, 20, 0))
    once = ScaledTrigger(DateTrigger(run_date=et(2026, 8, 14, 19, 30)), clock)
    assert _close(clock.to_virtual(once.get_next_fire_time(None, real_now)), et(2026, 8, 14, 19, 30))


@pytest.mark.parametrize("bad", ["tomorrow", "2026-08-12T19:58:00", "2026-13-01T00:00:00Z"])
def test_now_must_be_an_aware_iso_time(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_now(bad)
    assert parse_now("2026-08-12T19:58:00-04:00") == et(2026, 8, 12, 19, 58)
    with pytest.raises(UsageError):
        Clock(speed=0)
