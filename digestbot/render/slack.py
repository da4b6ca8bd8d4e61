"""A digest as Slack Block Kit messages within Slack's limits.

Limits: ≤ 50 blocks a message, section text ≤ 3000 characters, header ≤ 150, context ≤ 10
elements; each message has a plain-text `text` fallback. Every dynamic string is
mrkdwn-escaped (`&`, `<`, `>`), so a title such as `<!channel>` or `<http://evil|click>` shows
as text and cannot ping or link. A digest of up to `ENTRIES_PER_MESSAGE` papers is one
message; a longer one is a summary message and then parts, posted as thread replies
(`slack_mode = "thread"`) or as messages of their own (`"sequential"`) by `channels.slack`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from digestbot.models import Digest, DigestEntry
from digestbot.render import badge, clip, controls, i18n, lead_topic, percent, shorten_authors
from digestbot.render.i18n import announce_label, followed_author, label

# Slack's Block Kit limits (api.slack.com/reference/block-kit).
MAX_BLOCKS = 50
SECTION_CHARS = 3000
HEADER_CHARS = 150
CONTEXT_ELEMENTS = 10
BUTTON_CHARS = 75
ACTIONS_ELEMENTS = 25
# Three blocks a paper (section, context, then a divider, or the 👍/👎 buttons in its place
# when the reader can click them): 15 papers plus header, intro and footer
# fill one message; a part of a long digest carries 16 plus its "papers 17–32" line.
ENTRIES_PER_MESSAGE = 15
ENTRIES_PER_PART = 16
# Titles of the summary message of a long digest.
SUMMARY_TITLES = 5
MODES = ("thread", "sequential")


@dataclass
class SlackMessage:
    """One chat.postMessage payload: `text` is the notification/accessibility fallback."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    # The papers whose entries it carries (the summary's title list does not count), for
    # `delivery.mark_part`.
    paper_ids: list[str] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """As Slack takes it (and as Block Kit Builder shows it)."""
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str | None) -> str:
    """Slack's mrkdwn escaping: only `&`, `<` and `>` (they start entities, links, mentions)."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(mrkdwn: str, limit: int) -> str:
    """Shorten already-escaped text to `limit` characters without cutting an `&amp;` in two."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    cut = mrkdwn[: limit - 1]
    amp = cut.rfind("&")
    if amp > cut.rfind(";"):
        cut = cut[:amp]
    return cut + "…"


def _esc(text: str | None, limit: int) -> str:
    """`text` as mrkdwn in at most `limit` characters.

    Escaping can make a string five times longer (`&` → `&amp;`), so the budget counts the
    escaped form; counting the raw text let a hostile title push a section past 3000 and
    lose its score, topic reason and summary to the final cut.
    """
    return fit(escape(clip(text, limit)), limit)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": fit(text, SECTION_CHARS)}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(*texts: str) -> dict[str, Any]:
    elements = [_mrkdwn(t) for t in texts if t][:CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements}


def header_text(digest: Digest) -> str:
    """`arXiv 每日学术速递 · 2026-08-13 · 后训练 · 22 篇` (plain text, ≤ 150 characters)."""
    lang = digest.subscriber.lang
    topic = lead_topic(digest) + (i18n.and_more(lang) if len(digest.topics) > 1 else "")
    text = i18n.header_line(digest, lang, topic)
    return text if len(text) <= HEADER_CHARS else clip(text, HEADER_CHARS - 2)


def _entry_blocks(entry: DigestEntry, lang: str, votes: bool = False) -> list[dict[str, Any]]:
    """A paper: section (title, 中文标题, match, badge, 专题命中, AI总结), context, divider."""
    p, a, e = entry.paper, entry.announcement, entry.enrichment
    # Budgets (escaped characters) add up to under SECTION_CHARS with every field at its
    # longest, so the final cut in `_mrkdwn` never takes the score, a reason or the summary.
    lines = [f"*<{escape(p.abs_url)}|{_esc(p.title, 450)}>*"]
    if lang != "en" and e and e.title_zh:
        lines.append(_esc(e.title_zh, 300))
    lines.append(f"`{badge(entry)}` · {escape(announce_label(a.announce_type, lang))}"
                 f" · `{escape(p.id)}` · <{escape(p.pdf_url)}|PDF>")
    # Followed authors take the first of the three reason lines the budget holds.
    followed = [f"👤 {_esc(followed_author(a, lang), 300)}" for a in entry.authors[:3]]
    lines += followed
    hit_label = label(lang, "专题命中", "Topic match")
    for hit in entry.hits[:3 - len(followed)]:
        reason = f": {_esc(hit.reason, 250)}" if hit.reason else ""
        lines.append(f"*{hit_label}* {_esc(hit.topic_name, 60)} {percent(hit.score)}{reason}")
    if lang != "en" and e and e.summary_zh:
        lines.append(f"*AI总结* {_esc(e.summary_zh, 450)}")
    if lang != "zh" and e and e.summary_en:
        lines.append(f"*TL;DR* {_esc(e.summary_en, 450)}")
    institutions = ""
    if e and e.institutions:
        names = [i.name_zh if lang == "zh" and i.name_zh else i.name for i in e.institutions]
        institutions = "🏛 " + _esc(" · ".join(names), 500)
    context = _context(
        _esc(shorten_authors(p.authors), 500) if p.authors else "",
        institutions,
        escape(" ".join(p.categories)),
    )
    blocks = [section("\n".join(lines))]
    if context["elements"]:
        blocks.append(context)
    return [*blocks, controls.slack_actions(p.id, lang) if votes else {"type": "divider"}]


