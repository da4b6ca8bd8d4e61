"""`digestbot serve`: the HTTP app alone; `digestbot run`: the whole service (`scheduler`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from digestbot import scheduler, web
from digestbot.clock import Clock, parse_now
from digestbot.config import Settings
from digestbot.errors import DigestbotError, UsageError


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; a port that cannot be had is a one-line error."""
    port = args.port if args.port is not None else settings.http_port
    if not 0 <= port <= 65535:
        raise UsageError(f"端口无效 / port {port} is not a TCP port (0–65535); "
                         "choose another with --port or DIGESTBOT_HTTP_PORT")
    print(f"HTTP 服务 / HTTP app on http://{args.host}:{port} (/, /d/…, /feed/…, /preferences, "
          "/unsubscribe, /status, /metrics, /healthz); Ctrl-C 停止 / to stop")
    try:
        web.serve(settings, args.host, port)
    except OSError as exc:
        raise DigestbotError(
            f"cannot listen on {args.host}:{port} ({exc.strerror or exc}); "
            "choose another with --port or DIGESTBOT_HTTP_PORT") from None
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """The service until SIGTERM or Ctrl-C; a second one on the same database is refused."""
    clock = Clock(parse_now(args.now), args.speed)
    with scheduler.instance_lock(settings.db):
        asyncio.run(scheduler.serve(settings, clock, host=args.host))
    # A pipeline thread that is still running is abandoned (its transactions roll back);
    # don't let interpreter shutdown wait for thread pools it may have started.
    if scheduler.workers_alive():
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0
