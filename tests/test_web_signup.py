"""Signup, double opt-in and preferences over HTTP against the running app (httpx → aiohttp).

Emails go to the `.eml` outbox folder (no SMTP set): the same `send_notice` path the SMTP
test in test_browser.py exercises over the wire.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from digestbot import signing, subscribers
from digestbot.channels.email import build_message
from digestbot.models import Digest
from digestbot.outbox import DeliveryRow
from digestbot.web.forms import ADDRESS_LIMIT, IP_LIMIT
from tests.fakes.outbox import asend
from tests.fakes.site import (
    csrf_of,
    link_in,
    outbox_messages,
    path_of,
    running_site,
    submit_signup,
)

FORM = {"email": "Ada@Example.org", "topic": ["post-training", "reasoning"], "threshold": "70",
        "send_at": "07:45", "tz": "Europe/Berlin", "lang": "both"}



async def _signup(site, **changes) -> object:
    return await submit_signup(site, {**FORM, **changes})


def _state(site) -> list[tuple]:
    """Everything a signup could change, to prove that something did not."""
    db = site.store.db
    return [list(db.query(f"select * from {t} order by 1")) for t in
            ("subscribers", "subscriptions", "custom_topics")]


async def test_home_shows_the_form_and_sets_a_csrf_cookie() -> None:
    async with running_site() as site:
        r = await site.client.get("/")
        assert r.status_code == 200
        assert 'action="/subscribe"' in r.text and 'value="post-training"' in r.text
        assert "digestbot_csrf" in r.cookies
        assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Lax" in r.headers["set-cookie"]
        # The time-zone guess is the only script, allowed by its nonce.
        nonce = r.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in r.text


async def test_signup_creates_pending_and_confirm_needs_a_post() -> None:
    async with running_site() as site:
        r = await _signup(site)
        assert r.status_code == 200 and "请查收邮件" in r.text
        sub = subscribers.by_address(site.store, "email", "ada@example.org")
        assert sub is not None and sub.status == "pending"
        assert (sub.tz, sub.send_at, sub.lang) == ("Europe/Berlin", "07:45", "both")
        assert {(s.topic, s.threshold) for s in subscribers.subscriptions(site.store, sub.id)} == {
            ("post-training", 70), ("reasoning", 70)}

        [mail] = outbox_messages(site.settings)
        assert mail["To"] == "ada@example.org" and "确认" in mail["Subject"]
        link = link_in(mail, "/confirm")
        assert link.startswith(site.url)

        before = _state(site)
        page = await site.client.get(path_of(link))
        assert page.status_code == 200 and 'action="/confirm"' in page.text
        assert _state(site) == before  # a mail scanner fetching the link subscribes nobody

        token = page.text.split('name="token" value="')[1].split('"')[0]
        done = await site.client.post("/confirm", data={"token": token, "csrf": csrf_of(page.text)})
        assert done.status_code == 200 and "订阅成功" in done.text
        assert subscribers.get(site.store, sub.id).status == "active"
        assert "/preferences?token=" in done.text


async def test_confirm_rejects_missing_csrf_and_forged_or_expired_tokens() -> None:
    async with running_site() as site:
        await _signup(site)
        sub = subscribers.by_address(site.store, "email", "ada@example.org")
        link = link_in(outbox_messages(site.settings)[0], "/confirm")
        token = link.split("token=")[1]
        page = await site.client.get(path_of(link))

        no_csrf = await site.client.post("/confirm", data={"token": token})
        assert no_csrf.status_code == 403
        wrong_csrf = await site.client.post("/confirm", data={"token": token, "csrf": "x" * 43})
        assert wrong_csrf.status_code == 403

        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        assert (await site.client.get(f"/confirm?token={forged}")).status_code == 404
        prefs_token = signing.sign(signing.secret_of(site.settings), signing.PREFERENCES,
                                   str(sub.id), 3600, now=site.clock())
        # A token for another purpose is not a confirm token.
        assert (await site.client.get(f"/confirm?token={prefs_token}")).status_code == 404

        site.clock.now += signing.CONFIRM_TTL + 1
        assert (await site.client.get(path_of(link))).status_code == 410
        late = await site.client.post("/confirm", data={"token": token, "csrf": csrf_of(page.text)})
        assert late.status_code == 410
        assert subscribers.get(site.store, sub.id).status == "pending"


def _headers(response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.multi_items() if k.lower() != "date"]


async def test_resignup_resends_and_reveals_nothing() -> None:
    async with running_site() as site:
        first = await _signup(site, email="fresh@example.org")
        await _signup(site, email="known@example.org")
        known = subscribers.by_address(site.store, "email", "known@example.org")
        subscribers.set_status(site.store, known.id, "active")
        before = _state(site)

        again = await _signup(site, email="known@example.org", topic=["agents"], threshold="10")
        assert again.status_code == first.status_code == 200
        # Byte for byte, headers too, the response differs only by the address typed in
        # (both addresses are as long, so even Content-Length is the same).
        assert again.content.replace(b"known@", b"X@") == first.content.replace(b"fresh@", b"X@")
        assert _headers(again) == _headers(first)
        assert _state(site) == before  # a stranger cannot change a confirmed subscriber
        mails = outbox_messages(site.settings)
        assert [m["To"] for m in mails] == ["fresh@example.org", "known@example.org",
                                           "known@example.org"]
        assert link_in(mails[-1], "/preferences")  # the owner gets their preferences link

        # Still pending: the confirmation is sent again, and the first signup's choices
        # stay (whoever types the address cannot swap them before the owner confirms).
        before = _state(site)
        await _signup(site, email="fresh@example.org", topic=["agents"], tz="Asia/Tokyo")
        assert _state(site) == before
        pending = subscribers.by_address(site.store, "email", "fresh@example.org")
        assert [s.topic for s in subscribers.subscriptions(site.store, pending.id)] == [
            "post-training", "reasoning"]
        assert link_in(outbox_messages(site.settings)[-1], "/confirm")


async def test_pending_subscribers_get_no_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.digests import DAY, add_paper

    async with running_site() as site:
        add_paper(site.store, "2608.00001", 90)
        await _signup(site, email="wait@example.org", topic=["post-training"])
        report = await asend(site.settings, site.store, force=True, date=DAY)
        assert report.sent == 0
        assert list(site.store.db.query("select * from deliveries")) == []

        # The same reader, once confirmed through the emailed link, gets that very digest.
        link = path_of(link_in(outbox_messages(site.settings)[0], "/confirm"))
        page = await site.client.get(link)
        await site.client.post("/confirm", data={"token": link.split("token=")[1],
                                                 "csrf": csrf_of(page.text)})
        report = await asend(site.settings, site.store, force=True, date=DAY)
        assert report.sent == 1


async def test_bad_input_is_refused_and_changes_nothing() -> None:
    async with running_site() as site:
        before = _state(site)
        cases = [
            {"email": "not-an-address"},
            {"topic": ["no-such-topic"]},
            {"topic": [], "custom": ""},
            {"threshold": "200"},
            {"tz": "Mars/Olympus"},
            {"send_at": "25:00"},
            {"lang": "fr"},
        ]
        for change in cases:
            r = await _signup(site, **change)
            assert r.status_code == 400, change
            assert 'role="alert"' in r.text
        too_long = await _signup(site, custom="x" * 201)
        assert too_long.status_code == 400 and "longer than" in too_long.text
        huge = await _signup(site, email="a" * 300 + "@example.org")
        assert huge.status_code == 400
        unknown = await _signup(site, evil="1")
        assert unknown.status_code == 400
        for csrf in ("", "x" * 43):  # another site's form cannot know the field
            forged = await site.client.post("/subscribe", data={**FORM, "csrf": csrf})
            assert forged.status_code == 403
        assert _state(site) == before
        assert outbox_messages(site.settings) == []


async def test_user_text_is_escaped() -> None:
    async with running_site() as site:
        r = await _signup(site, email="<script>alert(1)</script>", custom="<b>bold</b>")
        assert r.status_code == 400
        assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text
        assert "<b>bold</b>" not in r.text

        await _signup(site, custom="<img src=x onerror=alert(1)> & RLHF")
        sub = subscribers.by_address(site.store, "email", "ada@example.org")
        subscribers.set_status(site.store, sub.id, "active")
        url = signing.preferences_url(site.settings, sub, now=site.clock())
        page = await site.client.get(path_of(url))
        assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt; &amp; RLHF" in page.text


async def test_signup_rate_limits_per_address_and_per_ip() -> None:
    async with running_site() as site:
        per_address, window = ADDRESS_LIMIT
        for _ in range(per_address):
            assert (await _signup(site)).status_code == 200
        assert (await _signup(site)).status_code == 429
        assert len(outbox_messages(site.settings)) == per_address
        # Another address from the same client still works, until the IP's own limit.
        per_ip, _ = IP_LIMIT
        codes = [(await _signup(site, email=f"u{i}@example.org")).status_code
                 for i in range(per_ip)]
        assert codes.count(200) == per_ip - per_address - 1 and codes[-1] == 429
        site.clock.now += window + 1
        assert (await _signup(site, email="later@example.org")).status_code == 200


async def test_behind_a_proxy_each_reader_has_their_own_ip_limit() -> None:
    async with running_site() as site:
        per_ip, _ = IP_LIMIT
        home = await site.client.get("/")

        async def signup(email: str, forwarded: str) -> int:
            form = {**FORM, "email": email, "csrf": csrf_of(home.text)}
            r = await site.client.post("/subscribe", data=form,
                                       headers={"X-Forwarded-For": forwarded})
            return r.status_code

        # The proxy (our loopback peer) appends the reader's address; what the reader put
        # before it is theirs to invent and not believed.
        codes = [await signup(f"a{i}@example.org", f"10.9.9.{i}, 203.0.113.7")
                 for i in range(per_ip + 1)]
        assert codes == [200] * per_ip + [429]
        assert await signup("b@example.org", "203.0.113.8") == 200  # another reader
        # A header that names no address counts against the peer, like no header at all.
        assert [await signup(f"c{i}@example.org", "unknown") for i in range(per_ip)] == [200] * per_ip
        r = await site.client.post("/subscribe", data={**FORM, "email": "d@example.org",
                                                       "csrf": csrf_of(home.text)})
        assert r.status_code == 429


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    # The site is reached over loopback; here loopback is not the configured proxy (as for a
    # LAN client of `serve --host 0.0.0.0`), so inventing X-Forwarded-For buys nothing.
    async with running_site(trusted_proxies="10.0.0.1, 192.168.0.0/16") as site:
        per_ip, _ = IP_LIMIT
        home = await site.client.get("/")
        codes = []
        for i in range(per_ip + 1):
            form = {**FORM, "email": f"a{i}@example.org", "csrf": csrf_of(home.text)}
            r = await site.client.post("/subscribe", data=form,
                                       headers={"X-Forwarded-For": f"203.0.113.{i}"})
            codes.append(r.status_code)
        assert codes == [200] * per_ip + [429]


def test_trusted_proxies_is_a_list_of_addresses() -> None:
    from digestbot.config import load_settings
    from digestbot.errors import ConfigError

    assert load_settings({}).trusted_proxies == ["127.0.0.1", "::1"]
    env = {"DIGESTBOT_TRUSTED_PROXIES": "10.0.0.1, 172.16.0.0/12,::1"}
    assert load_settings(env).trusted_proxies == ["10.0.0.1", "172.16.0.0/12", "::1"]
    assert load_settings({"DIGESTBOT_TRUSTED_PROXIES": ""}).trusted_proxies == []
    with pytest.raises(ConfigError, match="DIGESTBOT_TRUSTED_PROXIES: 'proxy.lan'"):
        load_settings({"DIGESTBOT_TRUSTED_PROXIES": "proxy.lan"})


async def test_tagged_addresses_share_their_mailbox_limit() -> None:
    async with running_site() as site:
        per_address, _ = ADDRESS_LIMIT
        codes = [(await _signup(site, email=f"ada+{i}@example.org")).status_code
                 for i in range(per_address + 1)]
        assert codes == [200] * per_address + [429]
        assert (await _signup(site, email="ada@example.org")).status_code == 429
        assert (await _signup(site, email="bob+1@example.org")).status_code == 200


async def test_preferences_change_pause_resume_unsubscribe() -> None:
    async with running_site() as site:
        await _signup(site)
        sub = subscribers.by_address(site.store, "email", "ada@example.org")
        subscribers.set_status(site.store, sub.id, "active")
        url = path_of(signing.preferences_url(site.settings, sub, now=site.clock()))
        token = url.split("token=")[1]

        before = _state(site)
        page = await site.client.get(url)
        assert page.status_code == 200 and _state(site) == before
        assert 'name="thr.post-training"' in page.text and 'value="70"' in page.text
        csrf = csrf_of(page.text)

        save = {"token": token, "csrf": csrf, "action": "save", "topic": ["post-training", "agents"],
                "thr.post-training": "85", "thr.agents": "55", "custom": "代码大模型安全",
                "custom_threshold": "65", "send_at": "6:05", "tz": "Asia/Tokyo", "lang": "en"}
        r = await site.client.post("/preferences", data=save)
        assert r.status_code == 303 and "done=save" in r.headers["location"]
        subs = {s.topic: s.threshold for s in subscribers.subscriptions(site.store, sub.id)}
        custom = [t for t in subs if t.startswith("custom-")]
        assert subs == {"post-training": 85, "agents": 55, custom[0]: 65}
        now = subscribers.get(site.store, sub.id)
        assert (now.send_at, now.tz, now.lang) == ("06:05", "Asia/Tokyo", "en")
        shown = await site.client.get(r.headers["location"])
        assert "已保存" in shown.text and "代码大模型安全" in shown.text

        # At most MAX_CUSTOM_TOPICS custom topics per reader, with a clear message.
        for i in range(subscribers.MAX_CUSTOM_TOPICS - 1):
            r = await site.client.post("/preferences", data={
                **save, "topic": list(subs),
                **{f"thr.{t}": str(v) for t, v in subs.items()},
                "custom": f"custom interest {i}"})
            assert r.status_code == 303
            subs = {s.topic: s.threshold for s in subscribers.subscriptions(site.store, sub.id)}
        full = dict(subs)
        r = await site.client.post("/preferences", data={
            **save, "topic": list(subs), **{f"thr.{t}": str(v) for t, v in subs.items()},
            "custom": "one too many"})
        assert r.status_code == 400 and "最多 10 个自定义主题" in r.text
        assert "at most 10 custom topics" in r.text
        subs = {s.topic: s.threshold for s in subscribers.subscriptions(site.store, sub.id)}
        assert subs == full
        # Back to where the test was, for what follows.
        r = await site.client.post("/preferences", data=save)
        assert r.status_code == 303
        subs = {s.topic: s.threshold for s in subscribers.subscriptions(site.store, sub.id)}

        bad = await site.client.post("/preferences", data={**save, "thr.agents": "101"})
        assert bad.status_code == 400 and 'role="alert"' in bad.text
        assert {s.topic: s.threshold for s in subscribers.subscriptions(site.store, sub.id)} == subs
        no_csrf = await site.client.post("/preferences", data={**save, "csrf": ""})
        assert no_csrf.status_code == 403

        for action, status in [("pause", "paused"), ("resume", "active"),
                               ("unsubscribe", "unsubscribed"), ("resume", "active")]:
            r = await site.client.post("/preferences", data={"token": token, "csrf": csrf,
                                                              "action": action})
            assert r.status_code == 303, action
            assert subscribers.get(site.store, sub.id).status == status
            # Unsubscribing kills every link handed out before; the page it leads to
            # carries a fresh one (with which the reader may resume).
            token = r.headers["location"].split("token=")[1].split("&")[0]
        assert (await site.client.get(url)).status_code == 410
        url = f"/preferences?token={token}"

        site.clock.now += signing.PREFERENCES_TTL + 1
        assert (await site.client.get(url)).status_code == 410


async def test_digest_email_footer_links_to_preferences() -> None:
    async with running_site() as site:
        await _signup(site)
        sub = subscribers.by_address(site.store, "email", "ada@example.org")
        subscribers.set_status(site.store, sub.id, "active")  # digests go to confirmed readers
        digest = Digest(subscriber=sub, date="2026-08-13", topics=[], entries=[])
        row = DeliveryRow(id=1, subscriber_id=sub.id, digest_date="2026-08-13", status="pending",
                          paper_ids=[])
        message = build_message(site.settings, row, digest)
        html = message.get_body(("html",)).get_content()
        assert f"{site.url}/preferences?token=" in html
        link = html.split(f"{site.url}/preferences")[1].split('"')[0].replace("&amp;", "&")
        assert (await site.client.get(f"/preferences{link}")).status_code == 200
        assert link_in(message, "/preferences")  # the text part carries it too

        # Without a secret the digest still goes out, with no preferences link.
        unsigned = replace(site.settings, secret=None)
        html = build_message(unsigned, row, digest).get_body(("html",)).get_content()
        assert "/preferences" not in html and f"{site.url}/unsubscribe?token=" in html


async def test_without_a_secret_the_signing_pages_refuse() -> None:
    async with running_site(secret=None) as site:
        home = await site.client.get("/")
        assert home.status_code == 200 and 'action="/subscribe"' not in home.text
        for method, path in [("POST", "/subscribe"), ("GET", "/confirm?token=x.y.z"),
                             ("POST", "/confirm"), ("GET", "/preferences?token=x.y.z"),
                             ("POST", "/preferences")]:
            r = await site.client.request(method, path, data={"email": "a@example.org"}
                                          if method == "POST" else None)
            assert r.status_code == 503 and "DIGESTBOT_SECRET" in r.text, path
        assert subscribers.list_all(site.store) == []


def _database(store) -> dict[str, list[dict]]:
    """Every row of every table, to compare before and after."""
    tables = [r["name"] for r in store.db.query(
        "select name from sqlite_master where type = 'table' order by name")]
    return {t: list(store.db.query(f"select * from [{t}] order by rowid")) for t in tables}


async def test_no_get_route_changes_the_database() -> None:
    from tests.fakes.digests import DAY, add_paper

    async with running_site() as site:
        add_paper(site.store, "2608.00001", 90)
        await _signup(site, email="pending@example.org", custom="代码大模型安全")
        await _signup(site, email="active@example.org")
        pending = subscribers.by_address(site.store, "email", "pending@example.org")
        active = subscribers.by_address(site.store, "email", "active@example.org")
        subscribers.set_status(site.store, active.id, "active")
        custom = next(s.topic for s in subscribers.subscriptions(site.store, pending.id)
                      if s.topic.startswith("custom-"))
        confirm = path_of(link_in(outbox_messages(site.settings)[0], "/confirm"))
        prefs = path_of(signing.preferences_url(site.settings, active, now=site.clock()))
        gets = {
            "/": ["/"],
            "/healthz": ["/healthz"],
            "/status": ["/status"],
            "/metrics": ["/metrics"],
            "/unsubscribe": [f"/unsubscribe?token={active.token}"],
            "/confirm": [confirm],
            "/preferences": [prefs, f"{prefs}&done=unsubscribe"],
            "/d": [f"/d?date={DAY}&topic=post-training", "/d?topic=a+brand+new+interest"],
            "/d/{day}": [f"/d/{DAY}", "/d/2026-08-15"],
            "/d/{day}/{topic}": [f"/d/{DAY}/post-training", f"/d/{DAY}/后训练",
                                 f"/d/{DAY}/{custom}", f"/d/{DAY}/a brand new interest"],
            "/feed/{topic}.xml": ["/feed/post-training.xml", f"/feed/{custom}.xml",
                                  "/feed/a brand new interest.xml"],
            "/feedback": [path_of(signing.feedback_link(site.settings, active))
                          + "&paper=2608.00001&vote=down"],
        }
        # A GET route added later without a line here fails this test.
        served = {r.resource.canonical for r in site.app.router.routes() if r.method == "GET"}
        assert served == set(gets)

        before = _database(site.store)
        for paths in gets.values():
            for path in paths:
                for method in ("GET", "HEAD"):
                    r = await site.client.request(method, path)
                    assert r.status_code < 500, (method, path)
        assert _database(site.store) == before

        # The snapshot does see a change: the confirm page's POST is what activates.
        page = await site.client.get(confirm)
        await site.client.post("/confirm", data={"token": confirm.split("token=")[1],
                                                 "csrf": csrf_of(page.text)})
        assert _database(site.store) != before
