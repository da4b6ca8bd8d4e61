"""Delivery channels: each module sends digests over one service and plugs into the outbox.

A channel module `digestbot.channels.<name>` exposes

    def make_sender(settings: Settings) -> ChannelSender | None

returning None when the channel is not configured (no bot token, say). `build_senders` asks
every module listed in `CHANNEL_MODULES`, imported lazily, so a channel that is not built yet
simply has no sender and its outbox rows wait for it (`DeliveryReport.waiting`).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digestbot.config import Settings
    from digestbot.delivery import ChannelSender

log = logging.getLogger(__name__)

# channel name (subscribers.channel) → module with `make_sender`
CHANNEL_MODULES: dict[str, str] = {
    "email": "digestbot.channels.email",
    "telegram": "digestbot.channels.telegram",
    "slack": "digestbot.channels.slack",
}


def build_senders(settings: Settings) -> dict[str, ChannelSender]:
    """A sender for every channel that exists and is configured."""
    senders: dict[str, ChannelSender] = {}
    for channel, module_name in CHANNEL_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only the channel module itself missing means "not built"; anything else is a bug.
            if exc.name != module_name:
                raise
            log.debug("channel %s: %s is not there", channel, module_name)
            continue
        make_sender = getattr(module, "make_sender", None)
        sender = make_sender(settings) if make_sender else None
        if sender is not None:
            senders[channel] = sender
    return senders
