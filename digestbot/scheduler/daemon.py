"""`digestbot run` wired together: the Service's jobs beside the Telegram bot, Slack Socket
Mode and the HTTP app in one asyncio process, one process per database, stopped within
10 seconds of SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from digestbot.bots import slack as slack_bot
from digestbot.bots import telegram as telegram_bot
from digestbot.clock import ET, Clock, next_fetch_time
from digestbot.config import Settings
from digestbot.errors import DigestbotError
from digestbot.scheduler.service import Service
from digestbot.store import Store
from digestbot.web import make_app

# One logger for the whole scheduler package: operators filter on it.
log = logging.getLogger("digestbot.scheduler")

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
                        task.exception())


async def _start_parts(settings: Settings, host: str) -> list[tuple[str, _Handle]]:
    """The HTTP app, Telegram polling and Slack Socket Mode, each switched on by its setting."""
    parts: list[tuple[str, _Handle]] = []
    if settings.http_port:
        parts.append(("http", await _start_http(settings, host)))
    else:
        log.info("HTTP app off (http_port = 0)")
    optional: list[tuple[str, Any, Callable[[Settings, str], Awaitable[_Handle]]]] = [
        ("telegram", settings.telegram_bot_token, telegram_bot.start_bot),
        ("slack", settings.slack_app_token, slack_bot.start_socket_mode),
    ]
    for name, enabled, start in optional:
        if not enabled:
            continue
        handle = await _start_optional(name, start, settings)
        if handle is not None:
            parts.append((name, handle))
    return parts


async def _start_optional(name: str, start: Callable[[Settings, str], Awaitable[_Handle]],
                          settings: Settings) -> _Handle | None:
    """Start a chat channel; a failure is logged and the rest keeps running.

    Telegram or Slack being unreachable at start must not stop the morning email.
    """
    try:
        return await start(settings, settings.db)
    except Exception as exc:
        log.error("%s channel failed to start, running without it: %s", name,
                  exc)
        return None


class _HttpHandle:
    def __init__(self, runner: Any) -> None:
        self.runner = runner

    async def stop(self) -> None:
        await self.runner.cleanup()


async def _start_http(settings: Settings, host: str) -> _HttpHandle:
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
