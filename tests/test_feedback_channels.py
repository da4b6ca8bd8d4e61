"""One tap on every delivered paper (issue 17 item 1): the email's signed 👍/👎 links through the
real web app (GET only confirms, POST records), Telegram inline buttons through
python-telegram-bot and the fake Bot API, and Slack buttons through the Socket Mode handler."""

from __future__ import annotations

import asyncio
import re
from html import unescape

import pytest

from digestbot import digest, signing, subscribers
from digestbot.bots.slack import SlackCommands
from digestbot.channels.email import build_message
from digestbot.channels.slack import web_client
from digestbot.channels.telegram import FloodLimiter, TelegramSender, build_bot
from digestbot.config import load_settings
from digestbot.outbox import DeliveryHistory, DeliveryRow
from digestbot.render.slack import render_slack
from digestbot.subscribers import feedback
from tests.fakes import digests as fake_digests
from tests.fakes.outbox import asend
from tests.fakes.site import csrf_of, path_of, running_site
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.test_digest import add_paper, make_sub
from tests.test_telegram import NO_LIMITS, NOW

DAY = "2026-08-13"


def _links(text: str, vote: str) -> list[str]:
    return re.findall(rf"https?://\S+/feedback\?token=\S+&paper=\S+&vote={vote}", text)


async def test_email_links_confirm_on_get_and_record_on_post() -> None:
    async with running_site() as site:
        store = site.store
        add_paper(store, "2608.00001", scores={"post-training": 90}, title="Speech at scale")
        add_paper(store, "2608.00002", scores={"post-training": 80}, title="Benchmarks again")
        sub = make_sub(store)
        d = digest.select(store, sub, DAY, history=DeliveryHistory(store))
        row = DeliveryRow(id=1, subscriber_id=sub.id, digest_date=DAY, status="pending",
                          paper_ids=[e.paper.id for e in d.entries])
        message = build_message(site.settings, row, d)
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        ups, downs = _links(text, "up"), _links(text, "down")
        assert [u.split("paper=")[1].split("&")[0] for u in ups] == ["2608.00001", "2608.00002"]
        assert len(downs) == 2
        # The same links in the HTML part, one signature for the whole digest.
        assert [unescape(u) for u in re.findall(r'href="([^"]+&amp;vote=up)"', html)] == ups
        assert len({u.split("token=")[1].split("&")[0] for u in ups + downs}) == 1

        # A mail scanner fetching every link votes for no one.
        for url in ups + downs:
            page = await site.client.get(path_of(url))
            assert page.status_code == 200
            assert "Speech at scale" in page.text or "Benchmarks again" in page.text
        assert feedback.votes(store, sub.id) == []

        page = await site.client.get(path_of(ups[0]))
        form = {"token": ups[0].split("token=")[1].split("&")[0], "csrf": csrf_of(page.text),
                "paper": "2608.00001", "vote": "up"}
        done = await site.client.post("/feedback", data=form)
        assert done.status_code == 200 and "已记录 👍" in done.text
        # On to the paper's day page, still signed: every paper there has the two buttons.
        day_link = re.search(r'href="(/d/[^"]+)"', done.text)[1].replace("&amp;", "&")
        assert day_link.startswith(f"/d/{DAY}/post-training?token=")
        day = await site.client.get(day_link)
        assert day.status_code == 200 and day.headers["Cache-Control"] == "no-store"
        assert day.text.count('action="/feedback"') == 2
        assert "✅👍 有用" in day.text  # the vote just cast
        public = await site.client.get(f"/d/{DAY}/post-training")
        assert 'action="/feedback"' not in public.text and "no-store" not in public.headers.get(
            "Cache-Control", "")
        back = await site.client.post("/feedback", data={
            "token": form["token"], "csrf": csrf_of(day.text), "paper": "2608.00002",
            "vote": "down", "back": f"/d/{DAY}/post-training"})
        assert back.status_code == 303 and back.headers["Location"] == day_link
        assert "✅👎 不感兴趣" in (await site.client.get(day_link)).text
        evil = await site.client.post("/feedback", data={
            "token": form["token"], "csrf": csrf_of(day.text), "paper": "2608.00002",
            "vote": "down", "back": "//evil.example/d/x"})
        assert evil.status_code == 200  # no redirect anywhere but a day page
        feedback.forget(store, sub.id)
        await site.client.post("/feedback", data=form)
        again = await site.client.post("/feedback", data=form)  # a double click
        assert again.status_code == 200
        assert [(v.arxiv_id, v.name) for v in feedback.votes(store, sub.id)] == [("2608.00001", "up")]
        await site.client.post("/feedback", data={**form, "vote": "down"})  # changed mind
        assert [(v.arxiv_id, v.name) for v in feedback.votes(store, sub.id)] == [("2608.00001", "down")]

        # Without the CSRF field, with a forged token, or for an unknown paper: nothing.
        assert (await site.client.post("/feedback", data={**form, "csrf": "x"})).status_code == 403
        forged = {**form, "token": form["token"][:-2] + "AA", "paper": "2608.00002"}
        assert (await site.client.post("/feedback", data=forged)).status_code == 404
        assert (await site.client.post("/feedback", data={**form, "paper": "2608.99999"})
                ).status_code == 400
        assert (await site.client.get(path_of(ups[0]).replace("vote=up", "vote=maybe"))
                ).status_code == 400
        assert len(feedback.votes(store, sub.id)) == 1

        # A removed reader's links are dead, and their votes are gone.
        subscribers.remove(store, sub.id)
        assert (await site.client.get(path_of(ups[1]))).status_code == 410
        assert store.db["feedback"].count == 0


