"""A big batch of email from several processes at once (`send_workers`).

Building a digest's message (selecting, rendering, MIME) costs a few milliseconds of CPU, so
one process sends a few hundred messages a second at best, however many SMTP connections it
keeps. With `send_workers = n` a batch of at least `WORKER_MIN_ROWS` ready rows of a
parallel channel (email) is split among this process and n - 1 others, each with its own
store, SMTP connections and share of the rows (`outbox.deliver_pending(shard=…)`); chat
channels stay in this process, since their flood limits are the bot's. The claims make a
row's delivery exactly-once whoever sends it, and a worker killed half-way leaves its rows to
be taken over like any dead sender's.

The workers' log records come back here over a queue and go out through this process's
handlers (its redaction filter included; each worker also installs its own, through
`build_senders`, before it sends anything).
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any

from digestbot.channels import build_senders
from digestbot.config import Settings
from digestbot.outbox import DeliveryReport, close_senders, deliver_and_close, ready_rows
from digestbot.outbox.send import ChannelSender
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
    if workers <= 1 or sum(ch in parallel for _row, ch in ready_rows(store, now)) < min_rows:
        return await deliver_and_close(store, senders, now=now, report=report)
    log.info("sending with %d processes", workers)
    records = multiprocessing.get_context("spawn").Queue()
    listener = logging.handlers.QueueListener(
        records, *logging.getLogger().handlers, respect_handler_level=True)
    listener.start()
    loop = asyncio.get_running_loop()
    try:
        with ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(records, _levels())) as pool:
            shares = [loop.run_in_executor(pool, _deliver_share, settings, (k, workers), now)
                      for k in range(1, workers)]
            await deliver_and_close(store, senders, now=now, report=report, shard=(0, workers))
            for part in await asyncio.gather(*shares):
                report.add_sending(part)
    finally:
        listener.stop()
    return report


def _levels() -> dict[str, int]:
    """This process's logging levels (root first), for the workers to log alike."""
    manager = logging.Logger.manager
    levels = {name: logger.level for name, logger in manager.loggerDict.items()
              if isinstance(logger, logging.Logger) and logger.level}
    return {"": logging.getLogger().level, **levels}


def _init_worker(records: Any, levels: dict[str, int]) -> None:
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def _deliver_share(settings: Settings, shard: tuple[int, int], now: datetime) -> DeliveryReport:
    """One worker's share: its own store and senders, only the parallel channels'."""
    senders = build_senders(settings)
    mine = {ch: s for ch, s in senders.items() if getattr(s, "parallel", False)}
    with Store(settings.db) as store:

        async def share() -> DeliveryReport:
            await close_senders([s for ch, s in senders.items() if ch not in mine])
            return await deliver_and_close(store, mine, now=now, shard=shard)

        return asyncio.run(share())
