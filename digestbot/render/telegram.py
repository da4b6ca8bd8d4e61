"""A digest as Telegram messages: a header message, then entries packed into messages of at
most 4096 characters in Telegram's HTML subset, every dynamic string escaped.

Also the packing that bot replies use (`plain_messages`). Sending is `channels.telegram`'s.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TypeVar

from digestbot.models import Digest, DigestEntry
from digestbot.render import badge, clip, i18n, percent
from digestbot.render.i18n import announce_label, followed_author, label, topic_name

MESSAGE_LIMIT = 4096
# The header names the subscribed topics; a hundred custom topics must not push it past a message.
HEADER_TOPICS_CHARS = 1000


def escape(text: str) -> str:
    """Text for Telegram HTML: the three characters that start markup, and quotes for attributes."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def telegram_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def _zh(lang: str) -> bool:
    return lang != "en"


def render_telegram(digest: Digest, limit: int = MESSAGE_LIMIT, *,
                    pages_url: str | None = None) -> list[str]:
    """The digest as messages: a header, then whole entries packed up to `limit` characters.

    Messages are split only between entries; an entry that alone exceeds the limit is
    shortened field by field (summaries first) before escaping, so a cut never lands inside
    a tag or an entity.
    """
    return [text for text, _ in render_parts(digest, limit, pages_url=pages_url)]


def render_parts(
    digest: Digest, limit: int = MESSAGE_LIMIT, *, skip: Collection[str] = (),
    pages_url: str | None = None,
) -> list[tuple[str, list[str]]]:
    """`render_telegram`'s messages with the paper ids each carries (none for the header).

    Entries whose paper is in `skip` are left out: a resumed send passes the papers already
    delivered, since the split points move when the language or an enrichment changed.
    `pages_url` (the public day page) follows the "另有 K 篇" line.
    """
    lang = digest.subscriber.lang
    entries = [e for e in digest.entries if e.paper.id not in skip]
    groups = _pack_groups([(_entry(e, lang, limit), e.paper.id) for e in entries], limit, "\n\n")
    return [(_header(digest, lang, pages_url), []),
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


def _header(digest: Digest, lang: str, pages_url: str | None = None) -> str:
    sep = i18n.separator(lang)
    shown: list[str] = []
    for topic in digest.topics:
        name = escape(topic_name(topic, lang))
        if telegram_len(sep.join([*shown, name])) > HEADER_TOPICS_CHARS:
            break
        shown.append(name)
    names = sep.join(shown)
    if len(shown) < len(digest.topics):
        hidden = len(digest.topics) - len(shown)
        names += i18n.more_topics(hidden, lang)
    lines = [f"<b>{escape(i18n.title(digest, lang))}</b> · {escape(digest.date)}",
             f"{names} · {i18n.paper_count(digest.total, lang)}"]
    if digest.late:
        lines.append(escape(i18n.late_line(digest, lang)))
    if digest.more:
        link = (f' · <a href="{escape(pages_url)}">{escape(i18n.on_the_web(lang))}</a>'
                if pages_url else "")
        lines.append(i18n.more_not_shown(digest.more, lang) + link)
    lines.append(escape(i18n.phrase("telegram_hint", lang)))
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
    for n, author in enumerate(entry.authors):
        fields[f"author{n}"] = followed_author(author, lang)
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
        f"<b>{badge(entry)}</b> · {escape(announce_label(a.announce_type, lang))} · "
        f"<code>{escape(p.id)}</code> · {escape(' '.join(p.categories))}",
        f'<b><a href="{abs_url}">{escape(f["title"])}</a></b>',
    ]
    if "title_zh" in f:
        lines.append(escape(f["title_zh"]))
    if "institutions" in f:
        lines.append(f"🏛 {escape(f['institutions'])}")
    lines += [f"👤 {escape(v)}" for k, v in f.items() if k.startswith("author")]
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
