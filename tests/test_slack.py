"""Slack digests: Block Kit within Slack's limits, escaping, and delivery through the outbox.

Delivery runs the real outbox (`outbox.run_send`) with the real slack-sdk clients pointed at
a local Slack Web API and webhook endpoint (tests/fakes/slack.py). Pacing is switched off
(interval 0) except in the test that asserts it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from digestbot import subscribers
from digestbot.channels.slack import SlackSender, make_sender, web_client
from digestbot.cli import main
from digestbot.config import load_settings
from digestbot.models import (
    Announcement,
    Author,
    Digest,
    DigestEntry,
    Enrichment,
    FeedBatch,
    Institution,
    Paper,
    Subscriber,
    TopicHit,
)
from digestbot.render.slack import (
    ENTRIES_PER_MESSAGE,
    fit,
    header_text,
    render_payloads,
    render_slack,
)
from digestbot.sources.papers import save_batch
from digestbot.topics import get_topic
from tests.fakes.outbox import asend
from tests.fakes.slack import BOT_TOKEN, FakeSlack

HOSTILE = "Ping <!channel> & <http://evil.example|click here> <@U123> > all"
NOW = datetime(2026, 8, 13, 2, 0, tzinfo=UTC)
# An mrkdwn link or mention is `<…>`; the only ones we emit point at arXiv.
ANGLE = re.compile(r"<([^<>]*)>")


def make_entry(i: int, title: str = HOSTILE) -> DigestEntry:
    paper = Paper(id=f"2608.{i:05d}", version=1, title=f"{title} #{i}", abstract="A",
                  authors=[Author(f"Author <{j}> & co") for j in range(14)],
                  categories=["cs.CL", "cs.AI"])
    enrichment = Enrichment(paper.id, 1, title_zh="标题 <!here> & 更多", summary_zh="总结 <b>&</b>",
                            summary_en="TL;DR <!everyone>",
                            institutions=[Institution("Org <x>", "机构 & 实验室")])
    return DigestEntry(paper, Announcement("2026-08-13", paper.id, "new", 1, "test"),
                       [TopicHit("post-training", "后训练", 90 - i % 30, "reason <!channel> & why")],
                       enrichment)


def make_digest(n: int, lang: str = "zh", more: int = 0) -> Digest:
    sub = Subscriber(id=1, channel="slack", address="C0TEST123", lang=lang)
    return Digest(sub, "2026-08-13", [get_topic("post-training")],
                  [make_entry(i) for i in range(n)], more=more, thresholds={"post-training": 60})


def mrkdwn_texts(blocks: list[dict]) -> list[str]:
    out = []
    for block in blocks:
        if block["type"] == "section":
            out.append(block["text"]["text"])
        elif block["type"] == "context":
            out += [e["text"] for e in block["elements"]]
    return out


def assert_within_limits(message) -> None:
    assert message.text
    assert len(message.blocks) <= 50
    for block in message.blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= 150
        elif block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert len(block["text"]["text"]) <= 3000
        elif block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
    for text in [*mrkdwn_texts(message.blocks), message.text]:
        # No raw mention or attacker link survives; every entity is whole.
        for inner in ANGLE.findall(text):
            assert inner.startswith("https://arxiv.org/"), inner
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), text


def test_header_names_date_topic_and_count():
    digest = make_digest(22)
    assert header_text(digest) == "arXiv 每日学术速递 · 2026-08-13 · 后训练 · 22 篇"
    assert header_text(make_digest(1, "en")).endswith("· 1 paper")


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
def test_long_digest_is_a_summary_and_parts_within_limits(lang):
    digest = make_digest(40, lang, more=3)
    messages = render_slack(digest)
    # Summary, then parts of 16, 16 and 8 papers (3 blocks each, plus a "1–16 / 40" line).
    assert len(messages) == 4
    assert [len(m.blocks) for m in messages[1:]] == [49, 49, 25]
    assert messages[0].blocks[0]["type"] == "header"
    for message in messages:
        assert_within_limits(message)
    sections = [b for m in messages[1:] for b in m.blocks if b["type"] == "section"]
    assert len(sections) == 40
    summary = "\n".join(mrkdwn_texts(messages[0].blocks))
    assert ("另有 3 篇" in summary) == (lang != "en")
    assert ("thread" in summary)


def test_short_digest_is_one_message_with_every_field():
    messages = render_slack(make_digest(3))
    assert len(messages) == 1
    blocks = messages[0].blocks
    # Each entry closes with its 👍/👎 buttons (issue 17) where a divider was.
    assert [b["type"] for b in blocks] == (
        ["header"] + ["section", "context", "actions"] * 3 + ["context"])
    assert_within_limits(messages[0])
    section = blocks[1]["text"]["text"]
    # Linked English title, Chinese title, match, badge, topic hit reason, AI summary.
    assert section.startswith("*<https://arxiv.org/abs/2608.00000|Ping &lt;!channel&gt; &amp; "
                              "&lt;http://evil.example|click here&gt;")
    for needle in ("标题 &lt;!here&gt; &amp; 更多", "`90%`", "新提交", "*专题命中* 后训练 90%",
                   "reason &lt;!channel&gt; &amp; why", "*AI总结* 总结 &lt;b&gt;&amp;&lt;/b&gt;"):
        assert needle in section
    context = [e["text"] for e in blocks[2]["elements"]]
    assert "Author &lt;0&gt; &amp; co" in context[0] and "et al." in context[0]
    assert context[1] == "🏛 机构 &amp; 实验室"
    assert context[2] == "cs.CL cs.AI"
    assert len(render_slack(make_digest(ENTRIES_PER_MESSAGE))) == 1


def test_overlong_text_is_cut_between_entities():
    digest = make_digest(1)
    digest.entries[0].paper.title = "&" * 5000
    digest.entries[0].enrichment.summary_zh = "<" * 5000
    # A copy: the catalogue's Topic objects are shared.
    digest.topics = [dataclasses.replace(digest.topics[0], name_zh="长" * 400)]
    message = render_slack(digest)[0]
    assert_within_limits(message)
    assert fit("ab&amp;cd", 5) == "ab…"
    assert fit("abc", 3) == "abc"


def worst_entry(i: int) -> DigestEntry:
    """Every field at its longest and made of characters that grow fivefold when escaped."""
    flood = "<&>" * 2000
    paper = Paper(id=f"2608.{i:05d}", version=12, title=flood, abstract="A",
                  authors=[Author(f"{flood[:300]} {j}") for j in range(300)],
                  categories=[f"cs.{c}{c}" for c in "ABCDEFGHIJKLMNOPQRST"])
    enrichment = Enrichment(paper.id, 12, title_zh=flood, summary_zh=flood, summary_en=flood,
                            institutions=[Institution(flood, flood) for _ in range(40)])
    hits = [TopicHit(f"t{k}", flood, 99 - k, flood) for k in range(10)]
    return DigestEntry(paper, Announcement("2026-08-13", paper.id, "replace-cross", 12, "test"),
                       hits, enrichment)


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
@pytest.mark.parametrize("mode", ["thread", "sequential"])
def test_worst_case_fifty_papers_keep_every_field_within_limits(lang, mode):
    digest = make_digest(0, lang, more=950)
    digest.entries = [worst_entry(i) for i in range(50)]
    digest.topics = [dataclasses.replace(digest.topics[0], name_zh="<&>" * 100,
                                         name_en="<&>" * 100)]
    messages = render_slack(digest, mode)
    for message in messages:
        assert_within_limits(message)
        for text in [*mrkdwn_texts(message.blocks), message.text]:
            # A cut never leaves half a link behind.
            assert text.count("<") == text.count(">"), text[-200:]
    summary = messages[0].blocks[1]["text"]["text"]
    assert summary.count("<https://arxiv.org/abs/") == 5
    assert summary.endswith(("讨论串(thread)回复。", "this thread.", "下方消息。", "below."))
    sections = [b["text"]["text"] for m in messages[1:] for b in m.blocks if b["type"] == "section"]
    assert len(sections) == 50
    for text in sections:
        # The final 3000-character cut never has to take the score, badge, reasons or summary.
        assert not text.endswith("…>*") and "`99%`" in text and "|PDF>" in text
        assert text.count("99%") == 2 and text.count("97%") == 1
        assert ("*AI总结*" in text) == (lang != "en")
        assert ("*TL;DR*" in text) == (lang != "zh")


def test_preview_gets_json_payloads():
    payloads = render_payloads(make_digest(20))
    assert json.loads(json.dumps(payloads))[0]["blocks"][0]["type"] == "header"
    assert [set(p) for p in payloads] == [{"text", "blocks"}] * 3


def test_sequential_summary_points_below():
    messages = render_slack(make_digest(20), mode="sequential")
    assert "下方" in messages[0].blocks[1]["text"]["text"]
    with pytest.raises(ValueError):
        render_slack(make_digest(1), mode="sideways")


# -- delivery ---------------------------------------------------------------------------------


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack_settings(slack):
    return load_settings(slack_bot_token=BOT_TOKEN, slack_api_url=slack.api_url)


def sender_for(settings, mode: str = "thread", interval: float = 0.0) -> SlackSender:
    return SlackSender(web_client(settings), mode=mode, interval=interval)


def seed_day(store, n: int, *addresses: str, webhook: str | None = None) -> None:
    """n papers announced on 2026-08-13, scored for post-training; one Slack subscriber each."""
    papers = [Paper(id=f"2608.{i:05d}", version=1, title=f"{HOSTILE} #{i}", abstract="A",
                    categories=["cs.CL"]) for i in range(n)]
    save_batch(store, FeedBatch(source="test", date="2026-08-13", papers=papers, announcements=[
        Announcement("2026-08-13", p.id, "new", 1, "test") for p in papers]))
    store.db["scores"].insert_all({"arxiv_id": p.id, "version": 1, "topic": "post-training",
                                   "score": 90 - i % 20, "reason": f"why {i}", "scorer": "test",
                                   "created_at": "x"} for i, p in enumerate(papers))
    for address in addresses:
        subscribers.add_or_update(store, channel="slack", address=address,
                                  topics=["post-training"], webhook_url=webhook)


def posts_to(slack: FakeSlack, channel: str) -> list[dict]:
    return [p for p in slack.posted if p["channel"] == channel]


async def test_long_digest_posts_summary_then_thread_replies(slack, slack_settings, store):
    seed_day(store, 40, "C0TEST123")
    report = await asend(slack_settings, store, now=NOW, force=True,
                                  senders={"slack": sender_for(slack_settings)})
    assert report.sent == 1
    posts = posts_to(slack, "C0TEST123")
    assert len(posts) == 4
    root = posts[0]["ts"]
    assert "thread_ts" not in posts[0] or posts[0]["thread_ts"] is None
    assert [p["thread_ts"] for p in posts[1:]] == [root] * 3
    assert all(p["text"] and len(p["blocks"]) <= 50 for p in posts)
    assert "&lt;!channel&gt;" in posts[1]["blocks"][1]["text"]["text"]
    row = next(iter(store.db.query("select * from deliveries")))
    assert row["status"] == "sent" and row["thread_ts"] == root and row["parts_total"] == 4
    parts = list(store.db.query("select seq, external_id from delivery_parts order by seq"))
    assert [p["external_id"] for p in parts] == [p["ts"] for p in posts]


async def test_sequential_mode_posts_top_level_messages(slack, slack_settings, store):
    seed_day(store, 20, "C0TEST123")
    await asend(slack_settings, store, now=NOW, force=True,
                         senders={"slack": sender_for(slack_settings, mode="sequential")})
    posts = posts_to(slack, "C0TEST123")
    assert len(posts) == 3 and not any(p.get("thread_ts") for p in posts)


async def test_429_waits_for_retry_after_then_goes_on(slack, slack_settings, store):
    seed_day(store, 3, "C0TEST123")
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    report = await asend(slack_settings, store, now=NOW, force=True,
                                  senders={"slack": sender_for(slack_settings)})
    assert report.sent == 1 and slack.too_many_requests == 1
    assert len(posts_to(slack, "C0TEST123")) == 1
    refused, retried = [t for m, _, t in slack.calls if m == "chat.postMessage"]
    assert retried - refused >= 1.0


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived",
                                   "account_inactive", "invalid_auth"])
async def test_dead_channel_marks_blocked_and_others_continue(slack, slack_settings, store, error):
    seed_day(store, 3, "C0GONE123", "C0LIVE123")
    slack.channel_errors["C0GONE123"] = error
    report = await asend(slack_settings, store, now=NOW, force=True,
                                  senders={"slack": sender_for(slack_settings)})
    assert (report.sent, report.permanent) == (1, 1)
    gone = subscribers.by_address(store, "slack", "C0GONE123")
    assert gone.status == "blocked" and error in gone.status_reason
    assert subscribers.by_address(store, "slack", "C0LIVE123").status == "active"
    assert len(posts_to(slack, "C0LIVE123")) == 1


async def test_other_errors_are_transient(slack, slack_settings, store):
    seed_day(store, 3, "C0TEST123")
    slack.fail_next("chat.postMessage", "internal_error")
    report = await asend(slack_settings, store, now=NOW, force=True,
                                  senders={"slack": sender_for(slack_settings)})
    assert report.failed == 1
    assert subscribers.by_address(store, "slack", "C0TEST123").status == "active"
    row = next(iter(store.db.query("select * from deliveries")))
    assert row["status"] == "failed" and "internal_error" in row["last_error"]


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way catches it."""


