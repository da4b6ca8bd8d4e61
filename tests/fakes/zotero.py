"""A Zotero Web API v3 server for the items of one user library, as pyzotero meets it.

`GET /users/{id}/items?format=json&limit=N&start=K` answers a JSON array of item objects
(`key`, `version`, `library`, `links`, `meta`, `data`), with `Total-Results`,
`Last-Modified-Version` and an RFC 8288 `Link` header (`rel="next"`, `rel="last"`,
`rel="alternate"`) as api.zotero.org does. The key comes as `Authorization: Bearer KEY` (or
`Zotero-API-Key`); a wrong one is a 403 "Forbidden" in plain text. Scripted answers:
`backoff_on_page` adds a `Backoff` header to a page, `limit_next` answers the next requests
with 429 and `Retry-After`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from tests.fakes.http import FakeServer, Request, Response

USER_ID = "475425"
KEY = "P9NiFoyLeZu2bZNvvuQPDWsd"  # the shape of a real key (24 letters and digits)
MAX_LIMIT = 100


def item(key: str, title: str, abstract: str = "", item_type: str = "journalArticle",
         **data: Any) -> dict[str, Any]:
    """One item as the API returns it (format=json): metadata around the `data` fields."""
    fields = {"key": key, "version": 7, "itemType": item_type, "title": title,
              "abstractNote": abstract, "creators": [{"creatorType": "author",
                                                      "firstName": "Ada",
                                                      "lastName": "Lovelace"}],
              "tags": [], "collections": [], "relations": {}, "dateAdded": "2026-01-02T03:04:05Z",
              "dateModified": "2026-01-02T03:04:05Z", **data}
    if item_type in ("note", "attachment"):
        fields.pop("title")
        fields["parentItem"] = "ABCD2345"
    return {"key": key, "version": 7,
            "library": {"type": "user", "id": int(USER_ID), "name": "ada",
                        "links": {"alternate": {"href": "https://www.zotero.org/ada",
                                                "type": "text/html"}}},
            "links": {"self": {"href": f"https://api.zotero.org/users/{USER_ID}/items/{key}",
                               "type": "application/json"}},
            "meta": {"creatorSummary": "Lovelace", "numChildren": 0}, "data": fields}


class FakeZotero(FakeServer):
    def __init__(self, items: list[dict[str, Any]], key: str = KEY) -> None:
        super().__init__(self._handle)
        self.items = items
        self.key = key
        self.backoff_on_page: dict[int, int] = {}
        self._limited: list[int] = []
        self._lock2 = threading.Lock()

    def limit_next(self, times: int, retry_after: int) -> None:
        with self._lock2:
            self._limited.extend([retry_after] * times)

    def _handle(self, req: Request) -> Response:
        with self._lock2:
            limited = self._limited.pop(0) if self._limited else None
        if limited is not None:
            return Response(429, "Too Many Requests", {"Retry-After": str(limited),
                                                       "Content-Type": "text/plain"})
        auth = req.headers.get("authorization", "")
        given = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else (
            req.headers.get("zotero-api-key", ""))
        if given != self.key:
            return Response(403, "Forbidden", {"Content-Type": "text/plain"})
        if req.path != f"/users/{USER_ID}/items":
            return Response(404, "Not found", {"Content-Type": "text/plain"})
        if req.headers.get("zotero-api-version") != "3":
            return Response(400, "API version 3 expected", {"Content-Type": "text/plain"})
        q = {k: v[-1] for k, v in req.query.items()}
        if q.get("format", "atom") != "json":
            return Response(400, "this fake speaks format=json only", {"Content-Type": "text/plain"})
        limit = min(int(q.get("limit", 50)), MAX_LIMIT)
        start = int(q.get("start", 0))
        page = self.items[start:start + limit]
        base = f"{self.url}/users/{USER_ID}/items?format=json&limit={limit}"
        links = []
        if start + limit < len(self.items):
            links.append(f'<{base}&start={start + limit}>; rel="next"')
            last = (len(self.items) - 1) // limit * limit
            links.append(f'<{base}&start={last}>; rel="last"')
        links.append('<https://www.zotero.org/ada/items>; rel="alternate"')
        headers = {"Content-Type": "application/json", "Total-Results": str(len(self.items)),
                   "Last-Modified-Version": "7", "Link": ", ".join(links)}
        if start // limit in self.backoff_on_page:
            headers["Backoff"] = str(self.backoff_on_page[start // limit])
        return Response(200, json.dumps(page), headers)
