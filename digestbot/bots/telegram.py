"""The Telegram bot: python-telegram-bot polling for commands inside the caller's asyncio loop.

It only adapts updates to `digestbot.commands` and back; digests it is asked for go through
the outbox with `channels.telegram`'s sender, the same one `digestbot send` uses.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from telegram import BotCommand, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from digestbot import commands, outbox
from digestbot.channels.telegram import (
    NO_PREVIEW,
    POOL_SIZE,
    FloodLimiter,
    TelegramSender,
    bot_token,
    file_url,
    initialize,
    vote_markup,
)
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.render import controls
from digestbot.render.i18n import label
from digestbot.render.telegram import plain_messages, render_parts
from digestbot.store import Store, StoreThread
from digestbot.subscribers import feedback

log = logging.getLogger(__name__)

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
    writer: StoreThread

    async def stop(self) -> None:
        if self.app.updater and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
        self.writer.close()
        self.store.close()


class _Bot:
    """The handlers: updates in, `commands.execute`, replies out.

    Commands, votes and uploads write, and a write may wait for another process's
    transaction: they run on `writer`'s thread, so the loop (shared with the web app and the
    delivery ticks under `digestbot run`) never waits on SQLite. Reads stay on the loop.
    """

    def __init__(self, settings: Settings, store: Store, sender: TelegramSender,
                 writer: StoreThread) -> None:
        self.settings = settings
        self.store = store
        self.sender = sender
        self.writer = writer

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
        reply = await self.writer.run(commands.execute, self.settings, ctx, name, arg)
        await self._show(context, update.effective_chat.id, reply)

    async def on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A BibTeX or RIS file becomes the chat's library; in a group only when captioned
        /library (members share files there for other reasons)."""
        message, chat = update.effective_message, update.effective_chat
        if message is None or message.document is None or chat is None:
            return
        caption = parse_command(message.caption or "", context.bot.username)
        named = commands.resolve(caption[0]) if caption else None
        if chat.type in _GROUPS and (named is None or named.name != "library"):
            return
        user_id = message.from_user.id if message.from_user else None
        ctx = await self._context(context, update, "library", user_id)
        doc = message.document
        if doc.file_size and doc.file_size > commands.library.MAX_UPLOAD_BYTES:
            reply = commands.library.refuse_size(self.store, ctx, doc.file_size)
        elif (refused := commands.library.may_upload(self.store, ctx)) is not None:
            reply = refused
        else:
            try:
                file = await context.bot.get_file(doc.file_id)
                data = bytes(await file.download_as_bytearray())
            except TelegramError as exc:
                reply = commands.library.failed_download(self.store, ctx, exc)
            else:
                name = doc.file_name or "file"
                parsed = await asyncio.to_thread(commands.library.parse, data, name)
                reply = await self.writer.run(commands.library.upload, ctx, parsed, name)
        await self._show(context, chat.id, reply)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or not query.data or update.effective_chat is None:
            return
        tapped = controls.parse(query.data)
        if tapped is not None:
            await self.on_vote(query, update.effective_chat.id, *tapped)
            return
        name, _, arg = query.data.partition(" ")
        ctx = await self._context(context, update, name, query.from_user.id)
        reply = await self.writer.run(commands.execute, self.settings, ctx, name, arg)
        await query.answer()
        if reply.edit and query.message is not None:
            await context.bot.edit_message_text(
                reply.text, chat_id=update.effective_chat.id,
                message_id=query.message.message_id, reply_markup=_keyboard(reply),
            )
        else:
            await self._show(context, update.effective_chat.id, reply)

    async def on_vote(self, query: CallbackQuery, chat_id: int, value: int, paper_id: str) -> None:
        """👍/👎 under a digest message: record it, answer the callback quietly and show the
        vote on that message's keyboard (edited in place: no new message)."""
        ctx = commands.CommandContext(channel="telegram", address=str(chat_id))
        try:
            sub_id = await self.writer.run(commands.vote, ctx, value, paper_id)
        except UsageError as exc:
            await query.answer(commands.in_lang(
                exc, commands.reply_lang(self.store, "telegram", str(chat_id)))[:200])
            return
        await query.answer()
        message = query.message
        markup = message.reply_markup if message is not None else None
        # The message's papers, from its own keyboard: one row per paper.
        ids = [parsed[1] for row in (markup.inline_keyboard if markup else ())
               if row and (parsed := controls.parse(row[0].callback_data or "")) is not None]
        ids = ids or [paper_id]
        fresh = vote_markup(ids, feedback.votes_on(self.store, sub_id, ids))
        # Telegram refuses an edit that changes nothing ("message is not modified"): a second
        # tap on the same side leaves the keyboard as it is.
        if markup is None or fresh is None or fresh.to_dict() != markup.to_dict():
            await query.edit_message_reply_markup(fresh)

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
            for text, ids in render_parts(reply.digest):
                await self.sender.post(self.store, reply.digest.subscriber.id, chat_id, text,
                                       vote_markup(ids, feedback.votes_on(
                                           self.store, reply.digest.subscriber.id, ids)))

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
        .token(bot_token(settings))
        .base_url(settings.telegram_api_url)
        .base_file_url(file_url(settings))
        .connection_pool_size(POOL_SIZE)
        .rate_limiter(limiter or FloodLimiter())
        .build()
    )
    sender = TelegramSender(app.bot, owns_bot=False, public_url=settings.public_url)
    bot = _Bot(settings, store, sender, StoreThread(store.path, "digestbot-telegram-store"))
    app.add_handler(MessageHandler(filters.COMMAND & filters.UpdateType.MESSAGE, bot.on_command))
    app.add_handler(MessageHandler(filters.Document.ALL & filters.UpdateType.MESSAGE,
                                   bot.on_document))
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
        bot.writer.close()
        store.close()
        raise
    log.info("telegram bot @%s polling", app.bot.username)
    return BotHandle(app=app, store=store, sender=bot.sender, writer=bot.writer)
