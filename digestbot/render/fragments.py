"""Pieces rendered once and filled in per reader, so a digest is a join of strings.

A `Stamp` is a template rendered (and, for email HTML, CSS-inlined) once with markers where a
reader's values go: `slot(name)` for a text value, `block(name)` for ready markup (entry rows,
a reader's reasons, per-reader-per-paper controls). Filling it in escapes each text value the
way css-inline's HTML serializer writes a parsed page, so a filled stamp is byte for byte the
page that rendering and inlining with those values would give, at the cost of a few joins.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import markupsafe

# Private-use code points: never in our templates or data we put there, and left alone by
# jinja's escaping and by the HTML parser, so a marker comes out of inlining as it went in.
_SLOT = "\ue000{}\ue001"
# A comment stays in place through css-inline's parser (inside a table too), where text
# between table rows would be moved out of the table.
_BLOCK = "<!--digestbot:{}-->"
_MARKERS = re.compile("\ue000([\\w-]+)\ue001|<!--digestbot:([\\w-]+)-->")


def split(text: str) -> list[str | None]:
    """`_MARKERS.split(text)`: literal, slot name or None, block name or None, literal, ...

    Each marker is found with `str.find` and only then matched: a stamp is kilobytes of text
    with a few markers, where the pattern's scan tries both kinds at every character (most of
    what making a paper's stamps cost)."""
    parts: list[str | None] = []
    literal = pos = 0
    while True:
        at = min(text.find(_SLOT_OPEN, pos) % _FAR, text.find(_BLOCK_OPEN, pos) % _FAR)
        if at == _FAR - 1:
            return [*parts, text[literal:]]
        match = _MARKERS.match(text, at)
        if match is None:
            pos = at + 1
            continue
        parts += (text[literal:at], match[1], match[2])
        literal = pos = match.end()


_SLOT_OPEN, _BLOCK_OPEN = "\ue000", _BLOCK.split("{", 1)[0]
# `find`'s -1 (not found) taken modulo this is past any text's end.
_FAR = 2**62


def slot(name: str) -> str:
    """A marker for a text value, to pass to a template where the value would go."""
    return _SLOT.format(name)


def block(name: str) -> markupsafe.Markup:
    """A marker for ready markup (never escaped when filled)."""
    return markupsafe.Markup(_BLOCK.format(name))


def html_text(value: str) -> str:
    """`value` as the serializer writes a text node parsed from its jinja-escaped form."""
    value = _newlines(value).replace("\0", "")
    return (value.replace("&", "&amp;").replace("\xa0", "&nbsp;")
            .replace("<", "&lt;").replace(">", "&gt;"))


def html_rcdata(value: str) -> str:
    """As `html_text`, inside <title> (the parser keeps a NUL there, as U+FFFD)."""
    return html_text(value.replace("\0", "\ufffd"))


def html_attribute(value: str) -> str:
    """`value` as the serializer writes a double-quoted attribute."""
    value = _newlines(value).replace("\0", "\ufffd")
    return value.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace('"', "&quot;")


def _newlines(value: str) -> str:
    # The parser's input preprocessing: CRLF and lone CR become LF.
    return value.replace("\r\n", "\n").replace("\r", "\n") if "\r" in value else value


def _raw(value: str) -> str:
    return value


def _escaper(before: str, html: bool) -> Callable[[str], str]:
    """How the value of a slot that follows `before` must be escaped."""
    if not html:
        return _raw
    if before.rfind("<") > before.rfind(">"):
        return html_attribute
    if before.rfind("<title") > before.rfind("</title>"):
        return html_rcdata
    return html_text


