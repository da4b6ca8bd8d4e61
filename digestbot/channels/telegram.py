"""Telegram: digests as HTML messages through the outbox, and the bot that takes commands.

Three parts, each usable alone:
- `render_telegram(digest)`: a header message, then entries packed into messages of at most
  4096 characters in Telegram's HTML subset, every dynamic string escaped.
- `TelegramSender`: the outbox's sender for chats; per-message progress (with the papers
  each carried), so a restart goes on with the papers not yet sent; flood limits, `RetryAfter`, blocked and migrated chats.
- `start_bot`: the python-telegram-bot Application polling for commands inside the caller's
  asyncio loop; it only adapts updates to `digestbot.commands` and back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from digestbot import commands, outbox, subscribers
from digestbot.commands import label
from digestbot.config import Settings
from digestbot.errors import DigestbotError, PermanentError, TransientError, UsageError
from digestbot.models import Digest, DigestEntry
from digestbot.render import announce_label, clip, percent, topic_name
from digestbot.store import Store

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 4096
# The header names the subscribed topics; a hundred custom topics must not push it past a message.
HEADER_TOPICS_CHARS = 1000
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
POOL_SIZE = 64

# -- rendering ----------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text for Telegram HTML: the three characters that start markup, and quotes for attributes."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def telegram_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def _zh(lang: str) -> bool:
    return lang != "en"


def render_telegram(digest: Digest, limit: int = MESSAGE_LIMIT) -> list[str]:
    """The digest as messages: a header, then whole entries packed up to `limit` characters.

    Messages are split only between entries; an entry that alone exceeds the limit is
    shortened field by field (summaries first) before escaping, so a cut never lands inside
    a tag or an entity.
    """
    return [text for text, _ in render_parts(digest, limit)]


def render_parts(
    digest: Digest, limit: int = MESSAGE_LIMIT, *, skip: Collection[str] = ()
) -> list[tuple[str, list[str]]]:
    """`render_telegram`'s messages with the paper ids each carries (none for the header).

    Entries whose paper is in `skip` are left out: a resumed send passes the papers already
    delivered, since the split points move when the language or an enrichment changed.
    """
    lang = digest.subscriber.lang
    entries = [e for e in digest.entries if e.paper.id not in skip]
    groups = _pack_groups([(_entry(e, lang, limit), e.paper.id) for e in entries], limit, "\n\n")
    return [(_header(digest, lang), []),
            *(("\n\n".join(t for t, _ in g), [pid for _, pid in g]) for g in groups)]


def pack(blocks: Iterable[str], limit: int = MESSAGE_LIMIT, sep: str = "\n\n") -> list[str]:
    """Whole blocks, in order, joined into as few messages of at most `limit` as they fit in.

    A block is never split, so each must already fit on its own.
    """
    return [sep.join(t for t, _ in g) for g in _pack_groups([(b, None) for b in blocks], limit, sep)]


T = TypeVar("T")


def _pack_groups(
    blocks: list[tuple[str, T]], limit: int, sep: str
) -> list[list[tuple[str, T]]]:
    """`pack`, keeping each block's tag (a paper id) beside it."""
    groups: list[list[tuple[str, T]]] = []
    current: list[tuple[str, T]] = []
    size = 0
    for block, tag in blocks:
        length = telegram_len(block)
        if current and size + telegram_len(sep) + length > limit:
            groups.append(current)
            current, size = [], 0
        size = size + telegram_len(sep) + length if current else length
        current.append((block, tag))
    if current:
        groups.append(current)
    return groups


