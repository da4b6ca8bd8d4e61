"""The whole day in one place: `once` (a cron-friendly single pass) and `run` (the service).

`once` is fetch → score → enrich → send --now. With `--demo` (what `make run` uses) a first
run shows the product on a bare machine: a demo subscriber for the default topic when there
is nobody yet, and the bundled sample announcement when arXiv cannot be reached.

`run` is one asyncio process: APScheduler drives a fetch job at arXiv's announcement
(Sunday–Thursday 20:00 America/New_York, retried until the day's batch is seen) and a
delivery tick every minute, beside the Telegram bot, Slack Socket Mode and the HTTP app.
Every decision reads an injectable `Clock`, so a day can be replayed in seconds
(`run --now … --speed …`) and the calendar rules below are plain functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digestbot import subscribers, topics
from digestbot.channels import build_senders
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
    parse_now,
)
from digestbot.config import Settings
from digestbot.enrich.pipeline import PipelineReport, run_pipeline
from digestbot.errors import DigestbotError, FeedError, NetworkError
from digestbot.outbox import deliver_and_close, plan_due, run_send
from digestbot.sources import arxiv
from digestbot.store import Store
from digestbot.web import make_app

log = logging.getLogger(__name__)

DEMO_ADDRESS = "demo@localhost"


def cmd_once(settings: Settings, args: argparse.Namespace) -> int:
    outbox = Path(settings.outbox)
    before = set(outbox.glob("*.eml"))
    with Store(settings.db) as store:
        result = _fetch_or_sample(settings, store, args)
        print(result.message)
        if args.demo:
            _ensure_demo_subscriber(settings, store)
        print(run_pipeline(settings, store, date=result.date).summary())
        senders = build_senders(settings)
        print(asyncio.run(run_send(settings, store, senders, force=True)).summary())
        if not settings.smtp_url:
            _print_written(sorted(set(outbox.glob("*.eml")) - before), outbox)
        if args.demo:
            _print_next_steps(settings, store)
    return 0


def _fetch_or_sample(settings: Settings, store: Store, args: argparse.Namespace) -> arxiv.FetchResult:
    """arXiv's batch; in demo mode the bundled sample when arXiv cannot be reached.

    The NetworkError already says "arXiv unreachable" and why; it is printed once, as is.
    """
    try:
        return arxiv.fetch(settings, store, feeds=args.feed, no_api=args.no_api)
    except NetworkError as exc:
        hint = f"离线时导入已保存的文件 / offline, ingest a saved file: {_prog()} once --feed FILE"
        if not args.demo or args.feed:
            raise DigestbotError(f"{exc}; {hint}") from None
        print(f"{exc} → 改为展示内置样例公告 / showing the bundled sample announcement; {hint}")
        return arxiv.fetch(settings, store, feeds=[str(arxiv.SAMPLE_FEED)], no_api=True)


def _prog() -> str:
    """How the user called us (`.venv/bin/digestbot` under `make run`), for hints to copy."""
    called = sys.argv[0]
    return called if Path(called).name == "digestbot" else "digestbot"


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path.resolve())


def _print_written(files: list[Path], outbox: Path) -> None:
    """The .eml files this run wrote (no SMTP configured), by name, ready to open."""
    if not files:
        print(f"没有新邮件 / no new email (each digest is sent once); earlier ones: {_shown(outbox)}")
        return
    print("邮件已写入 / email written to:")
    for path in files:
        print(f"  {_shown(path)}")


def _print_next_steps(settings: Settings, store: Store) -> None:
    """`make run` is a first contact: say how to look at the digest and what to do next."""
    subs = subscribers.list_all(store)
    if not subs:
        return
    prog = _prog()
    print(f"预览 / preview:  {prog} preview --subscriber {subs[0].id} --format html > digest.html\n"
          f"订阅 / subscribe: {prog} sub add --email you@example.org --topic {settings.default_topic}   (`{prog} topics` lists them)\n"
          f"常驻 / every day: {prog} run   (fetches at 20:00 US Eastern; README: \"Run it for real\")")


def _ensure_demo_subscriber(settings: Settings, store: Store) -> None:
    """On a first run with nobody subscribed, add demo@localhost so a digest can be seen.

    Only in outbox mode: with real SMTP configured we never invent a recipient.
    """
    if settings.smtp_url or subscribers.list_all(store):
        return
    topic = topics.lookup(settings.default_topic, store)
    if topic is None:
        raise DigestbotError(f"default_topic {settings.default_topic!r} is not in the catalogue")
    sub = subscribers.add_or_update(store, channel="email", address=DEMO_ADDRESS,
                                    topics=[topic.slug])
    print(f"还没有订阅者 / no subscribers yet: added {DEMO_ADDRESS} for {topic.name_zh} "
          f"({topic.name_en}); remove it with `{_prog()} sub rm {sub.id}`")


# -- the pipeline, run in a thread with its own Store -------------------------------------


@dataclass
class FetchOutcome:
    """What one fetch attempt (plus the pipeline over what it brought) did."""

    expected: str
    seen: bool
    result: arxiv.FetchResult | None = None
    error: str | None = None
    reports: dict[str, PipelineReport] = field(default_factory=dict)

    def summary(self) -> str:
        head = (f"fetch {self.result.status} {self.result.date or '-'}: {self.result.message}"
                if self.result else f"fetch failed: {self.error}")
        parts = [head] + [f"pipeline {d}: {r.summary()}" for d, r in self.reports.items()]
        return "; ".join(parts)


def fetch_and_enrich(settings: Settings, now: datetime, *, since: str | None = None) -> FetchOutcome:
    """Fetch, then score and enrich every announcement date the fetch added or grew.

    Blocking (arXiv is asked politely, one request every few seconds): the service calls it
    in a thread, which opens its own Store because sqlite connections belong to one thread.
    """
    expected = expected_announcement_date(now)
    with Store(settings.db) as store:
        before = set(store.announcement_dates())
        try:
            result = arxiv.fetch(settings, store, since=since, now=now)
        except (NetworkError, FeedError) as exc:
            return FetchOutcome(expected, _has(store, expected), error=str(exc))
        if result.status == "stale":
            log.warning("arXiv feed is stale (still the batch of %s): %s", result.date, result.message)
        dates = set(store.announcement_dates()) - before
        if result.new_announcements and result.date:
            dates.add(result.date)
        reports = {d: run_pipeline(settings, store, date=d) for d in sorted(dates)}
        return FetchOutcome(expected, _has(store, expected), result, reports=reports)


def _has(store: Store, expected: str) -> bool:
    return (store.latest_announcement_date() or "") >= expected


def enrich_dates(settings: Settings, dates: list[str]) -> dict[str, PipelineReport]:
    """Score and enrich for the current subscriptions (only missing work; the cache has the rest)."""
    with Store(settings.db) as store:
        return {d: run_pipeline(settings, store, date=d) for d in dates}


def in_daemon_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Awaitable[Any]:
    """Like asyncio.to_thread, but the thread never holds up process exit.

    A shutdown must finish within seconds, and a pipeline half-way through enriching cannot be
    interrupted; its writes are transactions, so abandoning it loses nothing but time.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def work() -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (False, exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name=f"digestbot-{fn.__name__}", daemon=True).start()
    return future


