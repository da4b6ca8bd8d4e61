"""The HTTP app through httpx against a running aiohttp server on 127.0.0.1."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import web as aioweb

from digestbot import signing, subscribers
from digestbot.config import Settings, load_settings
from digestbot.models import Subscriber
from digestbot.signing import unsubscribe_url
from digestbot.store import Store
from digestbot.web import make_app
from tests.fakes.digests import add_subscriber
from tests.fakes.site import serve_app
from tests.fakes.smtp import free_port


@pytest.fixture
async def client(settings: Settings):
    async with serve_app(settings) as http:
        yield http


def status_of(store: Store, sub_id: int) -> str:
    return subscribers.get(store, sub_id).status


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_get_shows_a_confirm_page_and_changes_nothing(client, store: Store) -> None:
    ada = add_subscriber(store, "ada@example.org")
    for _ in range(2):  # link scanners fetch twice; still nothing happens
        r = await client.get("/unsubscribe", params={"token": ada.token})
        assert r.status_code == 200
    assert "退订" in r.text and "Unsubscribe" in r.text and "a***@example.org" in r.text
    assert f'name="token" value="{ada.token}"' in r.text and 'method="post"' in r.text
    assert "ada@example.org" not in r.text
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Referrer-Policy"] == "no-referrer"
    assert status_of(store, ada.id) == "active"


async def test_post_from_the_button_unsubscribes(client, store: Store) -> None:
    ada = add_subscriber(store, "ada@example.org")
    bob = add_subscriber(store, "bob@example.org")
    r = await client.post("/unsubscribe", data={"token": ada.token})
    assert r.status_code == 200 and "已退订" in r.text and "Unsubscribed" in r.text
    assert status_of(store, ada.id) == "unsubscribed" and status_of(store, bob.id) == "active"
    assert subscribers.get(store, ada.id).status_reason == "web page"
    again = await client.get("/unsubscribe", params={"token": ada.token})
    assert again.status_code == 200 and "already unsubscribed" in again.text


async def test_rfc8058_one_click_post(client, store: Store) -> None:
    ada = add_subscriber(store, "ada@example.org")
    # What a mail client sends for List-Unsubscribe-Post: the token in the URL, a fixed body.
    r = await client.post(f"/unsubscribe?token={ada.token}",
                          content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    sub = subscribers.get(store, ada.id)
    assert sub.status == "unsubscribed" and sub.status_reason == "one-click (RFC 8058)"
    # Multipart is allowed by the RFC too, and repeating is harmless.
    r = await client.post(f"/unsubscribe?token={ada.token}",
                          files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200


@pytest.mark.parametrize("token", ["", "nope", "x" * 500, '"><script>alert(1)</script>'])
async def test_unknown_tokens_get_404_and_change_nothing(client, store: Store, token: str) -> None:
    ada = add_subscriber(store, "ada@example.org")
    for r in (await client.get("/unsubscribe", params={"token": token}),
              await client.post("/unsubscribe", data={"token": token})):
        assert r.status_code == 404 and "链接无效" in r.text
        assert "<script>" not in r.text
    assert status_of(store, ada.id) == "active"


SECURITY_HEADERS = ("Cache-Control", "Referrer-Policy", "X-Content-Type-Options",
                    "X-Frame-Options", "Content-Security-Policy")


async def test_errors_carry_the_security_headers(settings: Settings) -> None:
    async def boom(request: aioweb.Request) -> aioweb.Response:
        raise RuntimeError("a bug")

    app = make_app(settings)
    app.router.add_get("/boom", boom)
    runner = aioweb.AppRunner(app)
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answers = [await http.get("/no-such-page"), await http.put("/healthz"),
                       await http.get("/boom"), await http.get("/healthz")]
    finally:
        await runner.cleanup()
    assert [r.status_code for r in answers] == [404, 405, 500, 200]
    for r in answers:
        missing = [h for h in SECURITY_HEADERS if h not in r.headers]
        assert not missing, (r.status_code, missing)
        assert r.headers["Cache-Control"] == "no-store"
    assert "a bug" not in answers[2].text


def test_unsubscribe_url_needs_a_public_url(settings: Settings) -> None:
    from digestbot.config import load_settings

    assert unsubscribe_url(settings, "tok") is None
    public = load_settings(public_url="https://d.example.org/bot/")
    assert unsubscribe_url(public, "a-b_c") == "https://d.example.org/bot/unsubscribe?token=a-b_c"


def test_same_site_links_have_the_shape_of_the_public_ones() -> None:
    settings = load_settings(public_url="https://d.example.org/bot", secret="s" * 32)
    ada = Subscriber(id=7, channel="email", address="ada@example.org")
    path = signing.preferences_path(settings, ada, now=1_000_000)
    assert signing.preferences_url(settings, ada, now=1_000_000) == f"https://d.example.org/bot{path}"
    token = path.removeprefix("/preferences?token=")
    assert signing.verify(signing.secret_of(settings), signing.PREFERENCES, token,
                          now=1_000_001) == "7"
    assert signing.link_path("/preferences", "a b", done="save") == \
        "/preferences?token=a+b&done=save"
    # A token that needs no quoting goes in as it is; any other as urlencode quotes it.
    for odd in (token, "Ab0_.~-", "", "a b", "a+b", "a/b=c", "é", "a&b", "%41", "a\nb"):
        assert signing.link_path("/u", odd) == f"/u?{urlencode({'token': odd})}"


async def test_access_log_hides_tokens(client, store: Store, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    ada = add_subscriber(store, "ada@example.org")
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await client.get("/unsubscribe", params={"token": ada.token})
    await client.get("/preferences", params={"done": "save", "token": "tok.en.secret42"})
    await client.post(f"/unsubscribe?x=1&token={ada.token}", data={"List-Unsubscribe": "One-Click"})
    lines = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 3
    for record in lines:
        # The message and every attribute a formatter may print (aiohttp's extras included).
        everything = repr(vars(record)) + record.getMessage()
        assert ada.token not in everything and "secret42" not in everything


def test_serve_command_answers_and_stops_on_sigterm(settings: Settings) -> None:
    port = free_port()
    # -v shows aiohttp's access log, which must not carry the tokens in the URLs.
    proc = subprocess.Popen([sys.executable, "-m", "digestbot", "-v", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert r.json() == {"status": "ok"}
        token = "Zq9-secret-token-in-the-url"
        assert httpx.get(f"http://127.0.0.1:{port}/unsubscribe?token={token}").status_code == 404
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}" in out
    assert "GET /unsubscribe?token=*** " in err and token not in err
