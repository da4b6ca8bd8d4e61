"""Chat commands (`/subscribe 后训练`, `/list`, `/tz Europe/Berlin`…) for every chat channel.

Telegram and Slack only adapt: they turn an incoming message into (name, argument text) and a
`CommandContext`, call `execute`, and show the `Reply` — plain text (the adapter escapes it
for its markup) plus optional buttons whose `action` is again a command line, so a tap runs
through the same code as typing. Nothing here knows a chat API.

Every command validates all of its input before the first write and writes in one
transaction, so a bad argument changes nothing. Replies follow the subscriber's language
(zh by default, en, or both); a validation message is shown in English alone to `en` readers
and as its "中文 / English" line to the others.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from digestbot import digest as digests
from digestbot import outbox, subscribers, topics
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.models import Digest, Subscriber, Topic
from digestbot.render.i18n import label
from digestbot.sources.papers import latest_announcement_date
from digestbot.store import Store

# Longer arguments are refused before any lookup: nobody types 500 characters of topic names,
# and a flood of text must not reach the fuzzy matcher or the custom-topic table.
MAX_ARG_CHARS = 300
TOPICS_PER_PAGE = 10
# Topic lists are separated by commas (ASCII or Chinese), 、 or semicolons.
_ITEM_SPLIT = re.compile(r"[,，、;；\n]+")
# A trailing token that is meant as a threshold, valid or not ("80", "80%", "200", "-5", "7.5").
_NUMBERISH = re.compile(r"-?\d+(?:\.\d+)?%?")
_PENDING_CUSTOM = "pending_custom:"


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


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    mutates: bool
    zh: str
    en: str
    example: str
    run: Callable[[Store, Settings, CommandContext, str, str], Reply]
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


def _in_lang(exc: UsageError, lang: str) -> str:
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


def _topic_label(topic: Topic, lang: str) -> str:
    if topic.custom or lang == "zh":
        return topic.name_zh
    if lang == "en":
        return topic.name_en
    return f"{topic.name_zh} ({topic.name_en})"


def _topic(store: Store, slug: str) -> Topic | None:
    try:
        return topics.get_topic(slug, store)
    except KeyError:
        return None


# -- dispatch -----------------------------------------------------------------------------------


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
        return Reply(_in_lang(exc, lang))


def _ensure_subscriber(store: Store, ctx: CommandContext) -> Subscriber:
    """The chat's subscriber, created as `pending` (no topics yet) on first contact."""
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    if sub is None:
        sub = subscribers.add_or_update(store, channel=ctx.channel, address=ctx.address,
                                        topics=[], status="pending")
    return sub


def _not_subscribed(lang: str) -> Reply:
    return Reply(say(lang, "你还没有订阅任何主题。试试 /subscribe 后训练,或用 /topics 浏览。",
                     "You have no subscriptions yet. Try /subscribe post-training, or browse "
                     "/topics."))


def _not_yours(name: str, lang: str) -> Reply:
    return Reply(say(lang, f"你没有订阅「{name}」。/list 查看当前订阅。",
                     f"You are not subscribed to “{name}”. /list shows what you are."))


# -- /start /help -------------------------------------------------------------------------------


