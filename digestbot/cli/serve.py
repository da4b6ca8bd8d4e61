"""`digestbot serve`: the HTTP app alone, without the scheduler or the bots."""

from __future__ import annotations

import argparse

from digestbot import web
from digestbot.config import Settings
from digestbot.errors import DigestbotError, UsageError


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; a port that cannot be had is a one-line error."""
    port = args.port if args.port is not None else settings.http_port
    if not 0 <= port <= 65535:
        raise UsageError(f"端口无效 / port {port} is not a TCP port (0–65535); "
                         "choose another with --port or DIGESTBOT_HTTP_PORT")
    print(f"HTTP 服务 / HTTP app on http://{args.host}:{port} (/, /d/…, /feed/…, /preferences, "
          "/unsubscribe, /healthz); Ctrl-C 停止 / to stop")
    try:
        web.serve(settings, args.host, port)
    except OSError as exc:
        raise DigestbotError(
            f"cannot listen on {args.host}:{port} ({exc.strerror or exc}); "
            "choose another with --port or DIGESTBOT_HTTP_PORT") from None
    return 0
