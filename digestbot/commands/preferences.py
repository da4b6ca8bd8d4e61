"""How and whether a chat's digests come: /list, /time, /tz, /lang, /weekly, /pause, /resume
and /digest (the latest digest now, through the outbox).
"""

from __future__ import annotations

from collections.abc import Callable

from digestbot import digest as digests
from digestbot import outbox, subscribers
from digestbot.commands.core import (
    Button,
    CommandContext,
    Reply,
    Run,
    ensure_subscriber,
    next_send,
    not_subscribed,
    say,
    subscribed,
    topic_or_none,
)
from digestbot.config import Settings
from digestbot.models import Subscriber
from digestbot.render.i18n import label, topic_name
from digestbot.sources.papers import latest_announcement_date
from digestbot.store import Store
from digestbot.subscribers import library, notices
from digestbot.subscribers import profile as profiles

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
        return not_subscribed(lang)
    subs = subscribers.subscriptions(store, sub.id)
    zh_status, en_status = _STATUS.get(sub.status, (sub.status, sub.status))
    zh_lang, en_lang = _LANG_NAMES.get(sub.lang, (sub.lang, sub.lang))
    rows_zh, rows_en = [], []
    for s in subs:
        topic = topic_or_none(store, s.topic)
        rows_zh.append(f"• {topic_name(topic, 'zh') if topic else s.topic}  ≥{s.threshold}%")
        rows_en.append(f"• {topic_name(topic, 'en') if topic else s.topic}  ≥{s.threshold}%")
    none = ("(无)", "(none)")
    prof = profiles.get_profile(store, sub.id)
    shelf = library.get_library(store, sub.id)
    notify = ({True: ("开", "on"), False: ("关", "off")}[notices.wants_notices(store, sub.id)]
              if sub.channel in notices.CHANNELS else None)
    zh = "\n".join([
        "订阅主题:", *(rows_zh or [none[0]]),
        *([f"关注作者:{' · '.join(prof.follows)}"] if prof.follows else []),
        *([f"必含关键词:{' · '.join(prof.must)}"] if prof.must else []),
        *([f"排除关键词:{' · '.join(prof.exclude)}"] if prof.exclude else []),
        *([library.describe(shelf, "zh")] if shelf else []),
        f"推送时间:{_when_zh(sub)}", f"语言:{zh_lang}", f"每期最多:{sub.max_papers} 篇",
        f"状态:{zh_status}", *([f"假日提醒:{notify[0]}"] if notify else []),
    ])
    en = "\n".join([
        "Topics:", *(rows_en or [none[1]]),
        *([f"Followed authors: {' · '.join(prof.follows)}"] if prof.follows else []),
        *([f"Must-have keywords: {' · '.join(prof.must)}"] if prof.must else []),
        *([f"Excluded keywords: {' · '.join(prof.exclude)}"] if prof.exclude else []),
        *([library.describe(shelf, "en")] if shelf else []),
        f"Delivery: {_when_en(sub)}", f"Language: {en_lang}",
        f"At most {sub.max_papers} papers per digest", f"Status: {en_status}",
        *([f"Holiday notices: {notify[1]}"] if notify else []),
    ])
    return Reply(say(lang, zh, en))


def _when_zh(sub: Subscriber) -> str:
    if sub.cadence == "weekly":
        return f"每周一 {sub.send_at}({sub.tz}),每周精选"
    return f"{sub.send_at}({sub.tz})"


def _when_en(sub: Subscriber) -> str:
    if sub.cadence == "weekly":
        return f"Mondays {sub.send_at} ({sub.tz}), the week's best"
    return f"{sub.send_at} ({sub.tz})"


# -- /time /tz /lang /weekly ----------------------------------------------------------------------------


def _setting(field_name: str, validate: Callable[[str], str], usage_zh: str, usage_en: str,
             done: Callable[[Subscriber, str], str]) -> Run:
    """A command that validates its argument and stores it as one subscriber setting."""
    def run(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
        if not arg:
            return Reply(say(lang, usage_zh, usage_en))
        value = validate(arg)
        with store.db.atomic():
            sub = ensure_subscriber(store, ctx)
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

cmd_weekly = _setting(
    "cadence", subscribers.validate_cadence,
    "用法:/weekly on(每周一推送本周精选)| /weekly off(改回每天)",
    "Usage: /weekly on (the week's best on Mondays) | /weekly off (daily again)",
    lambda sub, lang: say(
        lang,
        f"已改为每周一 {sub.send_at}({sub.tz})推送本周精选,每个主题最多 "
        f"{digests.WEEKLY_PER_TOPIC} 篇,其余计入“另有 K 篇”。发送 /weekly off 改回每天。"
        if sub.cadence == "weekly" else f"已改回每天 {sub.send_at}({sub.tz})推送。",
        f"Digests now come on Mondays at {sub.send_at} ({sub.tz}): the week's best, at most "
        f"{digests.WEEKLY_PER_TOPIC} per topic, the rest counted. /weekly off for daily again."
        if sub.cadence == "weekly" else f"Digests come daily again at {sub.send_at} ({sub.tz})."),
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
    if (mine := subscribed(store, ctx)) is None:
        return not_subscribed(lang)
    sub, _ = mine
    if sub.status == "active":
        return Reply(say(lang, "推送本来就在进行中。", "Deliveries are already on."))
    subscribers.set_status(store, sub.id, "active")
    when = next_send(sub, ctx.clock())
    return Reply(say(lang, f"已恢复推送。下一期:{when}(有新论文时)。暂停期间的论文也会补上。",
                     f"Deliveries restarted. Next digest: {when} (when there are new papers). "
                     "Papers announced while paused are included."))


# -- /digest ------------------------------------------------------------------------------------


def _resend_button(lang: str) -> list[list[Button]]:
    return [[Button(label(lang, "重新发送上一期", "Send the last digest again"), "digest again")]]


def _sending(date: str, row_id: int, lang: str) -> Reply:
    """The adapter delivers outbox row `row_id` now, after showing this line."""
    return Reply(label(lang, f"正在发送 {date} 的摘要…", f"Sending the digest of {date}…"),
                 delivery_id=row_id)


def cmd_digest(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    """The latest digest now, through the outbox; what was already sent only on request."""
    if (mine := subscribed(store, ctx)) is None:
        return not_subscribed(lang)
    sub, _ = mine
    if sub.status != "active":
        return Reply(say(lang, "推送已暂停或停止;先发送 /resume。", "Deliveries are off; send /resume "
                         "first."))
    if arg == "again":
        last = outbox.last_sent(store, sub.id)
        if last is None:
            return Reply(say(lang, "还没有发送过摘要。", "No digest has been sent yet."))
        again = digests.rebuild(store, sub, last.digest_date, last.paper_ids, last.more,
                                suggested=last.suggested)
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
        return _sending(date, row.id, lang)
    if row:
        return Reply(say(lang, f"{date} 的摘要正在发送中。", f"The digest of {date} is on its way."))
    row_id = outbox.plan_for(store, settings, sub, date, now=ctx.clock())
    if row_id is None:
        text = say(lang, f"{date} 没有达到你阈值的新论文(已发过的不再重复)。",
                   f"No new papers above your thresholds on {date} (sent ones are not repeated).")
        return Reply(text, _resend_button(lang) if outbox.last_sent(store, sub.id) else [])
    return _sending(date, row_id, lang)
