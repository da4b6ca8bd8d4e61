"""Telegram: the outbox's sender for chats.

`TelegramSender` posts a digest's messages (rendered by `render.telegram`) in order, with
per-message progress (and the papers each carried), so a restart goes on with the papers not
yet sent; flood limits (`FloodLimiter`), `RetryAfter`, blocked and migrated chats. The bot
that takes commands is `digestbot.bots.telegram`; it sends through the same pieces.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from datetime import timedelta
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import BaseRateLimiter, ExtBot
from telegram.request import HTTPXRequest

from digestbot import outbox, signing, subscribers
from digestbot.config import Settings
from digestbot.errors import DigestbotError, PermanentError, TransientError, UsageError
from digestbot.models import Digest, Subscriber
from digestbot.render import controls
from digestbot.render.telegram import render_parts
from digestbot.store import Store, protect

log = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
POOL_SIZE = 64

# -- flood limits -------------------------------------------------------------------------------

# Bot API methods that post into a chat; only these count against the flood limits.
_POSTING = re.compile(r"^(send|forward|copy|edit)", re.IGNORECASE)


class FloodLimiter(BaseRateLimiter[int]):
    """Telegram's limits as strict spacing: overall, per chat, per group; RetryAfter pauses all.

    PTB's AIORateLimiter allows bursts (a leaky bucket) and has no per-chat limit for private
    chats, so a big fan-out both bursts past 30/s and sends a second message to a chat within
    the same second. Here every request to a chat waits for that chat's next free slot, then
    for the bot's next overall slot. Slots are reserved without awaiting in between, so
    concurrent senders on one loop never share a slot.
    """

    # A chat's spacing leaves 0.2 s for jitter: two messages that leave 1.05 s apart can
    # arrive less than a second apart when the first is held up on its way (seen as a
    # 'chat' 429 in bench/telegram.py on a loaded machine). It costs a two-message digest
    # 0.15 s; the bot's overall pace is unchanged. And it counts from the later of the
    # previous message's turn and its answer: one held up longer than that (a busy
    # connection pool, a slow proxy) arrived no later than its answer came back.
    def __init__(self, overall_per_s: float = 28.0, chat_interval: float = 1.2,
                 group_per_min: float = 19.0, max_retries: int = 5) -> None:
        self.overall_interval = 1.0 / overall_per_s if overall_per_s else 0.0
        self.chat_interval = chat_interval
        self.group_interval = max(chat_interval, 60.0 / group_per_min if group_per_min else 0.0)
        self.max_retries = max_retries
        self._last_sent = float("-inf")
        self.retried = 0
        self._next: dict[Any, float] = {}
        self._resume = asyncio.Event()
        self._resume.set()

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    def _delay(self, key: Any, interval: float) -> float:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next.get(key, 0.0))
        self._next[key] = slot + interval
        if len(self._next) > 10_000:  # forget chats whose slots are long past
            self._next = {k: t for k, t in self._next.items() if t > now}
        return slot - now

    async def _wait_turn(self, chat_id: Any) -> tuple[Any, float]:
        """Wait for the chat's and the bot's next slots; the chat's key and spacing."""
        try:
            group = int(chat_id) < 0
        except (TypeError, ValueError):
            group = True  # @channel names are channels or supergroups
        key, interval = ("chat", str(chat_id)), self.group_interval if group else self.chat_interval
        await asyncio.sleep(self._delay(key, interval))
        await asyncio.sleep(self._delay("overall", self.overall_interval))
        sent_at = await self._overall_turn()
        # The overall queue may have held this request: the chat's spacing counts from now.
        self._next[key] = max(self._next.get(key, 0.0), sent_at + interval)
        return key, interval

    def _answered(self, key: Any, interval: float) -> None:
        """The chat's request is answered (or failed): its next one no sooner than `interval`
        from now, however long this one took to arrive."""
        self._next[key] = max(self._next.get(key, 0.0),
                              asyncio.get_running_loop().time() + interval)

    async def _overall_turn(self) -> float:
        """Keep `overall_interval` between sends as they really go out, not only as reserved.

        When the loop stalls (a burst of database work), every request whose reserved slot
        passed meanwhile wakes at once; they go out one interval apart instead of together.
        """
        loop = asyncio.get_running_loop()
        while (wait := self._last_sent + self.overall_interval - loop.time()) > 0:
            await asyncio.sleep(wait)
        self._last_sent = loop.time()
        return self._last_sent

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):  # type: ignore[no-untyped-def]
        chat_id = data.get("chat_id")
        for attempt in range(self.max_retries + 1):
            await self._resume.wait()
            turn = (await self._wait_turn(chat_id)
                    if chat_id is not None and _POSTING.match(endpoint) else None)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                if attempt == self.max_retries:
                    raise
                wait = retry_seconds(exc)
            finally:
                if turn is not None:
                    self._answered(*turn)
            self.retried += 1
            log.info("Telegram asked to retry after %.1f s; pausing all sends", wait)
            # Flood control is per bot: everyone waits, not only this request.
            self._resume.clear()
            try:
                await asyncio.sleep(wait)
            finally:
                self._resume.set()
        raise AssertionError("unreachable")