async def test_restart_mid_digest_resumes_in_the_same_thread(slack, slack_settings, store,
                                                             monkeypatch):
    seed_day(store, 40, "C0TEST123")
    first = sender_for(slack_settings)
    waits = 0

    async def dies_before_the_third(key: str) -> None:
        nonlocal waits
        waits += 1
        if waits == 3:
            raise Crash

    monkeypatch.setattr(first.pacer, "wait", dies_before_the_third)
    with pytest.raises(Crash):
        await asend(slack_settings, store, now=NOW, force=True, senders={"slack": first})
    assert len(slack.posted) == 2
    assert next(iter(store.db.query("select status from deliveries")))["status"] == "sending"

    report = await asend(slack_settings, store, now=NOW + timedelta(minutes=1),
                                  force=True, senders={"slack": sender_for(slack_settings)})
    assert report.sent == 1
    posts = posts_to(slack, "C0TEST123")
    assert len(posts) == 4
    assert len({p["text"] for p in posts}) == 4  # nothing twice
    assert [p.get("thread_ts") for p in posts[1:]] == [posts[0]["ts"]] * 3


async def test_pacing_keeps_a_second_between_posts_to_a_channel(slack, slack_settings, store):
    seed_day(store, 40, "C0TEST123")
    await asend(slack_settings, store, now=NOW, force=True,
                         senders={"slack": sender_for(slack_settings, interval=0.2)})
    times = [t for m, _, t in slack.calls if m == "chat.postMessage"]
    assert len(times) == 4
    assert all(b - a >= 0.19 for a, b in zip(times, times[1:], strict=False))


