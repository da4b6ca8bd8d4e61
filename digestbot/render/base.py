"""What every rendering shares: the jinja2 environment, its filters, and the digest's
subject and lead topic (`render` re-exports them all).

One jinja2 environment serves every channel, so a filter (author shortening, labels) means the
same thing in an email, a web page and a chat message. HTML templates are autoescaped: titles
and abstracts are untrusted text (`<script>`, `&`, LaTeX) and must show as text.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from digestbot.models import Author, Digest, DigestEntry, TopicHit
from digestbot.render import i18n
from digestbot.render.i18n import announce_label, template_label, topic_name

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
    """The email's subject, and its plain text and HTML as UTF-8 bytes, as the message carries
    them (assembled from pieces encoded once: no 100 K-character string encoded per reader);
    `text` and `html` give them as str, decoded when first asked."""

    subject: str
    text_bytes: bytes
    html_bytes: bytes

    @functools.cached_property
    def text(self) -> str:
        return self.text_bytes.decode("utf-8")

    @functools.cached_property
    def html(self) -> str:
        return self.html_bytes.decode("utf-8")


def template_dir() -> Path:
    """Where templates live: inside the package after `pip install .`, else the source tree.

    The installed copy is checked first because a stray top-level `templates/` folder can
    exist next to site-packages; the source tree's is recognised by its email templates.
    """
    here = Path(__file__).resolve().parent.parent  # digestbot/, above this package
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
        # Templates ship with the code: no stat() of the file at every get_template (the
        # email asks for a paper's row templates thousands of times a batch).
        auto_reload=False,
    )
    env.filters.update(
        authors=shorten_authors,
        percent=percent,
        badge=badge,
        announce_label=announce_label,
        clip=clip,
        topic_name=topic_name,
    )
    env.globals.update(label=template_label, phrase=i18n.phrase, followed_author=i18n.followed_author,
                       more_not_shown=i18n.more_not_shown, on_the_web=i18n.on_the_web,
                       hit_text=hit_text)
    return env


def shorten_authors(authors: list[Author] | list[str], limit: int = 10, keep: int = 8) -> str:
    """"A, B, C … et al. (+12)": long author lists cost space and nobody reads them."""
    names = [a if isinstance(a, str) else a.name for a in authors]
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:keep])} … et al. (+{len(names) - keep})"


def percent(score: int | float | None) -> str:
    return "" if score is None else f"{round(score)}%"


def hit_text(hit: TopicHit) -> str:
    """`后训练 90%: reason`: a topic hit as every format shows it."""
    return f"{hit.topic_name} {percent(hit.score)}" + (f": {hit.reason}" if hit.reason else "")


def badge(entry: DigestEntry) -> str:
    """The entry's match: its best topic score, or 👤 for a followed author's paper that hit
    no topic (a 0% would read as a bad match)."""
    return percent(entry.best_score) if entry.hits or not entry.authors else "👤"


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


def lead_topic(digest: Digest, hit_topics: Iterable[str] | None = None) -> str:
    """The topic named in subject and header: the one most entries hit, ties by subscription
    order. `hit_topics`: every hit's topic slug, when the caller has them at hand (the email
    keeps each entry's, so a digest does not walk its entries' hits once more)."""
    lang = "en" if digest.subscriber.lang == "en" else "zh"
    if hit_topics is None:
        hit_topics = (h.topic for e in digest.entries for h in e.hits)
    counts = Counter(hit_topics)
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


def subject(digest: Digest, topic: str | None = None) -> str:
    """The email's subject; `topic`: the digest's `lead_topic` when the caller has it."""
    topic = lead_topic(digest) if topic is None else topic
    weekly = digest.subscriber.cadence == "weekly"
    if digest.subscriber.lang == "en":
        more = " and more" if len(digest.topics) > 1 else ""
        noun = "paper" if digest.total == 1 else "papers"
        return f"arXiv {'weekly' if weekly else 'daily'} digest {digest.date} · {topic}{more} · {digest.total} {noun}"
    return f"arXiv {'每周精选' if weekly else '每日速递'} {digest.date} · {topic} 等 {digest.total} 篇"


