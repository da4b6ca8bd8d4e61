"""The Telegram bot end to end: the real python-telegram-bot Application against a local Bot API.

Commands go in as updates the fake serves to the bot's long poll; replies come back as the
sendMessage calls the fake records. Digests go through the real outbox (`outbox.run_send`).
Flood limits are switched off in most tests (they assert behaviour, not pacing); the
limiter has its own test against the fake's enforced limits.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from telegram.error import RetryAfter

from digestbot import subscribers
from digestbot.bots.telegram import parse_command
from digestbot.channels.telegram import FloodLimiter, TelegramSender, build_bot
from digestbot.config import load_settings
from digestbot.models import (
    Announcement,
    Author,
    Digest,
    DigestEntry,
    Enrichment,
    Institution,
    Paper,
    Subscriber,
    Topic,
    TopicHit,
)
from digestbot.render.telegram import render_telegram
from digestbot.topics import custom_topic, get_topic
from tests.fakes.busy import hold_write_lock
from tests.fakes.digests import TOPIC, add_paper
from tests.fakes.outbox import asend
from tests.fakes.telegram import NO_LIMITS, TOKEN, FakeTelegram

# PTB itself warns while building RetryAfter; the warning is about its future API, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

HOSTILE = 'Breaking <script>alert("x")</script> & <b>bold</b> claims: $\\Delta$ < 5 > 3'
NOW = datetime(2026, 8, 13, 2, 0, tzinfo=UTC)




async def eventually(check, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def snapshot(store) -> dict[str, list[dict]]:
    return {t: [dict(r) for r in store.db[t].rows]
            for t in ("subscribers", "subscriptions", "custom_topics")}


def topics_of(store, address: str) -> dict[str, int]:
    sub = subscribers.by_address(store, "telegram", address)
    return {s.topic: s.threshold for s in subscribers.subscriptions(store, sub.id)} if sub else {}


# -- commands ---------------------------------------------------------------------------------


async def test_subscribe_replies_and_stores(tg, bot):
    tg.push_message(42, "/subscribe 后训练")
    [reply] = await tg.wait_sent(42)
    assert "已订阅" in reply["text"] and "后训练" in reply["text"]
    assert reply["parse_mode"] is None  # command replies are plain text: nothing to escape
    assert topics_of(bot.store, "42") == {"post-training": 60}
    menu = [c["command"] for c in tg.commands]
    assert {"subscribe", "unsubscribe", "list", "threshold", "tz", "time", "lang"} <= set(menu)
    descriptions = {c["command"]: c["description"] for c in tg.commands}
    english = {c["command"]: c["description"] for c in tg.commands_by_language["en"]}
    assert descriptions["subscribe"].startswith("订阅") and english.keys() == descriptions.keys()
    assert english["subscribe"].startswith("subscribe to topics")


async def test_a_command_waiting_for_the_write_lock_leaves_the_loop_free(tg, bot, tg_settings):
    """Another process holds the write lock: the command waits for it on the bot's store
    thread, while the loop (which under `digestbot run` also serves the web app and the
    delivery ticks) goes on; then the subscription is stored and answered."""
    holder = await asyncio.to_thread(hold_write_lock, tg_settings.db, 3.0)
    try:
        tg.push_message(42, "/subscribe 后训练")
        await tg.wait_idle()
        await asyncio.sleep(0.3)  # the handler now waits on the lock
        assert not tg.sent_to(42) and holder.poll() is None
        started = time.monotonic()
        await asyncio.sleep(0.05)
        assert time.monotonic() - started < 1.0  # the loop was not held up by SQLite
    finally:
        await asyncio.to_thread(holder.wait, 30)
    [reply] = await tg.wait_sent(42, timeout=10)
    assert "已订阅" in reply["text"]
    assert topics_of(bot.store, "42") == {"post-training": 60}


async def test_bad_input_gets_clear_replies_and_changes_nothing(tg, bot):
    tg.push_message(42, "/subscribe 后训练 70")
    await tg.wait_sent(42)
    before = snapshot(bot.store)
    cases = [
        ("/subscribe", "/subscribe 后训练"),
        ("/threshold 后训练 abc", "0–100"),
        ("/threshold 后训练 200", "0–100"),
        ("/tz Mars/Base", "unknown time zone"),
        ("/time 25:00", "HH:MM"),
        ("/subscribe " + "长" * 5000, "太长"),
    ]
    for text, _ in cases:
        tg.push_message(42, text)
    replies = await tg.wait_sent(42, 1 + len(cases))
    for (text, expected), reply in zip(cases, replies[1:], strict=True):
        assert expected in reply["text"], (text[:30], reply["text"])
    assert snapshot(bot.store) == before


async def test_only_group_admins_change_settings(tg, bot):
    group = -100777
    tg.members[(group, 1)] = "creator"
    tg.members[(group, 3)] = "administrator"
    tg.push_message(group, "/subscribe 后训练", user_id=2, chat_type="supergroup")
    [refused] = await tg.wait_sent(group)
    assert "管理员" in refused["text"]
    assert topics_of(bot.store, str(group)) == {}
    tg.push_message(group, "/subscribe 后训练", user_id=1, chat_type="supergroup")
    tg.push_message(group, "/threshold 后训练 80", user_id=3, chat_type="supergroup")
    tg.push_message(group, "/list", user_id=2, chat_type="supergroup")
    _, subscribed, changed, listing = await tg.wait_sent(group, 4)
    assert "已订阅" in subscribed["text"] and "80%" in changed["text"]
    assert "后训练  ≥80%" in listing["text"]
    assert topics_of(bot.store, str(group)) == {"post-training": 80}
    asked = [p for m, p in tg.calls if m == "getChatMember"]
    assert {int(p["user_id"]) for p in asked} == {1, 2, 3}  # /list asked nobody


async def test_commands_for_another_bot_are_ignored(tg, bot):
    tg.push_message(42, "/subscribe@other_bot 后训练")
    tg.push_message(-100555, "/roll 2d6", user_id=7, chat_type="supergroup")
    tg.push_message(42, "/list@digest_test_bot")
    [reply] = await tg.wait_sent(42)
    assert "还没有订阅" in reply["text"]
    await tg.wait_idle()
    assert len(tg.sent_to(42)) == 1 and topics_of(bot.store, "42") == {}
    assert tg.sent_to(-100555) == []  # another bot's command in a group: no "unknown command"


async def test_unknown_topic_buttons_and_topic_pages(tg, bot):
    tg.push_message(42, "/subscribe 量子纠缠里的蒸馏")
    [offer] = await tg.wait_sent(42)
    keyboard = offer["reply_markup"]["inline_keyboard"]
    custom = keyboard[-1][0]
    assert "量子纠缠里的蒸馏" in custom["text"]
    tg.push_callback(42, custom["callback_data"], message_id=offer["message_id"])
    _, done = await tg.wait_sent(42, 2)
    assert "已订阅" in done["text"]
    (slug, _), = topics_of(bot.store, "42").items()
    assert get_topic(slug, bot.store).name_zh == "量子纠缠里的蒸馏"
    assert tg.callback_answers

    tg.push_message(42, "/topics")
    _, _, page1 = await tg.wait_sent(42, 3)
    nxt = page1["reply_markup"]["inline_keyboard"][-1][-1]
    tg.push_callback(42, nxt["callback_data"], message_id=page1["message_id"])
    await eventually(lambda: tg.edited)
    [edit] = tg.edited
    assert edit["message_id"] == page1["message_id"] and "(2/" in edit["text"]


async def test_a_reply_longer_than_a_message_is_split_between_lines(tg, bot):
    """The fake refuses texts over 4096 characters as Telegram does; /list of 120 topics fits."""
    names = [f"自定义主题第{i:03d}号:" + "很长的主题描述" * 12 for i in range(120)]
    slugs = [custom_topic(bot.store, name).slug for name in names]
    sub = subscribers.add_or_update(bot.store, channel="telegram", address="42", topics=[])
    # Far more custom topics than a reader may add now (a database from before the cap).
    bot.store.db["subscriptions"].insert_all(
        {"subscriber_id": sub.id, "topic": slug, "threshold": 60, "created_at": ""}
        for slug in slugs)
    tg.push_message(42, "/list")
    await eventually(lambda: "状态" in "".join(texts(tg, 42)))
    got = texts(tg, 42)
    assert len(got) >= 2 and all(len(t) <= 4096 for t in got)
    listed = [line for t in got for line in t.split("\n") if line.startswith("• ")]
    assert [line.split("  ≥")[0][2:] for line in listed] == sorted(names)


def test_parse_command_addressing():
    assert parse_command("/subscribe 后训练 80", "me_bot") == ("subscribe", "后训练 80")
    assert parse_command("/Sub@ME_bot  a, b", "me_bot") == ("Sub", "a, b")
    assert parse_command("/subscribe@other_bot 后训练", "me_bot") is None
    assert parse_command("hello", "me_bot") is None
    # In a group a bare unknown command belongs to some other bot; ours or addressed are answered.
    assert parse_command("/roll 2d6", "me_bot", in_group=True) is None
    assert parse_command("/roll@me_bot", "me_bot", in_group=True) == ("roll", "")
    assert parse_command("/sub 后训练", "me_bot", in_group=True) == ("sub", "后训练")
    assert parse_command("/roll", "me_bot") == ("roll", "")


# -- rendering --------------------------------------------------------------------------------

ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
                "blockquote", "span", "tg-spoiler", "tg-emoji"}


class TelegramHTMLChecker(HTMLParser):
    """Fails on what Telegram's HTML parse mode rejects: unknown tags, unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        assert tag in ALLOWED_TAGS, f"tag <{tag}> is not allowed"
        if tag == "a":
            assert [k for k, _ in attrs] == ["href"]
        self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_entityref(self, name):
        assert name in {"lt", "gt", "amp", "quot"}, f"&{name}; is not supported"


