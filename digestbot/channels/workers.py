"""A big batch of email from several processes at once (`send_workers`).

Building a digest's message (selecting, rendering, MIME) costs a few milliseconds of CPU, so
one process sends a few hundred messages a second at best, however many SMTP connections it
keeps. With `send_workers = n` a batch of at least `WORKER_MIN_ROWS` ready rows of a
parallel channel (email) is split among this process and n - 1 others, each with its own
store, SMTP connections and share of the rows (`outbox.deliver_pending(shard=…)`), which
goes on to the others' rows still waiting once its own are done: this process does not
wait for the workers' start-up (a few seconds of imports) with nothing to do. Chat
channels stay in this process, since their flood limits are the bot's. The claims make a
row's delivery exactly-once whoever sends it, and a worker killed half-way leaves its rows to
be taken over like any dead sender's. Cancelled (`run` stopping), the workers get SIGTERM,
which cancels their sending the same way: rows not yet accepted stay where they were.

The workers' log records come back here over a queue and go out through this process's
handlers (its redaction filter included; each worker also installs its own, through
`build_senders`, before it sends anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import multiprocessing
import queue
import signal
from datetime import datetime
from multiprocessing.process import BaseProcess
from typing import Any

from digestbot.channels import build_senders
from digestbot.config import Settings
from digestbot.outbox import DeliveryReport, close_senders, deliver_and_close, ready_rows
from digestbot.outbox.attempt import ChannelSender
from digestbot.store import Store

log = logging.getLogger(__name__)

# Below this many ready rows a second process costs more (a second or two of start-up,
# imports included) than it saves.
WORKER_MIN_ROWS = 200


async def deliver_in_workers(
    settings: Settings, store: Store, senders: dict[str, ChannelSender], *, now: datetime,
    workers: int, report: DeliveryReport | None = None, min_rows: int = WORKER_MIN_ROWS,
) -> DeliveryReport:
    """Every ready row, as `outbox.deliver_and_close` does, with a big batch of a parallel
    channel's rows split among `workers` processes (this one included); the senders are
    closed afterwards."""
    report = report or DeliveryReport()
    parallel = {ch for ch, s in senders.items() if getattr(s, "parallel", False)}
    # The ready rows are counted only when a parallel channel is here: a chat channel's
    # drain (every tick under `run`) never reads them twice.
    if (workers <= 1 or not parallel
            or sum(ch in parallel for _row, ch in ready_rows(store, now)) < min_rows):
        return await deliver_and_close(store, senders, now=now, report=report)
    log.info("sending with %d processes", workers)
    ctx = multiprocessing.get_context("spawn")
    records, results = ctx.Queue(), ctx.Queue()
    listener = logging.handlers.QueueListener(
        records, *logging.getLogger().handlers, respect_handler_level=True)
    listener.start()
    procs = [ctx.Process(target=_share_process, name=f"digestbot-send-{k}", daemon=True,
                         args=(settings, (k, workers), now, records, _levels(), results))
             for k in range(1, workers)]
    try:
        for proc in procs:
            proc.start()
        await deliver_and_close(store, senders, now=now, report=report, shard=(0, workers))
        for part in await _collect(procs, results):
            report.add_sending(part)
    finally:
        await _stop(procs)
        listener.stop()
    return report


async def _collect(procs: list[BaseProcess], results: Any) -> list[DeliveryReport]:
    """The workers' reports, as they finish (polled: a cancelled wait must not leave a thread
    blocked on the queue); a worker that died without one is logged, its rows retried."""
    parts: list[DeliveryReport] = []
    while len(parts) < len(procs):
        try:
            parts.append(results.get_nowait())
            continue
        except queue.Empty:
            pass
        if not any(p.is_alive() for p in procs):
            with contextlib.suppress(queue.Empty):
                parts.append(results.get(timeout=0.5))
                continue
            log.warning("%d sending process(es) ended without a report; their rows are retried",
                        len(procs) - len(parts))
            break
        await asyncio.sleep(0.05)
    return parts


async def _stop(procs: list[BaseProcess], grace: float = 2.0) -> None:
    """Workers still running (this send was cancelled) get SIGTERM, then, after `grace`
    seconds, SIGKILL."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for _ in range(int(grace / 0.05)):
        if not any(p.is_alive() for p in procs):
            break
        await asyncio.sleep(0.05)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
        proc.join(1)


def _levels() -> dict[str, int]:
    """This process's logging levels (root first), for the workers to log alike."""
    manager = logging.Logger.manager
    levels = {name: logger.level for name, logger in manager.loggerDict.items()
              if isinstance(logger, logging.Logger) and logger.level}
    return {"": logging.getLogger().level, **levels}


def _share_process(settings: Settings, shard: tuple[int, int], now: datetime, records: Any,
                   levels: dict[str, int], results: Any) -> None:
    """A worker: its log records to `records`, its share sent, its report to `results`."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    try:
        results.put(asyncio.run(_share(settings, shard, now)))
    except asyncio.CancelledError:  # SIGTERM: this share's unsent rows resume later
        logging.getLogger(__name__).info("sending process %d stopped", shard[0])


async def _share(settings: Settings, shard: tuple[int, int], now: datetime) -> DeliveryReport:
    """One worker's share: its own store and senders, only the parallel channels'. SIGTERM
    cancels it as `run` cancels its own sending: rows not yet accepted stay as they were."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    senders = build_senders(settings)
    mine = {ch: s for ch, s in senders.items() if getattr(s, "parallel", False)}
    await close_senders([s for ch, s in senders.items() if ch not in mine])
    with Store(settings.db) as store:
        report = await deliver_and_close(store, mine, now=now, shard=shard)
    log.info("sending process %d: %s", shard[0], report.summary())
    return report
