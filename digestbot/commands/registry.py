"""Every command by name, and the dispatch: resolve, mutates, menu, execute — and /help,
which lists the registry and so lives beside it (the command modules never import it back).
"""

from __future__ import annotations

from digestbot.commands.core import (
    Command,
    CommandContext,
    Reply,
    in_lang,
    reply_lang,
    say,
)
from digestbot.commands.library import cmd_library
from digestbot.commands.preferences import (
    cmd_digest,
    cmd_lang,
    cmd_list,
    cmd_pause,
    cmd_resume,
    cmd_time,
    cmd_tz,
    cmd_weekly,
)
from digestbot.commands.profile import (
    cmd_exclude,
    cmd_follow,
    cmd_forget,
    cmd_learned,
    cmd_must,
    cmd_notify,
    cmd_unfollow,
)
from digestbot.commands.subscriptions import (
    cmd_custom,
    cmd_start,
    cmd_subscribe,
    cmd_threshold,
    cmd_topics,
    cmd_unsubscribe,
)
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.render.i18n import label
from digestbot.store import Store

# Longer arguments are refused before any lookup: nobody types 500 characters of topic names,
# and a flood of text must not reach the fuzzy matcher or the custom-topic table.
MAX_ARG_CHARS = 300

# Who may change a shared chat's settings, as each adapter enforces it (`may_manage`, or the
# adapter's own refusal): /help must not promise one channel's rule on another.
_MANAGE_RULES = {
    "telegram": ("群组中只有管理员可以修改设置;任何人都可以用 /list 查看。",
                 "In groups only administrators can change settings; anyone can read /list."),
    "slack": ("频道中只有该频道的正式成员(非访客)可以修改设置;任何人都可以用 /list 查看。",
              "In a channel only its full members (not guests) can change settings; anyone can "
              "read /list."),
}


def cmd_help(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    lines = [f"/{c.name} — {label(lang, c.zh, c.en)}\n    {c.example}" for c in COMMANDS if c.listed]
    head = label(lang, "命令:", "Commands:")
    rule = _MANAGE_RULES.get(ctx.channel)
    return Reply("\n".join([head, *lines, *(["", say(lang, *rule)] if rule else [])]))


COMMANDS: tuple[Command, ...] = (
    Command("start", (), False, "开始使用", "get started", "/start", cmd_start),
    Command("help", ("h",), False, "全部命令", "every command", "/help", cmd_help),
    Command("topics", ("catalogue", "catalog"), False, "浏览主题并订阅", "browse topics",
            "/topics", cmd_topics),
    Command("subscribe", ("sub", "add"), True, "订阅主题(可带阈值)",
            "subscribe to topics (optional threshold)", "/subscribe 后训练 80, 智能体",
            cmd_subscribe),
    Command("unsubscribe", ("unsub", "remove"), True, "退订主题", "unsubscribe",
            "/unsubscribe 后训练 · /unsubscribe all", cmd_unsubscribe),
    Command("list", ("settings", "status", "me"), False, "查看订阅与设置",
            "my topics and settings", "/list", cmd_list),
    Command("threshold", ("thr",), True, "修改匹配度阈值", "change a threshold",
            "/threshold 后训练 75", cmd_threshold),
    Command("follow", (), True, "关注作者(新论文必推)", "follow an author (new papers always come)",
            "/follow Yoshua Bengio", cmd_follow),
    Command("unfollow", (), True, "取消关注作者", "unfollow an author",
            "/unfollow Yoshua Bengio · /unfollow all", cmd_unfollow),
    Command("must", ("only",), True, "必含关键词(只推提到这些词的论文)",
            "must-have keywords (only papers that mention one)", "/must diffusion, 扩散模型",
            cmd_must),
    Command("exclude", ("never",), True, "排除关键词(不推提到这些词的论文)",
            "excluded keywords (never papers that mention one)", "/exclude speech, 语音",
            cmd_exclude),
    Command("learned", ("taste",), False, "从你的 👍/👎 学到了什么", "what your 👍/👎 taught",
            "/learned", cmd_learned),
    Command("forget", (), True, "删除全部 👍/👎,恢复默认排序",
            "delete your 👍/👎 and reset the ranking", "/forget", cmd_forget),
    Command("library", ("zotero", "bib"), True, "我的文库(发送 .bib/.ris 文件导入)",
            "my paper library (send a .bib/.ris file to import)",
            "/library · /library 70 · /library clear", cmd_library),
    Command("time", ("at",), True, "每日推送时间", "daily delivery time", "/time 08:30", cmd_time),
    Command("tz", ("timezone",), True, "时区", "time zone", "/tz Asia/Shanghai", cmd_tz),
    Command("weekly", ("cadence",), True, "每周精选(周一推送,不再每天)",
            "weekly: the week's best on Mondays instead of daily", "/weekly on · /weekly off",
            cmd_weekly),
    Command("lang", ("language",), True, "语言 zh/en/both", "language zh/en/both", "/lang both",
            cmd_lang),
    Command("digest", ("today", "latest"), True, "立即发送最新摘要", "the latest digest now",
            "/digest", cmd_digest),
    Command("notify", (), True, "假日提醒 on/off", "holiday notices on/off", "/notify on",
            cmd_notify),
    Command("pause", ("stop",), True, "暂停推送", "pause deliveries", "/pause", cmd_pause),
    Command("resume", (), True, "恢复推送", "resume deliveries", "/resume", cmd_resume),
    Command("custom", (), True, "创建自定义主题", "create a custom topic", "", cmd_custom,
            listed=False),
)


def resolve(name: str) -> Command | None:
    """The command called `name` (or one of its aliases), case-insensitively."""
    name = name.lower()
    for command in COMMANDS:
        if name == command.name or name in command.aliases:
            return command
    return None


def mutates(name: str) -> bool:
    command = resolve(name)
    return bool(command and command.mutates)


def menu(lang: str = "zh") -> list[tuple[str, str]]:
    """(command, description) pairs for a chat's command menu."""
    return [(c.name, label(lang, c.zh, c.en)[:256]) for c in COMMANDS if c.listed]


def execute(store: Store, settings: Settings, ctx: CommandContext, name: str,
            arg_text: str) -> Reply:
    """Run one command and return what to show; bad input is a reply, never an exception."""
    command = resolve(name)
    lang = reply_lang(store, ctx.channel, ctx.address)
    if command is None:
        return Reply(say(lang, f"未知命令 /{name}。发送 /help 查看全部命令。",
                         f"Unknown command /{name}. Send /help for the list."))
    if command.mutates and not ctx.may_manage:
        return Reply(say(lang, "只有群管理员可以修改本群的订阅;任何人都可以用 /list 查看。",
                         "Only the chat's administrators can change its subscription; "
                         "anyone can read it with /list."))
    arg_text = arg_text.strip()
    if len(arg_text) > MAX_ARG_CHARS:
        return Reply(say(lang, f"参数太长(最多 {MAX_ARG_CHARS} 个字符,收到 {len(arg_text)})。",
                         f"That is too long (at most {MAX_ARG_CHARS} characters, got "
                         f"{len(arg_text)})."))
    try:
        return command.run(store, settings, ctx, arg_text, lang)
    except UsageError as exc:
        return Reply(in_lang(exc, lang))