def assert_valid_telegram_html(text: str) -> None:
    assert len(text.encode("utf-16-le")) // 2 <= 4096
    # Every & starts one of the four entities Telegram knows (or a numeric one).
    assert not re.search(r"&(?!(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)", text)
    checker = TelegramHTMLChecker()
    checker.feed(text)
    checker.close()
    assert checker.stack == [], f"unclosed {checker.stack}"


def make_entry(i: int, title: str = HOSTILE, summary: str = "一句话总结 & <要点>") -> DigestEntry:
    paper = Paper(id=f"2608.{i:05d}", version=1, title=title, abstract="abs",
                  authors=[Author("A. Author")], categories=["cs.CL", "cs.AI"])
    return DigestEntry(
        paper=paper,
        announcement=Announcement("2026-08-13", paper.id, "new", 1, "rss"),
        hits=[TopicHit("post-training", "后训练", 90 - i % 30, 'reason with "quotes" & <tags>')],
        enrichment=Enrichment(paper.id, 1, title_zh="标题 <中文> & 测试", summary_zh=summary,
                              summary_en="An English <tl;dr> & more",
                              institutions=[Institution("Lab <A> & B", "实验室")]),
    )


def make_digest(entries: list[DigestEntry], lang: str = "zh", more: int = 0) -> Digest:
    sub = Subscriber(id=1, channel="telegram", address="42", lang=lang)
    return Digest(subscriber=sub, date="2026-08-13", topics=[get_topic("post-training")],
                  entries=entries, more=more)


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
def test_digest_is_valid_telegram_html_with_hostile_text(lang):
    messages = render_telegram(make_digest([make_entry(i) for i in range(40)], lang, more=3))
    assert len(messages) > 2  # header + several packed messages
    for text in messages:
        assert_valid_telegram_html(text)
        assert "<script>" not in text and "&lt;script&gt;" in text or text is messages[0]
    body = "\n\n".join(messages[1:])
    ids = re.findall(r"<code>(2608\.\d+)</code>", body)
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 40  # every entry whole, once
    assert "另有 3 篇" in messages[0] or "3 more" in messages[0]


