"""`digestbot send` and `digestbot preview`: parse, call the outbox and the renderers, print.

The stages only return reports and digests; everything a person reads is printed here.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from datetime import UTC, datetime
from typing import Any

from digestbot import digest as digests
from digestbot import outbox, render, signing, status, subscribers
from digestbot.breaker import snapshots as breaker_states
from digestbot.channels import build_senders
from digestbot.channels.workers import deliver_in_workers
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.models import Digest, Subscriber
from digestbot.render.slack import render_payloads
from digestbot.render.telegram import render_telegram
from digestbot.sources.papers import latest_announcement_date
from digestbot.store import Store


def send(settings: Settings, store: Store, *, force: bool = False,
         dry_run: bool = False) -> outbox.DeliveryReport:
    """One `send` with the senders the settings enable (`send`, `once`), a big email batch
    from `send_workers` processes; the breakers' states are recorded for `/status`."""
    senders = build_senders(settings)
    if dry_run:
        report = asyncio.run(outbox.run_send(settings, store, senders, force=force, dry_run=True))
    else:
        now = datetime.now(UTC)
        report = outbox.plan_due(settings, store, now=now, force=force)
        report = asyncio.run(deliver_in_workers(settings, store, senders, now=now,
                                                workers=settings.send_workers, report=report))
    status.record_breakers(store, breaker_states())
    return report


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    if args.workers is not None:
        if not 1 <= args.workers <= 16:
            raise UsageError(f"--workers {args.workers}: 1–16 个进程 / 1 to 16 processes")
        settings = dataclasses.replace(settings, send_workers=args.workers)
    with Store(settings.db) as store:
        report = send(settings, store, force=args.now, dry_run=args.dry_run)
    if args.dry_run:
        for line in report.would_send:
            print(f"would send / 将发送: {line}")
        if not report.would_send:
            print("nothing would be sent / 没有待发送的摘要")
        print(f"(试运行 / dry run) 无需发送 / nothing due for {report.empty + report.not_due}"
              f" ({report.not_due} not yet at their send time)")
        return 0
    print(report.summary())
    return 0


def cmd_preview(settings: Settings, args: argparse.Namespace) -> int:
    """Print what a subscriber would get; sends nothing and records nothing."""
    with Store(settings.db) as store:
        subscriber = subscribers.get(store, args.subscriber)
        if subscriber is None:
            raise UsageError(
                f"没有编号为 {args.subscriber} 的订阅者 / no subscriber #{args.subscriber} "
                "(see `digestbot sub list`)"
            )
        date = args.date or latest_announcement_date(store)
        if date is None:
            print("还没有任何公告 / no announcements yet: run `digestbot fetch` first")
            return 0
        digest = _planned(store, subscriber, date) or digests.select(
            store, subscriber, date, history=outbox.DeliveryHistory(store))
    if digest is None:
        print(f"订阅者 #{subscriber.id} 在 {date} 没有新论文 / "
              f"no new papers for subscriber #{subscriber.id} on {date}")
        return 0
    print(_preview_text(settings, digest, args.format))
    return 0


def _planned(store: Store, subscriber: Subscriber, date: str) -> Digest | None:
    """The digest an outbox row already holds for that day: preview shows what was (or will
    be) sent, not the leftovers that at-most-once would select now."""
    row = outbox.day_row(store, subscriber.id, date)
    if row is None:
        return None
    print(f"(outbox: {date} 这一期状态为 / this digest is {row.status})", file=sys.stderr)
    return digests.rebuild(store, subscriber, date, row.paper_ids, row.more,
                           suggested=row.suggested)


def _preview_text(settings: Settings, digest: Digest, fmt: str) -> str:
    if fmt in ("html", "text"):
        # The same links as the real email, so the footer can be checked too.
        email = render.render_email(
            digest, unsubscribe_url=signing.unsubscribe_url(settings, digest.subscriber.token),
            preferences_url=signing.preferences_url(settings, digest.subscriber),
            pages_url=signing.pages_url(settings.public_url, digest.date),
        )
        return email.html if fmt == "html" else f"Subject: {email.subject}\n\n{email.text}"
    renderer = render_telegram if fmt == "telegram" else render_payloads
    return _as_text(renderer(digest))


def _as_text(rendering: Any) -> str:
    """Chat renderings come as a message, a list of messages, or Slack block payloads."""
    if isinstance(rendering, str):
        return rendering
    if isinstance(rendering, (list, tuple)):
        return "\n\n────────\n\n".join(_as_text(part) for part in rendering)
    return json.dumps(rendering, ensure_ascii=False, indent=2, default=str)
