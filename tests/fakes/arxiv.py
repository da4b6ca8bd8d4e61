"""A fake arXiv on 127.0.0.1: listing pages, the RSS feed and the export API, in their wire format.

Tests point `arxiv_list_url`, `arxiv_rss_url` and `arxiv_api_url` at it, so httpx and the real
`arxiv` client do the talking. Pages come from tests/fixtures/arxiv; `script` queues canned
responses (503, 429 + Retry-After…) that are served before the normal ones for a path prefix.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from tests.fakes.http import FakeServer, Request, Response

FIXTURES = Path(__file__).parent.parent / "fixtures" / "arxiv"
ATOM = "{http://www.w3.org/2005/Atom}"


def api_answer(source: bytes, id_list: list[str]) -> bytes:
    """The API's answer for `id_list` (the fixture's entries, in that order); all for a search."""
    root = etree.fromstring(source)
    entries = {e.findtext(f"{ATOM}id").rsplit("/", 1)[-1].rsplit("v", 1)[0]: e
               for e in root.findall(f"{ATOM}entry")}
    if not id_list:
        return source
    for e in entries.values():
        root.remove(e)
    for i in id_list:
        if i in entries:
            root.append(entries[i])
    total = root.find("{http://a9.com/-/spec/opensearch/1.1/}totalResults")
    total.text = str(sum(i in entries for i in id_list))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass
class FakeArxiv:
    listings: dict[str, bytes] = field(default_factory=dict)  # category → /new page
    rss: bytes = b""
    api: bytes = b""
    script: dict[str, list[Response]] = field(default_factory=lambda: defaultdict(list))

    def handle(self, req: Request) -> Response:
        for prefix, queue in self.script.items():
            if req.path.startswith(prefix) and queue:
                return queue.pop(0)
        if req.path.startswith("/list/"):
            cat = req.path.split("/")[2]
            if cat in self.listings:
                return Response(200, self.listings[cat], {"Content-Type": "text/html; charset=utf-8"})
        elif req.path.startswith("/rss/") and self.rss:
            return Response(200, self.rss, {"Content-Type": "application/rss+xml"})
        elif req.path == "/api/query" and self.api:
            ids = [i for i in req.query.get("id_list", [""])[0].split(",") if i]
            return Response(200, api_answer(self.api, ids), {"Content-Type": "application/atom+xml"})
        return Response(404, "<html><body>Not Found</body></html>", {"Content-Type": "text/html"})

    def serve(self) -> FakeServer:
        return FakeServer(self.handle)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()
