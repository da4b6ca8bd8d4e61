"""A chat's profile beyond topics: /follow, /unfollow, /must and /exclude (issue 16), and
/notify: whether the chat hears a one-line notice on a day without a digest (issue 18).

A followed author's new papers come whatever their topic scores; `must` keeps only papers
whose title or abstract mentions one of the words, `exclude` drops those that mention one.
Changes take effect in the chat's next digest.
"""

from __future__ import annotations

import unicodedata

from digestbot.commands.core import CommandContext, Reply, Run, ensure_subscriber, say
from digestbot.config import Settings
from digestbot.store import Store
from digestbot.subscribers import by_address, notices
from digestbot.subscribers import profile as profiles
from digestbot.subscribers.profile import KeywordKind

_CLEAR = {"all", "clear", "none", "全部", "清空"}


def _names(items: tuple[str, ...] | list[str]) -> str:
    return " · ".join(items)


def _current(store: Store, ctx: CommandContext) -> profiles.Profile:
    sub = by_address(store, ctx.channel, ctx.address)
    return profiles.get_profile(store, sub.id) if sub else profiles.Profile()


def cmd_follow(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    if not arg:
        follows = _current(store, ctx).follows
        if not follows:
            return Reply(say(lang, "还没有关注作者。例:/follow Yoshua Bengio",
                             "You follow no authors yet. Example: /follow Yoshua Bengio"))
        return Reply(say(lang, f"关注作者:{_names(follows)}", f"Followed authors: {_names(follows)}"))
    name = profiles.clean_name(arg)
    with store.db.atomic():
        sub = ensure_subscriber(store, ctx)
        added = profiles.follow(store, sub.id, [name])
    if not added:
        return Reply(say(lang, f"已在关注:{name}", f"Already following: {name}"))
    return Reply(say(
        lang,
        f"已关注:{name}。其新论文将出现在下一期摘要中(不论主题匹配度),并注明论文中的署名;"
        f"匹配错了可用 /unfollow {name} 取消,或加引号只匹配完整拼写:/follow \"{name}\"。",
        f"Following: {name}. Their new papers come in your next digest whatever the topic "
        f"scores, with the spelling the paper uses. If it matches the wrong person, /unfollow "
        f"{name}, or follow it in quotes to match that full spelling only: /follow \"{name}\"."))


def cmd_unfollow(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    if not arg:
        return Reply(say(lang, "用法:/unfollow 姓名 · /unfollow all", "Usage: /unfollow NAME · /unfollow all"))
    sub = by_address(store, ctx.channel, ctx.address)
    every = arg.strip().lower() in _CLEAR
    gone = profiles.unfollow(store, sub.id, None if every else [arg]) if sub else []
    if not gone:
        return Reply(say(lang, f"没有关注「{arg}」。发送 /follow 查看关注列表。",
                         f"You do not follow “{arg}”. Send /follow for the list."))
    return Reply(say(lang, f"已取消关注:{_names(gone)}", f"Unfollowed: {_names(gone)}"))


def _words(arg: str) -> list[str]:
    """Words split at commas (full-width ones too) and semicolons."""
    text = unicodedata.normalize("NFKC", arg).replace("、", ",").replace(";", ",")
    return [w.strip() for w in text.split(",") if w.strip()]


def _keywords(kind: KeywordKind, zh_name: str, en_name: str, example: str) -> Run:
    def run(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
        if not arg:
            words = getattr(_current(store, ctx), kind)
            usage = (f"用法:/{kind} 词1, 词2 · /{kind} -词 删除 · /{kind} clear 清空",
                     f"Usage: /{kind} word1, word2 · /{kind} -word removes · /{kind} clear")
            if not words:
                return Reply(say(lang, f"{zh_name}:(无)\n{usage[0]}\n例:{example}",
                                 f"{en_name}: (none)\n{usage[1]}\nExample: {example}"))
            return Reply(say(lang, f"{zh_name}:{_names(words)}\n{usage[0]}",
                             f"{en_name}: {_names(words)}\n{usage[1]}"))
        if arg.strip().lower() in _CLEAR:
            sub = by_address(store, ctx.channel, ctx.address)
            gone = profiles.remove_keywords(store, sub.id, kind, None) if sub else []
            return Reply(say(lang, f"已清空{zh_name}({len(gone)} 个)。",
                             f"Cleared {len(gone)} {en_name.lower()}."))
        items = _words(arg)
        drop = [w[1:].strip() for w in items if w.startswith("-")]
        add = [profiles.clean_keyword(w) for w in items if not w.startswith("-")]
        with store.db.atomic():
            sub = ensure_subscriber(store, ctx)
            if drop:
                profiles.remove_keywords(store, sub.id, kind, drop)
            profiles.add_keywords(store, sub.id, kind, add)
            words = getattr(profiles.get_profile(store, sub.id), kind)
        return Reply(say(lang, f"{zh_name}:{_names(words) or '(无)'}。下一期摘要起生效。",
                         f"{en_name}: {_names(words) or '(none)'}. From your next digest."))
    return run


cmd_must = _keywords("must", "必含关键词", "Must-have keywords", "/must diffusion, 扩散模型")
cmd_exclude = _keywords("exclude", "排除关键词", "Excluded keywords", "/exclude speech, 语音")


_ON, _OFF = {"on", "yes", "开", "开启"}, {"off", "no", "关", "关闭"}


def cmd_notify(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    if ctx.channel not in notices.CHANNELS:
        return Reply(say(lang, "提醒只在 Telegram 和 Slack 中提供。",
                         "Notices are sent in Telegram and Slack only."))
    choice = arg.strip().lower()
    if choice not in _ON | _OFF:
        sub = by_address(store, ctx.channel, ctx.address)
        on = bool(sub and notices.wants_notices(store, sub.id))
        return Reply(say(lang, f"假日提醒:{'开' if on else '关'}。用法:/notify on | off",
                         f"Holiday notices: {'on' if on else 'off'}. Usage: /notify on | off"))
    with store.db.atomic():
        sub = ensure_subscriber(store, ctx)
        notices.set_notify(store, sub.id, choice in _ON)
    if choice in _ON:
        return Reply(say(lang, "已开启:arXiv 假日无公告时,会在这里收到一行提醒。",
                         "On: on an arXiv holiday (no announcement) this chat gets a one-line "
                         "notice."))
    return Reply(say(lang, "已关闭假日提醒。", "Holiday notices off."))