def plain_messages(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """A command reply as plain-text messages, split between lines (a /list of 100 topics).

    A line longer than a message is clipped; half the limit in code points is safe in UTF-16.
    """
    return pack((clip(line, limit // 2) for line in text.split("\n")), limit, "\n")


def _header(digest: Digest, lang: str) -> str:
    sep = ", " if lang == "en" else "、"
    shown: list[str] = []
    for topic in digest.topics:
        name = escape(topic_name(topic, lang))
        if telegram_len(sep.join([*shown, name])) > HEADER_TOPICS_CHARS:
            break
        shown.append(name)
    names = sep.join(shown)
    if len(shown) < len(digest.topics):
        hidden = len(digest.topics) - len(shown)
        names += label(lang, f" 等 {hidden} 个主题", f" and {hidden} more topics")
    count = {"en": f"{digest.total} paper{'' if digest.total == 1 else 's'}",
             "zh": f"{digest.total} 篇"}.get(lang, f"{digest.total} 篇 / papers")
    lines = [f"<b>{label(lang, 'arXiv 每日学术速递', 'arXiv daily digest')}</b> · "
             f"{escape(digest.date)}", f"{names} · {count}"]
    if digest.more:
        lines.append(label(lang, f"另有 {digest.more} 篇达到阈值,本期未显示",
                           f"{digest.more} more matching papers not shown"))
    lines.append(label(lang, "/list 查看订阅 · /help 全部命令",
                       "/list your subscription · /help all commands"))
    return "\n".join(lines)


def _entry_fields(entry: DigestEntry, lang: str) -> dict[str, str]:
    """The entry's free text, the only parts that may be shortened to fit a message."""
    e = entry.enrichment
    fields = {"title": entry.paper.title}
    if _zh(lang) and e and e.title_zh:
        fields["title_zh"] = e.title_zh
    if e and e.institutions:
        fields["institutions"] = " · ".join(
            f"{i.name}({i.name_zh})" if _zh(lang) and i.name_zh and i.name_zh != i.name
            else i.name for i in e.institutions
        )
    for n, hit in enumerate(entry.hits):
        fields[f"hit{n}"] = f"{hit.topic_name} {percent(hit.score)}" + (
            f": {hit.reason}" if hit.reason else "")
    if _zh(lang) and e and e.summary_zh:
        fields["summary_zh"] = e.summary_zh
    if lang != "zh" and e and e.summary_en:
        fields["summary_en"] = e.summary_en
    return fields


def _format_entry(entry: DigestEntry, lang: str, f: dict[str, str]) -> str:
    p, a = entry.paper, entry.announcement
    abs_url, pdf_url = escape(p.abs_url), escape(p.pdf_url)
    lines = [
        f"<b>{percent(entry.best_score)}</b> · {escape(announce_label(a.announce_type, lang))} · "
        f"<code>{escape(p.id)}</code> · {escape(' '.join(p.categories))}",
        f'<b><a href="{abs_url}">{escape(f["title"])}</a></b>',
    ]
    if "title_zh" in f:
        lines.append(escape(f["title_zh"]))
    if "institutions" in f:
        lines.append(f"🏛 {escape(f['institutions'])}")
    hit_label = label(lang, "专题命中", "Topic match")
    lines += [f"🎯 <i>{hit_label}</i> {escape(v)}" for k, v in f.items() if k.startswith("hit")]
    if "summary_zh" in f:
        lines.append(f"💡 <i>AI总结</i> {escape(f['summary_zh'])}")
    if "summary_en" in f:
        lines.append(f"💡 <i>TL;DR</i> {escape(f['summary_en'])}")
    lines.append(f'<a href="{abs_url}">{label(lang, "摘要", "Abstract")}</a> · '
                 f'<a href="{pdf_url}">PDF</a>')
    return "\n".join(lines)


def _entry(entry: DigestEntry, lang: str, limit: int) -> str:
    fields = _entry_fields(entry, lang)
    text = _format_entry(entry, lang, fields)
    while telegram_len(text) > limit:
        longest = max(fields, key=lambda k: len(fields[k]))
        value = fields[longest]
        if len(value) <= 20:
            break  # the fixed parts alone exceed the limit; cannot happen with real limits
        # Escaping only lengthens text, so cutting `over` raw characters saves at least that.
        over = telegram_len(text) - limit
        keep = max(20, len(value) - max(over, len(value) // 4) - 1)
        fields[longest] = value[:keep].rstrip() + "…"
        text = _format_entry(entry, lang, fields)
    return text


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

    def __init__(self, overall_per_s: float = 28.0, chat_interval: float = 1.05,
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

    async def _wait_turn(self, chat_id: Any) -> None:
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
            if chat_id is not None and _POSTING.match(endpoint):
                await self._wait_turn(chat_id)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                if attempt == self.max_retries:
                    raise
                self.retried += 1
                wait = retry_seconds(exc)
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
        _token(settings), base_url=settings.telegram_api_url,
        base_file_url=_file_url(settings), rate_limiter=limiter or FloodLimiter(),
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


def _file_url(settings: Settings) -> str:
    head, sep, tail = settings.telegram_api_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep else settings.telegram_api_url


def _token(settings: Settings) -> str:
    if not settings.telegram_bot_token:
        raise UsageError("TELEGRAM_BOT_TOKEN is not set; get one from @BotFather")
    token = settings.telegram_bot_token.get()
    _REDACTOR.tokens.add(token)
    return token


class _TokenRedactor(logging.Filter):
    """Bot API URLs carry the token (`…/bot<token>/getMe`), and PTB and httpx log them."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.tokens:
            message = record.getMessage()
            redacted = message
            for token in self.tokens:
                redacted = redacted.replace(token, "***")
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


_REDACTOR = _TokenRedactor()
# Logger filters do not apply to child loggers: these are the loggers that print the URL.
for _name in ("httpx", "telegram.Bot", "telegram.ext.ExtBot"):
    logging.getLogger(_name).addFilter(_REDACTOR)


# -- the outbox's sender ------------------------------------------------------------------------


class TelegramSender:
    """Sends a digest's messages in order, recording each one, resuming after the last sent."""

    channel = "telegram"
    # Digests to different chats go out side by side; the limiter paces each chat.
    concurrency = 100

    def __init__(self, bot: ExtBot, *, owns_bot: bool = True) -> None:
        self.bot = bot
        self._owns_bot = owns_bot
        # Concurrent first sends must not each call getMe: one initialises, the rest wait.
        self._init_lock = asyncio.Lock()

    async def aclose(self) -> None:
        if self._owns_bot:
            await self.bot.shutdown()

    async def send(self, store: Store, delivery_row: Any, digest: Digest) -> None:
        async with self._init_lock:
            try:
                await initialize(self.bot)  # getMe; a no-op once done
            except (NetworkError, RetryAfter, DigestbotError) as exc:
                # Telegram unreachable or the token refused: the row waits for its retry.
                raise TransientError(f"telegram: {exc}") from None
        done = outbox.parts_done(store, delivery_row.id)
        parts = render_parts(digest, skip=outbox.papers_sent(store, delivery_row.id))
        if 0 in done:
            parts = parts[1:]  # the header went out before the restart
        subscriber = digest.subscriber
        chat_id: int | str = _chat_id(subscriber.address)
        # New parts are numbered after the recorded ones, which keep their rows.
        for seq, (text, paper_ids) in enumerate(parts, max(done, default=-1) + 1):
            message, chat_id = await self.post(store, subscriber.id, chat_id, text)
            outbox.mark_part(store, delivery_row.id, seq, str(message.message_id),
                               paper_ids=paper_ids)

    async def post(self, store: Store, subscriber_id: int, chat_id: int | str,
                    text: str) -> tuple[Message, int | str]:
        """One HTML message; a chat that became a supergroup is followed to its new id.

        Returns the message and the chat id it finally went to.
        """
        try:
            return await self.bot.send_message(
                chat_id, text, parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW,
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
            return await self.post(store, subscriber_id, new_id, text)
        except Forbidden as exc:
            raise PermanentError(f"telegram: {exc.message}", status="blocked") from None
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():
                raise PermanentError(f"telegram: {exc.message}", status="blocked") from None
            raise TransientError(f"telegram: {exc.message}") from None
        except (RetryAfter, NetworkError) as exc:
            # RetryAfter lands here only once the limiter's retries are used up.
            raise TransientError(f"telegram: {exc.message}") from None


def _chat_id(address: str) -> int | str:
    return int(address) if address.lstrip("-").isdigit() else address


def make_sender(settings: Settings) -> TelegramSender | None:
    """The outbox's Telegram sender (`digestbot send`), or None without TELEGRAM_BOT_TOKEN."""
    return TelegramSender(build_bot(settings)) if settings.telegram_bot_token else None


# -- the bot ------------------------------------------------------------------------------------

_GROUPS = (ChatType.GROUP, ChatType.SUPERGROUP)
_ADMINS = ("administrator", "creator")
_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]+))?(?:\s+(.*))?$", re.DOTALL)


def parse_command(text: str, bot_username: str, *, in_group: bool = False) -> tuple[str, str] | None:
    """("subscribe", "后训练") from "/subscribe@this_bot 后训练"; None when meant for another bot.

    In a group a bare command we do not know (`/roll`) is taken as another bot's, not answered
    with "unknown command"; addressed to us (`/roll@this_bot`) it is answered.
    """
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    name, addressee, arg = match.groups()
    if addressee and addressee.lower() != bot_username.lower():
        return None
    if in_group and not addressee and commands.resolve(name) is None:
        return None
    return name, arg or ""


@dataclass
class BotHandle:
    """A running bot; `await handle.stop()` stops polling and closes everything it opened."""

    app: Application
    store: Store
    sender: TelegramSender

    async def stop(self) -> None:
        if self.app.updater and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
        self.store.close()


class _Bot:
    """The handlers: updates in, `commands.execute`, replies out."""

    def __init__(self, settings: Settings, store: Store, sender: TelegramSender) -> None:
        self.settings = settings
        self.store = store
        self.sender = sender

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text or update.effective_chat is None:
            return
        parsed = parse_command(message.text, context.bot.username,
                               in_group=update.effective_chat.type in _GROUPS)
        if parsed is None:
            return
        name, arg = parsed
        user_id = message.from_user.id if message.from_user else None
        ctx = await self._context(context, update, name, user_id)
        reply = commands.execute(self.store, self.settings, ctx, name, arg)
        await self._show(context, update.effective_chat.id, reply)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or not query.data or update.effective_chat is None:
            return
        name, _, arg = query.data.partition(" ")
        ctx = await self._context(context, update, name, query.from_user.id)
        reply = commands.execute(self.store, self.settings, ctx, name, arg)
        await query.answer()
        if reply.edit and query.message is not None:
            await context.bot.edit_message_text(
                reply.text, chat_id=update.effective_chat.id,
                message_id=query.message.message_id, reply_markup=_keyboard(reply),
            )
        else:
            await self._show(context, update.effective_chat.id, reply)

    async def _context(self, context: ContextTypes.DEFAULT_TYPE, update: Update, name: str,
                       user_id: int | None) -> commands.CommandContext:
        chat = update.effective_chat
        assert chat is not None
        may_manage = True
        if chat.type in _GROUPS and commands.mutates(name):
            may_manage = await self._is_admin(context, update, chat.id, user_id)
        return commands.CommandContext(channel="telegram", address=str(chat.id),
                                       may_manage=may_manage)

    async def _is_admin(self, context: ContextTypes.DEFAULT_TYPE, update: Update, chat_id: int,
                        user_id: int | None) -> bool:
        message = update.effective_message
        # An anonymous admin writes as the group itself.
        if message is not None and message.sender_chat and message.sender_chat.id == chat_id:
            return True
        if user_id is None:
            return False
        member = await context.bot.get_chat_member(chat_id, user_id)
        return member.status in _ADMINS

    async def _show(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int,
                    reply: commands.Reply) -> None:
        *first, last = plain_messages(reply.text)
        for text in first:
            await context.bot.send_message(chat_id, text, link_preview_options=NO_PREVIEW)
        await context.bot.send_message(chat_id, last, reply_markup=_keyboard(reply),
                                       link_preview_options=NO_PREVIEW)
        if reply.delivery_id is not None:
            report = await outbox.deliver_row(self.store, self.sender, reply.delivery_id)
            if not report.sent:
                lang = commands.reply_lang(self.store, "telegram", str(chat_id))
                await context.bot.send_message(chat_id, label(
                    lang, "发送失败,稍后会自动重试。",
                    "Sending failed; it will be retried automatically."))
        if reply.digest is not None:
            for text in render_telegram(reply.digest):
                await self.sender.post(self.store, reply.digest.subscriber.id, chat_id, text)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram update failed: %s", context.error, exc_info=context.error)


def _keyboard(reply: commands.Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup([
        [InlineKeyboardButton(b.text[:64], callback_data=b.action) for b in row]
        for row in reply.buttons
    ])


def build_application(settings: Settings, store: Store,
                      limiter: BaseRateLimiter | None = None) -> tuple[Application, _Bot]:
    app = (
        ApplicationBuilder()
        .token(_token(settings))
        .base_url(settings.telegram_api_url)
        .base_file_url(_file_url(settings))
        .connection_pool_size(POOL_SIZE)
        .rate_limiter(limiter or FloodLimiter())
        .build()
    )
    sender = TelegramSender(app.bot, owns_bot=False)
    bot = _Bot(settings, store, sender)
    app.add_handler(MessageHandler(filters.COMMAND & filters.UpdateType.MESSAGE, bot.on_command))
    app.add_handler(CallbackQueryHandler(bot.on_button))
    app.add_error_handler(bot.on_error)
    return app, bot


async def start_bot(settings: Settings, store_path: str, *,
                    limiter: BaseRateLimiter | None = None,
                    poll_timeout: float = 10.0) -> BotHandle:
    """Start long polling inside the running loop (never `run_polling`, which owns the loop).

    The Store is opened here, on the loop's thread, where every handler runs.
    """
    store = Store(store_path)
    app, bot = build_application(settings, store, limiter)
    try:
        await initialize(app.bot)
        await app.initialize()
        # The menu in Chinese for everyone, in English for clients set to English.
        for language_code, lang in ((None, "zh"), ("en", "en")):
            await app.bot.set_my_commands([BotCommand(n, d) for n, d in commands.menu(lang)],
                                          language_code=language_code)
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=poll_timeout, drop_pending_updates=False)
    except BaseException:
        await app.shutdown()
        store.close()
        raise
    log.info("telegram bot @%s polling", app.bot.username)
    return BotHandle(app=app, store=store, sender=bot.sender)
