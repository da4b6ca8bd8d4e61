"""`/status`: an HTML page, or JSON for `Accept: application/json`.

It is public: it shows what `digestbot.status` gathers — counts, times, states — and
nothing about any reader.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from digestbot import status
from digestbot.web.common import SETTINGS, STORE, page


async def status_page(request: web.Request) -> web.Response:
    snap = status.snapshot(request.app[SETTINGS], request.app[STORE], datetime.now(UTC))
    if _wants_json(request):
        return web.json_response(snap)
    return page("status.html", s=snap)


def _wants_json(request: web.Request) -> bool:
    # A browser's Accept lists text/html first; curl and monitors ask for JSON by name.
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept
