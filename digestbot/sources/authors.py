"""One author-list rule for every source: RSS, Atom, RDF, listing pages, API names.

arXiv's feeds write the authors as one string, the way arXiv's own serializer does it
(arxiv-feed `__add_authors`: `Name Suffix (Aff1, Aff2), Name2, ...`), and the mailings and
listing pages keep the submitter's Authors line (`A (1), B (2) and C ((1) IAS, (2) MIT)`).
So a comma splits authors only outside parentheses and braces, `and` before the last name
splits too, a bare `Jr.` belongs to the name before it, and numbered affiliations are looked
up in the legend the line ends with. Affiliations are kept as the feed wrote them (one
parenthesised group is one affiliation string: "Affiliation, City, Country" is not three
institutions): grounded, nothing guessed.

Names and affiliations are TeX in the feeds (`Przemys{\\l}aw`, `R\\'emy`) and are stored as
Unicode; pylatexenc does the conversion, only for strings that contain TeX at all, because
it costs ~0.3 ms a call and most names are plain.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pylatexenc.latex2text import LatexNodes2Text

from digestbot.models import Author

# Where a name ends at the outermost level: a comma (optionally followed by "and"), or "and".
_SEPARATOR = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")
_SUFFIX = re.compile(r"^(?:Jr|Sr|II|III|IV)\.?$")
_ET_AL = re.compile(r"^et\.? al\.?$", re.I)
# "(1)", "(1,2)", "(1 and 2)", "(5, on behalf of the team)": affiliation markers, not names.
_MARKERS = re.compile(r"^\s*\d+(?:\s*(?:,|and)\s*\d+)*")
# "(1) IAS, (2) Princeton": the legend numbered markers point into.
_LEGEND_ENTRY = re.compile(r"\((\d+)\)\s*([^()]*?)\s*(?=,?\s*\(\d+\)|$)")
_TEX = re.compile(r"[\\{}$]")

_latex = LatexNodes2Text()


@lru_cache(maxsize=8192)
def tex_to_unicode(text: str) -> str:
    """`R\\'emy` → `Rémy`; text without TeX comes back as it was (whitespace squashed)."""
    if _TEX.search(text):
        text = _latex.latex_to_text(text)
    return unicodedata.normalize("NFC", " ".join(text.split()))


def _mask(text: str) -> str:
    """`text` with everything inside (...) or {...} blanked, so separators are only seen
    at the outermost level. An unbalanced ')' (a cut-off string) does not go below zero."""
    out, depth = [], 0
    for ch in text:
        if ch in "({":
            depth += 1
            out.append("\0")
        elif ch in ")}":
            depth = max(depth - 1, 0)
            out.append("\0")
        else:
            out.append(ch if depth == 0 else "\0")
    return "".join(out)


def _pieces(text: str) -> list[str]:
    masked = _mask(text)
    cuts = [(m.start(), m.end()) for m in _SEPARATOR.finditer(masked)]
    pieces, start = [], 0
    for begin, end in cuts:
        pieces.append(text[start:begin])
        start = end
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def _trailing_groups(piece: str) -> tuple[str, list[str]]:
    """'Kurihara (1 and 2)' → ('Kurihara', ['1 and 2']); groups in reading order."""
    groups: list[str] = []
    rest = piece.rstrip()
    while rest.endswith(")"):
        depth = 0
        for i in range(len(rest) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(rest[i], 0)
            if depth == 0:
                break
        else:
            break  # unbalanced: leave the text in the name rather than guess
        groups.insert(0, rest[i + 1 : -1].strip())
        rest = rest[:i].rstrip()
    return rest, groups


def split_authors(text: str) -> list[Author]:
    """Every author of one authors string, in order, with the affiliations it states."""
    text = " ".join(text.split())
    if not text:
        return []
    raw: list[tuple[str, list[str], list[str]]] = []  # name, affiliations, markers
    legend: dict[str, str] = {}
    for piece in _pieces(text):
        name, groups = _trailing_groups(piece)
        affiliations: list[str] = []
        markers: list[str] = []
        for group in groups:
            if re.search(r"\(\d+\)", group):
                legend.update((n, a) for n, a in _LEGEND_ENTRY.findall(group) if a)
            elif m := _MARKERS.match(group):
                markers += re.findall(r"\d+", m.group(0))
            elif group:
                affiliations.append(group)
        if _ET_AL.match(name):
            continue  # "…, et al": not a person, and no affiliation of anyone's
        if not name and raw:
            # "(MIT)" or a legend on its own: it belongs to the author before it.
            raw[-1][1].extend(affiliations)
            raw[-1][2].extend(markers)
        elif _SUFFIX.match(name) and raw:
            prev = raw[-1]
            raw[-1] = (f"{prev[0]} {name}", prev[1] + affiliations, prev[2] + markers)
        elif name:
            raw.append((name, affiliations, markers))
    authors = []
    for name, affiliations, markers in raw:
        found = affiliations + [legend[m] for m in markers if m in legend]
        authors.append(Author(tex_to_unicode(name),
                              tuple(dict.fromkeys(tex_to_unicode(a) for a in found))))
    return authors


def clean_author(author: Author) -> Author:
    """An API author (one name, separate affiliations) under the same TeX rule."""
    return Author(tex_to_unicode(author.name),
                  tuple(tex_to_unicode(a) for a in author.affiliations if a.strip()))