# -- the service --------------------------------------------------------------------------


class Service:
    """The jobs of `digestbot run`, callable directly (tests) or from APScheduler.

    One asyncio.Lock makes the pipeline and planning take turns: a digest is never selected
    while the day's papers are half scored, and a delivery tick that finds the pipeline busy
    skips (the pipeline triggers a delivery itself when it is done). Sending the planned rows
    happens outside that lock (under `_sending`), so a slow or dead mail server never holds
    up the evening's fetch and enrichment.
    """

    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = False
        self._work = asyncio.Lock()
        self._sending = asyncio.Lock()
        self._covered: tuple[Any, ...] | None = None  # subscriptions the scores were made for
        self._tasks: set[asyncio.Task[Any]] = set()

    # The jobs -------------------------------------------------------------------------

    async def fetch_cycle(self, since: str | None = None) -> datetime | None:
        """One fetch attempt → pipeline → delivery; schedules the next attempt, returns it."""
        if self.stopping:
            return None
        started = self.clock.now()
        async with self._tracked(), self._work:
            covered = _subscription_fingerprint(self.store)
            outcome: FetchOutcome = await in_daemon_thread(
                fetch_and_enrich, self.settings, started, since=since)
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
        if nxt and self.scheduler and not self.stopping:
            self.scheduler.add_job(self.fetch_cycle, self._trigger(DateTrigger(run_date=nxt)),
                                   id="fetch-retry", replace_existing=True, name="fetch retry")
        if outcome.reports:
            await self.deliver_tick()
        return nxt

    async def deliver_tick(self) -> Any:
        """Send every due digest (their local send time passed; the outbox prevents repeats)."""
        if self.stopping or self._work.locked():
            return None
        async with self._tracked():
            now = self.clock.now()
            async with self._work:
                await self._score_new_subscriptions()
                report = plan_due(self.settings, self.store, now=now)
            if self._sending.locked():  # the previous tick is still sending; it or the
                _log_delivery(report)   # next one sends what was planned now
                return report
            async with self._sending:
                await deliver_and_close(self.store, build_senders(self.settings), now=now,
                                        report=report)
        _log_delivery(report)
        return report

    async def catch_up(self) -> None:
        """At start: fetch what downtime missed, or join tonight's fetching where it stands."""
        now = self.clock.now()
        expected = expected_announcement_date(now)
        latest = self.store.latest_announcement_date()
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
        fingerprint = _subscription_fingerprint(self.store)
        latest = self.store.latest_announcement_date()
        if fingerprint == self._covered or latest is None:
            return
        reports = await in_daemon_thread(enrich_dates, self.settings, [latest])
        self._covered = fingerprint
        for day, report in reports.items():
            log.info("subscriptions changed; pipeline %s: %s", day, report.summary())


def _subscription_fingerprint(store: Store) -> tuple[Any, ...]:
    row = next(iter(store.db.query(
        "select count(*) n, coalesce(sum(s.threshold), 0) t, max(s.created_at) c,"
        " max(u.updated_at) u from subscriptions s join subscribers u on u.id = s.subscriber_id"
        " where u.status = 'active'")))
    return tuple(row.values())


def _log_delivery(report: Any) -> None:
    """One line per delivery tick that did something; idle ticks (1,440 a day) only at debug."""
    text = report.summary() if report is not None else "nothing due"
    busy = any(getattr(report, name, 0) for name in ("planned", "sent", "failed", "permanent"))
    log.log(logging.INFO if busy else logging.DEBUG, "deliver: %s", text)


# -- `digestbot run` ----------------------------------------------------------------------

# SIGTERM to exit within 10 s: work in flight gets STOP_GRACE, then the channels PARTS_GRACE.
STOP_GRACE = 6.0
PARTS_GRACE = 2.5


class _Handle(Protocol):
    async def stop(self) -> None: ...


@contextlib.contextmanager
def instance_lock(db: str) -> Iterator[None]:
    """One `digestbot run` per database: an fcntl lock on a file beside it.

    The kernel drops the lock when the process dies, so a crash never leaves a stale lock
    behind (unlike a row in the database with a pid and a heartbeat).
    """
    path = Path(f"{db}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+", encoding="ascii")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise DigestbotError(
            f"another `digestbot run` (pid {holder}) is already using {db}; "
            "stop it first — one instance per database") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    clock = Clock(parse_now(args.now), args.speed)
    with instance_lock(settings.db):
        asyncio.run(serve(settings, clock, host=args.host))
    # A pipeline thread that is still running is abandoned (its transactions roll back);
    # don't let interpreter shutdown wait for thread pools it may have started.
    if any(t.name.startswith("digestbot-") for t in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


async def serve(settings: Settings, clock: Clock, *, host: str = "127.0.0.1") -> None:
    """Run everything until SIGTERM/SIGINT; then stop cleanly within 10 seconds."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = Store(settings.db)
    service = Service(settings, store, clock)
    # Chosen on purpose, for every job:
    # - max_instances=1: a job never overlaps itself (two delivery ticks racing over the same
    #   outbox rows could send a digest twice; two fetches would double arXiv's load).
    # - coalesce=True: runs missed while the loop was busy or the machine slept collapse into
    #   one; ten delivery ticks in a row would do what one does.
    # - misfire_grace_time=None: a late run is always better than a skipped one, because every
    #   job reads the clock and does only what is left (the fetch knows tonight's deadline).
    #   It also keeps APScheduler's real-time grace check out of the accelerated test clock.
    scheduler = AsyncIOScheduler(
        timezone=ET, job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None})
    service.install(scheduler)
    handles: list[tuple[str, _Handle]] = []
    try:
        scheduler.start()
        handles = await _start_parts(settings, host)
        when = "" if clock.is_real else f" (virtual clock at {clock.now().isoformat()}, ×{clock.speed:g})"
        log.info("digestbot run: started%s; parts: %s; next fetch %s ET", when,
                 ", ".join(name for name, _ in handles) or "scheduler only",
                 f"{next_fetch_time(clock.now()).astimezone(ET):%a %Y-%m-%d %H:%M}")
        service.start_catch_up()
        await stop.wait()
        log.info("stopping: no new work")
    finally:
        await service.stop(STOP_GRACE)
        await _stop_parts(handles, settings)
        store.close()
        log.info("stopped")


async def _stop_parts(handles: list[tuple[str, _Handle]], settings: Settings) -> None:
    """Close the channels side by side, within PARTS_GRACE, each failure logged, none blocking."""
    if not handles:
        return
    tasks = {asyncio.ensure_future(handle.stop()): name for name, handle in handles}
    done, pending = await asyncio.wait(tasks, timeout=PARTS_GRACE)
    for task in pending:
        task.cancel()
        log.warning("%s did not stop within %.0f s", tasks[task], PARTS_GRACE)
    for task in done:
        if task.exception() is not None:
            log.warning("%s did not stop cleanly: %s", tasks[task],
                        _redact(str(task.exception()), settings))


async def _start_parts(settings: Settings, host: str) -> list[tuple[str, _Handle]]:
    """The HTTP app, Telegram polling and Slack Socket Mode, each switched on by its setting."""
    parts: list[tuple[str, _Handle]] = []
    if settings.http_port:
        parts.append(("http", await _start_http(settings, host)))
    else:
        log.info("HTTP app off (http_port = 0)")
    optional = [
        ("telegram", settings.telegram_bot_token, "digestbot.bots.telegram", "start_bot"),
        ("slack", settings.slack_app_token, "digestbot.bots.slack", "start_socket_mode"),
    ]
    for name, enabled, module, func in optional:
        if not enabled:
            continue
        handle = await _start_optional(name, module, func, settings)
        if handle is not None:
            parts.append((name, handle))
    return parts


async def _start_optional(name: str, module: str, func: str, settings: Settings) -> _Handle | None:
    """Start a chat channel; a failure is logged and the rest keeps running.

    Telegram or Slack being unreachable at start must not stop the morning email.
    """
    start = getattr(importlib.import_module(module), func)
    try:
        return await start(settings, settings.db)
    except Exception as exc:
        log.error("%s channel failed to start, running without it: %s", name,
                  _redact(str(exc), settings))
        return None


class _HttpHandle:
    def __init__(self, runner: Any) -> None:
        self.runner = runner

    async def stop(self) -> None:
        await self.runner.cleanup()


async def _start_http(settings: Settings, host: str) -> _HttpHandle:
    from aiohttp import web

    runner = web.AppRunner(make_app(settings), handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, settings.http_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise DigestbotError(f"cannot listen on {host}:{settings.http_port} ({exc.strerror}); "
                             "set DIGESTBOT_HTTP_PORT to a free port (0 turns the HTTP app off)") from None
    log.info("HTTP app on http://%s:%d (/healthz)", host, settings.http_port)
    return _HttpHandle(runner)


def _redact(text: str, settings: Settings) -> str:
    """Library errors may quote a token (PTB's InvalidToken does); never log one."""
    for secret in (settings.telegram_bot_token, settings.slack_bot_token, settings.slack_app_token,
                   settings.openai_api_key, settings.smtp_url, settings.secret):
        if secret:
            text = text.replace(secret.get(), "***")
    return text
