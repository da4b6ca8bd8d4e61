"""Stale links and identity (issue 14, items 4–6): a link dies with the subscription it was
made for, only the confirmation link activates, and a GET never hands out a credential."""

from __future__ import annotations

from digestbot import signing, subscribers
from digestbot.cli import main
from tests.fakes.digests import add_subscriber
from tests.fakes.site import (
    csrf_of,
    link_in,
    outbox_messages,
    path_of,
    running_site,
    submit_signup,
)

FORM = {"email": "ada@example.org", "topic": ["post-training"], "threshold": "70",
        "send_at": "07:45", "tz": "Europe/Berlin", "lang": "both"}



async def _signup(site, **changes) -> object:
    return await submit_signup(site, {**FORM, **changes})


def _prefs(site, sub) -> str:
    return path_of(signing.preferences_url(site.settings, sub, now=site.clock()))


def _no_longer_valid(r) -> bool:
    return r.status_code == 410 and "此链接已失效" in r.text and "no longer valid" in r.text


async def test_ids_are_never_reused_and_a_removed_readers_links_die(monkeypatch) -> None:
    async with running_site() as site:
        for i in range(3):
            add_subscriber(site.store, f"r{i}@example.org")
        old = add_subscriber(site.store, "old@example.org")
        old_prefs, old_unsub = _prefs(site, old), old.token
        monkeypatch.setenv("DIGESTBOT_DB", site.settings.db)
        assert main(["sub", "rm", str(old.id)]) == 0

        await _signup(site, email="new@example.org")
        new = subscribers.by_address(site.store, "email", "new@example.org")
        assert new.id > old.id
        # The same address back again is a new subscriber too.
        await _signup(site, email="old@example.org")
        again = subscribers.by_address(site.store, "email", "old@example.org")
        assert again.id not in (old.id, new.id)
        subscribers.set_status(site.store, again.id, "active")

        page = await site.client.get(old_prefs)
        assert _no_longer_valid(page) and "a***@" not in page.text
        csrf = csrf_of((await site.client.get(_prefs(site, again))).text)
        token = old_prefs.split("token=")[1]
        r = await site.client.post("/preferences", data={"token": token, "csrf": csrf,
                                                         "action": "pause"})
        assert _no_longer_valid(r)
        assert (await site.client.get("/unsubscribe", params={"token": old_unsub})).status_code == 404
        assert subscribers.get(site.store, again.id).status == "active"


async def test_unsubscribing_kills_signed_links_and_coming_back_the_unsubscribe_link() -> None:
    async with running_site() as site:
        await _signup(site)
        confirm = path_of(link_in(outbox_messages(site.settings)[0], "/confirm"))
        sub = subscribers.by_address(site.store, "email", "ada@example.org")
        page = await site.client.get(confirm)
        await site.client.post("/confirm", data={"token": confirm.split("token=")[1],
                                                 "csrf": csrf_of(page.text)})
        sub = subscribers.get(site.store, sub.id)
        prefs, unsub = _prefs(site, sub), sub.token
        assert (await site.client.get(prefs)).status_code == 200

        r = await site.client.post("/unsubscribe", data={"token": unsub})
        assert r.status_code == 200 and subscribers.get(site.store, sub.id).status == "unsubscribed"
        assert _no_longer_valid(await site.client.get(prefs))
        assert _no_longer_valid(await site.client.get(confirm))
        # The unsubscribe link still says where things stand…
        assert "already unsubscribed" in (await site.client.get(
            "/unsubscribe", params={"token": unsub})).text

        # …until the address subscribes again: the old emails' links belong to the old
        # subscription and must not end (or manage) the new one.
        await _signup(site, threshold="40")
        relink = path_of(link_in(outbox_messages(site.settings)[-1], "/confirm"))
        page = await site.client.get(relink)
        done = await site.client.post("/confirm", data={"token": relink.split("token=")[1],
                                                        "csrf": csrf_of(page.text)})
        assert done.status_code == 200 and subscribers.get(site.store, sub.id).status == "active"
        assert _no_longer_valid(await site.client.get(prefs))
        r = await site.client.post("/unsubscribe", data={"token": unsub})
        assert r.status_code == 404 and subscribers.get(site.store, sub.id).status == "active"
        assert "已失效" in r.text and "no longer valid" in r.text


async def test_a_pending_reader_cannot_become_active_without_confirming() -> None:
    async with running_site() as site:
        await _signup(site)
        sub = subscribers.by_address(site.store, "email", "ada@example.org")
        url = _prefs(site, sub)  # however they came by it
        token = url.split("token=")[1]
        page = await site.client.get(url)
        assert page.status_code == 403 and "确认" in page.text
        csrf = csrf_of((await site.client.get("/")).text)
        for action in ("unsubscribe", "resume", "save"):
            r = await site.client.post("/preferences", data={"token": token, "csrf": csrf,
                                                             "action": action})
            assert r.status_code == 403, action
            assert subscribers.get(site.store, sub.id).status == "pending"


async def test_get_confirm_for_a_confirmed_reader_hands_out_nothing() -> None:
    async with running_site() as site:
        await _signup(site)
        confirm = path_of(link_in(outbox_messages(site.settings)[0], "/confirm"))
        page = await site.client.get(confirm)
        first = await site.client.post("/confirm", data={"token": confirm.split("token=")[1],
                                                         "csrf": csrf_of(page.text)})
        assert "/preferences?token=" in first.text

        # A mail scanner following the link again gets a page with a button, no link.
        again = await site.client.get(confirm)
        assert again.status_code == 200 and "/preferences" not in again.text
        assert 'action="/confirm"' in again.text and "already confirmed" in again.text
        # Pressing the button (a POST) is what yields the preferences link.
        pressed = await site.client.post("/confirm", data={"token": confirm.split("token=")[1],
                                                           "csrf": csrf_of(again.text)})
        assert pressed.status_code == 200 and "/preferences?token=" in pressed.text
