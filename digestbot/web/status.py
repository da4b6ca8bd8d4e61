"""`/status` (an HTML page, or JSON for `Accept: application/json`) and `/metrics`.

Both are public: they show what `digestbot.status` gathers — counts, times, states — and
nothing about any reader.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from digestbot import status
from digestbot.status import metrics
from digestbot.web.common import SETTINGS, STORE, page


async def status_page(request: web.Request) -> web.Response:
    snap = status.snapshot(request.app[SETTINGS], request.app[STORE], datetime.now(UTC))
    if _wants_json(request):
        return web.json_response(snap)
    return page("status.html", s=snap)


async def metrics_page(request: web.Request) -> web.Response:
    body = metrics.exposition(request.app[SETTINGS], request.app[STORE], datetime.now(UTC))
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def _wants_json(request: web.Request) -> bool:
    # A browser's Accept lists text/html first; curl and monitors ask for JSON by name.
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept
