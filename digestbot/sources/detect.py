"""Which arXiv format a file or response is: `digestbot fetch --feed FILE_OR_URL` needs no flag.

`parse_any` sniffs the raw bytes and hands a listing page to `listing`, XML to the parser of
its root element in `parsers`.
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from digestbot.errors import FeedError
from digestbot.models import FeedBatch
from digestbot.sources import parsers
from digestbot.sources.listing import parse_listing


def sniff(data: bytes) -> str:
    """'listing' (HTML) or 'xml' (parse_any tells the XML formats apart by their root)."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        raise FeedError("empty file or response")
    if head.startswith(b"<!doctype html") or b"<html" in head[:512]:
        return "listing"
    if not head.startswith(b"<"):
        # The bytes are not quoted: `--feed` reads any local file the user can (even
        # /etc/shadow as root), and an error line ends up in logs and terminals.
        raise FeedError(f"not XML or HTML ({len(data)} bytes; an error message or a "
                        "non-feed file instead of a feed?)")
    return "xml"


def parse_any(data: bytes, *, date: str | None = None, categories: Iterable[str] = (),
              name: str = "feed") -> FeedBatch:
    """Detect the format and parse it; OAI-PMH and unknown XML are refused by name."""
    try:
        if sniff(data) == "listing":
            return parse_listing(data, date=date, categories=categories)
        root = parsers.parse_xml(data, "document")
        tag = etree.QName(root).localname
        ns = etree.QName(root).namespace
        if root.tag == "rss":  # RSS 2.0 has no namespace
            return parsers.parse_rss(root, date=date)
        if tag == "feed" and ns == parsers.NS["atom"]:
            return parsers.parse_atom(root, date=date, categories=categories)
        if tag == "RDF" and ns == parsers.NS["rdf"]:
            return parsers.parse_rdf(root, date=date)
        if tag == "OAI-PMH":
            raise FeedError("OAI-PMH is not supported; use an RSS, Atom, API or listing file")
        raise FeedError(f"unknown XML format (root <{tag}>); expected RSS, Atom, API or RDF")
    except FeedError as exc:
        raise FeedError(f"{name}: {exc}") from None
