"""`digestbot fetch`: tonight's announcement (or saved files) into the store, one line out."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.sources import arxiv
from digestbot.store import Store


def cmd_fetch(settings: Settings, args: argparse.Namespace) -> int:
    if args.since and args.feed:
        raise UsageError("--since asks the API; it cannot be combined with --feed")
    with Store(settings.db) as store, _Progress("正在获取 arXiv… / fetching arXiv…"):
        result = arxiv.fetch(settings, store, feeds=args.feed, date=args.date,
                             no_api=args.no_api, since=args.since)
    print(result.message)
    return 0


class _Progress:
    """A rich spinner on a terminal; nothing under CI or when piped."""

    def __init__(self, text: str) -> None:
        self._status = Console(stderr=True).status(text) if sys.stderr.isatty() else None

    def __enter__(self) -> None:
        if self._status:
            self._status.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._status:
            self._status.__exit__(*exc)
