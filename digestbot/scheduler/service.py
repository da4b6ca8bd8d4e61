"""The jobs of `digestbot run`: a fetch at arXiv's announcement and a delivery tick a minute.

APScheduler drives a fetch job at arXiv's announcement (Sunday–Thursday 20:00
America/New_York, retried until the day's batch is seen) and a delivery tick every minute.
Every decision reads an injectable `Clock`, so a day can be replayed in seconds
(`run --now … --speed …`) and the calendar rules (`digestbot.clock`) are plain functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digestbot import status, subscribers
from digestbot.breaker import snapshots as breaker_states
from digestbot.channels import build_senders
from digestbot.channels.admin import send_admin
from digestbot.channels.workers import deliver_in_workers
from digestbot.clock import (
    DELIVERY_TICK,
    ET,
    Clock,
    ScaledTrigger,
    announcement_trigger,
    expected_announcement_date,
    last_announcement,
    next_attempt,
    next_fetch_time,
)
from digestbot.config import Settings
from digestbot.errors import DigestbotError
from digestbot.outbox import DeliveryReport, close_senders, plan_due
from digestbot.render.i18n import label
from digestbot.scheduler.work import FetchOutcome, enrich_dates, fetch_and_enrich, in_daemon_thread
from digestbot.sources.papers import latest_announcement_date
from digestbot.status import alerts
from digestbot.store import Store
from digestbot.subscribers import notices

# One logger for the whole scheduler package: operators filter on it.
log = logging.getLogger("digestbot.scheduler")
# How long the pipeline's nudges gather before they make a delivery tick.
NUDGE_GAP = timedelta(seconds=5)
HOLIDAY_NOTICE = ("今天 arXiv 无公告（假日）", "No arXiv announcement today (holiday)")


class Service:
    """The jobs of `digestbot run`, callable directly (tests) or from APScheduler.

    A timeline, not a batch: while the evening's pipeline runs (under `_work`), delivery ticks
    still plan — strictly: a reader gets a row only once every paper that could be in their
    digest is final (`outbox.timeline.Readiness`), so nobody gets a partial digest — and the
    pipeline nudges a tick (`_nudge`) whenever more digests may have become final, so an early
    reader's digest leaves while the rest of the day is still enriched. New subscriptions are
    scored only while the pipeline is idle. Sending the planned rows happens outside `_work`
    (under `_sending`, one lock per channel), so a slow or dead mail server never holds up
    the evening's fetch and enrichment, nor Telegram's pacing the email.
    """

    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = False
        self._work = asyncio.Lock()
        self._sending: dict[str, asyncio.Lock] = {}  # per channel: one drain at a time
        self._alerting = asyncio.Lock()  # one check at a time: each incident is told once
        # What alerts.mark could not write while the database refused writes.
        self._held_alerts: dict[str, dict[str, str] | None] = {}
        self._covered: tuple[Any, ...] | None = None  # subscriptions the scores were made for
        self._tasks: set[asyncio.Task[Any]] = set()
        self._nudged = False  # a tick asked for by the pipeline is on its way
        self._nudge_task: asyncio.Task[None] | None = None

    # The jobs -------------------------------------------------------------------------

    async def fetch_cycle(self, since: str | None = None) -> datetime | None:
        """One fetch attempt → pipeline → delivery; schedules the next attempt, returns it."""
        if self.stopping:
            return None
        started = self.clock.now()
        async with self._tracked(), self._work:
            covered = subscribers.active_fingerprint(self.store)
            outcome: FetchOutcome = await in_daemon_thread(
                fetch_and_enrich, self.settings, started, since=since,
                on_progress=self._nudge_from_thread())
            if outcome.reports:
                self._covered = covered
        now = self.clock.now()
        nxt = next_attempt(now, outcome.seen)
        tail = f"; next attempt {nxt.astimezone(ET):%a %H:%M} ET" if nxt else ""
        # arXiv unreachable is said here, once per attempt (the sources log theirs at debug).
        log.log(logging.WARNING if outcome.error else logging.INFO, "%s; announcement %s %s%s",
                outcome.summary(), outcome.expected, "seen" if outcome.seen else "not seen", tail)
        if nxt is None and not outcome.seen and not self.stopping:
            log.info("no announcement for %s (holiday?); next fetch %s ET", outcome.expected,
                     f"{next_fetch_time(now).astimezone(ET):%a %Y-%m-%d %H:%M}")
            if not outcome.error:  # arXiv answered all along: a holiday, not an incident
                await self.tell_holiday(outcome.expected)
        if nxt and self.scheduler and not self.stopping:
            self.scheduler.add_job(self.fetch_cycle, self._trigger(DateTrigger(run_date=nxt)),
                                   id="fetch-retry", replace_existing=True, name="fetch retry")
        if outcome.reports:
            await self.deliver_tick()
        await self.check_alerts()
        return nxt

    async def deliver_tick(self) -> Any:
        """Send every due digest (their local send time passed; the outbox prevents repeats).

        The alerts are checked even when the tick fails: a database refusing writes makes
        every tick fail, and that is the incident the operator must hear about.
        """
        try:
            return await self._deliver()
        finally:
            await self.check_alerts()

    async def _deliver(self) -> Any:
        if self.stopping:
            return None
        async with self._tracked():
            now = self.clock.now()
            if self._work.locked():  # the pipeline runs: only readers whose papers are final
                report = plan_due(self.settings, self.store, now=now, strict=True)
            else:
                async with self._work:
                    await self._score_new_subscriptions()
                    report = plan_due(self.settings, self.store, now=now)
            senders = build_senders(self.settings)
            # A channel still draining an earlier tick's rows sends these after them (it or
            # the next tick); the others start now, so email never waits for Telegram's pace.
            free = {ch: s for ch, s in senders.items() if not self._channel(ch).locked()}
            await close_senders([s for ch, s in senders.items() if ch not in free])
            if free:
                parts = await asyncio.gather(*(self._drain(ch, s, now) for ch, s in free.items()))
                for part in parts:
                    report.add_sending(part)
                # Rows of a channel with no sender at all are counted (once) as waiting.
                report.waiting.update({ch: n for ch, n in parts[0].waiting.items()
                                       if ch not in senders})
                # The breakers live in this process; /status may be served by another.
                status.record_breakers(self.store, breaker_states())
        _log_delivery(report)
        return report

    def _channel(self, channel: str) -> asyncio.Lock:
        return self._sending.setdefault(channel, asyncio.Lock())

    async def _drain(self, channel: str, sender: Any, now: datetime) -> DeliveryReport:
        """Every ready row of one channel (the sender is closed afterwards)."""
        part = DeliveryReport()
        async with self._channel(channel):
            # A big email batch goes out from `send_workers` processes (channels.workers).
            await deliver_in_workers(self.settings, self.store, {channel: sender}, now=now,
                                     workers=self.settings.send_workers, report=part)
        return part

    async def check_alerts(self) -> list[alerts.Alert]:
        """Tell the operator (DIGESTBOT_ADMIN) of each incident that began or cleared, once.

        Without an operator the incidents are still recorded (nobody is told): a digest made
        late by one says so to its readers either way.
        """
        if self.stopping:
            return []
        sent = []
        async with self._alerting:
            now = self.clock.now()
            write_error = alerts.probe_writes(self.store, now)
            snap = status.snapshot(self.settings, self.store, now)
            for alert in alerts.check(self.store, snap, now, write_error, self._held_alerts):
                if self.settings.admin:
                    try:
                        await send_admin(self.settings, alert.subject, alert.text)
                    except Exception as exc:  # kept unsent: the next check tries again
                        log.warning("operator alert %s not sent: %s", alert.key, exc)
                        continue
                    sent.append(alert)
                alerts.mark(self.store, alert, now, self._held_alerts)
        return sent

    async def tell_holiday(self, day: str) -> int:
        """Readers who opted in (`/notify on`) hear once that `day` brought no announcement.

        Each notice is recorded when sent, so a restart (which fetches again and gives up
        again) tells only whoever was not told; one that fails is logged, not retried.
        """
        due = notices.due(self.store, day, notices.HOLIDAY)
        if not due:
            return 0
        senders = build_senders(self.settings)
        told = 0
        try:
            for sub in filter(None, (subscribers.get(self.store, i) for i in due)):
                sender = senders.get(sub.channel)
                if sender is None:
                    continue
                try:
                    await sender.notice(self.store, sub, label(sub.lang, *HOLIDAY_NOTICE))
                except DigestbotError as exc:
                    log.warning("holiday notice to subscriber #%s not sent: %s", sub.id, exc)
                    continue
                notices.record_sent(self.store, sub.id, day, notices.HOLIDAY)
                told += 1
        finally:
            for sender in senders.values():
                closer = getattr(sender, "aclose", None)
                if closer is not None:
                    await closer()
        log.info("no announcement for %s: told %d reader(s) who asked", day, told)
        return told

    async def catch_up(self) -> None:
        """At start: fetch what downtime missed, or join tonight's fetching where it stands."""
        now = self.clock.now()
        expected = expected_announcement_date(now)
        latest = latest_announcement_date(self.store)
        in_window = next_attempt(now, seen=False) is not None
        if latest is not None and latest >= expected and not in_window:
            log.info("catch-up: up to date (latest announcement %s)", latest)
            await self.deliver_tick()
            return
        # More than tonight's batch missing: only the API reaches back (fetch --since).
        previous = expected_announcement_date(last_announcement(now) - timedelta(seconds=1))
        since = latest if latest is not None and latest < previous else None
        log.info("catch-up: latest announcement %s, expected %s%s", latest or "none", expected,
                 f"; fetching since {since}" if since else "")
        await self.fetch_cycle(since=since)
        await self.deliver_tick()

    # Plumbing -------------------------------------------------------------------------

    def _nudge_from_thread(self) -> Callable[[], None]:
        """`on_progress` for the pipeline's worker thread: ask this loop for a delivery tick."""
        loop = asyncio.get_running_loop()

        def nudge() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: shutting down
                loop.call_soon_threadsafe(self._nudge)

        return nudge

    def _nudge(self) -> None:
        """A delivery tick soon; nudges while one is on its way fold into it (the pipeline
        reports every paper it finishes; planning reads the whole day each time)."""
        if self._nudged or self.stopping:
            return
        self._nudged = True

        async def tick() -> None:
            await asyncio.sleep(self.clock.real_seconds(NUDGE_GAP))
            self._nudged = False
            await self.deliver_tick()

        # Not in `_tasks` while it sleeps (a stop need not wait for it); the tick it makes
        # is tracked like any other.
        self._nudge_task = asyncio.get_running_loop().create_task(tick(), name="delivery nudge")

    def install(self, scheduler: AsyncIOScheduler) -> None:
        """(Re)create the jobs; the job store is memory, so a restart starts from this code."""
        self.scheduler = scheduler
        scheduler.add_job(
            self.fetch_cycle, self._trigger(announcement_trigger()),
            id="fetch", name="fetch at the announcement", replace_existing=True)
        scheduler.add_job(
            self.deliver_tick, self._trigger(IntervalTrigger(
                seconds=DELIVERY_TICK.total_seconds(), start_date=self.clock.now() + DELIVERY_TICK)),
            id="deliver", name="delivery tick", replace_existing=True)

    def _trigger(self, inner: Any) -> Any:
        return inner if self.clock.is_real else ScaledTrigger(inner, self.clock)

    def start_catch_up(self) -> None:
        task = asyncio.get_running_loop().create_task(self.catch_up(), name="catch-up")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def _tracked(self) -> Any:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def stop(self, grace: float) -> None:
        """Take no new work; give work in flight `grace` seconds, then cancel it.

        A cancelled delivery leaves its outbox row as it was (pending or sending): the next
        start resumes it, and nothing the server accepted is sent again.
        """
        self.stopping = True
        if self._nudged and self._nudge_task is not None:  # still sleeping: nothing in flight
            self._nudge_task.cancel()
        running = self.scheduler is not None and self.scheduler.running
        if running:
            # pause, not shutdown: APScheduler's shutdown cancels the jobs in flight at once.
            self.scheduler.pause()
        me = asyncio.current_task()
        busy = [t for t in self._tasks if t is not me and not t.done()]
        if busy:
            log.info("waiting up to %.0f s for %d job(s) in flight", grace, len(busy))
            _done, pending = await asyncio.wait(busy, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
                log.warning("handed back %d unfinished job(s); they resume at the next start",
                            len(pending))
        if running:
            self.scheduler.shutdown(wait=False)

    async def _score_new_subscriptions(self) -> None:
        """New subscribers and changed topics or thresholds get scores before anything is sent.

        The pipeline does only missing work (scores and enrichments are cached), so running it
        for the latest announcement is cheap when nothing is new.
        """
        fingerprint = subscribers.active_fingerprint(self.store)
        latest = latest_announcement_date(self.store)
        if fingerprint == self._covered or latest is None:
            return
        reports = await in_daemon_thread(enrich_dates, self.settings, [latest])
        self._covered = fingerprint
        for day, report in reports.items():
            log.info("subscriptions changed; pipeline %s: %s", day, report.summary())


def _log_delivery(report: Any) -> None:
    """One line per delivery tick that did something; idle ticks (1,440 a day) only at debug."""
    text = report.summary() if report is not None else "nothing due"
    busy = any(getattr(report, name, 0) for name in ("planned", "sent", "failed", "permanent"))
    log.log(logging.INFO if busy else logging.DEBUG, "deliver: %s", text)
