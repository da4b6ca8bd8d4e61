"""The whole day in one place: `once` (a cron-friendly single pass) and `run` (the service).

`once` is fetch → score → enrich → send --now. With `--demo` (what `make run` uses) a first
run shows the product on a bare machine: a demo subscriber for the default topic when there
is nobody yet, and the bundled sample announcement when arXiv cannot be reached.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from digestbot import subscribers, topics
from digestbot.config import Settings
from digestbot.delivery import run_send
from digestbot.enrich.pipeline import run_pipeline
from digestbot.errors import DigestbotError, NetworkError
from digestbot.sources import arxiv
from digestbot.store import Store

log = logging.getLogger(__name__)

DEMO_ADDRESS = "demo@localhost"


def cmd_once(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        result = _fetch_or_sample(settings, store, args)
        print(result.message)
        if args.demo:
            _ensure_demo_subscriber(settings, store)
        report = run_pipeline(settings, store, date=result.date)
        print(report.summary())
        sent = run_send(settings, store, force=True)
        print(sent.summary())
        if not settings.smtp_url:
            print(f"邮件已写入 / emails written to: {Path(settings.outbox).resolve()}")
    return 0


def _fetch_or_sample(settings: Settings, store: Store, args: argparse.Namespace) -> arxiv.FetchResult:
    try:
        return arxiv.fetch(settings, store, feeds=args.feed, no_api=args.no_api)
    except NetworkError as exc:
        hint = "digestbot once --feed FILE"
        if not args.demo or args.feed:
            raise DigestbotError(f"arXiv unreachable ({exc}); offline, ingest a saved file: {hint}") from None
        print(f"arXiv 无法访问 / unreachable ({exc}); showing the bundled sample "
              f"announcement instead — real files: {hint}")
        return arxiv.fetch(settings, store, feeds=[str(arxiv.SAMPLE_FEED)], no_api=True)


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
          f"({topic.name_en}); remove it with `digestbot sub rm {sub.id}`")