def test_header_with_many_topics_stays_within_a_message():
    many = [custom_topic_like(f"关于 <b>{i}</b> & 很长的自定义主题" * 4) for i in range(300)]
    digest = make_digest([make_entry(1)])
    header = render_telegram(Digest(digest.subscriber, digest.date, many, digest.entries))[0]
    assert_valid_telegram_html(header)
    assert len(header) < 1200 and re.search(r"等 \d+ 个主题", header)


def custom_topic_like(text: str) -> Topic:
    return Topic(slug=f"custom-{abs(hash(text))}", name_zh=text, name_en=text, description=text,
                 custom=True)


def test_overlong_entry_is_shortened_never_cut_inside_markup():
    huge = "很长的总结 & <b> " * 1500
    messages = render_telegram(make_digest([make_entry(1, title="T & <x> " * 800, summary=huge),
                                            make_entry(2)]))
    for text in messages:
        assert_valid_telegram_html(text)
    assert "2608.00002" in messages[-1] and "2608.00001" in messages[1]


# -- delivery through the outbox --------------------------------------------------------------


def seed_day(store, address: str, n: int) -> None:
    """n papers with a hostile title announced on DAY, scored for TOPIC; one chat subscribed."""
    for i in range(n):
        add_paper(store, f"2608.{i:05d}", 90 - i % 20, title=f"{HOSTILE} #{i}")
    subscribers.add_or_update(store, channel="telegram", address=address, topics=[TOPIC])


@pytest.fixture
def sender(tg_settings):
    return TelegramSender(build_bot(tg_settings, FloodLimiter(**NO_LIMITS)))


