"""`digestbot` subcommands: parse arguments, load settings, run the command's handler.

The handlers live in this package, one module per family of commands (`cli.fetch`,
`cli.subscribers`…): each parses nothing itself, calls the library (stages and the scheduler
return report objects and never print) and prints what a person reads. A handler's module is
imported only when its command runs: importing every stage takes seconds (openai, aiohttp,
python-telegram-bot…), `digestbot --help` a fraction of one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence

from digestbot.cli.parser import build_parser
from digestbot.config import Settings, load_settings
from digestbot.errors import DigestbotError, UsageError
from digestbot.store import REDACTOR, describe_error, protect

__all__ = ["HANDLERS", "build_parser", "main", "setup_logging"]

log = logging.getLogger("digestbot")

Handler = Callable[[Settings, argparse.Namespace], int]

# command → "module:function", every one in this package.
HANDLERS: dict[str, str] = {
    "init": "digestbot.cli.admin:cmd_init",
    "fetch": "digestbot.cli.fetch:cmd_fetch",
    "enrich": "digestbot.cli.enrich:cmd_enrich",
    "score": "digestbot.cli.enrich:cmd_score",
    "topics": "digestbot.cli.subscribers:cmd_topics",
    "sub add": "digestbot.cli.subscribers:cmd_sub_add",
    "sub import": "digestbot.cli.imports:cmd_sub_import",
    "sub export": "digestbot.cli.imports:cmd_sub_export",
    "sub list": "digestbot.cli.subscribers:cmd_sub_list",
    "sub rm": "digestbot.cli.subscribers:cmd_sub_rm",
    "sub follow": "digestbot.cli.profile:cmd_sub_follow",
    "sub unfollow": "digestbot.cli.profile:cmd_sub_unfollow",
    "sub keywords": "digestbot.cli.profile:cmd_sub_keywords",
    "feedback": "digestbot.cli.profile:cmd_feedback",
    "sub library": "digestbot.cli.library:cmd_sub_library",
    "preview": "digestbot.cli.deliver:cmd_preview",
    "send": "digestbot.cli.deliver:cmd_send",
    "once": "digestbot.cli.once:cmd_once",
    "run": "digestbot.cli.serve:cmd_run",
    "serve": "digestbot.cli.serve:cmd_serve",
    "stats": "digestbot.cli.stats:cmd_stats",
    "status": "digestbot.cli.stats:cmd_status",
    "inbound": "digestbot.cli.inbound:cmd_inbound",
}


def _resolve(command: str) -> Handler:
    """Import the handler's module only when its command runs, so `--help` stays quick.

    importlib here is no cycle dodge: every handler module sits in this package, above
    everything it calls; it only defers the cost of importing the stages.
    """
    module_name, func_name = HANDLERS[command].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def setup_logging(verbose: bool, as_json: bool) -> None:
    handler = _StderrHandler()
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(REDACTOR)  # the one redaction filter, extras (access log lines) included
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "telegram", "apscheduler", "arxiv", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now, so a replaced stream (tests, daemons) is followed."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            # exc_text is the traceback the redaction filter already masked, when it had to.
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    settings: Settings | None = None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        command = args.command
        if command == "sub":
            if args.sub_command is None:
                raise UsageError("digestbot sub: expected add, import, export, list, rm, follow, "
                                 "unfollow, keywords or library (see `digestbot sub --help`)")
            command = f"sub {args.sub_command}"
        setup_logging(args.verbose, args.log_json)
        handler = _resolve(command)
        settings = load_settings(missing_ok=command == "init")
        protect(settings)  # before any stage can log or store a text that quotes a secret
        return handler(settings, args)
    except DigestbotError as exc:
        print(f"digestbot: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `digestbot stats --json | head`: the reader left; that is not our failure.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except sqlite3.Error as exc:
        # A read-only, full or foreign database file: one line; the transaction rolled back.
        where = settings.db if settings else "DIGESTBOT_DB"
        print(f"digestbot: error: {describe_error(where, exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"digestbot: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 1