def _footer(digest: Digest, lang: str, more: bool, pages_url: str | None) -> dict[str, Any]:
    texts = [i18n.slack_follows(escape(i18n.followed_topics(digest, lang)), lang)]
    if more and digest.more:
        link = f" · <{escape(pages_url)}|{i18n.on_the_web(lang)}>" if pages_url else ""
        texts.insert(0, i18n.more_not_shown(digest.more, lang) + link)
    texts.append(i18n.phrase("disclaimer", lang))
    return _context(*texts)


def _fallback(head: str, entries: Iterable[DigestEntry], start: int = 1) -> str:
    lines = [escape(head)]
    lines += [f"{i}. {_esc(e.paper.title, 150)} ({badge(e)})"
              for i, e in enumerate(entries, start)]
    return fit("\n".join(lines), SECTION_CHARS)


def render_slack(digest: Digest, mode: str = "thread", *,
                 pages_url: str | None = None) -> list[SlackMessage]:
    """The digest as Slack messages: one when it fits, else a summary and parts; `pages_url`
    (the public day page) follows the "另有 K 篇" line.

    `mode` only changes the wording of the summary ("in the thread" or "below"); the poster
    decides where the parts go. Entries are never split across messages.
    """
    if mode not in MODES:
        raise ValueError(f"slack mode must be one of {', '.join(MODES)}, not {mode!r}")
    lang = digest.subscriber.lang
    # 👍/👎 only where a click reaches the bot: a bot-token channel, not an incoming webhook
    # (often another workspace's app, where the buttons would do nothing).
    votes = not digest.subscriber.webhook_url
    head = header_text(digest)
    header = {"type": "header", "text": {"type": "plain_text", "text": head}}
    late = i18n.late_line(digest, lang)
    entries = digest.entries
    if len(entries) <= ENTRIES_PER_MESSAGE:
        blocks = [header, *([_context(escape(late))] if late else [])]
        for entry in entries:
            blocks += _entry_blocks(entry, lang, votes)
        blocks.append(_footer(digest, lang, more=True, pages_url=pages_url))
        return [SlackMessage(_fallback(head, entries), blocks, [e.paper.id for e in entries])]
    where = label(lang, "完整列表见本消息的讨论串(thread)回复。", "The full list is in this thread.")
    if mode == "sequential":
        where = label(lang, "完整列表见下方消息。", "The full list follows below.")
    top = "\n".join(
        f"{i}. `{badge(e)}` <{escape(e.paper.abs_url)}|{_esc(e.paper.title, 200)}>"
        for i, e in enumerate(entries[:SUMMARY_TITLES], 1))
    intro = label(lang, f"共 {len(entries)} 篇,按匹配度排序。最高匹配:",
                  f"{len(entries)} papers by match score. Top matches:")
    summary = SlackMessage(_fallback(head, entries[:SUMMARY_TITLES]), [
        header, *([_context(escape(late))] if late else []),
        section(f"{intro}\n{top}\n\n{where}"), _footer(digest, lang, more=True, pages_url=pages_url)])
    messages = [summary]
    for start in range(0, len(entries), ENTRIES_PER_PART):
        chunk = entries[start : start + ENTRIES_PER_PART]
        span = f"{start + 1}–{start + len(chunk)} / {len(entries)}"
        blocks: list[dict[str, Any]] = [_context(f"*{escape(head)}* · {span}")]
        for entry in chunk:
            blocks += _entry_blocks(entry, lang, votes)
        messages.append(SlackMessage(_fallback(f"{head} · {span}", chunk, start + 1), blocks,
                                     [e.paper.id for e in chunk]))
    return messages


def render_payloads(digest: Digest) -> list[dict[str, Any]]:
    """The messages as Slack takes them ({"text", "blocks"}), for `digestbot preview`."""
    return [message.payload() for message in render_slack(digest)]
