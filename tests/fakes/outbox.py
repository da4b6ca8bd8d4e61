"""One `send` as the entry points run it: the senders the settings enable, unless a test
passes its own (`senders={...}`)."""

from __future__ import annotations

import asyncio
from typing import Any

from digestbot import outbox
from digestbot.channels import build_senders
from digestbot.config import Settings
from digestbot.store import Store


async def asend(
    settings: Settings, store: Store, *, senders: dict[str, Any] | None = None, **options: Any
) -> outbox.DeliveryReport:
    chosen = build_senders(settings) if senders is None else senders
    return await outbox.run_send(settings, store, chosen, **options)


def send(
    settings: Settings, store: Store, *, senders: dict[str, Any] | None = None, **options: Any
) -> outbox.DeliveryReport:
    """`asend` for synchronous tests, with asyncio.run as the CLI does."""
    return asyncio.run(asend(settings, store, senders=senders, **options))