def cmd_start(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    _ensure_subscriber(store, ctx)
    return Reply(say(
        lang,
        "欢迎使用 arXiv 每日学术速递!\n"
        "每个 arXiv 公告日,我会把与你订阅主题相关的新论文(中文标题、AI 总结、发表机构、"
        "匹配度)推送到这里。\n\n"
        "试试:\n/subscribe 后训练\n/subscribe 智能体 80\n/topics\n\n/help 查看全部命令。",
        "Welcome to the arXiv daily digest!\n"
        "On every arXiv announcement day I send the new papers that match your topics here "
        "(Chinese title, AI summary, institutions, match score).\n\n"
        "Try:\n/subscribe post-training\n/subscribe agents 80\n/topics\n\n/help lists every "
        "command.",
    ))


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


# -- /topics ------------------------------------------------------------------------------------


def _catalogue_topics() -> list[Topic]:
    return list(topics.load_catalogue().topics.values())


def cmd_topics(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    """One page of the catalogue as a tree, with a subscribe button per topic."""
    catalogue = _catalogue_topics()
    pages = max(1, -(-len(catalogue) // TOPICS_PER_PAGE))
    page = int(arg) if arg.isdigit() else 1
    page = min(max(page, 1), pages)
    shown = catalogue[(page - 1) * TOPICS_PER_PAGE : page * TOPICS_PER_PAGE]
    lines = [label(lang, f"主题目录({page}/{pages}),点按钮订阅:",
                   f"Topic catalogue ({page}/{pages}); tap to subscribe:")]
    area = group = None
    for topic in shown:
        if topic.area != area:
            area = topic.area
            lines.append(f"\n{area}")
        if topic.group != group:
            group = topic.group
            lines.append(f"  {group}")
        lines.append(f"    • {_topic_label(topic, lang)}")
    buttons = [Button(_topic_label(t, lang), f"subscribe {t.slug}") for t in shown]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    nav = []
    if page > 1:
        nav.append(Button("◀", f"topics {page - 1}"))
    if page < pages:
        nav.append(Button("▶", f"topics {page + 1}"))
    if nav:
        rows.append(nav)
    return Reply("\n".join(lines), rows, edit=arg.isdigit())


# -- /subscribe /unsubscribe --------------------------------------------------------------------


def _split_items(arg: str) -> list[tuple[str, int | None]]:
    """"后训练 80, 智能体" → [("后训练", 80), ("智能体", None)]; a bad number is an error."""
    items: list[tuple[str, int | None]] = []
    for part in _ITEM_SPLIT.split(arg):
        part = part.strip()
        if not part:
            continue
        name, _, last = part.rpartition(" ")
        if name.strip() and _NUMBERISH.fullmatch(last):
            items.append((name.strip(), subscribers.validate_threshold(last)))
        else:
            items.append((part, None))
    return items


def _custom_key(text: str) -> str:
    return hashlib.sha1(topics.normalize(text).encode()).hexdigest()[:12]


def _suggest_reply(store: Store, name: str, threshold: int | None, lang: str) -> Reply:
    """Closest topics as buttons, plus one to make the text a custom topic."""
    if len(" ".join(name.split())) > topics.CUSTOM_MAX_CHARS:
        raise UsageError(zh=f"主题最多 {topics.CUSTOM_MAX_CHARS} 个字符",
                         en=f"a topic is at most {topics.CUSTOM_MAX_CHARS} characters")
    suffix = f" {threshold}" if threshold is not None else ""
    rows = [[Button(_topic_label(t, lang), f"subscribe {t.slug}{suffix}")]
            for t in topics.suggest(name)]
    # The text can be longer than a button's 64-byte payload: park it under a short key.
    key = _custom_key(name)
    store.set_meta(_PENDING_CUSTOM + key, " ".join(name.split()))
    rows.append([Button(label(lang, f"创建自定义主题「{name}」", f"Create custom topic “{name}”"),
                        f"custom {key}{suffix}")])
    text = say(lang, f"没有找到主题「{name}」。你是不是想订阅下面这些?也可以把它作为自定义主题。",
               f"No topic called “{name}”. Did you mean one of these? You can also make it a "
               "custom topic.")
    return Reply(text, rows)


def _when(sub: Subscriber, now: datetime) -> str:
    """The next local send time, e.g. "2026-08-13 08:30 Asia/Shanghai"."""
    zone = ZoneInfo(sub.tz)
    local = now.astimezone(zone)
    hour, minute = (int(x) for x in sub.send_at.split(":"))
    nxt = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if nxt <= local:
        nxt += timedelta(days=1)
    return f"{nxt:%Y-%m-%d %H:%M} {sub.tz}"


def _subscribe(store: Store, ctx: CommandContext, chosen: list[tuple[Topic, int]],
               lang: str) -> Reply:
    existing = subscribers.by_address(store, ctx.channel, ctx.address)
    # Subscribing again after a pause keeps the pause: /resume is the explicit way back.
    status = "paused" if existing and existing.status == "paused" else "active"
    with store.db.atomic():
        for topic, threshold in chosen:
            sub = subscribers.add_or_update(store, channel=ctx.channel, address=ctx.address,
                                            topics=[topic.slug], threshold=threshold,
                                            status=status)
    names_zh = "、".join(f"{_topic_label(t, 'zh')}(≥{thr}%)" for t, thr in chosen)
    names_en = ", ".join(f"{_topic_label(t, 'en')} (≥{thr}%)" for t, thr in chosen)
    when = _when(sub, ctx.now or datetime.now(UTC))
    text = say(lang,
               f"已订阅:{names_zh}。\n有匹配的新论文时,下一期将于 {when} 送达。"
               "/list 查看订阅,/time /tz 修改时间。",
               f"Subscribed: {names_en}.\nThe next digest arrives {when} if there are matching "
               "new papers. /list shows your subscription; /time and /tz change when.")
    if status == "paused":
        text += "\n" + say(lang, "推送目前已暂停,发送 /resume 恢复。",
                           "Deliveries are paused; send /resume to restart them.")
    return Reply(text)


def cmd_subscribe(store: Store, settings: Settings, ctx: CommandContext, arg: str,
                  lang: str) -> Reply:
    if not arg:
        return Reply(say(lang, "请告诉我要订阅的主题,例如:\n/subscribe 后训练\n"
                               "/subscribe 后训练 80(只要匹配度 ≥ 80%)\n/subscribe 后训练, 智能体\n"
                               "/topics 浏览全部主题。",
                         "Which topic? For example:\n/subscribe post-training\n"
                         "/subscribe post-training 80 (only matches ≥ 80%)\n"
                         "/subscribe post-training, agents\nBrowse them all with /topics."))
    chosen: list[tuple[Topic, int]] = []
    for name, threshold in _split_items(arg):
        topic = topics.lookup(name, store)
        if topic is None:
            return _suggest_reply(store, name, threshold, lang)
        chosen.append((topic, subscribers.DEFAULT_THRESHOLD if threshold is None else threshold))
    return _subscribe(store, ctx, chosen, lang)


def cmd_custom(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    """The "create custom topic" button: the parked text becomes a topic and is subscribed."""
    key, _, raw_threshold = arg.partition(" ")
    text = store.get_meta(_PENDING_CUSTOM + key)
    if text is None:
        return Reply(say(lang, "这个按钮已失效,请重新发送 /subscribe <主题>。",
                         "That button has expired; send /subscribe <topic> again."))
    threshold = (subscribers.validate_threshold(raw_threshold) if raw_threshold
                 else subscribers.DEFAULT_THRESHOLD)
    with store.db.atomic():
        topic = topics.custom_topic(store, text)
        reply = _subscribe(store, ctx, [(topic, threshold)], lang)
    return reply


def cmd_unsubscribe(store: Store, settings: Settings, ctx: CommandContext, arg: str,
                    lang: str) -> Reply:
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    current = {s.topic for s in subscribers.subscriptions(store, sub.id)} if sub else set()
    if not arg:
        return Reply(say(lang, "要退订哪个主题?例如 /unsubscribe 后训练,或 /unsubscribe all 全部退订。",
                         "Which topic? For example /unsubscribe post-training, or "
                         "/unsubscribe all."))
    if sub is None or not current:
        return _not_subscribed(lang)
    if arg.lower() in ("all", "全部", "所有"):
        with store.db.atomic():
            subscribers.remove_subscription(store, sub.id, None)
            subscribers.set_status(store, sub.id, "unsubscribed", "unsubscribed from chat")
        return Reply(say(lang, "已退订全部主题,不会再推送。随时可以 /subscribe 重新订阅。",
                         "Unsubscribed from everything; no more digests. /subscribe any time "
                         "to come back."))
    removed: list[Topic] = []
    for name, _ in _split_items(arg):
        topic = topics.lookup(name, store)
        if topic is None or topic.slug not in current:
            return _not_yours(name, lang)
        removed.append(topic)
    left = current - {t.slug for t in removed}
    with store.db.atomic():
        for topic in removed:
            subscribers.remove_subscription(store, sub.id, topic.slug)
        if not left:
            subscribers.set_status(store, sub.id, "unsubscribed", "unsubscribed from chat")
    names = [_topic_label(t, lang) for t in removed]
    text = say(lang, f"已退订:{'、'.join(names)}。", f"Unsubscribed: {', '.join(names)}.")
    if not left:
        text += "\n" + say(lang, "你已没有订阅的主题,不会再推送。", "No topics left; no more digests.")
    return Reply(text)


# -- /list --------------------------------------------------------------------------------------

_STATUS = {
    "pending": ("未订阅主题", "no topics yet"),
    "active": ("推送中", "active"),
    "paused": ("已暂停", "paused"),
    "unsubscribed": ("已退订", "unsubscribed"),
    "bounced": ("投递失败", "bounced"),
    "blocked": ("无法发送", "blocked"),
}
_LANG_NAMES = {"zh": ("中文", "Chinese"), "en": ("英文", "English"), "both": ("中英双语", "bilingual")}


def cmd_list(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    if sub is None:
        return _not_subscribed(lang)
    subs = subscribers.subscriptions(store, sub.id)
    zh_status, en_status = _STATUS.get(sub.status, (sub.status, sub.status))
    zh_lang, en_lang = _LANG_NAMES.get(sub.lang, (sub.lang, sub.lang))
    rows_zh, rows_en = [], []
    for s in subs:
        topic = _topic(store, s.topic)
        rows_zh.append(f"• {_topic_label(topic, 'zh') if topic else s.topic}  ≥{s.threshold}%")
        rows_en.append(f"• {_topic_label(topic, 'en') if topic else s.topic}  ≥{s.threshold}%")
    none = ("(无)", "(none)")
    zh = "\n".join([
        "订阅主题:", *(rows_zh or [none[0]]),
        f"推送时间:{sub.send_at}({sub.tz})", f"语言:{zh_lang}", f"每期最多:{sub.max_papers} 篇",
        f"状态:{zh_status}",
    ])
    en = "\n".join([
        "Topics:", *(rows_en or [none[1]]),
        f"Delivery: {sub.send_at} ({sub.tz})", f"Language: {en_lang}",
        f"At most {sub.max_papers} papers per digest", f"Status: {en_status}",
    ])
    return Reply(say(lang, zh, en))


# -- /threshold /time /tz /lang -----------------------------------------------------------------


def cmd_threshold(store: Store, settings: Settings, ctx: CommandContext, arg: str,
                  lang: str) -> Reply:
    name, _, raw = arg.rpartition(" ")
    if not raw:
        return Reply(say(lang, "用法:/threshold 后训练 75(0–100,只推送匹配度不低于它的论文)",
                         "Usage: /threshold post-training 75 (0–100: only papers matching at "
                         "least that much)"))
    threshold = subscribers.validate_threshold(raw)
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    current = {s.topic for s in subscribers.subscriptions(store, sub.id)} if sub else set()
    if sub is None or not current:
        return _not_subscribed(lang)
    if name.strip():
        topic = topics.lookup(name, store)
        if topic is None or topic.slug not in current:
            return _not_yours(name.strip(), lang)
        chosen = [topic]
    else:
        # "/threshold 75" applies to every subscribed topic.
        chosen = [t for t in (_topic(store, slug) for slug in sorted(current)) if t]
    with store.db.atomic():
        for topic in chosen:
            subscribers.set_subscription(store, sub.id, topic.slug, threshold)
    names = [_topic_label(t, lang) for t in chosen]
    return Reply(say(lang, f"阈值已改为 {threshold}%:{'、'.join(names)}。",
                     f"Threshold set to {threshold}% for {', '.join(names)}."))


def _setting(field_name: str, validate: Callable[[str], str], usage_zh: str, usage_en: str,
             done: Callable[[Subscriber, str], str]) -> Callable[..., Reply]:
    def run(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
        if not arg:
            return Reply(say(lang, usage_zh, usage_en))
        value = validate(arg)
        with store.db.atomic():
            sub = _ensure_subscriber(store, ctx)
            sub = subscribers.update_settings(store, sub.id, **{field_name: value})
        return Reply(done(sub, sub.lang))

    return run


cmd_time = _setting(
    "send_at", subscribers.validate_time,
    "用法:/time 08:30(当地时间,24 小时制)", "Usage: /time 08:30 (local time, 24-hour)",
    lambda sub, lang: say(lang, f"推送时间已改为每天 {sub.send_at}({sub.tz})。",
                          f"Digests now arrive at {sub.send_at} ({sub.tz})."),
)
cmd_tz = _setting(
    "tz", subscribers.validate_tz,
    "用法:/tz Asia/Shanghai(IANA 时区名)", "Usage: /tz Europe/Berlin (an IANA time zone)",
    lambda sub, lang: say(lang, f"时区已改为 {sub.tz};推送时间 {sub.send_at}。",
                          f"Time zone set to {sub.tz}; digests at {sub.send_at}."),
)
cmd_lang = _setting(
    "lang", subscribers.validate_lang,
    "用法:/lang zh | en | both", "Usage: /lang zh | en | both",
    lambda sub, lang: say(lang, f"语言已改为{_LANG_NAMES[sub.lang][0]}。",
                          f"Language set to {_LANG_NAMES[sub.lang][1]}."),
)


# -- /pause /resume -----------------------------------------------------------------------------


def cmd_pause(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    if sub is None or sub.status != "active":
        return Reply(say(lang, "当前没有在推送,无需暂停。/list 查看状态。",
                         "Nothing is being delivered, so there is nothing to pause. /list shows "
                         "the status."))
    subscribers.set_status(store, sub.id, "paused", "paused from chat")
    return Reply(say(lang, "已暂停推送,设置都保留。发送 /resume 恢复。",
                     "Deliveries paused; your settings are kept. Send /resume to restart."))


def cmd_resume(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    if sub is None or not subscribers.subscriptions(store, sub.id):
        return _not_subscribed(lang)
    if sub.status == "active":
        return Reply(say(lang, "推送本来就在进行中。", "Deliveries are already on."))
    subscribers.set_status(store, sub.id, "active")
    when = _when(sub, ctx.now or datetime.now(UTC))
    return Reply(say(lang, f"已恢复推送。下一期:{when}(有新论文时)。暂停期间的论文也会补上。",
                     f"Deliveries restarted. Next digest: {when} (when there are new papers). "
                     "Papers announced while paused are included."))


# -- /digest ------------------------------------------------------------------------------------


def _resend_button(lang: str) -> list[list[Button]]:
    return [[Button(label(lang, "重新发送上一期", "Send the last digest again"), "digest again")]]


def cmd_digest(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    """The latest digest now, through the outbox; what was already sent only on request."""
    sub = subscribers.by_address(store, ctx.channel, ctx.address)
    if sub is None or not subscribers.subscriptions(store, sub.id):
        return _not_subscribed(lang)
    if sub.status != "active":
        return Reply(say(lang, "推送已暂停或停止;先发送 /resume。", "Deliveries are off; send /resume "
                         "first."))
    if arg == "again":
        last = outbox.last_sent(store, sub.id)
        if last is None:
            return Reply(say(lang, "还没有发送过摘要。", "No digest has been sent yet."))
        again = digests.rebuild(store, sub, last.digest_date, last.paper_ids, last.more)
        return Reply(label(lang, f"重新发送 {last.digest_date} 的摘要:",
                           f"The digest of {last.digest_date} again:"), digest=again)
    date = latest_announcement_date(store)
    if date is None:
        return Reply(say(lang, "还没有抓取到任何 arXiv 公告。", "No arXiv announcement has been "
                         "fetched yet."))
    row = outbox.day_row(store, sub.id, date)
    if row and row.status == "sent":
        return Reply(say(lang, f"{date} 的摘要已经发给你了;不会重复发送。需要的话可以重新发送一遍。",
                         f"The digest of {date} was already sent; nothing is sent twice unless "
                         "you ask."), _resend_button(lang))
    if row and row.status in ("pending", "failed"):
        return Reply(label(lang, f"正在发送 {date} 的摘要…", f"Sending the digest of {date}…"),
                     delivery_id=row.id)
    if row:
        return Reply(say(lang, f"{date} 的摘要正在发送中。", f"The digest of {date} is on its way."))
    row_id = outbox.plan_for(store, settings, sub, date, now=ctx.now or datetime.now(UTC))
    if row_id is None:
        text = say(lang, f"{date} 没有达到你阈值的新论文(已发过的不再重复)。",
                   f"No new papers above your thresholds on {date} (sent ones are not repeated).")
        return Reply(text, _resend_button(lang) if outbox.last_sent(store, sub.id) else [])
    return Reply(label(lang, f"正在发送 {date} 的摘要…", f"Sending the digest of {date}…"),
                 delivery_id=row_id)


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
    Command("time", ("at",), True, "每日推送时间", "daily delivery time", "/time 08:30", cmd_time),
    Command("tz", ("timezone",), True, "时区", "time zone", "/tz Asia/Shanghai", cmd_tz),
    Command("lang", ("language",), True, "语言 zh/en/both", "language zh/en/both", "/lang both",
            cmd_lang),
    Command("digest", ("today", "latest"), True, "立即发送最新摘要", "the latest digest now",
            "/digest", cmd_digest),
    Command("pause", ("stop",), True, "暂停推送", "pause deliveries", "/pause", cmd_pause),
    Command("resume", (), True, "恢复推送", "resume deliveries", "/resume", cmd_resume),
    Command("custom", (), True, "创建自定义主题", "create a custom topic", "", cmd_custom,
            listed=False),
)