def texts(tg, chat_id: int) -> list[str]:
    return [m["text"] for m in tg.sent_to(chat_id)]


async def test_digest_delivery_is_valid_html_without_previews(tg, tg_settings, store, sender):
    seed_day(store, "42", 5)
    report = await asend(tg_settings, store, now=NOW, force=True,
                                  senders={"telegram": sender})
    assert report.sent == 1
    sent = tg.sent_to(42)
    assert len(sent) >= 2
    for m in sent:
        assert m["parse_mode"] == "HTML"
        assert m["link_preview_options"] == {"is_disabled": True}
        assert_valid_telegram_html(m["text"])
    assert "&lt;script&gt;" in sent[1]["text"]
    parts = list(store.db.query("select seq, external_id from delivery_parts order by seq"))
    assert [p["external_id"] for p in parts] == [str(m["message_id"]) for m in sent]


async def test_429_is_waited_out_and_nothing_repeats(tg, tg_settings, store):
    limiter = FloodLimiter(**NO_LIMITS)
    sender = TelegramSender(build_bot(tg_settings, limiter))
    seed_day(store, "42", 3)
    tg.fail_next(42, 429, "Too Many Requests: retry after 1", after=1, retry_after=1)
    report = await asend(tg_settings, store, now=NOW, force=True,
                                  senders={"telegram": sender})
    assert report.sent == 1 and limiter.retried == 1
    assert len(texts(tg, 42)) == len(set(texts(tg, 42))) >= 2
    assert tg.too_many_requests == 0 and sum(1 for m, _ in tg.calls if m == "sendMessage") == \
        len(texts(tg, 42)) + 1


async def test_403_marks_the_subscriber_blocked(tg, tg_settings, store, sender):
    seed_day(store, "42", 2)
    tg.fail_next(42, 403, "Forbidden: bot was blocked by the user")
    report = await asend(tg_settings, store, now=NOW, force=True,
                                  senders={"telegram": sender})
    assert report.permanent == 1 and texts(tg, 42) == []
    assert subscribers.by_address(store, "telegram", "42").status == "blocked"


