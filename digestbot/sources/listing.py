"""The listing page `arxiv.org/list/{cat}/new`: the earliest source of tonight's batch.

arXiv's arxiv-browse renders it from the day's mailing (templates/list/new.html and
list_macros.html): one <h3> per section with "showing X of Y entries", then <dt>/<dd> pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

import lxml.html
from lxml import etree

from digestbot.errors import FeedError
from digestbot.models import FeedBatch, Paper
from digestbot.sources.authors import split_authors
from digestbot.sources.parsers import ID_VERSION_RE, batch, in_categories, split_id, squash

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
            version = split_id(html_link)[1] if ID_VERSION_RE.search(html_link or "") else None
            pending = (arxiv_id, version, sections[-1][0])
        elif el.tag == "dd" and pending:
            arxiv_id, version, kind = pending
            pending = None
            paper = _listing_paper(el, arxiv_id, version, kind)
            if kind == "replace" and local and not in_categories(paper.primary_category, local):
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
    return batch("listing", page_date, papers, types)


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
    # The mailing's hard 80-column breaks are layout: one line, as the API's abstracts.
    abstract = squash(dd.xpath("string(.//p[contains(@class, 'mathjax')])"))
    return Paper(
        id=arxiv_id,
        # A new submission is v1 by definition. A cross-list can be v2+ and a replacement
        # any version: without the page's HTML link the version stays unknown (None) until
        # RSS or the API says; it is never guessed.
        version=version or (1 if kind == "new" else None),
        title=field("list-title") or "",
        abstract=abstract,
        # The text, not just the links: affiliations sit between the author links.
        authors=split_authors(field("list-authors") or ""),
        categories=cats,
        primary_category=cats[0] if cats else None,
        comment=field("list-comments"),
        journal_ref=field("list-journal-ref"),
        doi=field("list-doi"),
    )


