"""Parsers for arXiv's XML: RSS 2.0, Atom feeds, API answers, the old RDF feed.

`detect.parse_any` sniffs a file's format and hands the parsed XML root here (listing pages go
to `listing`); authors go through the one rule in `authors`. Parsers are pure (no store, no network): they raise `FeedError` with a one-line
reason instead of returning a partial batch, because a truncated download must never look like
a quiet day.

XML is parsed with entity resolution, DTD loading and network access off, and a document that
declares a DTD at all is refused: arXiv never sends one, so a DOCTYPE in a "feed" is either an
error page or an attack (billion laughs, external entities).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from email.utils import parsedate_to_datetime

import lxml.html
from lxml import etree

from digestbot.clock import ANNOUNCE_AT, ET, announcement_date
from digestbot.errors import FeedError
from digestbot.models import ANNOUNCE_TYPES, Announcement, Author, FeedBatch, Paper
from digestbot.sources.authors import clean_author, split_authors

NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "dc": "http://purl.org/dc/elements/1.1/",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rss1": "http://purl.org/rss/1.0/",
}

# "arXiv:2608.11232v1 Announce Type: new \nAbstract: …" (note arXiv's trailing space).
_ANNOUNCE_RE = re.compile(
    r"^\s*arXiv:(?P<id>\S+?)v(?P<v>\d+)\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?",
)
ID_VERSION_RE = re.compile(r"(?P<id>(?:[a-z\-]+(?:\.[A-Z]{2})?/\d{7}|\d{4}\.\d{4,5}))v(?P<v>\d+)$")
# arXiv's highest version so far is in the dozens; anything this long is not a version.
MAX_VERSION = 9999
# rss.arxiv.org serves at most this many items per feed, dropping replacements first.
FEED_CAP = 2000
# Priority when one paper shows up several times in one announcement (several categories'
# pages, or a combined feed): its own-category appearance wins over a cross-list.
_TYPE_RANK = {"new": 0, "replace": 1, "cross": 2, "replace-cross": 3}


# Anywhere in the document: a long comment can push a DOCTYPE past any prefix we might scan,
# and inside a well-formed feed's text these would be escaped (&lt;!DOCTYPE).
_DTD_RE = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.I)


def version_number(digits: str, where: str) -> int:
    """A version number, or a one-line FeedError for a hostile one (v0, v99999999999…)."""
    if len(digits) > 4 or not 1 <= int(digits) <= MAX_VERSION:
        raise FeedError(f"{where}: implausible version v{digits[:12]}")
    return int(digits)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=False
    )


def parse_xml(data: bytes, what: str) -> etree._Element:
    """Well-formed, DTD-free XML or a FeedError that says which."""
    # arXiv serves UTF-8. UTF-16/32 (with or without a BOM) would hide a DOCTYPE from the
    # byte scan below, so any NUL byte or wide BOM is refused before lxml sees the bytes.
    if b"\x00" in data or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FeedError(f"{what}: refused: not UTF-8 (UTF-16/32?); arXiv serves UTF-8")
    if _DTD_RE.search(data):
        raise FeedError(f"{what}: refused: declares a DTD or entities (arXiv feeds never do)")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise FeedError(f"{what}: not well-formed XML (truncated download?): {exc}") from None
    if root is None:
        raise FeedError(f"{what}: empty document")
    # Belt and braces for any other declared encoding the byte scan cannot read.
    if root.getroottree().docinfo.doctype:
        raise FeedError(f"{what}: refused: declares a DTD or entities (arXiv feeds never do)")
    return root


# -- shared helpers -----------------------------------------------------------------------


def _text(el: etree._Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path, NS)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def squash(text: str) -> str:
    """One line: the API's legacy hard wraps and feed indentation are layout, not content."""
    return " ".join(text.split())