def retry_seconds(exc: RetryAfter) -> float:
    """RetryAfter's wait as seconds; PTB 22 gives an int or a timedelta depending on settings."""
    value = exc._retry_after  # the timedelta behind the deprecated int/timedelta property
    return (value.total_seconds() if isinstance(value, timedelta) else float(value)) + 0.1


def build_bot(settings: Settings, limiter: BaseRateLimiter | None = None) -> ExtBot:
    """A bot for sending only (`digestbot send`): no updater, the flood limiter built in.

    PTB's default pool is one connection; digests to many chats go out concurrently.
    """
    return ExtBot(
        bot_token(settings), base_url=settings.telegram_api_url,
        base_file_url=file_url(settings), rate_limiter=limiter or FloodLimiter(),
        request=HTTPXRequest(connection_pool_size=POOL_SIZE),
    )


async def initialize(bot: ExtBot) -> None:
    """`bot.initialize()`, with PTB's InvalidToken (whose message quotes the token) replaced."""
    try:
        await bot.initialize()
    except InvalidToken:
        raise DigestbotError(
            "Telegram rejected TELEGRAM_BOT_TOKEN; check it with @BotFather"
        ) from None


def file_url(settings: Settings) -> str:
    """The Bot API's file base beside `telegram_api_url` (`…/file/bot<token>`)."""
    head, sep, tail = settings.telegram_api_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep else settings.telegram_api_url


def bot_token(settings: Settings) -> str:
    """The token, registered with the log redactor before anything can log a URL with it
    (Bot API URLs carry it, `…/bot<token>/getMe`, and PTB and httpx log them)."""
    if not settings.telegram_bot_token:
        raise UsageError("TELEGRAM_BOT_TOKEN is not set; get one from @BotFather")
    token = settings.telegram_bot_token.get()
    protect(settings)
    return token


# -- the outbox's sender ------------------------------------------------------------------------


