"""`digestbot once`: fetch → score → enrich → send --now, then exit (cron-friendly).

With `--demo` (what `make run` uses) a first run shows the product on a bare machine: a demo
subscriber for the default topic when there is nobody yet, and the bundled sample
announcement when arXiv cannot be reached. Each stage's report is printed as it finishes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from digestbot import subscribers, topics
from digestbot.cli.deliver import send
from digestbot.config import Settings
from digestbot.enrich.pipeline import run_pipeline
from digestbot.errors import DigestbotError, NetworkError
from digestbot.outbox.timeline import reading_order
from digestbot.sources import arxiv
from digestbot.store import Store

DEMO_ADDRESS = "demo@localhost"


def cmd_once(settings: Settings, args: argparse.Namespace) -> int:
    outbox = Path(settings.outbox)
    before = set(outbox.glob("*.eml"))
    with Store(settings.db) as store:
        result = _fetch_or_sample(settings, store, args)
        print(result.message)
        if args.demo:
            _ensure_demo_subscriber(settings, store)
        print(asyncio.run(run_pipeline(settings, store, date=result.date,
                                        priority=reading_order)).summary())
        print(send(settings, store, force=True).summary())
        if not settings.smtp_url:
            _print_written(sorted(set(outbox.glob("*.eml")) - before), outbox)
        if args.demo:
            _print_next_steps(settings, store)
    return 0


def _fetch_or_sample(settings: Settings, store: Store, args: argparse.Namespace) -> arxiv.FetchResult:
    """arXiv's batch; in demo mode the bundled sample when arXiv cannot be reached.

    The NetworkError already says "arXiv unreachable" and why; it is printed once, as is.
    """
    try:
        return arxiv.fetch(settings, store, feeds=args.feed, no_api=args.no_api)
    except NetworkError as exc:
        hint = f"离线时导入已保存的文件 / offline, ingest a saved file: {_prog()} once --feed FILE"
        if not args.demo or args.feed:
            raise DigestbotError(f"{exc}; {hint}") from None
        print(f"{exc} → 改为展示内置样例公告 / showing the bundled sample announcement; {hint}")
        return arxiv.fetch(settings, store, feeds=[str(arxiv.SAMPLE_FEED)], no_api=True)


def _prog() -> str:
    """How the user called us (`.venv/bin/digestbot` under `make run`), for hints to copy."""
    called = sys.argv[0]
    return called if Path(called).name == "digestbot" else "digestbot"


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path.resolve())


def _print_written(files: list[Path], outbox: Path) -> None:
    """The .eml files this run wrote (no SMTP configured), by name, ready to open."""
    if not files:
        print(f"没有新邮件 / no new email (each digest is sent once); earlier ones: {_shown(outbox)}")
        return
    print("邮件已写入 / email written to:")
    for path in files:
        print(f"  {_shown(path)}")


def _print_next_steps(settings: Settings, store: Store) -> None:
    """`make run` is a first contact: say how to look at the digest and what to do next."""
    subs = subscribers.list_all(store)
    if not subs:
        return
    prog = _prog()
    print(f"预览 / preview:  {prog} preview --subscriber {subs[0].id} --format html > digest.html\n"
          f"订阅 / subscribe: {prog} sub add --email you@example.org --topic {settings.default_topic}   (`{prog} topics` lists them)\n"
          f"常驻 / every day: {prog} run   (fetches at 20:00 US Eastern; README: \"Run it for real\")")


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
          f"({topic.name_en}); remove it with `{_prog()} sub rm {sub.id}`")
