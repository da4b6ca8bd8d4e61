"""What every part of the web app shares: the app keys, and how a page and a notice are drawn.

It sits below the route modules (pages, signup, preferences) and `app`, so they share these
without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from digestbot import render
from digestbot.config import Settings
from digestbot.models import Subscriber
from digestbot.store import Store, StoreThread

T = TypeVar("T")


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
WRITER = web.AppKey("writer", StoreThread)


async def write(request: web.Request, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(store, *args, **kwargs)` on the app's store thread (see `StoreThread`)."""
    return await request.app[WRITER].run(fn, *args, **kwargs)


def page(template: str, status: int = 200, **context: Any) -> web.Response:
    """A bilingual page from templates/web/."""
    html = render.environment().get_template(f"web/{template}").render(lang="both", **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def notice(title_zh: str, title_en: str, text_zh: str = "", text_en: str = "", *,
           status: int = 200, link: str | None = None, link_text: str = "") -> web.Response:
    """A one-message page (check your inbox, link expired, too many attempts…)."""
    return page("notice.html", status=status, title_zh=title_zh, title_en=title_en,
                text_zh=text_zh, text_en=text_en, link=link, link_text=link_text)


def shown_address(sub: Subscriber) -> str:
    """Enough to recognise one's own address, not enough to harvest it from a forwarded link."""
    if sub.channel != "email":
        return {"telegram": "Telegram", "slack": "Slack"}.get(sub.channel, sub.channel)
    local, _, domain = sub.address.partition("@")
    return f"{local[:1]}***@{domain}"