class TelegramSender:
    """Sends a digest's messages in order, recording each one, resuming after the last sent."""

    channel = "telegram"
    # Digests to different chats go out side by side; the limiter paces each chat.
    concurrency = 100

    def __init__(self, bot: ExtBot, *, owns_bot: bool = True,
                 public_url: str | None = None) -> None:
        self.bot = bot
        self.public_url = public_url  # for the "另有 K 篇" link to the day page
        self._owns_bot = owns_bot
        # Concurrent first sends must not each call getMe: one initialises, the rest wait.
        self._init_lock = asyncio.Lock()

    async def aclose(self) -> None:
        if self._owns_bot:
            await self.bot.shutdown()

    async def _ready(self) -> None:
        async with self._init_lock:
            try:
                await initialize(self.bot)  # getMe; a no-op once done
            except (NetworkError, RetryAfter, DigestbotError) as exc:
                # Telegram unreachable or the token refused: the row waits for its retry.
                raise TransientError(f"telegram: {exc}") from None

    async def notice(self, store: Store, subscriber: Subscriber, text: str) -> None:
        """One plain line outside any digest (the notices a reader asked for with /notify)."""
        await self._ready()
        await self.post(store, subscriber.id, _chat_id(subscriber.address), html.escape(text))

    async def send(self, store: Store, delivery_row: Any, digest: Digest) -> None:
        await self._ready()
        done = outbox.parts_done(store, delivery_row.id)
        parts = render_parts(digest, skip=outbox.papers_sent(store, delivery_row.id),
                             pages_url=signing.pages_url(self.public_url, digest.date))
        if 0 in done:
            parts = parts[1:]  # the header went out before the restart
        subscriber = digest.subscriber
        chat_id: int | str = _chat_id(subscriber.address)
        # New parts are numbered after the recorded ones, which keep their rows.
        for seq, (text, paper_ids) in enumerate(parts, max(done, default=-1) + 1):
            message, chat_id = await self.post(store, subscriber.id, chat_id, text,
                                               vote_markup(paper_ids))
            outbox.mark_part(store, delivery_row.id, seq, str(message.message_id),
                               paper_ids=paper_ids)

    async def post(self, store: Store, subscriber_id: int, chat_id: int | str,
                   text: str, markup: InlineKeyboardMarkup | None = None
                   ) -> tuple[Message, int | str]:
        """One HTML message (with `markup`, its 👍/👎 keyboard); a chat that became a
        supergroup is followed to its new id.

        Returns the message and the chat id it finally went to.
        """
        try:
            return await self.bot.send_message(
                chat_id, text, parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW,
                reply_markup=markup,
            ), chat_id
        except ChatMigrated as exc:
            new_id = exc.new_chat_id
            owner = subscribers.by_address(store, "telegram", str(new_id))
            if owner is not None and owner.id != subscriber_id:
                # The supergroup already subscribed itself (someone used /subscribe there after
                # the upgrade): it gets its own digests, the old group's address is gone.
                raise PermanentError(
                    f"telegram: chat migrated to {new_id}, which is subscriber #{owner.id}"
                ) from None
            log.info("chat %s migrated to %s; subscriber #%s follows", chat_id, new_id,
                     subscriber_id)
            subscribers.update_settings(store, subscriber_id, address=str(new_id))
            return await self.post(store, subscriber_id, new_id, text, markup)
        except Forbidden as exc:
            raise PermanentError(f"telegram: {exc.message}", status="blocked") from None
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():
                raise PermanentError(f"telegram: {exc.message}", status="blocked") from None
            raise TransientError(f"telegram: {exc.message}") from None
        except (RetryAfter, NetworkError) as exc:
            # RetryAfter lands here only once the limiter's retries are used up.
            raise TransientError(f"telegram: {exc.message}") from None


def vote_markup(paper_ids: list[str], votes: dict[str, int] | None = None
                ) -> InlineKeyboardMarkup | None:
    """The 👍/👎 keyboard of a digest message carrying `paper_ids` (none for the header)."""
    if not paper_ids:
        return None
    return InlineKeyboardMarkup([
        [InlineKeyboardButton(b["text"], callback_data=b["callback_data"]) for b in row]
        for row in controls.telegram_keyboard(paper_ids, votes or {})])


def _chat_id(address: str) -> int | str:
    return int(address) if address.lstrip("-").isdigit() else address


def make_sender(settings: Settings) -> TelegramSender | None:
    """The outbox's Telegram sender (`digestbot send`), or None without TELEGRAM_BOT_TOKEN."""
    if not settings.telegram_bot_token:
        return None
    return TelegramSender(build_bot(settings), public_url=settings.public_url)
