"""Every reader-facing phrase the renderings share, in zh, en or both (Chinese first).

Labels, topic names, announce-type labels and the digest's header and footer phrases live
here once; the email templates, Telegram and Slack only arrange and escape them.
"""

from __future__ import annotations

from typing import Any

import jinja2

from digestbot.models import ANNOUNCE_LABELS_EN, ANNOUNCE_LABELS_ZH, AuthorHit, Digest, Topic


def label(lang: str, zh: str, en: str) -> str:
    """A short phrase in the reader's language; both side by side on one line."""
    return zh if lang == "zh" else en if lang == "en" else f"{zh} / {en}"


@jinja2.pass_context
def template_label(context: Any, zh: str, en: str) -> str:
    """`label` for templates: the language is the template's `lang` (zh by default)."""
    return label(context.get("lang", "zh"), zh, en)


def followed_author(hit: AuthorHit, lang: str) -> str:
    """Why a followed author's paper is here: "关注作者 / followed author: NAME", with the
    paper's spelling beside it when it differs, so a reader can tell a false match."""
    text = f"{label(lang, '关注作者', 'followed author')}: {hit.followed}"
    if hit.spelling != hit.followed:
        text += f" ({label(lang, '署名', 'as')} {hit.spelling})"
    return text


def topic_name(topic: Topic, lang: str = "zh") -> str:
    if lang == "both" and topic.name_en and topic.name_en != topic.name_zh:
        return f"{topic.name_zh} ({topic.name_en})"
    return topic.display(lang)


def announce_label(announce_type: str, lang: str = "zh") -> str:
    zh = ANNOUNCE_LABELS_ZH.get(announce_type, announce_type)
    en = ANNOUNCE_LABELS_EN.get(announce_type, announce_type)
    return {"zh": zh, "en": en}.get(lang, f"{zh} / {en}")


# The digest's fixed header and footer phrases (Chinese, English), for every channel.
PHRASES: dict[str, tuple[str, str]] = {
    "title": ("arXiv 每日学术速递", "arXiv daily digest"),
    "weekly_title": ("arXiv 每周精选", "arXiv weekly digest"),
    "sorted": ("按匹配度排序，点击标题阅读原文", "Sorted by match; titles link to arXiv"),
    "subscribed": ("你收到这封邮件，是因为订阅了", "You receive this because you subscribed to"),
    "manage": ("管理订阅", "Manage subscription"),
    "unsubscribe": ("退订", "Unsubscribe"),
    "reply_to_unsubscribe": ("退订请回复本邮件", "To unsubscribe, reply to this email"),
    "disclaimer": ("元数据来自 arXiv (CC0)，AI 内容由模型生成，可能有误。",
                   "Metadata from arXiv (CC0); AI-written text may contain mistakes."),
    "telegram_hint": ("/list 查看订阅 · /help 全部命令",
                      "/list your subscription · /help all commands"),
}


def phrase(name: str, lang: str) -> str:
    """One of `PHRASES` in the reader's language."""
    return label(lang, *PHRASES[name])


def separator(lang: str) -> str:
    """Between the items of a list: "、" in Chinese, ", " in English."""
    return ", " if lang == "en" else "、"


def paper_count(total: int, lang: str) -> str:
    """`22 篇`, `1 paper`, `22 篇 / papers`."""
    if lang == "en":
        return f"{total} paper{'' if total == 1 else 's'}"
    return f"{total} 篇" if lang == "zh" else f"{total} 篇 / papers"


def title(digest: Digest, lang: str) -> str:
    """The digest's name: daily, or weekly for a reader who chose a Monday digest."""
    return phrase("weekly_title" if digest.subscriber.cadence == "weekly" else "title", lang)


def header_line(digest: Digest, lang: str, topics: str | None = None) -> str:
    """`arXiv 每日学术速递 · 2026-08-13 · 后训练、智能体 · 22 篇`: what every digest opens with.

    `topics` replaces the list of every subscribed topic (Slack's header names the lead one).
    """
    if topics is None:
        topics = separator(lang).join(topic_name(t, lang) for t in digest.topics)
    return f"{title(digest, lang)} · {digest.date} · {topics} · {paper_count(digest.total, lang)}"


def and_more(lang: str) -> str:
    """After the lead topic when there are others: `后训练 等`, `Post-training and more`."""
    return " and more" if lang == "en" else " 等"


def more_topics(hidden: int, lang: str) -> str:
    """After a topic list cut short: ` 等 3 个主题`."""
    return label(lang, f" 等 {hidden} 个主题", f" and {hidden} more topics")


_LATE = {"fetch": ("本期推迟：arXiv 在公告时段无法访问",
                  "Late: arXiv could not be reached at announcement time")}


def late_line(digest: Digest, lang: str) -> str:
    """The one line a late digest carries ("" when it is on time)."""
    reason = _LATE.get(digest.late)
    return label(lang, *reason) if reason else ""


def more_not_shown(more: int, lang: str) -> str:
    """The footer's count of matching papers left out of this digest."""
    return label(lang, f"另有 {more} 篇达到阈值，未在本期显示",
                 f"{more} more matching paper{'' if more == 1 else 's'} not shown")


def on_the_web(lang: str) -> str:
    """The link after "另有 K 篇" to the public day pages."""
    return label(lang, "在网页上查看", "see them on the web")


def followed_topics(digest: Digest, lang: str) -> str:
    """`后训练 (≥ 60%)、智能体`: the subscribed topics with the reader's thresholds."""
    return separator(lang).join(
        topic_name(t, lang)
        + (f" (≥ {digest.thresholds[t.slug]}%)" if t.slug in digest.thresholds else "")
        for t in digest.topics)


def slack_follows(topics: str, lang: str) -> str:
    """The Slack footer's line naming what the channel follows; `topics` is already escaped."""
    return label(lang, f"本频道订阅了:{topics}。用 `/arxiv list` 查看,`/arxiv help` 查看命令。",
                 f"This channel follows: {topics}. `/arxiv list` shows settings, "
                 "`/arxiv help` the commands.")
