"""The service's heavy work, each call on a worker thread with its own Store and event loop.

A fetch and the pipeline after it block for minutes (arXiv is asked once every few seconds;
the offline scorer and sqlite are CPU and disk), so `Service` awaits them through
`in_daemon_thread` while the bots and the HTTP app keep answering on the main loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from digestbot.clock import expected_announcement_date
from digestbot.config import Settings
from digestbot.enrich.pipeline import PipelineReport, run_pipeline
from digestbot.errors import FeedError, NetworkError
from digestbot.outbox.timeline import reading_order
from digestbot.sources import arxiv
from digestbot.sources.papers import announcement_dates, latest_announcement_date
from digestbot.store import Store

# One logger for the whole scheduler package: operators filter on it.
log = logging.getLogger("digestbot.scheduler")

T = TypeVar("T")
WORKER = "digestbot-"  # worker thread names start with it


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


async def fetch_and_enrich(settings: Settings, now: datetime, *, since: str | None = None,
                           on_progress: Callable[[], None] | None = None) -> FetchOutcome:
    """Fetch, then score and enrich every announcement date the fetch added or grew.

    The fetch blocks (arXiv is asked politely, one request every few seconds, partly through
    the blocking `arxiv` package), so this runs on its worker thread's own event loop
    (`in_daemon_thread`), where blocking holds up nothing else. The pipeline enriches in
    the readers' order and calls `on_progress` (from this thread) as digests become final.
    """
    expected = expected_announcement_date(now)
    with Store(settings.db) as store:
        before = set(announcement_dates(store))
        try:
            result = arxiv.fetch(settings, store, since=since, now=now)
        except (NetworkError, FeedError) as exc:
            return FetchOutcome(expected, _has(store, expected), error=str(exc))
        if result.status == "stale":
            log.warning("arXiv feed is stale (still the batch of %s): %s", result.date, result.message)
        dates = set(announcement_dates(store)) - before
        if result.new_announcements and result.date:
            dates.add(result.date)
        reports = {d: await run_pipeline(settings, store, date=d, priority=reading_order,
                                         on_progress=on_progress) for d in sorted(dates)}
        return FetchOutcome(expected, _has(store, expected), result, reports=reports)


def _has(store: Store, expected: str) -> bool:
    return (latest_announcement_date(store) or "") >= expected


async def enrich_dates(settings: Settings, dates: list[str]) -> dict[str, PipelineReport]:
    """Score and enrich for the current subscriptions (only missing work; the cache has the rest)."""
    with Store(settings.db) as store:
        return {d: await run_pipeline(settings, store, date=d, priority=reading_order)
                for d in dates}


def in_daemon_thread(fn: Callable[..., Coroutine[Any, Any, T]], /, *args: Any,
                     **kwargs: Any) -> Awaitable[T]:
    """Run the coroutine function `fn` on a new event loop in a daemon thread, and await it.

    `fn` opens its own Store there (sqlite connections belong to one thread). Unlike
    asyncio.to_thread the thread never holds up process exit: a shutdown must finish within
    seconds, and a pipeline half-way through enriching cannot be interrupted; its writes are
    transactions, so abandoning it loses nothing but time.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def work() -> None:
        try:
            outcome: tuple[bool, Any] = (True, asyncio.run(fn(*args, **kwargs)))
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (False, exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name=f"{WORKER}{fn.__name__}", daemon=True).start()
    return future


def workers_alive() -> bool:
    """Whether a worker thread is still running (one abandoned at shutdown)."""
    return any(t.name.startswith(WORKER) for t in threading.enumerate())