def split_id(value: str) -> tuple[str, int]:
    """'oai:arXiv.org:2608.11232v1', 'http://arxiv.org/abs/hep-th/9901001v2' → (id, version)."""
    m = ID_VERSION_RE.search(value.strip())
    if not m:
        raise FeedError(f"cannot read an arXiv id with version from {value[:80]!r}")
    return m["id"], version_number(m["v"], m["id"])


def et_date(when: datetime) -> str:
    return when.astimezone(ET).date().isoformat()


def _rfc822_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return et_date(parsedate_to_datetime(value))
    except (TypeError, ValueError):
        raise FeedError(f"unreadable date {value!r}") from None


def _iso_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return et_date(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise FeedError(f"unreadable date {value!r}") from None


def _rank(a: Announcement) -> tuple[int, int]:
    # The highest known version wins (a feed listing one id twice must not pair v2's text
    # with a "new v1" announcement); at equal versions the own-category type beats a cross.
    return (a.version or 0, -_TYPE_RANK[a.announce_type])


def dedupe(announcements: Iterable[Announcement]) -> list[Announcement]:
    """One announcement per (date, paper): highest version, then own category over cross."""
    best: dict[tuple[str, str], Announcement] = {}
    for a in announcements:
        key = (a.date, a.arxiv_id)
        if key not in best or _rank(a) > _rank(best[key]):
            best[key] = a
    return list(best.values())


def combine(source: str, date: str | None, papers: Iterable[Paper],
            announcements: Iterable[Announcement], *, truncated: bool = False) -> FeedBatch:
    """One batch from several pages or feeds: each paper as its winning announcement has it."""
    anns = dedupe(announcements)
    chosen = {a.arxiv_id: a.version for a in anns}
    by_id: dict[str, Paper] = {}
    for p in papers:
        held = by_id.get(p.id)
        if held is None or (p.version == chosen.get(p.id) and held.version != chosen.get(p.id)):
            by_id[p.id] = p
    return FeedBatch(source=source, date=date, papers=list(by_id.values()), announcements=anns,
                     empty=not by_id, truncated=truncated)


def batch(source: str, date: str | None, papers: list[Paper], types: list[str], *,
           truncated: bool = False) -> FeedBatch:
    if papers and date is None:
        raise FeedError(f"{source}: the file carries no announcement date; pass --date YYYY-MM-DD")
    anns = [Announcement(date, p.id, t, p.version, source)  # type: ignore[arg-type]
            for p, t in zip(papers, types, strict=True)]
    return combine(source, date, papers, anns, truncated=truncated)


def in_categories(primary: str | None, categories: Iterable[str]) -> bool:
    """Is a paper with this primary category one of ours? An archive (`astro-ph`, `cs`)
    covers its subcategories (`astro-ph.CO`, `cs.CL`), so those are not cross-lists."""
    if not primary:
        return False
    return any(primary == c or ("." not in c and primary.startswith(c + "."))
               for c in categories)


def _error_feed(title: str | None, description: str | None) -> None:
    """rss.arxiv.org answers a bad category with a feed titled 'Feed error for query: URL'
    (arxiv-feed serialize_error; HTTP 400 live, 200 from a saved copy): an error, not a
    quiet day."""
    if title and title.startswith("Feed error for query"):
        query = title.rsplit("/", 1)[-1] or title
        raise FeedError(f"arXiv feed error for {query}: {squash(description or 'no reason given')}")


def _check_type(value: str | None, where: str) -> str:
    if value not in ANNOUNCE_TYPES:
        raise FeedError(f"{where}: unknown announce type {value!r}")
    return value


# -- RSS 2.0 (rss.arxiv.org/rss/cat1+cat2) ------------------------------------------------


def parse_rss(root: etree._Element, *, date: str | None = None) -> FeedBatch:
    channel = root.find("channel")
    if channel is None:
        raise FeedError("RSS feed: no <rss><channel> (an error page instead of a feed?)")
    _error_feed(_text(channel, "title"), _text(channel, "description"))
    feed_date = _rfc822_date(_text(channel, "pubDate")) or date
    papers, types = [], []
    for item in channel.iterfind("item"):
        guid = _text(item, "guid") or ""
        desc = item.findtext("description") or ""
        m = _ANNOUNCE_RE.match(desc)
        where = f"RSS item {guid or _text(item, 'link')}"
        if not m:
            raise FeedError(f"{where}: description lacks 'arXiv:ID Announce Type: …'")
        arxiv_id, version = split_id(guid) if guid else (m["id"], version_number(m["v"], m["id"]))
        kind = _check_type(_text(item, "arxiv:announce_type") or m["type"], where)
        cats = [c.text.strip() for c in item.iterfind("category") if c.text]
        papers.append(Paper(
            id=arxiv_id, version=version,
            title=squash(item.findtext("title") or ""),
            abstract=desc[m.end():].strip(),
            authors=split_authors(_text(item, "dc:creator") or ""),
            categories=cats,
            # arXiv lists a paper's categories primary first.
            primary_category=cats[0] if cats else None,
            doi=_text(item, "arxiv:DOI"),
            journal_ref=_text(item, "arxiv:journal_reference"),
            license=_text(item, "dc:rights"),
        ))
        types.append(kind)
        feed_date = feed_date or _rfc822_date(_text(item, "pubDate"))
    return batch("rss", feed_date, papers, types, truncated=len(papers) >= FEED_CAP)


# -- Atom: the rss.arxiv.org/atom feed and API answers ------------------------------------


def parse_atom(root: etree._Element, *, date: str | None = None,
               categories: Iterable[str] = ()) -> FeedBatch:
    """An Atom document: the announcement feed (has announce types) or an API answer.

    An API answer is metadata only, or announcements too when `date` says which mailing.
    """
    entries = root.findall("atom:entry", NS)
    _error_feed(_text(root, "atom:title"), _text(root, "atom:subtitle"))
    if any(e.find("arxiv:announce_type", NS) is not None for e in entries) or (
        "rss.arxiv.org" in (_text(root, "atom:id") or "")
    ):
        return _parse_atom_announcement(root, entries, date)
    return api_batch(api_papers(root), date, categories)


def _parse_atom_announcement(root: etree._Element, entries: list[etree._Element],
                             date: str | None) -> FeedBatch:
    feed_date = _iso_date(_text(root, "atom:updated")) or date
    papers, types = [], []
    for entry in entries:
        entry_id = _text(entry, "atom:id") or ""
        where = f"Atom entry {entry_id}"
        summary = _text(entry, "atom:summary") or ""
        m = _ANNOUNCE_RE.match(summary)
        arxiv_id, version = split_id(entry_id)
        kind = _check_type(_text(entry, "arxiv:announce_type") or (m and m["type"]), where)
        cats = [c.get("term") for c in entry.iterfind("atom:category", NS) if c.get("term")]
        papers.append(Paper(
            id=arxiv_id, version=version,
            title=squash(_text(entry, "atom:title") or ""),
            abstract=summary[m.end():].strip() if m else summary,
            authors=split_authors(_text(entry, "dc:creator") or ""),
            categories=cats, primary_category=cats[0] if cats else None,
            doi=_text(entry, "arxiv:DOI"), journal_ref=_text(entry, "arxiv:journal_reference"),
            license=_text(entry, "dc:rights"),
        ))
        types.append(kind)
        feed_date = _iso_date(_text(entry, "atom:published")) or feed_date
    return batch("atom", feed_date, papers, types, truncated=len(papers) >= FEED_CAP)


def api_papers(root: etree._Element) -> list[Paper]:
    """Papers of an API answer (current or legacy format); an error feed raises FeedError."""
    papers = []
    for entry in root.iterfind("atom:entry", NS):
        entry_id = _text(entry, "atom:id") or ""
        if "/api/errors" in entry_id:
            reason = _text(entry, "atom:summary") or entry_id
            raise FeedError(f"arXiv API error: {reason}")
        arxiv_id, version = split_id(entry_id)
        primary = entry.find("arxiv:primary_category", NS)
        papers.append(Paper(
            id=arxiv_id, version=version,
            title=squash(_text(entry, "atom:title") or ""),
            abstract=squash(_text(entry, "atom:summary") or ""),
            authors=[
                clean_author(Author(a.findtext("atom:name", "", NS), tuple(
                    f.text for f in a.iterfind("arxiv:affiliation", NS) if f.text)))
                for a in entry.iterfind("atom:author", NS)
            ],
            categories=[c.get("term") for c in entry.iterfind("atom:category", NS) if c.get("term")],
            primary_category=primary.get("term") if primary is not None else None,
            comment=_text(entry, "arxiv:comment"),
            journal_ref=_text(entry, "arxiv:journal_ref"),
            doi=_text(entry, "arxiv:doi"),
            published=_text(entry, "atom:published"),
            updated=_text(entry, "atom:updated"),
        ))
    return papers


def api_announce_type(paper: Paper, categories: Iterable[str]) -> str:
    """v1 is new, vN a replacement; cross when the primary category is not one of ours."""
    cats = list(categories)
    ours = in_categories(paper.primary_category, cats) if cats else True
    if paper.version == 1:
        return "new" if ours else "cross"
    return "replace" if ours else "replace-cross"


def api_batch(papers: list[Paper], date: str | None, categories: Iterable[str]) -> FeedBatch:
    if date is None:
        return FeedBatch(source="api", date=None, papers=papers, empty=not papers)
    cats = list(categories)
    return batch("api", date, papers, [api_announce_type(p, cats) for p in papers])


# -- old RSS 1.0 / RDF feed (export.arxiv.org/rss, retired 2024) --------------------------

_RDF_TITLE_RE = re.compile(
    r"^(?P<title>.*)\s\(arXiv:(?P<id>\S+?)v(?P<v>\d+) \[(?P<cat>[^\]]+)\]"
    r"(?: (?P<mark>UPDATED|CROSS LISTED))?\)\s*$", re.S,
)


RDF_ABOUT = "{" + NS["rdf"] + "}about"


def parse_rdf(root: etree._Element, *, date: str | None = None) -> FeedBatch:
    """The pre-2024 feed: announce type from the title suffix, HTML-escaped authors/abstract."""
    channel = root.find("rss1:channel", NS)
    stamp = _text(channel, "dc:date")
    feed_date = date
    if stamp:
        when = datetime.fromisoformat(stamp).astimezone(ET)
        # Stamped on the announcement evening; arXiv labels that mailing with the next day.
        feed_date = announcement_date(when) if when.time() >= ANNOUNCE_AT else when.date().isoformat()
    archive = (_text(channel, "rss1:title") or "").split(" ")[0]
    papers, types = [], []
    for item in root.iterfind("rss1:item", NS):
        m = _RDF_TITLE_RE.match(item.findtext("rss1:title", "", NS))
        if not m:
            raise FeedError(f"RDF item {item.get(RDF_ABOUT)}: unreadable title")
        primary = m["cat"]
        ours = not archive or in_categories(primary, [archive])
        kind = {"UPDATED": "replace" if ours else "replace-cross", "CROSS LISTED": "cross"}.get(
            m["mark"] or "", "new")
        creators = _html_text(item.findtext("dc:creator", "", NS))
        papers.append(Paper(
            id=m["id"], version=version_number(m["v"], m["id"]), title=squash(m["title"]),
            abstract=squash(_html_text(item.findtext("rss1:description", "", NS))),
            authors=split_authors(creators), categories=[primary], primary_category=primary,
        ))
        types.append(kind)
    return batch("rdf", feed_date, papers, types)


def _html_text(fragment: str) -> str:
    if not fragment.strip():
        return ""
    return lxml.html.fragment_fromstring(fragment, create_parent="div").text_content()
