"""Turn a `Digest` into what people read: the email (HTML + plain text) and shared filters.

One jinja2 environment serves every channel, so a filter (author shortening, labels) means the
same thing in an email, a web page and a chat message. HTML templates are autoescaped: titles
and abstracts are untrusted text (`<script>`, `&`, LaTeX) and must show as text.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import markupsafe

from digestbot.models import (
    ANNOUNCE_LABELS_EN,
    ANNOUNCE_LABELS_ZH,
    Author,
    Digest,
    DigestEntry,
    Topic,
)

# Gmail clips an HTML body beyond ~102 KB and hides everything after the cut, footer and
# unsubscribe link included; stay a little under it.
HTML_BUDGET_BYTES = 100_000

# How much of the abstracts to keep, tried in order until the email fits the budget:
# (English chars, Chinese chars), None = whole, 0 = left out (the abs link stays).
_ABSTRACT_STEPS: tuple[tuple[int | None, int | None], ...] = (
    (None, None),
    (600, None),
    (300, None),
    (0, None),
    (0, 400),
    (0, 250),
    (0, 150),
    (0, 80),
    (0, 0),
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def template_dir() -> Path:
    """Where templates live: inside the package after `pip install .`, else the source tree.

    The installed copy is checked first because a stray top-level `templates/` folder can
    exist next to site-packages; the source tree's is recognised by its email templates.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "email" / "digest.html").is_file():
            return candidate
    raise FileNotFoundError(
        f"digestbot templates not found in {here / 'templates'} or {here.parent / 'templates'}"
    )


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        # .txt templates are plain text; escaping them would show "&amp;" to readers.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm", "xml")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        authors=shorten_authors,
        percent=percent,
        announce_label=announce_label,
        clip=clip,
        topic_name=topic_name,
    )
    env.globals["label"] = label
    return env


@jinja2.pass_context
def label(context: Any, zh: str, en: str) -> str:
    """A UI label in the template's `lang`: zh, en, or both side by side."""
    lang = context.get("lang", "zh")
    return zh if lang == "zh" else en if lang == "en" else f"{zh} / {en}"


def topic_name(topic: Topic, lang: str = "zh") -> str:
    if lang == "both" and topic.name_en and topic.name_en != topic.name_zh:
        return f"{topic.name_zh} ({topic.name_en})"
    return topic.display(lang)


def shorten_authors(authors: list[Author] | list[str], limit: int = 10, keep: int = 8) -> str:
    """"A, B, C … et al. (+12)": long author lists cost space and nobody reads them."""
    names = [a if isinstance(a, str) else a.name for a in authors]
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:keep])} … et al. (+{len(names) - keep})"


def percent(score: int | float | None) -> str:
    return "" if score is None else f"{round(score)}%"


def announce_label(announce_type: str, lang: str = "zh") -> str:
    zh = ANNOUNCE_LABELS_ZH.get(announce_type, announce_type)
    en = ANNOUNCE_LABELS_EN.get(announce_type, announce_type)
    return {"zh": zh, "en": en}.get(lang, f"{zh} / {en}")


def clip(text: str | None, limit: int | None) -> str:
    """Cut text to `limit` characters at a word boundary when one is near; None keeps all."""
    text = text or ""
    if limit is None or len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + " …"


def lead_topic(digest: Digest) -> str:
    """The topic named in subject and header: the one most entries hit, ties by subscription order."""
    lang = "en" if digest.subscriber.lang == "en" else "zh"
    counts = Counter(h.topic for e in digest.entries for h in e.hits)
    order = {t.slug: i for i, t in enumerate(digest.topics)}
    if counts:
        slug = min(counts, key=lambda s: (-counts[s], order.get(s, len(order)), s))
    elif digest.topics:
        slug = digest.topics[0].slug
    else:
        return ""
    for topic in digest.topics:
        if topic.slug == slug:
            return topic.display(lang)
    return next((h.topic_name for e in digest.entries for h in e.hits if h.topic == slug), slug)


