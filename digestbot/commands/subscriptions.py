"""What a chat follows: /start, /topics, /subscribe (and its custom-topic button),
/unsubscribe, /threshold.

Every command validates all of its input before the first write and writes in one
transaction, so a bad argument changes nothing.
"""

from __future__ import annotations

import re

from digestbot import subscribers, topics
from digestbot.commands.core import (
    Button,
    CommandContext,
    Reply,
    ensure_subscriber,
    next_send,
    not_subscribed,
    not_yours,
    say,
    subscribed,
    topic_or_none,
)
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.models import Topic
from digestbot.render.i18n import label, topic_name
from digestbot.store import Store

TOPICS_PER_PAGE = 10
# Topic lists are separated by commas (ASCII or Chinese), 、 or semicolons.
_ITEM_SPLIT = re.compile(r"[,，、;；\n]+")
# A trailing token that is meant as a threshold, valid or not ("80", "80%", "200", "-5", "7.5").
_NUMBERISH = re.compile(r"-?\d+(?:\.\d+)?%?")


# -- /start -------------------------------------------------------------------------------------


def cmd_start(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    ensure_subscriber(store, ctx)
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


# -- /topics ------------------------------------------------------------------------------------


def cmd_topics(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    """One page of the catalogue as a tree, with a subscribe button per topic."""
    catalogue = list(topics.load_catalogue().topics.values())
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
        lines.append(f"    • {topic_name(topic, lang)}")
    buttons = [Button(topic_name(t, lang), f"subscribe {t.slug}") for t in shown]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    nav = []
    if page > 1:
        nav.append(Button("◀", f"topics {page - 1}"))
    if page < pages:
        nav.append(Button("▶", f"topics {page + 1}"))
    if nav:
        rows.append(nav)
    return Reply("\n".join(lines), rows, edit=arg.isdigit())


# -- /subscribe ---------------------------------------------------------------------------------


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


def _suggest_reply(store: Store, name: str, threshold: int | None, lang: str) -> Reply:
    """Closest topics as buttons, plus one to make the text a custom topic."""
    if len(" ".join(name.split())) > topics.CUSTOM_MAX_CHARS:
        raise UsageError(zh=f"主题最多 {topics.CUSTOM_MAX_CHARS} 个字符",
                         en=f"a topic is at most {topics.CUSTOM_MAX_CHARS} characters")
    suffix = f" {threshold}" if threshold is not None else ""
    rows = [[Button(topic_name(t, lang), f"subscribe {t.slug}{suffix}")]
            for t in topics.suggest(name)]
    # The text can be longer than a button's 64-byte payload: park it under a short key.
    key = topics.park_custom_text(store, name)
    rows.append([Button(label(lang, f"创建自定义主题「{name}」", f"Create custom topic “{name}”"),
                        f"custom {key}{suffix}")])
    text = say(lang, f"没有找到主题「{name}」。你是不是想订阅下面这些?也可以把它作为自定义主题。",
               f"No topic called “{name}”. Did you mean one of these? You can also make it a "
               "custom topic.")
    return Reply(text, rows)


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
    names_zh = "、".join(f"{topic_name(t, 'zh')}(≥{thr}%)" for t, thr in chosen)
    names_en = ", ".join(f"{topic_name(t, 'en')} (≥{thr}%)" for t, thr in chosen)
    when = next_send(sub, ctx.clock())
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
    text = topics.parked_custom_text(store, key)
    if text is None:
        return Reply(say(lang, "这个按钮已失效,请重新发送 /subscribe <主题>。",
                         "That button has expired; send /subscribe <topic> again."))
    threshold = (subscribers.validate_threshold(raw_threshold) if raw_threshold
                 else subscribers.DEFAULT_THRESHOLD)
    with store.db.atomic():
        topic = topics.custom_topic(store, text)
        reply = _subscribe(store, ctx, [(topic, threshold)], lang)
    return reply


# -- /unsubscribe /threshold --------------------------------------------------------------------


def _yours(store: Store, items: list[str], current: set[str]) -> list[Topic] | str:
    """The topics named in `items`, all among `current`; else the first name that is not."""
    found: list[Topic] = []
    for name in items:
        topic = topics.lookup(name, store)
        if topic is None or topic.slug not in current:
            return name
        found.append(topic)
    return found


def cmd_unsubscribe(store: Store, settings: Settings, ctx: CommandContext, arg: str,
                    lang: str) -> Reply:
    if not arg:
        return Reply(say(lang, "要退订哪个主题?例如 /unsubscribe 后训练,或 /unsubscribe all 全部退订。",
                         "Which topic? For example /unsubscribe post-training, or "
                         "/unsubscribe all."))
    if (mine := subscribed(store, ctx)) is None:
        return not_subscribed(lang)
    sub, current = mine
    if arg.lower() in ("all", "全部", "所有"):
        with store.db.atomic():
            subscribers.remove_subscription(store, sub.id, None)
            subscribers.set_status(store, sub.id, "unsubscribed", "unsubscribed from chat")
        return Reply(say(lang, "已退订全部主题,不会再推送。随时可以 /subscribe 重新订阅。",
                         "Unsubscribed from everything; no more digests. /subscribe any time "
                         "to come back."))
    removed = _yours(store, [name for name, _ in _split_items(arg)], current)
    if isinstance(removed, str):
        return not_yours(removed, lang)
    left = current - {t.slug for t in removed}
    with store.db.atomic():
        for topic in removed:
            subscribers.remove_subscription(store, sub.id, topic.slug)
        if not left:
            subscribers.set_status(store, sub.id, "unsubscribed", "unsubscribed from chat")
    names = [topic_name(t, lang) for t in removed]
    text = say(lang, f"已退订:{'、'.join(names)}。", f"Unsubscribed: {', '.join(names)}.")
    if not left:
        text += "\n" + say(lang, "你已没有订阅的主题,不会再推送。", "No topics left; no more digests.")
    return Reply(text)


def cmd_threshold(store: Store, settings: Settings, ctx: CommandContext, arg: str,
                  lang: str) -> Reply:
    name, _, raw = arg.rpartition(" ")
    if not raw:
        return Reply(say(lang, "用法:/threshold 后训练 75(0–100,只推送匹配度不低于它的论文)",
                         "Usage: /threshold post-training 75 (0–100: only papers matching at "
                         "least that much)"))
    threshold = subscribers.validate_threshold(raw)
    if (mine := subscribed(store, ctx)) is None:
        return not_subscribed(lang)
    sub, current = mine
    if name.strip():
        chosen = _yours(store, [name.strip()], current)
        if isinstance(chosen, str):
            return not_yours(chosen, lang)
    else:
        # "/threshold 75" applies to every subscribed topic.
        chosen = [t for t in (topic_or_none(store, slug) for slug in sorted(current)) if t]
    with store.db.atomic():
        for topic in chosen:
            subscribers.set_subscription(store, sub.id, topic.slug, threshold)
    names = [topic_name(t, lang) for t in chosen]
    return Reply(say(lang, f"阈值已改为 {threshold}%:{'、'.join(names)}。",
                     f"Threshold set to {threshold}% for {', '.join(names)}."))