async def test_unreachable_api_is_a_retry_and_the_token_stays_out_of_logs(store, caplog):
    """Nobody listens at the URL: getMe fails, the row waits for its retry; -v logs no token."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(telegram_bot_token=TOKEN,
                             telegram_api_url=f"http://127.0.0.1:{port}/bot")
    for name in ("", "httpx", "telegram"):
        caplog.set_level(logging.DEBUG, logger=name)
    seed_day(store, "42", 2)
    sender = TelegramSender(build_bot(settings, FloodLimiter(**NO_LIMITS)))
    report = await asend(settings, store, now=NOW, force=True,
                                  senders={"telegram": sender})
    assert report.failed == 1
    [row] = store.db["deliveries"].rows
    assert row["status"] == "failed" and row["last_error"].startswith("TransientError: telegram")
    assert "unexpected error" not in caplog.text and "Traceback" not in caplog.text
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text


async def test_migrated_group_is_followed_to_its_new_id(tg, tg_settings, store, sender):
    seed_day(store, "-4001", 2)
    tg.fail_next(-4001, 400, "Bad Request: group chat was upgraded to a supergroup chat",
                 migrate_to_chat_id=-1004001)
    report = await asend(tg_settings, store, now=NOW, force=True,
                                  senders={"telegram": sender})
    assert report.sent == 1 and texts(tg, -4001) == [] and len(texts(tg, -1004001)) >= 2
    assert subscribers.by_address(store, "telegram", "-1004001") is not None


async def test_migrated_group_that_subscribed_again_keeps_one_subscription(tg, tg_settings,
                                                                          store, sender):
    """After the upgrade someone ran /subscribe in the supergroup: no second digest there."""
    seed_day(store, "-4001", 2)
    subscribers.add_or_update(store, channel="telegram", address="-1004001", topics=[TOPIC],
                              status="pending")  # planned for nothing today
    tg.fail_next(-4001, 400, "Bad Request: group chat was upgraded to a supergroup chat",
                 migrate_to_chat_id=-1004001)
    report = await asend(tg_settings, store, now=NOW, force=True,
                                  senders={"telegram": sender})
    assert report.permanent == 1 and texts(tg, -1004001) == []
    assert subscribers.by_address(store, "telegram", "-4001").status == "bounced"
    assert subscribers.by_address(store, "telegram", "-1004001").status == "pending"


async def test_restart_mid_digest_resumes_at_the_next_message(tg, tg_settings, store, sender):
    seed_day(store, "42", 40)
    tg.fail_next(42, 502, "Bad Gateway", after=2)
    first = await asend(tg_settings, store, now=NOW, force=True,
                                 senders={"telegram": sender})
    assert first.failed == 1 and len(texts(tg, 42)) == 2
    # A new process: new store connection, new sender; the row is retried after its backoff.
    from digestbot.store import Store

    with Store(tg_settings.db) as again:
        fresh = TelegramSender(build_bot(tg_settings, FloodLimiter(**NO_LIMITS)))
        second = await asend(tg_settings, again, now=NOW + timedelta(hours=2),
                                      force=True, senders={"telegram": fresh})
    assert second.sent == 1
    got = texts(tg, 42)
    assert len(got) > 3 and len(got) == len(set(got))  # every message once
    ids = re.findall(r"<code>(2608\.\d+)</code>", "".join(got))
    assert len(ids) == len(set(ids)) == 40


# -- flood limits -----------------------------------------------------------------------------


async def test_limiter_keeps_under_the_servers_limits():
    """Scaled-down limits (20/s, one per 0.2 s per chat) so the test stays quick.

    The limiter keeps a margin below them: the fake times requests when its threads get to
    them, and on a loaded machine two requests sent 20 ms apart can be handled together.
    """
    settings_for = lambda fake: load_settings(  # noqa: E731
        telegram_bot_token=TOKEN, telegram_api_url=fake.base_url)

    async def burst(limiter: FloodLimiter, fake: FakeTelegram) -> None:
        bot = build_bot(settings_for(fake), limiter)
        async with bot:
            await asyncio.gather(*(bot.send_message(chat, f"m{i}")
                                   for i in range(4) for chat in range(1, 7)))

    with FakeTelegram(TOKEN, enforce_limits=True, overall_per_s=20, chat_interval=0.2) as fake:
        limiter = FloodLimiter(overall_per_s=15, chat_interval=0.3, max_retries=0)
        await burst(limiter, fake)
        assert fake.too_many_requests == 0 and len(fake.sent) == 24
        # Per chat, in order.
        assert [m["text"] for m in fake.sent_to(3)] == ["m0", "m1", "m2", "m3"]
    with FakeTelegram(TOKEN, enforce_limits=True, overall_per_s=20, chat_interval=0.2) as fake:
        with pytest.raises(RetryAfter):
            await burst(FloodLimiter(**NO_LIMITS, max_retries=0), fake)
        assert fake.too_many_requests > 0  # the server does refuse an unpaced burst


async def test_a_message_held_up_on_its_way_still_leaves_the_chat_its_spacing():
    """The chat's spacing counts from the previous message's answer when that came later
    than its turn: a message held up 0.25 s on its way (a busy pool or proxy) arrived then,
    and the next one must not follow it within the server's per-chat limit."""
    with FakeTelegram(TOKEN, enforce_limits=True, overall_per_s=100, chat_interval=0.3) as fake:
        settings = load_settings(telegram_bot_token=TOKEN, telegram_api_url=fake.base_url)
        limiter = FloodLimiter(overall_per_s=0, chat_interval=0.35, max_retries=0)
        fake.hold_next(5, 0.25)
        async with build_bot(settings, limiter) as bot:
            for i in range(3):
                await bot.send_message(5, f"m{i}")
        assert fake.too_many_requests == 0
        assert [m["text"] for m in fake.sent_to(5)] == ["m0", "m1", "m2"]


async def test_digest_command_sends_now_then_only_again_on_request(tg, bot):
    seed_day(bot.store, "42", 3)
    tg.push_message(42, "/digest")
    sending, header, body = await tg.wait_sent(42, 3)
    assert "2026-08-13" in sending["text"] and sending["parse_mode"] is None
    assert header["parse_mode"] == "HTML" and body["text"].count("<code>2608.") == 3
    # The fake has the messages a moment before the bot has recorded them.
    await eventually(lambda: next(iter(bot.store.db.query(
        "select status, parts_sent from deliveries"))) == {"status": "sent", "parts_sent": 2})

    tg.push_message(42, "/digest")
    *_, refusal = await tg.wait_sent(42, 4)
    assert "已经发给你了" in refusal["text"]
    button = refusal["reply_markup"]["inline_keyboard"][0][0]
    tg.push_callback(42, button["callback_data"], message_id=refusal["message_id"])
    *_, again_header, again_body = await tg.wait_sent(42, 7)
    assert again_body["text"] == body["text"] and again_header["text"] == header["text"]
    assert next(iter(bot.store.db.query("select count(*) n from deliveries")))["n"] == 1