def subject(digest: Digest) -> str:
    topic = lead_topic(digest)
    if digest.subscriber.lang == "en":
        more = " and more" if len(digest.topics) > 1 else ""
        noun = "paper" if digest.total == 1 else "papers"
        return f"arXiv daily digest {digest.date} · {topic}{more} · {digest.total} {noun}"
    return f"arXiv 每日速递 {digest.date} · {topic} 等 {digest.total} 篇"


@functools.cache
def _inliner() -> css_inline.CSSInliner:
    # @media rules (dark mode, phones) cannot be inlined; keep them in a <style> block.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False, minify_css=True)


def render_email(
    digest: Digest,
    *,
    unsubscribe_url: str | None = None,
    preferences_url: str | None = None,
) -> RenderedEmail:
    """Subject, plain text and inlined HTML for one digest.

    The HTML is kept under `HTML_BUDGET_BYTES`: abstracts are shortened, then dropped (English
    first — the Chinese one is the reason to subscribe), and as a last resort trailing entries
    move into the "另有 K 篇" count, so the footer with the unsubscribe link always survives.
    """
    env = environment()
    context: dict[str, Any] = {
        "digest": digest,
        "lang": digest.subscriber.lang,
        "subject": subject(digest),
        "lead_topic": lead_topic(digest),
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }
    text = env.get_template("email/digest.txt").render(
        context, entries=digest.entries, more=digest.more, en_chars=None, zh_chars=None
    )
    html_template = env.get_template("email/digest.html")
    entries = list(digest.entries)
    more = digest.more
    while True:
        size = 0
        for en_chars, zh_chars in _ABSTRACT_STEPS:
            # Skip steps that cannot fit, judged by the most they could save, so a big digest
            # costs two or three renders instead of one per step.
            if size and size - _max_saving(entries, context["lang"], en_chars, zh_chars) > (
                HTML_BUDGET_BYTES
            ):
                continue
            html = _inliner().inline(html_template.render(
                context, entries=entries, more=more, en_chars=en_chars, zh_chars=zh_chars
            ))
            size = size or len(html.encode("utf-8"))
            if len(html.encode("utf-8")) <= HTML_BUDGET_BYTES:
                return RenderedEmail(subject=context["subject"], text=text, html=html)
        if len(entries) <= 1:
            return RenderedEmail(subject=context["subject"], text=text, html=html)
        # Drop a tenth of what remains rather than one at a time: each try is a full render.
        cut = max(1, len(entries) // 10)
        entries, more = entries[:-cut], more + cut


# Upper bound of the markup around one abstract (paragraph, label, inlined style, <details>).
_ABSTRACT_MARKUP_BYTES = 300


def _max_saving(entries: list[DigestEntry], lang: str, en_chars: int | None,
                zh_chars: int | None) -> int:
    """At most how many bytes of HTML clipping the abstracts to these lengths can save."""

    def saving(text: str, limit: int | None) -> int:
        if limit is None or len(text) <= limit:
            return 0
        full = len(str(markupsafe.escape(text)).encode("utf-8"))
        kept = len(str(markupsafe.escape(text[:limit])).encode("utf-8"))
        return full - kept + (_ABSTRACT_MARKUP_BYTES if limit == 0 else 0)

    total = 0
    for entry in entries:
        total += saving(entry.paper.abstract or "", en_chars)
        if lang != "en" and entry.enrichment:
            total += saving(entry.enrichment.abstract_zh, zh_chars)
    return total


def render_slack(digest: Digest) -> list[Any]:
    """Slack payloads ({"text", "blocks"}); the blocks and their limits live with the channel."""
    from digestbot.channels.slack import render_slack as slack_messages

    return [message.payload() for message in slack_messages(digest)]


def render_telegram(digest: Digest) -> list[str]:
    """Telegram HTML messages (≤ 4096 chars each); the packing lives with the Telegram channel."""
    from digestbot.channels.telegram import render_telegram as telegram_messages

    return telegram_messages(digest)
