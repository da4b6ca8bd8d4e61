"""The closed value sets: one Literal type each, and the runtime tuple derived from it."""

from __future__ import annotations

from typing import get_args

from digestbot import models


def test_value_tuples_are_the_literal_types_in_order() -> None:
    assert models.ANNOUNCE_TYPES == ("new", "cross", "replace", "replace-cross")
    assert models.CHANNELS == ("email", "telegram", "slack")
    assert models.LANGS == ("zh", "en", "both")
    assert models.SUBSCRIBER_STATUSES == (
        "pending", "active", "paused", "unsubscribed", "bounced", "blocked")
    assert models.DELIVERY_STATUSES == (
        "pending", "sending", "sent", "failed", "failed_permanent", "cancelled")
    assert get_args(models.Lang) == models.LANGS
    assert set(models.ANNOUNCE_LABELS_ZH) == set(models.ANNOUNCE_LABELS_EN) == set(
        models.ANNOUNCE_TYPES)


def test_dataclass_fields_use_the_types() -> None:
    hints = {f: models.Subscriber.__annotations__[f] for f in ("channel", "lang", "status")}
    assert hints == {"channel": "Channel", "lang": "Lang", "status": "SubscriberStatus"}
    assert models.Announcement.__annotations__["announce_type"] == "AnnounceType"
