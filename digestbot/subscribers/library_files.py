"""A reader's library from a BibTeX or RIS file: only what ranking needs (issue 16).

Each entry keeps its source key (citekey, RIS ID), its title, and its abstract cut to
`ABSTRACT_CHARS` for embedding; authors, notes, file paths and the rest of an export never
reach the database. Every refusal is a one-line bilingual `UsageError` raised before anything
is stored: a file over `MAX_BYTES` (checked by the caller before reading it all, where it can),
a file that is neither BibTeX nor RIS, or one without a single titled entry.
"""

from __future__ import annotations

import hashlib
import re

import bibtexparser
import rispy
from bibtexparser.bparser import BibTexParser
from pylatexenc.latex2text import LatexNodes2Text

from digestbot.errors import UsageError
from digestbot.subscribers.library import Item

# A 5,000-entry export with abstracts is about 4 MB; a 50 MB "library" is a wrong file.
MAX_BYTES = 8 * 1024 * 1024
MAX_ITEMS = 5000
MAX_TITLE_CHARS = 300
# The embedding reads about this much anyway (embed.MAX_CHARS with the title).
ABSTRACT_CHARS = 1500
MAX_KEY_CHARS = 120

_RIS_LINE = re.compile(r"^\s*(?:\d+\.\s*)?TY  - ", re.M)
_BIB_ENTRY = re.compile(r"^\s*@\s*[A-Za-z]+\s*[{(]", re.M)
_latex = LatexNodes2Text(math_mode="verbatim", strict_latex_spaces=True)


def too_big(size: int) -> UsageError:
    mb = MAX_BYTES // (1024 * 1024)
    return UsageError(zh=f"文件太大(最多 {mb} MB,收到 {size / 1048576:.1f} MB);请只导出相关的收藏夹。",
                      en=f"The file is too large (at most {mb} MB, got {size / 1048576:.1f} MB); "
                         "export only the relevant collection.")


def not_a_library(name: str) -> UsageError:
    return UsageError(zh=f"「{name}」不是 BibTeX(.bib)或 RIS(.ris)文件;请从 Zotero、Mendeley "
                         "或 EndNote 导出其中一种。",
                      en=f"“{name}” is not a BibTeX (.bib) or RIS (.ris) file; export one of "
                         "those from Zotero, Mendeley or EndNote.")


def empty_library() -> UsageError:
    return UsageError(zh="文库是空的:没有找到带标题的条目,原有文库保持不变。",
                      en="The library is empty: no entry with a title was found; your current "
                         "library is unchanged.")


def parse_library(data: bytes, name: str = "file") -> tuple[str, list[Item]]:
    """("bibtex" | "ris", its items) from a file's bytes; UsageError when it cannot be one."""
    if len(data) > MAX_BYTES:
        raise too_big(len(data))
    text = _decode(data, name)
    if _RIS_LINE.search(text):
        kind, items = "ris", _ris_items(text)
    elif _BIB_ENTRY.search(text):
        kind, items = "bibtex", _bib_items(text)
    else:
        raise not_a_library(name)
    return kind, finish(items)


def finish(items: list[Item]) -> list[Item]:
    """Titled items, first of each key kept, at most MAX_ITEMS; UsageError when none is left."""
    seen: dict[str, Item] = {}
    for item in items:
        if item.title and item.key not in seen:
            seen[item.key] = item
    if not seen:
        raise empty_library()
    if len(seen) > MAX_ITEMS:
        raise UsageError(zh=f"文库条目太多(最多 {MAX_ITEMS} 条,收到 {len(seen)} 条);请只导出相关的收藏夹。",
                         en=f"Too many entries (at most {MAX_ITEMS}, got {len(seen)}); export only "
                            "the relevant collection.")
    return list(seen.values())


def make_item(key: str | None, title: str | None, abstract: str | None) -> Item:
    """An item with its texts flattened and cut to what is stored; a key made from the title
    when the source gave none."""
    title = _squash(title)[:MAX_TITLE_CHARS]
    key = _squash(key)[:MAX_KEY_CHARS] or "t:" + hashlib.sha1(title.lower().encode()).hexdigest()[:12]
    return Item(key=key, title=title, abstract=_squash(abstract)[:ABSTRACT_CHARS])


def _decode(data: bytes, name: str) -> str:
    if b"\x00" in data[:4096]:
        raise not_a_library(name)  # UTF-16 exports are rare; binary files (PDF, zip) are not
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Older BibTeX exports are Latin-1; every byte decodes, the markers decide the rest.
        return data.decode("latin-1")


def _bib_items(text: str) -> list[Item]:
    parser = BibTexParser(common_strings=True, ignore_nonstandard_types=False)
    try:
        entries = bibtexparser.loads(text, parser=parser).entries
    except Exception as exc:  # bibtexparser raises bare pyparsing/ValueErrors on bad input
        raise UsageError(zh=f"BibTeX 文件无法解析:{type(exc).__name__}",
                         en=f"The BibTeX file cannot be parsed: {type(exc).__name__}") from None
    return [make_item(e.get("ID"), _plain(e.get("title"), MAX_TITLE_CHARS),
                      _plain(e.get("abstract"), ABSTRACT_CHARS)) for e in entries]


def _ris_items(text: str) -> list[Item]:
    try:
        entries = rispy.loads(text)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise UsageError(zh=f"RIS 文件无法解析:{type(exc).__name__}",
                         en=f"The RIS file cannot be parsed: {type(exc).__name__}") from None
    return [make_item(e.get("id"), e.get("title") or e.get("primary_title"),
                      e.get("abstract") or e.get("notes_abstract")) for e in entries]


def _plain(value: str | None, limit: int) -> str:
    """BibTeX's braces and accents as plain Unicode text ({{Self-Overlapping}} -> Self-...).

    Only what is kept is converted (a little more, for the markup that goes): pylatexenc
    costs ~17 ms per kilobyte, and text without a macro or math needs no more than its braces
    dropped.
    """
    if not value:
        return ""
    value = value[:limit + limit // 2]
    if "\\" not in value and "$" not in value:
        return value.replace("{", "").replace("}", "")
    try:
        return _latex.latex_to_text(value)
    except Exception:  # a stray brace or macro pylatexenc refuses: keep the raw text
        return value.replace("{", "").replace("}", "")


def _squash(value: object) -> str:
    if isinstance(value, list):
        value = " ".join(map(str, value))
    return " ".join(str(value or "").split())
