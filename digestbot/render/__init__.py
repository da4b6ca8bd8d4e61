"""Turn a `Digest` into what people read: the email (HTML + plain text) and shared filters.

Telegram's messages are in `render.telegram`, Slack's blocks in `render.slack`, and every
phrase they share in `render.i18n`.

One jinja2 environment serves every channel, so a filter (author shortening, labels) means the
same thing in an email, a web page and a chat message. HTML templates are autoescaped: titles
and abstracts are untrusted text (`<script>`, `&`, LaTeX) and must show as text.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import markupsafe

from digestbot.models import Author, Digest, DigestEntry
from digestbot.render import controls, i18n
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
    subject: str
    text: str
    html: str


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
                       more_not_shown=i18n.more_not_shown, on_the_web=i18n.on_the_web)
    return env


def shorten_authors(authors: list[Author] | list[str], limit: int = 10, keep: int = 8) -> str:
    """"A, B, C … et al. (+12)": long author lists cost space and nobody reads them."""
    names = [a if isinstance(a, str) else a.name for a in authors]
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:keep])} … et al. (+{len(names) - keep})"


def percent(score: int | float | None) -> str:
    return "" if score is None else f"{round(score)}%"


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
    weekly = digest.subscriber.cadence == "weekly"
    if digest.subscriber.lang == "en":
        more = " and more" if len(digest.topics) > 1 else ""
        noun = "paper" if digest.total == 1 else "papers"
        return f"arXiv {'weekly' if weekly else 'daily'} digest {digest.date} · {topic}{more} · {digest.total} {noun}"
    return f"arXiv {'每周精选' if weekly else '每日速递'} {digest.date} · {topic} 等 {digest.total} 篇"


@functools.cache
def _inliner() -> css_inline.CSSInliner:
    # @media rules (dark mode, phones) cannot be inlined; keep them in a <style> block.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False, minify_css=True)


@functools.cache
def _stylesheet() -> str:
    """The email's CSS as digest.html embeds it, for inlining a row outside the page."""
    return environment().get_template("email/_digest.css").render()


# Where the rows go in the inlined page: a comment survives css-inline's HTML parser in place
# (inside the table body), where text would be moved out of the table.
_ROWS_MARKER = "<!--digestbot:entry-rows-->"

# How css-inline returns a row parsed inside a bare table (the parser adds the <tbody>).
_ROW_WRAPPER = ("<table><tbody>", "</tbody></table>")


@dataclass(frozen=True)
class _Part:
    """A piece of the final HTML and its UTF-8 size, so the budget is a sum, not a render."""

    html: str
    size: int

    @classmethod
    def of(cls, html: str) -> _Part:
        return cls(html, len(html.encode("utf-8")))


class _Memo:
    """A bounded, thread-safe memo: the oldest item goes first when full.

    Rows are keyed by everything they show, so an entry is never stale, and the bound keeps a
    long-running `digestbot run` from growing without end (a day is a few thousand rows).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        try:
            return self._items[key]
        except KeyError:
            pass
        value = make()
        with self._lock:
            if len(self._items) >= self.size:
                del self._items[next(iter(self._items))]
            self._items[key] = value
        return value


_ROWS = _Memo(20_000)
_TEXTS = _Memo(20_000)


def _fields(obj: Any) -> tuple[Any, ...]:
    """A dataclass's values as a hashable key (lists become tuples; their items are frozen)."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in vars(obj).values())


def _entry_key(entry: DigestEntry, lang: str) -> tuple[Any, ...]:
    """Everything an entry's rendering can depend on: the same paper differs per reader only
    by language, topic hits (names, scores, reasons) and followed authors."""
    enrichment = _fields(entry.enrichment) if entry.enrichment else None
    return (lang, _fields(entry.paper), entry.announcement, tuple(entry.hits), enrichment,
            tuple(entry.authors))


def _effective(limit: int | None, text: str) -> int | None:
    """A clip limit that keeps all of `text` renders like no limit: share one cached row."""
    return None if limit and len(text) <= limit else limit


@dataclass(frozen=True)
class _Entry:
    """An entry with its cache key, computed once per render (hashing a paper is not free)."""

    entry: DigestEntry
    key: tuple[Any, ...]

    @classmethod
    def of(cls, entry: DigestEntry, lang: str) -> _Entry:
        return cls(entry, _entry_key(entry, lang))


def _row(item: _Entry, lang: str, en_chars: int | None, zh_chars: int | None) -> _Part:
    """One entry's inlined table row, rendered once per paper, language, hits and clip."""
    entry = item.entry
    zh_text = entry.enrichment.abstract_zh if entry.enrichment else ""
    en_chars = _effective(en_chars, entry.paper.abstract or "")
    zh_chars = _effective(zh_chars, zh_text or "")

    def make() -> _Part:
        raw = environment().get_template("email/_entry_row.html").render(
            entry=entry, lang=lang, en_chars=en_chars, zh_chars=zh_chars)
        wrapped = _inliner().inline_fragment(f"<table>{raw}</table>", _stylesheet())
        head, tail = _ROW_WRAPPER
        if not (wrapped.startswith(head) and wrapped.endswith(tail)):
            raise RuntimeError(f"css-inline returned an unexpected row: {wrapped[:80]!r}")
        return _Part.of(wrapped[len(head):-len(tail)])

    return _ROWS.get((item.key, en_chars, zh_chars), make)


