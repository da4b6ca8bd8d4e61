"""`/arxiv …` in Slack: the adapter over the channel-neutral commands, and one Socket Mode trip.

The adapter (`SlackCommands`) runs against the local Slack Web API for users.info,
conversations.members and chat.postEphemeral, and answers through a local `response_url`.
The last tests connect the real slack-sdk Socket Mode client to a local WebSocket server.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from digestbot import subscribers
from digestbot.bots.slack import SlackCommands, parse_command, slack_text, start_socket_mode
from digestbot.channels.slack import web_client
from digestbot.config import load_settings
from digestbot.errors import DigestbotError
from digestbot.subscribers import profile
from tests.fakes.busy import hold_write_lock
from tests.fakes.digests import add_paper
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack, FakeSocketMode

CHANNEL = "C0CHAN123"


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        fake.add_user("U0MEMBER")
        fake.add_user("U0GUEST", guest=True)
        fake.add_user("U0OUTSIDE")
        # Five members: conversations.members answers in pages of two.
        fake.members[CHANNEL] = ["U0A", "U0B", "U0GUEST", "U0C", "U0MEMBER"]
        yield fake


@pytest.fixture
def slack_settings(slack):
    return load_settings(slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN,
                         slack_api_url=slack.api_url)


@pytest.fixture
def handler(slack_settings, store):
    handler = SlackCommands(slack_settings, store, web_client(slack_settings))
    yield handler
    handler.close()


def slash(slack: FakeSlack, text: str, user: str = "U0MEMBER", channel: str = CHANNEL,
          respond: bool = True) -> dict:
    payload = {"command": "/arxiv", "text": text, "channel_id": channel, "user_id": user,
               "team_id": "T0TEST", "trigger_id": "1.2.3"}
    if respond:
        payload["response_url"] = slack.response_url(f"r{len(slack.responses)}")
    return payload


def topics_of(store, channel: str = CHANNEL) -> dict[str, int]:
    sub = subscribers.by_address(store, "slack", channel)
    return {s.topic: s.threshold for s in subscribers.subscriptions(store, sub.id)} if sub else {}


def snapshot(store) -> dict[str, list[dict]]:
    return {t: [dict(r) for r in store.db[t].rows] for t in ("subscribers", "subscriptions")}


async def test_channel_member_subscribes_the_channel(slack, handler, store):
    await handler.on_slash(slash(slack, "subscribe 后训练 80"))
    assert topics_of(store) == {"post-training": 80}
    answer = slack.responses[-1]
    assert answer["response_type"] == "ephemeral"
    assert "已订阅" in answer["text"] and "/arxiv list" in answer["text"]


async def test_a_command_waiting_for_the_write_lock_leaves_the_loop_free(slack, handler, store):
    """Another process holds the write lock: the command waits on the handler's store
    thread while the loop goes on (under `digestbot run` it also serves the web app and the
    delivery ticks); then the subscription is stored and answered."""
    holder = await asyncio.to_thread(hold_write_lock, store.path, 3.0)
    try:
        command = asyncio.create_task(handler.on_slash(slash(slack, "subscribe 后训练 80")))
        await asyncio.sleep(0.3)  # the command now waits on the lock
        assert not command.done() and holder.poll() is None
        started = time.monotonic()
        await asyncio.sleep(0.05)
        assert time.monotonic() - started < 1.0  # the loop was not held up by SQLite
    finally:
        await asyncio.to_thread(holder.wait, 30)
    reply = await command
    assert "已订阅" in reply.text and topics_of(store) == {"post-training": 80}


@pytest.mark.parametrize("user", ["U0GUEST", "U0OUTSIDE"])
async def test_guests_and_non_members_cannot_change_but_can_read(slack, handler, store, user):
    await handler.on_slash(slash(slack, "subscribe 后训练"))
    before = snapshot(store)
    for text in ("unsubscribe all", "threshold 后训练 90", "time 07:00", "pause"):
        reply = await handler.on_slash(slash(slack, text, user=user))
        assert "只有" in reply.text
    assert snapshot(store) == before
    reply = await handler.on_slash(slash(slack, "list", user=user))
    assert "后训练" in reply.text and "≥60%" in reply.text


async def test_direct_message_with_the_bot_is_the_users_own(slack, handler, store):
    await handler.on_slash(slash(slack, "subscribe 智能体", channel="D0DIRECT1"))
    assert topics_of(store, "D0DIRECT1")


async def test_unverifiable_membership_refuses_and_says_why(slack, handler, store):
    slack.fail_next("users.info", "missing_scope")
    reply = await handler.on_slash(slash(slack, "subscribe 后训练"))
    assert "missing_scope" in reply.text and "users:read" in reply.text
    assert topics_of(store) == {}


async def test_bad_input_gets_clear_replies_and_changes_nothing(slack, handler, store):
    await handler.on_slash(slash(slack, "subscribe 后训练"))
    before = snapshot(store)
    cases = {
        "subscribe": "/arxiv subscribe 后训练",
        "threshold 后训练 abc": "0–100",
        "threshold 后训练 200": "0–100",
        "tz Mars/Base": "IANA",
        "time 25:00": "HH:MM",
        "subscribe " + "长" * 5000: "太长",
        "frobnicate": "未知命令",
    }
    for text, expected in cases.items():
        reply = await handler.on_slash(slash(slack, text))
        assert expected in slack_text(reply.text), (text, reply.text)
    assert snapshot(store) == before


async def test_help_names_the_slash_command_and_escapes(slack, handler):
    reply = await handler.on_slash(slash(slack, ""))
    text = slack.responses[-1]["text"]
    assert "/arxiv subscribe 后训练" in text and "/arxiv list" in text
    assert "\n/subscribe" not in text
    assert reply.text.startswith(("命令", "Commands"))
    assert slack_text("a <!channel> & b /list") == "a &lt;!channel&gt; &amp; b /arxiv list"
    assert parse_command("  /Subscribe 后训练 80 ") == ("subscribe", "后训练 80")


async def test_topic_buttons_subscribe_when_clicked(slack, handler, store):
    await handler.on_slash(slash(slack, "topics"))
    answer = slack.responses[-1]
    buttons = [e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons and all(len(b["text"]["text"]) <= 75 for b in buttons)
    assert len({b["action_id"] for b in buttons}) == len(buttons)
    choice = next(b for b in buttons if b["value"].startswith("subscribe "))
    await handler.on_action({
        "type": "block_actions", "user": {"id": "U0MEMBER"}, "channel": {"id": CHANNEL},
        "response_url": slack.response_url("click"), "actions": [choice],
    })
    assert choice["value"].split()[1] in topics_of(store)
    assert "已订阅" in slack.responses[-1]["text"]


async def test_digest_command_posts_now_and_again_only_on_request(slack, handler, store):
    for i in range(3):
        add_paper(store, f"2608.{i:05d}", 90 - i)
    await handler.on_slash(slash(slack, "subscribe 后训练"))
    reply = await handler.on_slash(slash(slack, "digest"))
    assert "正在发送" in reply.text
    first = [p for p in slack.posted if p["channel"] == CHANNEL]
    assert len(first) == 1 and first[0]["blocks"][0]["type"] == "header"
    assert [r["status"] for r in store.db["deliveries"].rows] == ["sent"]

    reply = await handler.on_slash(slash(slack, "digest"))
    assert "不会重复发送" in reply.text and len(slack.posted) == 1
    again = reply.buttons[0][0].action
    await handler.on_action({"type": "block_actions", "user": {"id": "U0MEMBER"},
                             "channel": {"id": CHANNEL}, "response_url": slack.response_url("a"),
                             "actions": [{"value": again}]})
    assert len(slack.posted) == 2 and slack.posted[1]["text"] == first[0]["text"]
    assert store.db["deliveries"].count == 1  # asked for again: recorded nowhere


async def test_digest_command_without_the_bot_in_the_channel_says_what_to_do(slack, handler,
                                                                              store):
    add_paper(store, "2608.00001", 90)
    await handler.on_slash(slash(slack, "subscribe 后训练"))
    slack.channel_errors[CHANNEL] = "not_in_channel"
    await handler.on_slash(slash(slack, "digest"))
    assert "not_in_channel" in slack.responses[-1]["text"]
    assert "/invite" in slack.responses[-1]["text"] and "/arxiv resume" in slack.responses[-1]["text"]
    assert subscribers.by_address(store, "slack", CHANNEL).status == "blocked"


async def test_without_response_url_the_reply_is_post_ephemeral(slack, handler):
    await handler.on_slash(slash(slack, "help", respond=False))
    assert slack.ephemeral[-1]["channel"] == CHANNEL and slack.ephemeral[-1]["user"] == "U0MEMBER"


# -- Socket Mode end to end -------------------------------------------------------------------


@pytest.fixture
async def socket():
    fake = FakeSocketMode()
    await fake.start()
    yield fake
    await fake.stop()


async def test_socket_mode_round_trip(slack, slack_settings, store, socket, caplog):
    caplog.set_level(logging.DEBUG)
    slack.ws_url = socket.url
    handle = await start_socket_mode(slack_settings, slack_settings.db, ping_interval=1)
    try:
        # Slack sends the legacy verification token in every payload.
        payload = {**slash(slack, "subscribe 后训练"), "token": "verification-secret"}
        # The membership check is slow today; the acknowledgement must not wait for it.
        slack.slow["users.info"] = 1.0
        envelope = await socket.push("slash_commands", payload)
        assert await socket.wait_ack(envelope) == {"envelope_id": envelope}
        assert not slack.responses
        for _ in range(100):
            if slack.responses:
                break
            await asyncio.sleep(0.02)
        assert "已订阅" in slack.responses[-1]["text"]
    finally:
        await handle.stop()
    assert topics_of(store) == {"post-training": 60}
    # slack-sdk logs whole payloads at DEBUG: the response_url and token are credentials.
    for secret in ("verification-secret", payload["response_url"], BOT_TOKEN, APP_TOKEN):
        assert secret not in caplog.text


async def test_socket_mode_refuses_a_bad_app_token_at_once(slack, socket):
    slack.ws_url = socket.url
    settings = load_settings(slack_bot_token=BOT_TOKEN, slack_app_token="xapp-wrong",
                             slack_api_url=slack.api_url)
    with pytest.raises(DigestbotError, match="invalid_auth"):
        await start_socket_mode(settings, settings.db)


async def test_follow_and_keywords_through_arxiv_slash(slack, handler, store):
    await handler.on_slash(slash(slack, "follow <script>alert(1)</script> Bengio"))
    answer = slack.responses[-1]["text"]
    assert "已关注" in answer and "&lt;script&gt;" in answer and "<script>" not in answer
    await handler.on_slash(slash(slack, "exclude speech, 语音"))
    await handler.on_slash(slash(slack, "follow Yoshua Bengio", user="U0GUEST"))
    sub = subscribers.by_address(store, "slack", CHANNEL)
    prof = profile.get_profile(store, sub.id)
    assert prof.follows == ("<script>alert(1)</script> Bengio",)
    assert prof.exclude == ("speech", "语音")
    await handler.on_slash(slash(slack, "list", user="U0GUEST"))
    assert "排除关键词:speech · 语音" in slack.responses[-1]["text"]
