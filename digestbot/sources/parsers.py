"""Parsers for everything arXiv announces with: listing pages, RSS 2.0, Atom feeds, API answers.

`parse_any` sniffs the format of the raw bytes, so `digestbot fetch --feed FILE_OR_URL` needs
no flag, and hands a listing's bytes or the parsed XML root to the parser that makes the
`FeedBatch`. Parsers are pure (no store, no network): they raise `FeedError` with a one-line
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
_ID_VERSION_RE = re.compile(r"(?P<id>(?:[a-z\-]+(?:\.[A-Z]{2})?/\d{7}|\d{4}\.\d{4,5}))v(?P<v>\d+)$")
# Priority when one paper shows up several times in one announcement (several categories'
# pages, or a combined feed): its own-category appearance wins over a cross-list.
_TYPE_RANK = {"new": 0, "replace": 1, "cross": 2, "replace-cross": 3}


# Anywhere in the document: a long comment can push a DOCTYPE past any prefix we might scan,
# and inside a well-formed feed's text these would be escaped (&lt;!DOCTYPE).
_DTD_RE = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.I)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=False
    )


def parse_xml(data: bytes, what: str) -> etree._Element:
    """Well-formed, DTD-free XML or a FeedError that says which."""
    if _DTD_RE.search(data):
        raise FeedError(f"{what}: refused: declares a DTD or entities (arXiv feeds never do)")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise FeedError(f"{what}: not well-formed XML (truncated download?): {exc}") from None
    if root is None:
        raise FeedError(f"{what}: empty document")
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
    m = _ID_VERSION_RE.search(value.strip())
    if not m:
        raise FeedError(f"cannot read an arXiv id with version from {value!r}")
    return m["id"], int(m["v"])


def _authors(names: str) -> list[Author]:
    # arXiv writes dc:creator as one comma-separated string, in author order.
    return [Author(n) for n in (p.strip() for p in names.split(",")) if n]


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


def dedupe(announcements: Iterable[Announcement]) -> list[Announcement]:
    """One announcement per (date, paper): the own-category type beats a cross-list."""
    best: dict[tuple[str, str], Announcement] = {}
    for a in announcements:
        key = (a.date, a.arxiv_id)
        if key not in best or _TYPE_RANK[a.announce_type] < _TYPE_RANK[best[key].announce_type]:
            best[key] = a
    return list(best.values())


def _batch(source: str, date: str | None, papers: list[Paper],
           types: list[str]) -> FeedBatch:
    if papers and date is None:
        raise FeedError(f"{source}: the file carries no announcement date; pass --date YYYY-MM-DD")
    anns = [Announcement(date, p.id, t, p.version, source)  # type: ignore[arg-type]
            for p, t in zip(papers, types, strict=True)]
    unique = {p.id: p for p in papers}
    return FeedBatch(source=source, date=date, papers=list(unique.values()),
                     announcements=dedupe(anns), empty=not papers)


def _check_type(value: str | None, where: str) -> str:
    if value not in ANNOUNCE_TYPES:
        raise FeedError(f"{where}: unknown announce type {value!r}")
    return value


# -- RSS 2.0 (rss.arxiv.org/rss/cat1+cat2) ------------------------------------------------


def parse_rss(root: etree._Element, *, date: str | None = None) -> FeedBatch:
    channel = root.find("channel")
    if channel is None:
        raise FeedError("RSS feed: no <rss><channel> (an error page instead of a feed?)")
    feed_date = _rfc822_date(_text(channel, "pubDate")) or date
    papers, types = [], []
    for item in channel.iterfind("item"):
        guid = _text(item, "guid") or ""
        desc = item.findtext("description") or ""
        m = _ANNOUNCE_RE.match(desc)
        where = f"RSS item {guid or _text(item, 'link')}"
        if not m:
            raise FeedError(f"{where}: description lacks 'arXiv:ID Announce Type: …'")
        arxiv_id, version = split_id(guid) if guid else (m["id"], int(m["v"]))
        kind = _check_type(_text(item, "arxiv:announce_type") or m["type"], where)
        cats = [c.text.strip() for c in item.iterfind("category") if c.text]
        papers.append(Paper(
            id=arxiv_id, version=version,
            title=squash(item.findtext("title") or ""),
            abstract=desc[m.end():].strip(),
            authors=_authors(_text(item, "dc:creator") or ""),
            categories=cats,
            # arXiv lists a paper's categories primary first.
            primary_category=cats[0] if cats else None,
            doi=_text(item, "arxiv:DOI"),
            journal_ref=_text(item, "arxiv:journal_reference"),
            license=_text(item, "dc:rights"),
        ))
        types.append(kind)
        feed_date = feed_date or _rfc822_date(_text(item, "pubDate"))
    return _batch("rss", feed_date, papers, types)


# -- Atom: the rss.arxiv.org/atom feed and API answers ------------------------------------


def parse_atom(root: etree._Element, *, date: str | None = None,
               categories: Iterable[str] = ()) -> FeedBatch:
    """An Atom document: the announcement feed (has announce types) or an API answer.

    An API answer is metadata only, or announcements too when `date` says which mailing.
    """
    entries = root.findall("atom:entry", NS)
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
            authors=_authors(_text(entry, "dc:creator") or ""),
            categories=cats, primary_category=cats[0] if cats else None,
            doi=_text(entry, "arxiv:DOI"), journal_ref=_text(entry, "arxiv:journal_reference"),
            license=_text(entry, "dc:rights"),
        ))
        types.append(kind)
        feed_date = _iso_date(_text(entry, "atom:published")) or feed_date
    return _batch("atom", feed_date, papers, types)


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
                Author(squash(a.findtext("atom:name", "", NS)),
                       tuple(squash(f.text) for f in a.iterfind("arxiv:affiliation", NS) if f.text))
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
    ours = paper.primary_category in set(categories) if categories else True
    if paper.version == 1:
        return "new" if ours else "cross"
    return "replace" if ours else "replace-cross"


def api_batch(papers: list[Paper], date: str | None, categories: Iterable[str]) -> FeedBatch:
    if date is None:
        return FeedBatch(source="api", date=None, papers=papers, empty=not papers)
    cats = list(categories)
    return _batch("api", date, papers, [api_announce_type(p, cats) for p in papers])


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
        ours = not archive or primary == archive or primary.startswith(archive + ".")
        kind = {"UPDATED": "replace" if ours else "replace-cross", "CROSS LISTED": "cross"}.get(
            m["mark"] or "", "new")
        creators = _html_text(item.findtext("dc:creator", "", NS))
        papers.append(Paper(
            id=m["id"], version=int(m["v"]), title=squash(m["title"]),
            abstract=squash(_html_text(item.findtext("rss1:description", "", NS))),
            authors=_authors(creators), categories=[primary], primary_category=primary,
        ))
        types.append(kind)
    return _batch("rdf", feed_date, papers, types)


def _html_text(fragment: str) -> str:
    if not fragment.strip():
        return ""
    return lxml.html.fragment_fromstring(fragment, create_parent="div").text_content()


# -- listing page (arxiv.org/list/{cat}/new) ----------------------------------------------

# arxiv-browse's template writes "New submissions for Wednesday, 18 November 2026 (showing 2 of
# 2 entries )"; the live site drops the "for <date>" part. Both count, and so do the "first" and
# "continued, … last" forms of a page cut short, which then fail the count check below.
_SECTION_RE = re.compile(
    r"^(?P<kind>New submissions|Cross submissions|Cross-lists|Replacement submissions|Replacements)"
    r"(?:\s+for\s+\w+,\s+(?P<d>\d{1,2}\s+\w+\s+\d{2,4}))?"
    r"\s*\((?:continued,\s+)?showing (?:first |last )?(?P<shown>\d+) of (?P<total>\d+) entries\s*\)",
    re.I,
)
_LISTING_DATE_RE = re.compile(
    r"(?:new listings for|New submissions for)\s+\w+,\s+(?P<d>\d{1,2}\s+\w+\s+\d{2,4})", re.I,
)
_RECENT_RE = re.compile(r"^\w{3}, \d{1,2} \w{3} \d{4} \(showing", re.I)
# The links at the top of a /new page, one per non-empty section (arxiv-browse index_for_types).
_INDEX_LABELS = frozenset({"New submissions", "Cross-lists", "Replacements"})
_CATEGORY_RE = re.compile(r"\(([a-z\-]+(?:\.[A-Za-z\-]+)?)\)\s*$")


def _listing_date(text: str) -> str:
    raw = " ".join(text.split())
    for fmt in ("%d %B %Y", "%d %b %Y", "%d %b %y", "%d %B %y"):
        try:
            return datetime.strptime(raw, fmt).date().isoformat()
        except ValueError:
            continue
    raise FeedError(f"listing page: unreadable date {raw!r}")


def _section_kind(label: str) -> str:
    label = label.lower()
    return "new" if label.startswith("new") else "cross" if label.startswith("cross") else "replace"


def parse_listing(data: bytes, *, date: str | None = None,
                  categories: Iterable[str] = ()) -> FeedBatch:
    """A `/list/{cat}/new` page; its "showing X of Y entries" must match what was parsed.

    HTML parsers repair a cut-off page silently, so truncation is checked for explicitly: the
    page must end with </html>, and every section its index lists must be there.
    """
    if b"</html>" not in data[-4096:].lower():
        raise FeedError("listing page: cut off before </html> (truncated download?)")
    try:
        # arXiv serves UTF-8; lxml would guess Latin-1 for bytes without a meta charset.
        doc = lxml.html.document_fromstring(data.decode("utf-8", "replace"))
    except (etree.ParserError, ValueError) as exc:
        raise FeedError(f"listing page: unreadable HTML ({exc})") from None
    context = doc.xpath("string(//a[starts-with(@id, 'recent-')]/@id)")[len("recent-"):]
    local = {context} if context else set(categories)
    page_date = date
    sections: list[tuple[str, int, int]] = []  # kind, shown, total
    seen: dict[str, int] = {}
    papers, types = [], []
    pending: tuple[str, int | None, str] | None = None  # id, version, kind of the last <dt>
    for el in doc.iter("h3", "dt", "dd"):
        text = " ".join(el.text_content().split())
        if el.tag == "h3":
            # Sections first: their "for <date>" form would also match the date heading.
            if m := _SECTION_RE.match(text):
                kind = _section_kind(m["kind"])
                sections.append((kind, int(m["shown"]), int(m["total"])))
                seen.setdefault(kind, 0)
                if m["d"]:
                    page_date = _listing_date(m["d"])
            elif m := _LISTING_DATE_RE.search(text):
                page_date = _listing_date(m["d"])
            elif _RECENT_RE.match(text):
                raise FeedError("this is a /recent listing (no announce types); "
                                "use /list/{cat}/new?skip=0&show=2000")
        elif el.tag == "dt":
            if not sections:
                raise FeedError("listing page: an entry before any section heading")
            arxiv_id = (el.xpath("string(.//a[@title='Abstract']/@id)") or "").strip()
            if not arxiv_id:
                raise FeedError(f"listing page: an entry without an arXiv id ({text[:60]!r})")
            html_link = el.xpath("string(.//a[@title='View HTML']/@href)")
            version = split_id(html_link)[1] if _ID_VERSION_RE.search(html_link or "") else None
            pending = (arxiv_id, version, sections[-1][0])
        elif el.tag == "dd" and pending:
            arxiv_id, version, kind = pending
            pending = None
            paper = _listing_paper(el, arxiv_id, version, kind)
            if kind == "replace" and local and paper.primary_category not in local:
                kind = "replace-cross"
            papers.append(paper)
            types.append(kind)
            seen[sections[-1][0]] += 1
    for kind, shown, total in sections:
        if seen.get(kind, 0) != shown or shown != total:
            raise FeedError(f"listing page: {kind} section says showing {shown} of {total} "
                            f"entries but {seen.get(kind, 0)} were parsed")
    indexed = {_section_kind(t) for t in doc.xpath("//li/a[contains(@href, '#item')]/text()")
               if t.strip() in _INDEX_LABELS}
    if missing := indexed - {kind for kind, _, _ in sections}:
        raise FeedError(f"listing page: the index lists {', '.join(sorted(missing))} but the "
                        "page has no such section (truncated download?)")
    no_updates = "No updates today" in doc.text_content()
    if not sections and not no_updates:
        raise FeedError("listing page: no New/Cross/Replacement sections (not a /new listing?)")
    return _batch("listing", page_date, papers, types)


def _listing_paper(dd: lxml.html.HtmlElement, arxiv_id: str, version: int | None,
                   kind: str) -> Paper:
    def field(cls: str) -> str | None:
        nodes = dd.find_class(cls)
        if not nodes:
            return None
        node = nodes[0]
        for d in node.find_class("descriptor"):
            d.drop_tree()
        return squash(node.text_content()) or None

    subjects = (field("list-subjects") or "").split(";")
    cats = [m[1] for s in subjects if (m := _CATEGORY_RE.search(s.strip()))]
    abstract = dd.xpath("string(.//p[contains(@class, 'mathjax')])")
    return Paper(
        id=arxiv_id,
        # New and cross-listed papers are announced at v1 unless the page says otherwise;
        # a replacement's version is unknown here (0) until the API or the store supplies it.
        version=version or (0 if kind == "replace" else 1),
        title=field("list-title") or "",
        abstract=abstract.strip(),
        authors=[Author(squash(a.text_content())) for a in dd.xpath(
            ".//div[contains(@class, 'list-authors')]//a")],
        categories=cats,
        primary_category=cats[0] if cats else None,
        comment=field("list-comments"),
        journal_ref=field("list-journal-ref"),
        doi=field("list-doi"),
    )


# -- format detection ---------------------------------------------------------------------


def sniff(data: bytes) -> str:
    """'listing' (HTML) or 'xml' (parse_any tells the XML formats apart by their root)."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        raise FeedError("empty file or response")
    if head.startswith(b"<!doctype html") or b"<html" in head[:512]:
        return "listing"
    if not head.startswith(b"<"):
        raise FeedError("not XML or HTML (an error message instead of a feed?): "
                        f"{data[:80].decode('utf-8', 'replace').strip()!r}")
    return "xml"


def parse_any(data: bytes, *, date: str | None = None, categories: Iterable[str] = (),
              name: str = "feed") -> FeedBatch:
    """Detect the format and parse it; OAI-PMH and unknown XML are refused by name."""
    try:
        if sniff(data) == "listing":
            return parse_listing(data, date=date, categories=categories)
        root = parse_xml(data, "document")
        tag = etree.QName(root).localname
        ns = etree.QName(root).namespace
        if root.tag == "rss":  # RSS 2.0 has no namespace
            return parse_rss(root, date=date)
        if tag == "feed" and ns == NS["atom"]:
            return parse_atom(root, date=date, categories=categories)
        if tag == "RDF" and ns == NS["rdf"]:
            return parse_rdf(root, date=date)
        if tag == "OAI-PMH":
            raise FeedError("OAI-PMH is not supported; use an RSS, Atom, API or listing file")
        raise FeedError(f"unknown XML format (root <{tag}>); expected RSS, Atom, API or RDF")
    except FeedError as exc:
        raise FeedError(f"{name}: {exc}") from None