# -- webhooks ---------------------------------------------------------------------------------


async def test_webhook_subscriber_without_bot_token(slack, store):
    settings = load_settings(slack_api_url=slack.api_url)
    assert make_sender(settings) is None  # nothing to send to yet
    seed_day(store, 20, "C0HOOK123", webhook=slack.hook_url("team-a"))
    sender = make_sender(settings)
    assert sender is not None and sender.client is None
    sender.pacer.interval = 0
    report = await asend(settings, store, now=NOW, force=True, senders={"slack": sender})
    assert report.sent == 1
    received = slack.hooks["team-a"]
    assert len(received) == 3  # summary and two parts, one after another
    assert received[0]["blocks"][0]["type"] == "header" and all(m["text"] for m in received)
    assert not slack.posted


async def test_webhook_429_waits_for_retry_after_and_never_logs_the_url(slack, store, caplog):
    caplog.set_level(logging.DEBUG)
    settings = load_settings(slack_api_url=slack.api_url)
    url = slack.hook_url("T0SECRET-B0SECRET-hooksecret")
    seed_day(store, 3, "C0HOOK123", webhook=url)
    slack.fail_next_hook("T0SECRET-B0SECRET-hooksecret", retry_after=1)
    report = await asend(settings, store, now=NOW, force=True,
                                  senders={"slack": make_sender(settings)})
    assert report.sent == 1 and len(slack.hooks["T0SECRET-B0SECRET-hooksecret"]) == 1
    refused, accepted = slack.hook_times["T0SECRET-B0SECRET-hooksecret"]
    assert accepted - refused >= 1.0
    # The webhook URL is a credential: whatever slack-sdk logs on a post or a retry, at any
    # level, the URL stays out (our assertion, not the library's wording, which changes).
    assert "hooksecret" not in caplog.text
    # And a line that does carry it, through slack-sdk's logger or any other, shows it masked.
    logging.getLogger("slack_sdk.webhook.async_client").info(f"retrying POST {url}")
    logging.getLogger("httpx").warning("POST %s failed", url)
    assert "hooksecret" not in caplog.text and "retrying POST ***" in caplog.text


