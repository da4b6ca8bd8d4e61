"""The HTTP app: health check and unsubscribe here; signup, confirm and preferences in
`web_signup`, the daily pages and Atom feeds in `web_pages`.

`GET /unsubscribe?token=…` only shows a confirm page: mail scanners and link previews fetch
every URL in an email, so a GET must never change state. `POST /unsubscribe` does it, both
from the page's button and as the RFC 8058 one-click POST a mail client sends on its own
(body `List-Unsubscribe=One-Click`, the token in the URL). Unknown tokens get 404 and change
nothing. Pages are jinja2 templates under templates/web/, autoescaped, Chinese and English.

The app opens one `Store` on the event loop's thread at startup (sqlite-utils connections
belong to one thread) and every handler runs on that thread.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from digestbot import render, signing, subscribers, web_pages, web_signup
from digestbot.config import Settings
from digestbot.errors import DigestbotError
from digestbot.models import Subscriber
from digestbot.store import Store

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)

# Tokens are 43 characters (secrets.token_urlsafe(32)); anything far longer is not one.
MAX_TOKEN_LENGTH = 128

routes = web.RouteTableDef()

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


def unsubscribe_url(settings: Settings, token: str) -> str | None:
    """The link put in emails and chat footers; None without DIGESTBOT_PUBLIC_URL."""
    return signing.public_link(settings, "/unsubscribe", token) if token else None


def make_app(settings: Settings) -> web.Application:
    logging.getLogger("aiohttp.access").addFilter(_HIDE_TOKENS)  # once: addFilter dedupes
    app = web.Application(middlewares=[_security_headers], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_open_store)
    app.add_routes(routes)
    web_signup.setup(app)  # /, /subscribe, /confirm, /preferences
    web_pages.setup(app)  # /d/…, /feed/….xml
    return app


async def _open_store(app: web.Application) -> AsyncIterator[None]:
    with Store(app[SETTINGS].db) as store:
        app[STORE] = store
        yield


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


def page(template: str, status: int = 200, **context: Any) -> web.Response:
    """A bilingual page from templates/web/."""
    html = render.environment().get_template(f"web/{template}").render(lang="both", **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    request.app[STORE].db.execute("select 1").fetchone()
    return web.json_response({"status": "ok"})


def _subscriber(request: web.Request, token: str) -> Subscriber | None:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return subscribers.by_token(request.app[STORE], token)


def _not_found() -> web.Response:
    return page("not_found.html", status=404)


def _shown_address(sub: Subscriber) -> str:
    """Enough to recognise one's own address, not enough to harvest it from a forwarded link."""
    if sub.channel != "email":
        return {"telegram": "Telegram", "slack": "Slack"}.get(sub.channel, sub.channel)
    local, _, domain = sub.address.partition("@")
    return f"{local[:1]}***@{domain}"


@routes.get("/unsubscribe")
async def unsubscribe_form(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    sub = _subscriber(request, token)
    if sub is None:
        return _not_found()
    return page("unsubscribe.html", token=token, address=_shown_address(sub),
                already=sub.status == "unsubscribed")


@routes.post("/unsubscribe")
async def unsubscribe(request: web.Request) -> web.Response:
    form = await request.post()
    token = str(form.get("token") or request.query.get("token", ""))
    sub = _subscriber(request, token)
    if sub is None:
        return _not_found()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    if sub.status != "unsubscribed":
        reason = "one-click (RFC 8058)" if one_click else "web page"
        subscribers.set_status(request.app[STORE], sub.id, "unsubscribed", reason=reason)
        log.info("subscriber #%s unsubscribed via %s", sub.id, reason)
    return page("unsubscribed.html", address=_shown_address(sub))


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """The HTTP app alone, until SIGINT/SIGTERM (aiohttp's run_app handles both)."""
    port = args.port if args.port is not None else settings.http_port
    print(f"HTTP 服务 / HTTP app on http://{args.host}:{port} (/, /d/…, /feed/…, /preferences, "
          "/unsubscribe, /healthz); Ctrl-C 停止 / to stop")
    try:
        web.run_app(make_app(settings), host=args.host, port=port, print=None,
                    handle_signals=True)
    except OSError as exc:
        raise DigestbotError(
            f"cannot listen on {args.host}:{port} ({exc.strerror or exc}); "
            "choose another with --port or DIGESTBOT_HTTP_PORT") from None
    return 0
