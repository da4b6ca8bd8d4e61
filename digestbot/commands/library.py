"""A chat's paper library (issue 16): /library, and a BibTeX or RIS file sent to the bot.

The adapters download the file (Telegram getFile, Slack files.info + url_private) after
checking its declared size against `MAX_UPLOAD_BYTES`, then hand the bytes to `upload`.
A Zotero library is linked from the CLI or the preferences page, where a key is not left in
a chat's history, and refreshed there: a fetch takes seconds, too long for a chat handler.
"""

from __future__ import annotations

from digestbot.commands.core import (
    CommandContext,
    Reply,
    ensure_subscriber,
    in_lang,
    reply_lang,
    say,
)
from digestbot.config import Settings
from digestbot.errors import DigestbotError, UsageError
from digestbot.store import Store
from digestbot.subscribers import by_address, library
from digestbot.subscribers.library_files import MAX_BYTES, Item, parse_library, too_big

MAX_UPLOAD_BYTES = MAX_BYTES

_USAGE = ("发送 .bib 或 .ris 文件即可导入(群里请在文件说明中写 /library)。"
          "/library 70 修改阈值 · /library clear 删除",
          "Send a .bib or .ris file to import it (in a group, caption it /library). "
          "/library 70 sets the threshold · /library clear deletes it")


def _imported(info: library.LibraryInfo, lang: str) -> Reply:
    return Reply(say(
        lang,
        f"{library.describe(info, 'zh')}。从下一期摘要起,与文库相近的新论文会注明"
        "「与你的文库相近」及最接近的文库论文。",
        f"{library.describe(info, 'en')}. From your next digest, new papers close to it come "
        "marked “close to your library” with the nearest paper of yours."))


def cmd_library(store: Store, settings: Settings, ctx: CommandContext, arg: str,
                lang: str) -> Reply:
    sub = by_address(store, ctx.channel, ctx.address)
    info = library.get_library(store, sub.id) if sub else None
    word = arg.strip().lower().removeprefix("threshold").strip()
    if not word:
        return Reply(say(lang, f"{library.describe(info, 'zh')}\n{_USAGE[0]}",
                         f"{library.describe(info, 'en')}\n{_USAGE[1]}"))
    if info is None or sub is None:
        return Reply(say(lang, f"还没有文库。{_USAGE[0]}", f"No library yet. {_USAGE[1]}"))
    if word in ("clear", "delete", "删除", "清空"):
        library.delete_library(store, sub.id)
        return Reply(say(lang, "文库已删除。", "Library deleted."))
    if word in ("refresh", "刷新"):
        # A Zotero fetch takes seconds: not on a chat handler's loop (CLI or the web page).
        return Reply(say(lang, "刷新 Zotero 文库请用偏好设置页面,或重新发送文件。",
                         "Refresh a Zotero library on the preferences page, or send the file "
                         "again."))
    library.set_threshold(store, sub.id, word)
    return Reply(say(lang, library.describe(library.get_library(store, sub.id), "zh"),
                     library.describe(library.get_library(store, sub.id), "en")))


def refuse_size(store: Store, ctx: CommandContext, size: int) -> Reply:
    """The answer to a file too large to download at all."""
    return Reply(in_lang(too_big(size), reply_lang(store, ctx.channel, ctx.address)))


Parsed = tuple[str, list[Item]] | UsageError


def parse(data: bytes, name: str) -> Parsed:
    """A file's library entries, or why it is not one. Touches no store, so an adapter runs it
    on a worker thread: bibtexparser takes ~25 ms an entry with its abstract."""
    try:
        return parse_library(data, name)
    except UsageError as exc:
        return exc


def may_upload(store: Store, ctx: CommandContext) -> Reply | None:
    """None when this person may change the chat's library, else the refusal."""
    if ctx.may_manage:
        return None
    return Reply(say(reply_lang(store, ctx.channel, ctx.address),
                     "只有群管理员可以修改本群的文库。",
                     "Only the chat's administrators can change its library."))


def upload(store: Store, ctx: CommandContext, parsed: Parsed, name: str) -> Reply:
    """Make a parsed file the chat's library; a bad file is a reply and changes nothing."""
    lang = reply_lang(store, ctx.channel, ctx.address)
    if (refused := may_upload(store, ctx)) is not None:
        return refused
    if isinstance(parsed, UsageError):
        return Reply(in_lang(parsed, lang))
    with store.db.atomic():
        sub = ensure_subscriber(store, ctx)
        info = library.replace_library(store, sub.id, parsed[0], name, parsed[1])
    return _imported(info, lang)


def failed_download(store: Store, ctx: CommandContext, exc: Exception) -> Reply:
    """The answer when the chat service would not hand the file over."""
    lang = reply_lang(store, ctx.channel, ctx.address)
    detail = type(exc).__name__ if not isinstance(exc, DigestbotError) else str(exc)
    return Reply(say(lang, f"无法下载这个文件({detail}),文库保持不变;请稍后再发一次。",
                     f"Could not download the file ({detail}); your library is unchanged. "
                     "Please send it again later."))