class Stamp:
    """Literal text with named slots; `fill` puts the values in (a missing one as "")."""

    def __init__(self, text: str, *, html: bool = True) -> None:
        parts = split(text)
        literals: list[str] = parts[0::3]
        slots: list[tuple[str, Callable[[str], str]]] = []
        seen = ""
        for n, literal in enumerate(literals[:-1]):
            seen += literal
            name, block_name = parts[3 * n + 1], parts[3 * n + 2]
            slots.append((block_name, _raw) if block_name
                         else (name, _escaper(seen, html)))
        self._made(literals, slots)

    def partial(self, values: Mapping[str, str]) -> Stamp:
        """The stamp with the slots `values` names filled (escaped as `fill` does) and the
        others kept as they are, without reading the text again: a value is never taken
        for a marker."""
        literals, slots = [self.literals[0]], []
        for (name, escape), literal in zip(self.slots, self.literals[1:], strict=True):
            if name in values:
                value = values[name] or ""
                literals[-1] += (escape(value) if escape is not _raw else value) + literal
            else:
                slots.append((name, escape))
                literals.append(literal)
        stamp = Stamp.__new__(Stamp)
        stamp._made(literals, slots)
        return stamp

    def _made(self, literals: list[str], slots: list[tuple[str, Callable[[str], str]]]) -> None:
        self.literals, self.slots = literals, slots
        # The literals encoded (for `around`), and so the stamp's size.
        self._utf8 = [t.encode("utf-8") for t in literals]
        self.size = sum(map(len, self._utf8))
        # (slot, value) → the value escaped and encoded for `around`: a page's values are
        # mostly alike for thousands of readers (subject, header, topics), its links not.
        self._encoded: dict[tuple[int, str], bytes] = {}
        self._format: Callable[..., str] | None = None  # made at the first `fill`

    def fill(self, values: Mapping[str, str]) -> str:
        if self._format is None:  # rows are joined `around` their slots, never filled
            # One str.format call per fill: the literals with their braces doubled, a field
            # per slot.
            self._format = "".join(
                t.replace("{", "{{").replace("}", "}}") + ("{}" if n < len(self.slots) else "")
                for n, t in enumerate(self.literals)).format
        return self._format(*[escape(values.get(name) or "") if escape is not _raw
                              else values.get(name) or "" for name, escape in self.slots])

    def around(self, values: Mapping[str, str], at: str) -> tuple[bytes, bytes]:
        """The stamp filled with `values`, before and after its slot `at` (left empty), as
        UTF-8: the literals encoded once, each value as it goes in, so a page around a
        digest's entries costs no encode (nor a copy) of its whole text per reader; a large
        value goes in by the caller's one join instead of a copy here and another there."""
        n = next(i for i, (name, _) in enumerate(self.slots) if name == at)
        pieces, encoded = [self._utf8[0]], self._encoded
        if len(encoded) > _ENCODED:
            encoded.clear()
        for k, ((name, escape), literal) in enumerate(zip(self.slots, self._utf8[1:],
                                                          strict=True)):
            value = values.get(name) or ""
            data = encoded.get((k, value))
            if data is None:
                data = encoded[k, value] = (
                    escape(value) if escape is not _raw else value).encode("utf-8")
            pieces += (data, literal)
        return b"".join(pieces[:2 * n + 1]), b"".join(pieces[2 * n + 2:])


# How many encoded values a stamp keeps for `around` (a day's distinct subjects, headers and
# links of one page shape; past it, they are encoded afresh).
_ENCODED = 1_024


@dataclass(frozen=True)
class Part:
    """A piece of the final HTML as UTF-8 bytes (its size is their length), so the budget is
    a sum, not a render, and the page a join of bytes."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @classmethod
    def of(cls, html: str) -> Part:
        return cls(html.encode("utf-8"))


class Memo:
    """A bounded, thread-safe memo: the oldest item goes first when full.

    Items are keyed by everything they show, so one is never stale, and the bound keeps a
    long-running `digestbot run` from growing without end (a day is a few thousand items).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: dict[Hashable, Any] = {}  # read freely; written only by `get`
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        try:
            return self.items[key]
        except KeyError:
            pass
        value = make()
        with self._lock:
            if len(self.items) >= self.size:
                del self.items[next(iter(self.items))]
            self.items[key] = value
        return value


@dataclass
class Columns:
    """The controls of a digest's entries as pieces of `render_email`'s joins, UTF-8 encoded:
    each column a piece per entry (an entry's HTML controls are its pieces in column order,
    likewise its text), and each entry's HTML controls' size."""

    html: list[Sequence[bytes]]
    sizes: list[int]
    text: list[Sequence[bytes]]

    def head(self, n: int) -> Columns:
        """The first `n` entries' HTML pieces (the text shows every entry)."""
        return Columns([c[:n] for c in self.html], self.sizes[:n], self.text)
