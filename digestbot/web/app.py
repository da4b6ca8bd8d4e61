"""The HTTP app: every route wired here, in one table, with the middleware and the store.

    /                      home and signup form          `signup`
    /subscribe, /confirm   double opt-in                 `signup`
    /preferences           manage a subscription         `preferences`
    /preferences/library   library upload, Zotero        `library`
    /unsubscribe           confirm page, one-click POST  `preferences`
    /feedback              👍/👎 confirm page, POST       `feedback`
    /d…, /feed/….xml       daily pages, Atom feeds       `pages`
    /status, /metrics      the evening, for operators    `status`
    /healthz               the store answers             here

Pages are jinja2 templates under templates/web/, autoescaped, Chinese and English. The app
opens one `Store` on the event loop's thread at startup (sqlite-utils connections belong to
one thread) for reads, and one on a worker thread for writes (`common.write`), which may wait
on another process's transaction without stalling the loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from digestbot.config import Settings
from digestbot.store import Store, StoreThread, protect
from digestbot.web import feedback, forms, library, pages, preferences, signup, status
from digestbot.web.common import SETTINGS, STORE, WRITER

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    request.app[STORE].db.execute("select 1").fetchone()
    return web.json_response({"status": "ok"})


ROUTES = [
    web.get("/", signup.home),
    web.post("/subscribe", signup.subscribe),
    web.get("/confirm", signup.confirm_form),
    web.post("/confirm", signup.confirm),
    web.get("/preferences", preferences.preferences),
    web.post("/preferences", preferences.change_preferences),
    web.post("/preferences/library", library.change_library),
    web.get("/unsubscribe", preferences.unsubscribe_form),
    web.post("/unsubscribe", preferences.unsubscribe),
    web.get("/feedback", feedback.feedback_form),
    web.post("/feedback", feedback.record_vote),
    web.get("/d", pages.pick),
    web.get(r"/d/{day:\d{4}-\d{2}-\d{2}}", pages.day_page),
    web.get(r"/d/{day:\d{4}-\d{2}-\d{2}}/{topic}", pages.topic_page),
    web.get("/feed/{topic}.xml", pages.feed),
    web.get("/status", status.status_page),
    web.get("/metrics", status.metrics_page),
    web.get("/healthz", healthz),
]


def make_app(settings: Settings) -> web.Application:
    # aiohttp's access log quotes each request line, and our links carry `?token=` in it.
    protect(settings)
    app = web.Application(middlewares=[_security_headers], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[forms.STATE] = forms.SignupState()
    app.cleanup_ctx.append(_open_store)
    app.add_routes(ROUTES)
    return app


async def _open_store(app: web.Application) -> AsyncIterator[None]:
    with Store(app[SETTINGS].db) as store:
        app[STORE] = store
        app[WRITER] = StoreThread(app[SETTINGS].db, "digestbot-web-store")
        try:
            yield
        finally:
            app[WRITER].close()


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    # Router misses (404, 405), redirects and crashes leave the handler as exceptions: they
    # get the same headers as a 200 (a crash becomes a plain 500 here, logged).
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _add_security_headers(exc)  # raised on: aiohttp answers with the exception itself
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        response = web.Response(text="500 Internal Server Error", status=500)
    _add_security_headers(response)
    return response


def _add_security_headers(response: web.StreamResponse) -> None:
    # The token is in the URL: keep it out of caches and other sites' Referer headers.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")  # no clickjacking of the button
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    )


def serve(settings: Settings, host: str, port: int) -> None:
    """The app alone until SIGINT/SIGTERM (aiohttp's run_app handles both); OSError when it
    cannot listen."""
    web.run_app(make_app(settings), host=host, port=port, print=None, handle_signals=True)
