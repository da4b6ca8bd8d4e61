"""The HTTP app: every route wired here, in one table, with the middleware and the store.

    /                      home and signup form          `signup`
    /subscribe, /confirm   double opt-in                 `signup`
    /preferences           manage a subscription         `preferences`
    /unsubscribe           confirm page, one-click POST  `preferences`
    /d…, /feed/….xml       daily pages, Atom feeds       `pages`
    /healthz               the store answers             here

Pages are jinja2 templates under templates/web/, autoescaped, Chinese and English. The app
opens one `Store` on the event loop's thread at startup (sqlite-utils connections belong to
one thread) for reads, and one on a worker thread for writes (`common.write`), which may wait
on another process's transaction without stalling the loop.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from digestbot.config import Settings
from digestbot.store import Store
from digestbot.web import forms, pages, preferences, signup
from digestbot.web.common import SETTINGS, STORE, WRITER, StoreThread

# A token's value in a logged URL (`?token=…`, `&token=…`), up to the next separator.
_TOKEN_IN_URL = re.compile(r"([?&;]token=)[^&;\s\"']+")


class _HideTokens(logging.Filter):
    """Blanks token values in access log lines.

    aiohttp logs each request's first line, query string included, at INFO (shown with
    `digestbot -v`), and hands the same text to formatters as the `first_request_line`
    extra. Unsubscribe, confirm and preferences links carry their credential in the query,
    so every string on the record is scrubbed, whichever runner (`serve`, `run`, tests)
    started the app.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and "token=" in value:
                setattr(record, name, _hide_tokens(value))
        if isinstance(record.args, tuple):
            record.args = tuple(_hide_tokens(a) if isinstance(a, str) else a for a in record.args)
        return True


def _hide_tokens(text: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1***", text)


_HIDE_TOKENS = _HideTokens()


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
    web.get("/unsubscribe", preferences.unsubscribe_form),
    web.post("/unsubscribe", preferences.unsubscribe),
    web.get("/d", pages.pick),
    web.get(r"/d/{day:\d{4}-\d{2}-\d{2}}", pages.day_page),
    web.get(r"/d/{day:\d{4}-\d{2}-\d{2}}/{topic}", pages.topic_page),
    web.get("/feed/{topic}.xml", pages.feed),
    web.get("/healthz", healthz),
]


def make_app(settings: Settings) -> web.Application:
    logging.getLogger("aiohttp.access").addFilter(_HIDE_TOKENS)  # once: addFilter dedupes
    app = web.Application(middlewares=[_security_headers], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[forms.STATE] = forms.SignupState()
    app.cleanup_ctx.append(_open_store)
    app.add_routes(ROUTES)
    return app


async def _open_store(app: web.Application) -> AsyncIterator[None]:
    with Store(app[SETTINGS].db) as store:
        app[STORE] = store
        app[WRITER] = StoreThread(app[SETTINGS].db)
        try:
            yield
        finally:
            app[WRITER].close()


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response = await handler(request)
    # The token is in the URL: keep it out of caches and other sites' Referer headers.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")  # no clickjacking of the button
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    )
    return response


def serve(settings: Settings, host: str, port: int) -> None:
    """The app alone until SIGINT/SIGTERM (aiohttp's run_app handles both); OSError when it
    cannot listen."""
    web.run_app(make_app(settings), host=host, port=port, print=None, handle_signals=True)
