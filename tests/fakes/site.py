"""The HTTP app running on 127.0.0.1 for web tests, with a hand-set clock and an httpx client.

`running_site(...)` starts `digestbot.web.make_app` on a real aiohttp TCP site (the same
app `digestbot serve` runs), points DIGESTBOT_PUBLIC_URL at it so emailed links come back
to it, and hands out a `Site`: settings, the app, an httpx client (it keeps cookies, like a
browser), the clock that token expiry and rate limits read, and a store on the same file.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web as aioweb
from aiohttp.test_utils import TestServer

from digestbot import web
from digestbot.config import Settings, load_settings
from digestbot.store import Store
from digestbot.web import forms
from tests.fakes.smtp import free_port

SECRET = "test-secret-5f1c0a7e9b2d4c6e8a0b"
START = 1_800_000_000.0  # 2027-01-15, far from any real token's lifetime


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    settings: Settings
    app: aioweb.Application
    client: httpx.AsyncClient
    clock: Clock
    store: Store
    url: str


@asynccontextmanager
async def running_site(**overrides: Any) -> AsyncIterator[Site]:
    """The app on a free port; `overrides` are settings (secret=None to run without one)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    values = {"secret": SECRET, "public_url": url, **overrides}
    settings = load_settings(**{k: v for k, v in values.items() if v is not None})
    app = web.make_app(settings)
    clock = Clock()
    app[forms.STATE].now = clock
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    store = Store(settings.db)
    try:
        async with httpx.AsyncClient(base_url=url, follow_redirects=False, timeout=10) as client:
            yield Site(settings, app, client, clock, store, url)
    finally:
        store.close()
        await server.close()


def csrf_of(html: str) -> str:
    """The CSRF field of the first form on a page."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match[1]


def outbox_messages(settings: Settings) -> list[EmailMessage]:
    """The notices written to the outbox folder (no SMTP configured), oldest first."""
    folder = Path(settings.outbox)
    files = sorted(folder.glob("notice_*.eml")) if folder.is_dir() else []
    return [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]  # type: ignore[misc]


def link_in(message: EmailMessage, path: str) -> str:
    """The first link to `path` (/confirm, /preferences) in the text part of an email."""
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(rf"https?://\S+{re.escape(path)}\?token=\S+", text)
    assert match, f"no {path} link in the email:\n{text}"
    return match[0]


def path_of(url: str) -> str:
    """A link's path and query, as the test client asks for it."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def submit_signup(site: Site, form: dict[str, Any]) -> httpx.Response:
    """Fill the signup form on the home page (with its CSRF field) and post it."""
    home = await site.client.get("/")
    return await site.client.post("/subscribe", data={**form, "csrf": csrf_of(home.text)})


@asynccontextmanager
async def serve_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole web app on a free loopback port, and an httpx client pointed at it."""
    runner = aioweb.AppRunner(web.make_app(settings))
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        yield http
    await runner.cleanup()