async def test_bot_token_stays_out_of_debug_logs(slack, slack_settings, store, caplog):
    caplog.set_level(logging.DEBUG)
    seed_day(store, 3, "C0TEST123")
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    await asend(slack_settings, store, now=NOW, force=True,
                         senders={"slack": sender_for(slack_settings)})
    assert len(slack.posted) == 1 and BOT_TOKEN not in caplog.text


def test_cli_webhook_subscriber_end_to_end(slack, store, capsys):
    """`digestbot sub add --slack … --slack-webhook URL` then `digestbot send --now`, no token."""
    seed_day(store, 3)
    url = slack.hook_url("cli-hook")
    assert main(["sub", "add", "--slack", "C0123ABC", "--slack-webhook", url,
                 "--topic", "后训练"]) == 0
    assert main(["send", "--now"]) == 0
    assert main(["send", "--now"]) == 0  # nothing twice
    received = slack.hooks["cli-hook"]
    assert len(received) == 1 and not slack.posted
    assert received[0]["blocks"][0]["text"]["text"].endswith("后训练 · 3 篇")
    assert "&lt;!channel&gt;" in received[0]["blocks"][1]["text"]["text"]
    out = capsys.readouterr()
    assert "sent 1" in out.out and url not in out.out + out.err
    sub = subscribers.by_address(store, "slack", "C0123ABC")
    assert sub.webhook_url == url and sub.status == "active"


