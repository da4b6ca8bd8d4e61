"""The digest email: plain text and CSS-inlined HTML, assembled from pieces rendered once.

A day's papers go to thousands of readers: each paper's row and text are rendered (and
inlined) once per language and abstract cut, the page around them once per language and
shape, each as a `fragments.Stamp` whose slots take the reader's parts.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Protocol

from digestbot.models import Digest, DigestEntry
from digestbot.render import i18n
from digestbot.render.base import (
    _ABSTRACT_STEPS,
    HTML_BUDGET_BYTES,
    RenderedEmail,
    badge,
    environment,
    hit_text,
    lead_topic,
    subject,
)
from digestbot.render.fragments import Columns, Memo, Part, Stamp, block, slot
from digestbot.render.i18n import label
from digestbot.render.rows import _inliner, _Rows, inline_piece

# Where the rows go in the inlined page (see `fragments.block`).
_ROWS_MARKER = block("entry-rows")
# A paper's row (per language and abstract cut) and text, rendered once for every reader.
_ROWS = Memo(20_000)
_TEXTS = Memo(20_000)
# Page shells and reason lines, per language and which optional parts are there.
_PIECES = Memo(1_000)


def _fields(obj: Any) -> tuple[Any, ...]:
    """A dataclass's values as a hashable key (lists become tuples; their items are frozen)."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in vars(obj).values())


def _paper_key(entry: DigestEntry, lang: str) -> Hashable:
    """What a paper's reader-independent rendering depends on: the batch's name for it
    (`DigestEntry.key`), else its content (hits and followed authors are the reader's)."""
    if entry.key is not None:
        return (entry.key, lang)
    enrichment = _fields(entry.enrichment) if entry.enrichment else None
    return (lang, _fields(entry.paper), entry.announcement, enrichment)


def text_reasons(entry: DigestEntry, lang: str) -> str:
    """The reader's reasons for a paper in the plain-text email (see email/_entry.txt)."""
    hit_label = label(lang, "专题命中", "Topic match")
    # A blank line after a followed author, none after a hit (as the template always had it).
    return "".join([*(f"{i18n.followed_author(a, lang)}\n\n" for a in entry.authors),
                    *(f"{hit_label}: {hit_text(h)}\n" for h in entry.hits)])


def _reason_line(reason_label: str) -> Stamp:
    return _PIECES.get(("reason", reason_label), lambda: inline_piece(
        environment().get_template("email/_entry_reason.html").render(
            reason_label=reason_label, reason_text=slot("text"))))


def html_reasons(entry: DigestEntry, lang: str) -> str:
    """The reader's reasons for a paper as inlined email rows' lines (followed authors, hits)."""
    author, hit = _reason_line("👤"), _reason_line(label(lang, "专题命中", "Topic match"))
    return "".join([*(author.fill({"text": i18n.followed_author(a, lang)}) for a in entry.authors),
                    *(hit.fill({"text": hit_text(h)}) for h in entry.hits)])


class _Entry:
    """An entry with its badge and reasons filled in: its rows (split where the reader's
    controls go) and its text, made once for every reader the same entry goes to, as UTF-8
    bytes (the pieces of the email's joins), with what a digest asks of each entry besides
    (its paper's id, its hits' topics), so a digest reads its entries once."""

    __slots__ = ("filled", "paper_id", "reader", "reader_size", "rows", "sizes", "text", "topics")

    def __init__(self, entry: DigestEntry, lang: str) -> None:
        paper = (entry.key[0], lang) if entry.key else _paper_key(entry, lang)
        self.rows: _Rows = _ROWS.get(paper, lambda: _Rows(entry, lang))
        self.paper_id = entry.paper.id
        self.topics = tuple(h.topic for h in entry.hits)
        # The entry's values in its row; the reader's controls go where the row is split.
        self.reader = {"match": badge(entry), "reasons": html_reasons(entry, lang)}
        self.reader_size = sum(len(self.reader[k].encode("utf-8")) for k in ("match", "reasons"))
        # By the step's place in _ABSTRACT_STEPS (None: not asked yet). Fitting the budget
        # asks each entry's size at several steps for every reader: a list, not a dict, so
        # no step tuple is hashed for it.
        self.filled: list[tuple[bytes, bytes] | None] = [None] * len(_ABSTRACT_STEPS)
        self.sizes: list[int | None] = [None] * len(_ABSTRACT_STEPS)
        text = _TEXTS.get(paper, lambda: Stamp(environment().get_template(
            "email/_entry.txt").render(entry=entry, lang=lang, match=slot("match"),
                                       reasons=slot("reasons"), controls=slot("controls")),
            html=False))
        # The controls come last in an entry's text (see _entry.txt).
        self.text = text.fill({"match": self.reader["match"], "controls": "",
                               "reasons": text_reasons(entry, lang)}).encode("utf-8")

    @staticmethod
    def of(entry: DigestEntry, lang: str) -> _Entry:
        key = (entry.key, lang) if entry.key else (
            _paper_key(entry, lang), tuple(entry.hits), tuple(entry.authors))
        return _FILLED.get(key, lambda: _Entry(entry, lang))

    @staticmethod
    def all(entries: list[DigestEntry], lang: str) -> list[_Entry]:
        """`of` each entry, those filled already read straight from the memo."""
        filled = _FILLED.items
        return [filled.get((e.key, lang)) or _Entry.of(e, lang) if e.key else _Entry.of(e, lang)
                for e in entries]

    def size(self, step: int) -> int:
        """The entry's rows' size at `_ABSTRACT_STEPS[step]`."""
        size = self.sizes[step]
        if size is None:
            size = self.sizes[step] = self.rows.at(_ABSTRACT_STEPS[step]).size + self.reader_size
        return size

    def html(self, step: int) -> tuple[bytes, bytes]:
        """The entry's rows at `_ABSTRACT_STEPS[step]`, before and after where the reader's
        controls go."""
        filled = self.filled[step]
        if filled is None:  # the paper's row, encoded once, around the reader's values
            filled = self.filled[step] = self.rows.at(_ABSTRACT_STEPS[step]).around(
                self.reader, "controls")
        return filled


