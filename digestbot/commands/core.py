"""The command model every command module shares: context, reply, buttons, language, lookups.

Nothing here runs a command; `registry` holds the commands and dispatches to them. The helpers
below are the answers and lookups more than one command gives, written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from digestbot import subscribers, topics
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.models import Digest, Subscriber, Topic
from digestbot.store import Store


@dataclass(frozen=True)
class CommandContext:
    """Who is asking, as the adapter established it.

    `address` is the subscriber's address on the channel: the chat id (Telegram) or channel
    id (Slack); in a group the group is the subscriber. `may_manage` is the adapter's answer
    to "may this person change this subscriber's settings" (chat admin in a Telegram group);
    adapters only need to compute it for commands where `mutates(name)` is true.
    """

    channel: str
    address: str
    may_manage: bool = True
    now: datetime | None = None

    def clock(self) -> datetime:
        """The time the command runs at: the adapter's (tests pin it), else now."""
        return self.now or datetime.now(UTC)


@dataclass(frozen=True)
class Button:
    text: str
    # A command line ("subscribe post-training 80"); at most 64 bytes (Telegram's callback limit).
    action: str


@dataclass
class Reply:
    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    # Replace the message the button was on instead of posting a new one (topic pages).
    edit: bool = False
    # /digest: an outbox row the adapter should deliver now (recorded like any delivery) …
    delivery_id: int | None = None
    # … or a digest asked for again, which the adapter sends as it is (recorded nowhere).
    digest: Digest | None = None


# What every command is called with: the store, the settings, who asks, the argument text
# (stripped, at most MAX_ARG_CHARS) and the language to answer in.
Run = Callable[[Store, Settings, CommandContext, str, str], Reply]


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    mutates: bool
    zh: str
    en: str
    example: str
    run: Run
    # Shown in the chat's command menu and /help; button-only commands are hidden.
    listed: bool = True


# -- language -----------------------------------------------------------------------------------


def say(lang: str, zh: str, en: str) -> str:
    """One message in the subscriber's language: zh, en, or both (Chinese first)."""
    if lang == "en":
        return en
    if lang == "zh":
        return zh
    return f"{zh}\n\n{en}"


def in_lang(exc: UsageError, lang: str) -> str:
    """A validator's message: its English text alone for an `en` reader, else "中文 / English".

    zh readers keep the bilingual line: a validator's Chinese text is often only the heading
    and the details (the value, the accepted forms) are in the English one.
    """
    if lang == "en" and exc.en is not None:
        return exc.en
    return str(exc)


def reply_lang(store: Store, channel: str, address: str) -> str:
    """The language to answer a chat in: its subscriber's, or the default before it has one.

    Adapters use it too, for what they say outside `execute` (a failed /digest send, a
    refused change).
    """
    sub = subscribers.by_address(store, channel, address)
    return sub.lang if sub else subscribers.DEFAULT_LANG


# -- the chat's subscriber ----------------------------------------------------------------------


def topic_or_none(store: Store, slug: str) -> Topic | None:
    """A subscribed topic by slug; None if it has gone from the catalogue since."""
    try:
        return topics.get_topic(slug, store)
    except KeyError:
        return None


def ensure_subscriber(store: Store, ctx: CommandContext) -> Subscriber:
    """The chat's subscriber, created as `pending` (no topics yet) on first contact."""
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    if sub is None:
        sub = subscribers.add_or_update(store, channel=ctx.channel, address=ctx.address,
                                        topics=[], status="pending")
    return sub


def subscribed(store: Store, ctx: CommandContext) -> tuple[Subscriber, set[str]] | None:
    """The chat's subscriber and the slugs it follows; None while it follows none."""
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    current = {s.topic for s in subscribers.subscriptions(store, sub.id)} if sub else set()
    return (sub, current) if sub is not None and current else None


def next_send(sub: Subscriber, now: datetime) -> str:
    """The next local send time, e.g. "2026-08-13 08:30 Asia/Shanghai" (a Monday for a
    weekly reader)."""
    zone = ZoneInfo(sub.tz)
    local = now.astimezone(zone)
    hour, minute = (int(x) for x in sub.send_at.split(":"))
    nxt = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if nxt <= local:
        nxt += timedelta(days=1)
    if sub.cadence == "weekly":
        nxt += timedelta(days=-nxt.weekday() % 7)  # on to Monday (weekday 0)
    return f"{nxt:%Y-%m-%d %H:%M} {sub.tz}"


# -- answers several commands give --------------------------------------------------------------


def not_subscribed(lang: str) -> Reply:
    return Reply(say(lang, "你还没有订阅任何主题。试试 /subscribe 后训练,或用 /topics 浏览。",
                     "You have no subscriptions yet. Try /subscribe post-training, or browse "
                     "/topics."))


def not_yours(name: str, lang: str) -> Reply:
    return Reply(say(lang, f"你没有订阅「{name}」。/list 查看当前订阅。",
                     f"You are not subscribed to “{name}”. /list shows what you are."))
