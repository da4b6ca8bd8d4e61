"""The service behind `digestbot run`: one asyncio process, until SIGTERM.

`service` holds the jobs (`Service`: a fetch at arXiv's announcement, a delivery tick every
minute, a catch-up at start); `work` runs their blocking part — the fetch and the pipeline —
on a worker thread with its own Store; `daemon` wires the jobs beside the Telegram bot, Slack
Socket Mode and the HTTP app and stops them cleanly. `digestbot once` needs none of this: the
CLI calls the stages in a row (`digestbot.cli.once`).
"""

from digestbot.scheduler.daemon import PARTS_GRACE, STOP_GRACE, instance_lock, serve
from digestbot.scheduler.service import Service
from digestbot.scheduler.work import FetchOutcome, fetch_and_enrich, workers_alive

__all__ = ["PARTS_GRACE", "STOP_GRACE", "FetchOutcome", "Service", "fetch_and_enrich",
           "instance_lock", "serve", "workers_alive"]