# A distinct entry (paper and reasons) filled in, per language.
_FILLED = Memo(50_000)


# The page's values that differ per reader; absent ones ("" or None) leave out their parts.
_PAGE_SLOTS = ("subject", "header", "late", "more", "pages_url", "followed", "preferences_url",
               "unsubscribe_url")


def _page(template: str, context: dict[str, Any], more: int, **extra: Any) -> tuple[Stamp, dict[str, str]]:
    """`template` (digest.html or .txt) for this reader: a stamp rendered once per language
    and set of present parts, and the values to fill it with."""
    lang = context["lang"]
    values = {name: context.get(name) or "" for name in _PAGE_SLOTS}
    values["more"] = i18n.more_not_shown(more, lang) if more else ""
    shape = tuple(map(bool, values.values()))

    def make() -> Stamp:
        marks: dict[str, Any] = {name: slot(name) if present else None
                                 for name, present in zip(values, shape, strict=True)}
        # `more_not_shown` is the template's; here it gives the marker for the reader's line.
        marks.update(more=1 if values["more"] else 0, lang=lang,
                     more_not_shown=lambda _more, _lang: slot("more"))
        text = environment().get_template(template).render(marks, **extra)
        html = template.endswith(".html")
        return Stamp(_inliner().inline(text) if html else text, html=html)

    return _PIECES.get((template, lang, shape), make), values


def _shell(context: dict[str, Any], more: int) -> tuple[Part, Part]:
    """The inlined page around the rows (header, footer with `more`), split where rows go."""
    stamp, values = _page("email/digest.html", context, more, entry_rows=_ROWS_MARKER)
    if not any(name == "entry-rows" for name, _ in stamp.slots):
        raise RuntimeError("css-inline dropped the entry-rows marker from digest.html")
    before, after = stamp.around(values, "entry-rows")
    return Part(before), Part(after)


def email_context(digest: Digest, *, unsubscribe_url: str | None = None,
                  preferences_url: str | None = None, pages_url: str | None = None,
                  hit_topics: Iterable[str] | None = None) -> dict[str, Any]:
    """What email/digest.html and digest.txt see besides the entries and the `more` count
    (`hit_topics`: see `lead_topic`)."""
    lang = digest.subscriber.lang
    lead = lead_topic(digest, hit_topics)
    return {
        "digest": digest,
        "lang": lang,
        "subject": subject(digest, lead),
        "lead_topic": lead,
        "header": i18n.header_line(digest, lang),
        "late": i18n.late_line(digest, lang),
        "followed": i18n.followed_topics(digest, lang),
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
        "pages_url": pages_url,
    }


_RULE = "=" * 66


@functools.lru_cache(maxsize=1_000)
def _numbered(n: int) -> bytes:
    """What opens the text of entry `n`: a rule and its number."""
    return f"\n{_RULE}\n[{n}] ".encode("ascii")


@functools.lru_cache(maxsize=256)
def _numbers(count: int) -> tuple[bytes, ...]:
    """What opens the text of each of `count` entries."""
    return tuple(map(_numbered, range(1, count + 1)))