def _entry_text(item: _Entry, lang: str) -> str:
    return _TEXTS.get(item.key, lambda: environment().get_template(
        "email/_entry.txt").render(entry=item.entry, lang=lang))


def _shell(context: dict[str, Any], more: int) -> tuple[_Part, _Part]:
    """The inlined page around the rows (header, footer with `more`), split where rows go."""
    page = _inliner().inline(environment().get_template("email/digest.html").render(
        context, entry_rows=markupsafe.Markup(_ROWS_MARKER), more=more))
    before, marker, after = page.partition(_ROWS_MARKER)
    if not marker:
        raise RuntimeError("css-inline dropped the entry-rows marker from digest.html")
    return _Part.of(before), _Part.of(after)


def email_context(digest: Digest, *, unsubscribe_url: str | None = None,
                  preferences_url: str | None = None,
                  pages_url: str | None = None) -> dict[str, Any]:
    """What email/digest.html and digest.txt see besides the entries and the `more` count."""
    lang = digest.subscriber.lang
    return {
        "digest": digest,
        "lang": lang,
        "subject": subject(digest),
        "lead_topic": lead_topic(digest),
        "header": i18n.header_line(digest, lang),
        "late": i18n.late_line(digest, lang),
        "followed": i18n.followed_topics(digest, lang),
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
        "pages_url": pages_url,
    }


def render_email(
    digest: Digest,
    *,
    unsubscribe_url: str | None = None,
    preferences_url: str | None = None,
    pages_url: str | None = None,
    feedback_link: str | None = None,
) -> RenderedEmail:
    """Subject, plain text and inlined HTML for one digest.

    The HTML is kept under `HTML_BUDGET_BYTES`: abstracts are shortened, then dropped (English
    first — the Chinese one is the reason to subscribe), and as a last resort trailing entries
    move into the "另有 K 篇" count, so the footer with the unsubscribe link always survives.

    The same paper goes to thousands of readers, so each entry row is rendered and inlined
    once and cached; the page around the rows is inlined on its own and the rows are spliced
    in (the same bytes as inlining the whole page). Sizes add up, so fitting the budget costs
    no re-rendering. With `feedback_link` (`signing.feedback_link`), each entry is followed by
    its reader's 👍/👎 links (`controls`), stitched beside the shared row, never inside it.
    """
    lang = digest.subscriber.lang
    context = email_context(digest, unsubscribe_url=unsubscribe_url,
                            preferences_url=preferences_url, pages_url=pages_url)
    items = [_Entry.of(e, lang) for e in digest.entries]
    votes = [_Part.of(controls.email_row(feedback_link, i.entry.paper.id, lang) if feedback_link
                      else "") for i in items]
    text = environment().get_template("email/digest.txt").render(
        context, more=digest.more, entry_texts=[
            _entry_text(i, lang) + (controls.email_text(feedback_link, i.entry.paper.id, lang)
                                    if feedback_link else "") for i in items])
    shell = _shell(context, digest.more)
    rows = _fitting_rows(shell, items, lang, votes)
    if rows is None:
        keep, shell = _fitting_count(context, items, digest.more, votes)
        rows = _fitting_rows(shell, items[:keep], lang, votes) or [
            _row(i, lang, *_ABSTRACT_STEPS[-1]) for i in items[:keep]]
    html = (shell[0].html + "".join(r.html + v.html for r, v in zip(rows, votes, strict=False))
            + shell[1].html)
    return RenderedEmail(subject=context["subject"], text=text, html=html)


def _fitting_rows(shell: tuple[_Part, _Part], items: list[_Entry],
                  lang: str, extra: list[_Part]) -> list[_Part] | None:
    """The rows at the first abstract step that fits the budget beside the `extra` part of
    each (its controls), or None if none does."""
    room = (HTML_BUDGET_BYTES - shell[0].size - shell[1].size
            - sum(p.size for p in extra[:len(items)]))
    for en_chars, zh_chars in _ABSTRACT_STEPS:
        rows = [_row(i, lang, en_chars, zh_chars) for i in items]
        if sum(r.size for r in rows) <= room:
            return rows
    return None


def _fitting_count(context: dict[str, Any], items: list[_Entry],
                   more: int, extra: list[_Part]) -> tuple[int, tuple[_Part, _Part]]:
    """How many leading entries fit without abstracts (at least one), and the page for them.

    The footer's count grows as entries move into it, so the page is re-measured until the
    count settles (it only shrinks, at most a digit's worth each time).
    """
    sizes = [_row(i, context["lang"], *_ABSTRACT_STEPS[-1]).size + e.size
             for i, e in zip(items, extra, strict=True)]
    keep = len(items) - 1
    while True:
        shell = _shell(context, more + len(items) - keep)
        room = HTML_BUDGET_BYTES - shell[0].size - shell[1].size
        totals = itertools.accumulate(sizes[:keep])
        fits = next((n for n, total in enumerate(totals) if total > room), keep)
        if fits >= keep or keep <= 1:
            return keep, shell
        keep = max(1, fits)