async def test_no_links_without_a_secret() -> None:
    async with running_site(secret=None) as site:
        add_paper(site.store, "2608.00001", scores={"post-training": 90})
        sub = make_sub(site.store)
        assert signing.feedback_link(site.settings, sub) is None
        d = digest.select(site.store, sub, DAY, history=DeliveryHistory(site.store))
        row = DeliveryRow(id=1, subscriber_id=sub.id, digest_date=DAY, status="pending",
                          paper_ids=["2608.00001"])
        text = build_message(site.settings, row, d).get_body(("plain",)).get_content()
        assert "/feedback" not in text



# -- Telegram ---------------------------------------------------------------------------------


async def _until(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def _say(tg, text: str) -> str:
    n = len(tg.sent_to(42)) + 1
    tg.push_message(42, text)
    return (await tg.wait_sent(42, n))[-1]["text"]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_telegram_buttons_record_quietly_and_show_the_vote(tg, bot, tg_settings) -> None:
    store = bot.store
    for n in range(1, 4):
        fake_digests.add_paper(store, f"2608.0000{n}", 90 - n)
    assert "已订阅" in await _say(tg, "/subscribe 后训练")
    sender = TelegramSender(build_bot(tg_settings, FloodLimiter(**NO_LIMITS)))
    report = await asend(tg_settings, store, now=NOW, force=True, senders={"telegram": sender})
    assert report.sent == 1
    header, *parts = [m for m in tg.sent_to(42) if m["parse_mode"] == "HTML"]
    assert header["reply_markup"] is None  # the header carries no paper
    rows = [row for m in parts for row in m["reply_markup"]["inline_keyboard"]]
    assert [[b["callback_data"] for b in row] for row in rows] == [
        [f"vote up 2608.0000{n}", f"vote down 2608.0000{n}"] for n in range(1, 4)]
    message = parts[0]
    sent_before = len(tg.sent_to(42))

    tg.push_callback(42, "vote up 2608.00002", message_id=message["message_id"])
    await _until(lambda: len(tg.edited) == 1)
    edited = tg.edited[0]
    assert edited["message_id"] == message["message_id"] and edited["text"] is None
    texts = [[b["text"] for b in row] for row in edited["reply_markup"]["inline_keyboard"]]
    assert texts[1] == ["✅👍 2608.00002", "👎 2608.00002"]
    assert texts[0] == ["👍 2608.00001", "👎 2608.00001"]
    sub = subscribers.by_address(store, "telegram", "42")
    assert [(v.arxiv_id, v.name) for v in feedback.votes(store, sub.id)] == [("2608.00002", "up")]
    await _until(lambda: len(tg.callback_answers) == 1)
    assert "text" not in tg.callback_answers[0]  # acknowledged quietly

    # The same tap again: recorded state unchanged, no edit (Telegram would refuse it).
    tg.push_callback(42, "vote up 2608.00002", message_id=message["message_id"])
    await _until(lambda: len(tg.callback_answers) == 2)
    await tg.wait_idle()
    assert len(tg.edited) == 1
    # Changing one's mind flips the check.
    tg.push_callback(42, "vote down 2608.00002", message_id=message["message_id"])
    await _until(lambda: len(tg.edited) == 2)
    texts = [[b["text"] for b in row] for row in tg.edited[1]["reply_markup"]["inline_keyboard"]]
    assert texts[1] == ["👍 2608.00002", "✅👎 2608.00002"]
    assert [(v.arxiv_id, v.name) for v in feedback.votes(store, sub.id)] == [("2608.00002", "down")]
    assert len(tg.sent_to(42)) == sent_before  # no new message for any of it

    # An unknown paper: an answer that says so, nothing stored, nothing edited.
    tg.push_callback(42, "vote up 2608.99999", message_id=message["message_id"])
    await _until(lambda: len(tg.callback_answers) == 4)
    assert "2608.99999" in tg.callback_answers[3]["text"]
    assert len(feedback.votes(store, sub.id)) == 1 and len(tg.edited) == 2

    # /learned explains how many more votes it needs; /forget deletes them.
    learned = await _say(tg, "/learned")
    assert "已有 1 票(👍 0 · 👎 1)" in learned and "至少 5 票" in learned
    assert "已删除 1 票" in await _say(tg, "/forget")
    assert feedback.votes(store, sub.id) == []


# -- Slack ------------------------------------------------------------------------------------


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        fake.add_user("U0MEMBER")
        fake.members["C0CHAN123"] = ["U0MEMBER"]
        yield fake


async def test_slack_buttons_record_and_update_the_message(slack, store, request) -> None:
    settings = load_settings(slack_bot_token=BOT_TOKEN, slack_api_url=slack.api_url)
    handler = SlackCommands(settings, store, web_client(settings))
    request.addfinalizer(handler.close)
    for n in range(1, 4):
        fake_digests.add_paper(store, f"2608.0000{n}", 90 - n)
    slash = {"command": "/arxiv", "channel_id": "C0CHAN123", "user_id": "U0MEMBER",
             "response_url": slack.response_url("r")}
    await handler.on_slash({**slash, "text": "subscribe 后训练"})
    await handler.on_slash({**slash, "text": "digest"})
    [posted] = slack.posted
    votes = [b for b in posted["blocks"] if b["type"] == "actions"]
    assert [b["block_id"] for b in votes] == [f"vote:2608.0000{n}" for n in range(1, 4)]
    assert len(posted["blocks"]) <= 50
    up = votes[1]["elements"][0]
    assert (up["action_id"], up["value"]) == ("vote_up", "2608.00002")

    click = {"type": "block_actions", "user": {"id": "U0MEMBER"}, "channel": {"id": "C0CHAN123"},
             "container": {"type": "message", "message_ts": posted["ts"],
                           "channel_id": "C0CHAN123"},
             "message": {"ts": posted["ts"], "text": posted["text"], "blocks": posted["blocks"]},
             "response_url": slack.response_url("click"),
             "actions": [{**up, "block_id": votes[1]["block_id"]}]}
    await handler.on_action(click)
    sub = subscribers.by_address(store, "slack", "C0CHAN123")
    assert [(v.arxiv_id, v.name) for v in feedback.votes(store, sub.id)] == [("2608.00002", "up")]
    [update] = slack.updated
    assert update["ts"] == posted["ts"] and len(slack.posted) == 1  # edited, no new message
    shown = {b["block_id"]: [e for e in b["elements"]] for b in update["blocks"]
             if b["type"] == "actions"}
    assert shown["vote:2608.00002"][0]["style"] == "primary"
    assert shown["vote:2608.00002"][0]["text"]["text"].startswith("✅👍")
    assert "style" not in shown["vote:2608.00001"][0]
    assert [b for b in update["blocks"] if b["type"] != "actions"] == [
        b for b in posted["blocks"] if b["type"] != "actions"]  # the rest as it was

    # A click for a paper the store does not know: said so, nothing recorded or changed.
    await handler.on_action({**click, "actions": [{**up, "value": "2608.99999"}]})
    assert "2608.99999" in slack.responses[-1]["text"]
    assert len(feedback.votes(store, sub.id)) == 1 and len(slack.updated) == 1


def test_webhook_digests_carry_no_buttons(store) -> None:
    fake_digests.add_paper(store, "2608.00001", 90)
    sub = subscribers.add_or_update(store, channel="slack", address="C0HOOK",
                                    topics=["post-training"],
                                    webhook_url="https://hooks.slack.com/services/T/B/x")
    store.db["subscribers"].update(sub.id, {"created_at": "2026-08-01T00:00:00+00:00"})
    d = digest.select(store, subscribers.get(store, sub.id), DAY, history=DeliveryHistory(store))
    blocks = [b for m in render_slack(d) for b in m.blocks]
    assert not [b for b in blocks if b["type"] == "actions"]
    assert any(b["type"] == "divider" for b in blocks)