def _interleave(first: bytes, columns: Sequence[Sequence[bytes]], last: bytes) -> bytes:
    """`first`, each row's pieces in column order, then `last`, in one join: the list built by
    a strided slice assignment per column (C) rather than zip and chain (a tuple per row),
    half the cost of a digest's joins. Columns of unequal length raise ValueError."""
    width = len(columns)
    pieces = [b""] * (width * (len(columns[0]) if columns else 0) + 2)
    pieces[0], pieces[-1] = first, last
    for k, column in enumerate(columns):
        pieces[1 + k:-1:width] = column
    return b"".join(pieces)


class _Lineup:
    """A digest's entries in order, as `render_email` joins them: their `_Entry`s, paper ids,
    hit topics and text, and per abstract step their rows' total size and pieces. Readers with
    the same subscriptions and nothing to leave out get the same entries: made once for all of
    them (`of`), a digest is then the reader's values joined between these lists."""

    __slots__ = ("heads", "headlines", "items", "paper_ids", "tails", "texts", "topics",
                 "totals")

    def __init__(self, items: list[_Entry]) -> None:
        # Columns by C maps, not comprehensions: a day makes a lineup per set of subscriptions.
        self.items = items
        self.paper_ids = tuple(map(_PAPER_ID, items))
        self.topics = tuple(itertools.chain.from_iterable(map(_TOPICS, items)))
        self.texts = tuple(map(_TEXT, items))
        # By the step's place in _ABSTRACT_STEPS (None: not asked yet), as `_Entry`'s.
        self.totals: list[int | None] = [None] * len(_ABSTRACT_STEPS)
        self.heads: list[Sequence[bytes] | None] = [None] * len(_ABSTRACT_STEPS)
        self.tails: list[Sequence[bytes] | None] = [None] * len(_ABSTRACT_STEPS)
        self.headlines: dict[Hashable, dict[str, Any]] = {}

    @staticmethod
    def of(digest: Digest) -> _Lineup:
        """The lineup of the digest's entries: shared by every digest of the same entries
        (named by `Digest.key`, else by their keys, as `_Entry`s are), else its own."""
        entries, lang = digest.entries, digest.subscriber.lang
        key = digest.key
        if key is None:
            key = tuple(map(_KEY, entries))
            if None in key:
                return _Lineup(_Entry.all(entries, lang))
        return _LINEUPS.get((lang, key), lambda: _Lineup(_Entry.all(entries, lang)))

    def head(self, n: int) -> _Lineup:
        """The first `n` entries (a digest cut to fit the budget)."""
        return _Lineup(self.items[:n])

    def headline(self, digest: Digest) -> dict[str, Any]:
        """`email_context` but the links, for a digest of these entries: alike for every
        reader with the same topics (as named), thresholds, date, size, language, cadence and
        lateness, so worked out once for them (shared: read only)."""
        key = (tuple([(t.slug, t.name_zh, t.name_en) for t in digest.topics]),
               tuple(digest.thresholds.items()), digest.date, digest.more,
               digest.subscriber.lang, digest.subscriber.cadence, digest.late)
        known = self.headlines.get(key)
        if known is None:
            if len(self.headlines) >= 16:  # a lineup outlives its day only in a long run
                self.headlines.clear()
            context = email_context(digest, hit_topics=self.topics)
            known = self.headlines[key] = {k: v for k, v in context.items() if k != "digest"}
        return known

    def total(self, step: int) -> int:
        """The entries' rows' size at `_ABSTRACT_STEPS[step]`."""
        total = self.totals[step]
        if total is None:
            try:  # each entry's size at this step known already (another digest asked it)
                total = sum(map(_SIZE_AT[step], map(_SIZES, self.items)))
            except TypeError:  # a None: some entry's size at this step not asked yet
                total = sum([i.size(step) for i in self.items])
            self.totals[step] = total
        return total

    def html(self, step: int) -> tuple[Sequence[bytes], Sequence[bytes]]:
        """The entries' rows at `_ABSTRACT_STEPS[step]`, before and after the controls."""
        heads, tails = self.heads[step], self.tails[step]
        if heads is None or tails is None:
            pairs = [i.filled[step] or i.html(step) for i in self.items]
            heads = self.heads[step] = tuple(map(_HEAD, pairs))
            tails = self.tails[step] = tuple(map(_TAIL, pairs))
        return heads, tails


_KEY = operator.attrgetter("key")
_PAPER_ID, _TOPICS, _TEXT, _SIZES = map(operator.attrgetter, ("paper_id", "topics", "text",
                                                              "sizes"))
_HEAD, _TAIL = operator.itemgetter(0), operator.itemgetter(1)
# Digests' entries as lineups, per language (a day has one per distinct set of subscriptions).
_LINEUPS = Memo(20_000)


