"""The channel-neutral command layer, without any chat API: text in, reply and database out."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from digestbot import commands, subscribers
from digestbot.commands import CommandContext, execute

NOW = datetime(2026, 8, 12, 12, 0, tzinfo=UTC)
PRIVATE = CommandContext("telegram", "42", now=NOW)


def run(store, settings, name: str, arg: str = "", ctx: CommandContext = PRIVATE):
    return execute(store, settings, ctx, name, arg)


def snapshot(store) -> dict[str, list[dict]]:
    """Every row a command could touch, to prove that bad input changed nothing."""
    tables = ("subscribers", "subscriptions", "custom_topics")
    return {t: [dict(r) for r in store.db[t].rows] for t in tables}


def topics_of(store, address: str = "42") -> dict[str, int]:
    sub = subscribers.by_address(store, "telegram", address)
    return {s.topic: s.threshold for s in subscribers.subscriptions(store, sub.id)} if sub else {}


def test_subscribe_by_chinese_name_confirms_topic_threshold_and_next_time(store, settings):
    reply = run(store, settings, "subscribe", "后训练")
    assert "已订阅" in reply.text and "后训练" in reply.text and "≥60%" in reply.text
    # 12:00 UTC is 20:00 in Shanghai, past 08:30: the next digest is tomorrow morning.
    assert "2026-08-13 08:30 Asia/Shanghai" in reply.text
    assert topics_of(store) == {"post-training": 60}
    assert subscribers.by_address(store, "telegram", "42").status == "active"


def test_subscribe_several_with_thresholds_and_aliases(store, settings):
    run(store, settings, "sub", "后训练 80, 智能体；RAG 70%")
    assert topics_of(store) == {"post-training": 80, "agents": 60, "rag": 70}
    run(store, settings, "subscribe", "后训练 65")  # again: only the threshold changes
    assert topics_of(store)["post-training"] == 65


@pytest.mark.parametrize(("name", "arg", "expected"), [
    ("subscribe", "", "/subscribe 后训练"),
    ("threshold", "后训练 abc", "0–100"),
    ("threshold", "后训练 200", "0–100"),
    ("subscribe", "后训练 200", "0–100"),
    ("tz", "Mars/Base", "Mars/Base"),
    ("time", "25:00", "HH:MM"),
    ("subscribe", "后训练" * 1700, "太长"),
    ("lang", "klingon", "zh、en 或 both"),
    ("unsubscribe", "智能体", "没有订阅"),
    ("threshold", "智能体 70", "没有订阅"),
    ("frobnicate", "", "/help"),
])
def test_bad_input_gets_a_clear_reply_and_changes_nothing(store, settings, name, arg, expected):
    run(store, settings, "subscribe", "后训练 70")
    before = snapshot(store)
    reply = run(store, settings, name, arg)
    assert expected in reply.text
    assert snapshot(store) == before


def test_one_unknown_topic_among_several_changes_nothing_and_offers_choices(store, settings):
    before = snapshot(store)
    reply = run(store, settings, "subscribe", "后训练, 量子纠缠里的蒸馏")
    assert "量子纠缠里的蒸馏" in reply.text
    assert snapshot(store)["subscriptions"] == before["subscriptions"] == []
    actions = [b.action for row in reply.buttons for b in row]
    assert actions[-1].startswith("custom ")
    # Telegram carries at most 64 bytes of callback data.
    assert all(len(a.encode()) <= 64 for a in actions)


def test_custom_topic_button_creates_and_subscribes_the_parked_text(store, settings):
    text = "用于蛋白质结构预测的图神经网络方法与评测基准研究"
    reply = run(store, settings, "subscribe", f"{text} 75")
    action = reply.buttons[-1][0].action
    name, _, arg = action.partition(" ")
    done = run(store, settings, name, arg)
    assert text in done.text
    (slug, threshold), = topics_of(store).items()
    assert slug.startswith("custom-") and threshold == 75


def test_expired_custom_button_is_explained(store, settings):
    assert "失效" in run(store, settings, "custom", "0123456789ab").text
    assert topics_of(store) == {}


def test_group_members_read_but_only_admins_change(store, settings):
    admin = CommandContext("telegram", "-1001", may_manage=True, now=NOW)
    member = CommandContext("telegram", "-1001", may_manage=False, now=NOW)
    run(store, settings, "subscribe", "后训练", ctx=admin)
    before = snapshot(store)
    for name, arg in [("subscribe", "智能体"), ("unsubscribe", "all"), ("tz", "UTC"),
                      ("pause", ""), ("threshold", "后训练 90")]:
        assert "管理员" in run(store, settings, name, arg, ctx=member).text
    assert snapshot(store) == before
    assert "后训练" in run(store, settings, "list", ctx=member).text


def test_settings_and_language(store, settings):
    run(store, settings, "subscribe", "后训练")
    assert "Europe/Berlin" in run(store, settings, "tz", "Europe/Berlin").text
    assert "07:05" in run(store, settings, "time", "7:05").text
    reply = run(store, settings, "lang", "en")
    assert reply.text == "Language set to English."
    listing = run(store, settings, "list").text
    assert "Post-training  ≥60%" in listing and "07:05 (Europe/Berlin)" in listing
    assert "订阅" not in listing
    run(store, settings, "lang", "both")
    both = run(store, settings, "list").text
    assert both.index("订阅主题") < both.index("Topics:")


@pytest.mark.parametrize(("name", "arg", "english"), [
    ("tz", "Mars/Base", "unknown time zone 'Mars/Base': use an IANA name"),
    ("time", "25:00", "time must be HH:MM"),
    ("threshold", "后训练 abc", "threshold must be a whole number 0–100"),
    ("subscribe", "x" * 250, "a topic is at most 200 characters"),
])
def test_validation_messages_follow_the_language(store, settings, name, arg, english):
    run(store, settings, "subscribe", "后训练")
    assert "/ " + english.split(" ")[0] in run(store, settings, name, arg).text  # zh: both
    run(store, settings, "lang", "en")
    text = run(store, settings, name, arg).text
    assert text.startswith(english) and not re.search(r"[\u4e00-\u9fff]", text)


def test_settings_before_any_topic_create_a_pending_subscriber(store, settings):
    run(store, settings, "start")
    run(store, settings, "time", "06:00")
    sub = subscribers.by_address(store, "telegram", "42")
    assert (sub.status, sub.send_at) == ("pending", "06:00")
    assert "状态:未订阅主题" in run(store, settings, "list").text


def test_unsubscribe_pause_resume(store, settings):
    run(store, settings, "subscribe", "后训练, 智能体")
    run(store, settings, "unsubscribe", "智能体")
    assert topics_of(store) == {"post-training": 60}
    assert "暂停" in run(store, settings, "pause").text
    assert subscribers.by_address(store, "telegram", "42").status == "paused"
    # Subscribing while paused keeps the pause and says how to resume.
    assert "/resume" in run(store, settings, "subscribe", "智能体").text
    assert subscribers.by_address(store, "telegram", "42").status == "paused"
    run(store, settings, "resume")
    assert subscribers.by_address(store, "telegram", "42").status == "active"
    run(store, settings, "unsubscribe", "all")
    sub = subscribers.by_address(store, "telegram", "42")
    assert sub.status == "unsubscribed" and topics_of(store) == {}
    run(store, settings, "subscribe", "后训练")
    assert subscribers.by_address(store, "telegram", "42").status == "active"


def test_threshold_for_one_or_every_topic(store, settings):
    run(store, settings, "subscribe", "后训练, 智能体")
    run(store, settings, "threshold", "后训练 75")
    assert topics_of(store) == {"post-training": 75, "agents": 60}
    run(store, settings, "threshold", "90%")
    assert topics_of(store) == {"post-training": 90, "agents": 90}


def test_topic_pages_cover_the_catalogue_with_subscribe_buttons(store, settings):
    from digestbot.topics import load_catalogue

    seen: list[str] = []
    reply = run(store, settings, "topics")
    while True:
        buttons = [b for row in reply.buttons for b in row]
        seen += [b.action.split()[1] for b in buttons if b.action.startswith("subscribe ")]
        following = [b.action for b in buttons if b.text == "▶"]
        if not following:
            break
        reply = run(store, settings, *following[0].split(" ", 1))
        assert reply.edit  # paging replaces the message instead of posting a new one
    assert seen == list(load_catalogue().topics)


def test_help_lists_every_command_with_an_example(store, settings):
    text = run(store, settings, "help").text
    for name, _ in commands.menu():
        assert f"/{name}" in text
    assert "custom" not in dict(commands.menu())


def test_help_states_the_rule_of_the_asking_channel(store, settings):
    """Telegram groups need an admin, Slack channels a full member: neither rule on the other."""
    telegram = run(store, settings, "help").text
    slack = run(store, settings, "help", ctx=CommandContext("slack", "C0123")).text
    assert "管理员" in telegram and "成员" not in telegram
    assert "管理员" not in slack and "正式成员" in slack


def test_digest_plans_one_outbox_row_and_needs_active_deliveries(store, settings):
    from tests.fakes.digests import add_paper

    assert "还没有订阅" in run(store, settings, "digest").text
    run(store, settings, "subscribe", "后训练")
    assert "还没有抓取" in run(store, settings, "digest").text
    add_paper(store, "2608.00001", 90)
    add_paper(store, "2608.00002", 40)  # under the threshold
    reply = run(store, settings, "digest")
    row = store.db["deliveries"].get(reply.delivery_id)
    assert row["status"] == "pending" and row["paper_ids"] == '["2608.00001"]'
    # Asked again before it went out: the same row, nothing planned twice.
    assert run(store, settings, "digest").delivery_id == reply.delivery_id
    assert store.db["deliveries"].count == 1
    run(store, settings, "pause")
    assert "/resume" in run(store, settings, "digest").text


def _custom_via_button(store, settings, text: str, ctx: CommandContext = PRIVATE):
    reply = run(store, settings, "subscribe", text, ctx)
    if not reply.buttons:  # a text someone made a topic already is found by name
        return reply
    name, _, arg = reply.buttons[-1][0].action.partition(" ")
    return run(store, settings, name, arg, ctx)


def test_custom_topics_per_reader_are_capped(store, settings):
    cap = subscribers.MAX_CUSTOM_TOPICS
    for i in range(cap):
        _custom_via_button(store, settings, f"第{i}个自定义主题 protein folding {i}")
    assert len(topics_of(store)) == cap
    before = snapshot(store)
    reply = _custom_via_button(store, settings, "one more custom topic")
    assert f"最多 {cap} 个自定义主题" in reply.text
    assert snapshot(store) == before  # not even the topic text was stored
    english = CommandContext("telegram", "43", now=NOW)
    run(store, settings, "lang", "en", english)
    for i in range(cap):
        _custom_via_button(store, settings, f"第{i}个自定义主题 protein folding {i}", english)
    assert f"at most {cap} custom topics" in _custom_via_button(
        store, settings, "one more custom topic", english).text
    # Catalogue topics are not custom: still fine.
    assert "已订阅" in run(store, settings, "subscribe", "后训练").text


def test_abandoned_custom_texts_are_cleaned_up(store, settings):
    from digestbot import topics

    reply = run(store, settings, "subscribe", "量子纠缠里的蒸馏")
    name, _, arg = reply.buttons[-1][0].action.partition(" ")
    old = store.db.execute("select key, value from meta where key like 'pending_custom:%'").fetchall()
    assert len(old) == 1
    # Nobody pressed the button for longer than texts are kept; the next parked text tidies up.
    store.db.execute("update meta set value = json_set(value, '$.at', '2020-01-01T00:00:00+00:00')"
                     " where key = ?", [old[0][0]])
    run(store, settings, "subscribe", "另一个没人点的主题文本")
    keys = [r[0] for r in store.db.execute("select key from meta where key like 'pending_custom:%'")]
    assert old[0][0] not in keys and len(keys) == 1
    assert "失效" in run(store, settings, name, arg).text

    # A custom topic nobody subscribes to and nothing was scored for goes after a day.
    kept = topics.custom_topic(store, "a topic someone reads")
    subscribers.add_or_update(store, channel="telegram", address="42", topics=[kept.slug])
    orphan = topics.custom_topic(store, "a signup never confirmed")
    store.db.execute("update custom_topics set created_at = '2020-01-01T00:00:00+00:00'")
    topics.custom_topic(store, "something new")
    slugs = {r["slug"] for r in store.db["custom_topics"].rows}
    assert kept.slug in slugs and orphan.slug not in slugs
