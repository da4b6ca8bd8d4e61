"""A paper's email rows, rendered and CSS-inlined once per language and shared by every
reader (the reader's badge, reasons and controls are slots), and inlining of pieces of an
entry (`inline_piece`) the same way; `render.email` assembles digests from them.
"""

from __future__ import annotations

import functools

import css_inline

from digestbot.models import DigestEntry
from digestbot.render.base import clip, environment
from digestbot.render.fragments import Stamp, block, slot
from digestbot.render.i18n import label


@functools.cache
def _inliner() -> css_inline.CSSInliner:
    # @media rules (dark mode, phones) cannot be inlined; keep them in a <style> block.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False, minify_css=True)


@functools.cache
def _stylesheet() -> str:
    """The email's CSS as digest.html embeds it, for inlining a row outside the page."""
    return environment().get_template("email/_digest.css").render()


def inline_piece(html: str) -> Stamp:
    """A piece of an entry (`html`, with `slot`/`block` markers) inlined as it is inside an
    entry row: the hook for per-reader-per-paper markup such as 👍/👎 links. Render and
    inline it once per language, then `fill` it per reader and pass the result as an
    entry's controls (see `render_email`)."""
    html = _inliner().inline_fragment(
        f'<table><tr><td class="entry">{_FROM}{html}{_TO}</td></tr></table>', _stylesheet())
    start, end = html.find(_FROM), html.find(_TO)
    if start < 0 or end < start:
        raise RuntimeError(f"css-inline moved a piece out of its entry: {html[:80]!r}")
    return Stamp(html[start + len(_FROM):end])


_FROM, _TO = block("piece-from"), block("piece-to")
# How css-inline returns a row parsed inside a bare table (the parser adds the <tbody>).
_ROW_WRAPPER = ("<table><tbody>", "</tbody></table>")


def _effective(limit: int | None, text: str) -> int | None:
    """A clip limit that keeps all of `text` renders like no limit: share one cached row."""
    return None if limit and len(text) <= limit else limit


# An abstract cut: (English chars, Chinese chars), None = whole, 0 = left out.
Step = tuple[int | None, int | None]


class _Rows:
    """One paper's inlined table rows in one language, one per abstract cut (made when first
    asked, shared by every reader); the reader's badge, reasons and controls are their slots.

    Rendering and inlining cost far more than anything else here, and a digest over the budget
    asks several cuts: each shape (which abstracts show) is rendered once with the abstracts
    and the "shortened" note as slots, and a cut fills them — the same bytes, as a filled
    stamp is (`fragments`)."""

    def __init__(self, entry: DigestEntry, lang: str) -> None:
        self.entry, self.lang = entry, lang
        self.by_step: dict[Step, Stamp] = {}
        self.shapes: dict[tuple[bool, bool], Stamp] = {}
        self.raw: str | None = None

    def at(self, step: Step) -> Stamp:
        try:
            return self.by_step[step]
        except KeyError:
            pass
        entry, lang = self.entry, self.lang
        en_text = entry.paper.abstract or ""
        zh_text = (entry.enrichment.abstract_zh if entry.enrichment else "") or ""
        cut = (_effective(step[0], en_text), _effective(step[1], zh_text))
        if cut not in self.by_step:
            shape = (bool(en_text) and cut[0] != 0,
                     lang != "en" and bool(zh_text) and cut[1] != 0)
            if shape not in self.shapes:
                self.shapes[shape] = self._render(shape)
            shortened = ((cut[0] is not None and len(en_text) > cut[0])
                         or (cut[1] is not None and entry.enrichment is not None
                             and len(zh_text) > cut[1]))
            # The reader's slots (match, reasons, controls) stay slots.
            self.by_step[cut] = self.shapes[shape].partial({
                "en-abstract": clip(en_text, cut[0]), "zh-abstract": clip(zh_text, cut[1]),
                "shortened": _shortened(lang) if shortened else ""})
        stamp = self.by_step[step] = self.by_step[cut]
        return stamp

    def _render(self, shape: tuple[bool, bool]) -> Stamp:
        """The row with these abstracts shown, their text and the note as slots: the row with
        every abstract there is, rendered once, less the paragraphs (or the whole <details>)
        this shape leaves out — as the template leaves them out — then inlined."""
        if self.raw is None:
            self.raw = environment().get_template("email/_entry_row.html").render(
                entry=self.entry, lang=self.lang, en_chars=None, zh_chars=None,
                en_text=slot("en-abstract"), zh_text=slot("zh-abstract"),
                shortened=slot("shortened"), match=slot("match"), reasons=block("reasons"),
                controls=block("controls"))
        raw = self.raw
        for shown, name in zip(shape, ("en-abstract", "zh-abstract"), strict=True):
            at = raw.find(slot(name))
            if not shown and at >= 0:  # its paragraph is a line of its own
                raw = raw[:raw.rfind("\n", 0, at) + 1] + raw[raw.index("\n", at) + 1:]
        if not any(shape):
            start, end = raw.find("<details>\n"), raw.find("</details>\n")
            if start >= 0:
                if end < start:
                    raise RuntimeError(f"unexpected abstracts in a row: {raw[start - 40:]!r}")
                raw = raw[:start] + raw[end + len("</details>\n"):]
        wrapped = _inliner().inline_fragment(f"<table>{raw}</table>", _stylesheet())
        head, tail = _ROW_WRAPPER
        if not (wrapped.startswith(head) and wrapped.endswith(tail)):
            raise RuntimeError(f"css-inline returned an unexpected row: {wrapped[:80]!r}")
        return Stamp(wrapped[len(head):-len(tail)])


@functools.cache
def _shortened(lang: str) -> str:
    """The note after the links of an entry whose abstracts are cut (see _entry.html)."""
    return f" · {label(lang, '摘要已缩短，全文见 arXiv', 'abstract shortened, full text on arXiv')}"