def render_email(
    digest: Digest,
    *,
    unsubscribe_url: str | None = None,
    preferences_url: str | None = None,
    pages_url: str | None = None,
    controls: EntryControls | None = None,
) -> RenderedEmail:
    """Subject, plain text and inlined HTML for one digest (UTF-8 bytes; see `RenderedEmail`).

    The HTML is kept under `HTML_BUDGET_BYTES`: abstracts are shortened, then dropped (English
    first — the Chinese one is the reason to subscribe), and as a last resort trailing entries
    move into the "另有 K 篇" count, so the footer with the unsubscribe link always survives.

    The same paper goes to thousands of readers, so each paper's row is rendered and inlined
    once (per language and abstract cut) with slots for the reader's parts — the match badge,
    their reasons (topic hits, followed authors) and `controls` — and the page around the
    rows is inlined once per language and shape with slots for the reader's values; a digest
    is then a join of those pieces (the same bytes as inlining the whole page), each encoded
    to UTF-8 once: a digest's text is often a UCS-4 string (an emoji makes it so), four bytes
    a character to copy and then an encode per reader. Sizes add up, so fitting the budget
    costs no rendering; and readers who get the same entries share their lineup (`_Lineup`).

    `controls` (optional) gives each entry's per-reader-per-paper markup (👍/👎 links): its
    `html(entry)` is inlined HTML (see `inline_piece`) placed after the entry's links line,
    its `text(entry)` the plain-text lines after the PDF link.
    """
    lineup = _Lineup.of(digest)
    context = {**lineup.headline(digest), "unsubscribe_url": unsubscribe_url,
               "preferences_url": preferences_url, "pages_url": pages_url}
    columns = _columns(controls, digest.entries, lineup)
    extra = sum(columns.sizes)
    stamp, values = _page("email/digest.txt", context, digest.more, entries=slot("entries"))
    # Each part is one join of every piece: a ~100 KB page built by steps costs more in
    # copies (and fresh pages of memory) than everything else a digest does.
    before, after = stamp.around(values, "entries")
    text = _interleave(before, [_numbers(len(lineup.items)), lineup.texts, *columns.text], after)
    shell = _shell(context, digest.more)
    step = _fitting_step(shell, lineup, extra)
    if step is None:
        sizes = [i.size(_LAST) + c for i, c in zip(lineup.items, columns.sizes, strict=True)]
        keep, shell = _fitting_count(context, sizes, digest.more)
        lineup, columns = lineup.head(keep), columns.head(keep)
        step = _fitting_step(shell, lineup, sum(columns.sizes))
        if step is None:
            step = _LAST
    heads, tails = lineup.html(step)
    return RenderedEmail(subject=context["subject"], text_bytes=text, html_bytes=_interleave(
        shell[0].data, [heads, *columns.html, tails], shell[1].data))


class EntryControls(Protocol):
    """Per-reader, per-paper pieces stitched into each email entry (see `render_email`); a
    `columns(paper_ids)` method, when there is one, gives them as `Columns` instead (by the
    entries' paper ids, which the email keeps at hand)."""

    def html(self, entry: DigestEntry) -> str: ...

    def text(self, entry: DigestEntry) -> str: ...


def _columns(controls: EntryControls | None, entries: list[DigestEntry],
             lineup: _Lineup) -> Columns:
    if controls is None:
        return Columns([], [0] * len(entries), [])
    columns = getattr(controls, "columns", None)
    if columns is not None:
        return columns(lineup.paper_ids)
    html = [controls.html(e).encode("utf-8") for e in entries]
    return Columns([html], list(map(len, html)),
                   [[controls.text(e).encode("utf-8") for e in entries]])


def _fitting_step(shell: tuple[Part, Part], lineup: _Lineup, extra: int) -> int | None:
    """The first abstract step (its place in `_ABSTRACT_STEPS`) at which the rows (and `extra`
    bytes of controls) fit the budget, or None if none does."""
    room = HTML_BUDGET_BYTES - shell[0].size - shell[1].size - extra
    return next((step for step in _STEPS if lineup.total(step) <= room), None)


_STEPS = range(len(_ABSTRACT_STEPS))
_SIZE_AT = [operator.itemgetter(step) for step in _STEPS]
_LAST = len(_ABSTRACT_STEPS) - 1


def _fitting_count(context: dict[str, Any], sizes: list[int],
                   more: int) -> tuple[int, tuple[Part, Part]]:
    """How many leading entries fit without abstracts (at least one), and the page for them.

    The footer's count grows as entries move into it, so the page is re-measured until the
    count settles (it only shrinks, at most a digit's worth each time).
    """
    keep = len(sizes) - 1
    while True:
        shell = _shell(context, more + len(sizes) - keep)
        room = HTML_BUDGET_BYTES - shell[0].size - shell[1].size
        totals = itertools.accumulate(sizes[:keep])
        fits = next((n for n, total in enumerate(totals) if total > room), keep)
        if fits >= keep or keep <= 1:
            return keep, shell
        keep = max(1, fits)
