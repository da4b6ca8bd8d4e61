"""Delivery channels: each module sends digests over one service and plugs into the outbox.

A channel module `digestbot.channels.<name>` exposes

    def make_sender(settings: Settings) -> ChannelSender | None

returning None when the channel is not configured (no bot token, say); that channel's outbox
rows then wait for it (`DeliveryReport.waiting`). Modules are imported only when senders are
built, so `digestbot send` for email never loads the Telegram or Slack libraries' clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from digestbot.store import protect

if TYPE_CHECKING:
    from digestbot.config import Settings
    from digestbot.outbox import ChannelSender


# channel name (subscribers.channel) → module with `make_sender`
CHANNEL_MODULES: dict[str, str] = {
    "email": "digestbot.channels.email",
    "telegram": "digestbot.channels.telegram",
    "slack": "digestbot.channels.slack",
}


def build_senders(settings: Settings) -> dict[str, ChannelSender]:
    """A sender for every configured channel."""
    # Before any sender can fail: an SMTP server or a chat API may quote a credential back.
    protect(settings)
    senders: dict[str, ChannelSender] = {}
    for channel, module_name in CHANNEL_MODULES.items():
        sender = importlib.import_module(module_name).make_sender(settings)
        if sender is not None:
            senders[channel] = sender
    return senders