def test_cli_preview_format_slack_prints_the_payloads(store, capsys):
    seed_day(store, 20, "C0TEST123")
    assert main(["preview", "--subscriber", "1", "--format", "slack"]) == 0
    out = capsys.readouterr().out
    payloads = [json.loads(part) for part in out.split("\n\n────────\n\n")]
    assert [len(p["blocks"]) for p in payloads] == [3, 49, 13]
    assert payloads[0]["blocks"][0]["text"]["text"].endswith("后训练 · 20 篇")
    assert "<!channel>" not in out and "&lt;!channel&gt;" in out
    assert store.db["deliveries"].count == 0  # a preview sends nothing


async def test_dead_webhook_marks_blocked(slack, store):
    settings = load_settings(slack_api_url=slack.api_url)
    seed_day(store, 2, "C0HOOK123", webhook=slack.hook_url("gone"))
    slack.hook_errors["gone"] = (410, "channel_is_archived")
    report = await asend(settings, store, now=NOW, force=True,
                                  senders={"slack": make_sender(settings)})
    assert report.permanent == 1
    sub = subscribers.by_address(store, "slack", "C0HOOK123")
    assert sub.status == "blocked" and "channel_is_archived" in sub.status_reason
    # The URL is a credential: it stays out of the outbox row.
    row = next(iter(store.db.query("select last_error from deliveries")))
    assert "/hooks/" not in row["last_error"]

