"""/follow, /unfollow, /must and /exclude end to end through the Telegram fake, and through
the command model as Slack's `/arxiv follow …` calls it (issue 16 items 1-2)."""

from __future__ import annotations

import pytest

from digestbot import commands, signing, subscribers
from digestbot.channels.telegram import FloodLimiter, TelegramSender, build_bot
from digestbot.models import Announcement, Author, FeedBatch, Paper
from digestbot.sources.papers import save_batch
from digestbot.subscribers import profile
from tests.fakes.digests import DAY, add_paper
from tests.fakes.outbox import asend
from tests.fakes.site import csrf_of, running_site
from tests.test_telegram import NO_LIMITS, NOW, assert_valid_telegram_html

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
HOSTILE = "<script>alert(1)</script> Hinton"


def by_author(store, pid: str, author: str, title: str = "An unscored paper") -> None:
    save_batch(store, FeedBatch(source="test", date=DAY, papers=[
        Paper(id=pid, version=1, title=title, abstract="Nothing on topic.",
              authors=[Author(author)], categories=["cs.LG"])],
        announcements=[Announcement(DAY, pid, "new", 1, "test")]))




async def say(tg, text: str) -> str:
    n = len(tg.sent_to(42)) + 1
    tg.push_message(42, text)
    return (await tg.wait_sent(42, n))[-1]["text"]


async def test_telegram_follow_and_keywords_shape_the_next_digest(tg, bot, tg_settings):
    store = bot.store
    add_paper(store, "2608.00001", 90, title="Speech recognition with preference optimization")
    add_paper(store, "2608.00002", 80)
    by_author(store, "2608.00003", "Y. Bengio")
    by_author(store, "2608.00004", HOSTILE)  # a hostile feed, followed by its hostile name
    assert "已订阅" in await say(tg, "/subscribe 后训练")
    reply = await say(tg, "/follow Yoshua Bengio")
    assert "已关注" in reply and "Yoshua Bengio" in reply
    assert "已在关注" in await say(tg, "/follow Bengio, Yoshua")
    assert "已关注" in await say(tg, f"/follow {HOSTILE}")
    assert "排除关键词" in await say(tg, "/exclude ＳＰＥＥＣＨ, 语音")
    listed = await say(tg, "/list")  # NFKC: full-width letters stored half-width
    assert "关注作者:Yoshua Bengio" in listed and "排除关键词:SPEECH · 语音" in listed
    assert "/follow" in await say(tg, "/help")
    assert "follow" in [c["command"] for c in tg.commands]
    # A false match is dropped by its name; the others stay.
    assert "已取消关注" in await say(tg, "/unfollow <script>alert(1)</script> hinton")
    assert profile.get_profile(store, subscribers.by_address(store, "telegram", "42").id).follows \
        == ("Yoshua Bengio",)
    assert "已关注" in await say(tg, f"/follow {HOSTILE}")

    sender = TelegramSender(build_bot(tg_settings, FloodLimiter(**NO_LIMITS)))
    report = await asend(tg_settings, store, now=NOW, force=True, senders={"telegram": sender})
    assert report.sent == 1
    digest = [m for m in tg.sent_to(42) if m["parse_mode"] == "HTML"]
    for m in digest:
        assert_valid_telegram_html(m["text"])
    text = "\n".join(m["text"] for m in digest)
    assert "关注作者: Yoshua Bengio (署名 Y. Bengio)" in text
    assert "关注作者: &lt;script&gt;alert(1)&lt;/script&gt; Hinton" in text
    assert "<script>" not in text
    assert "<b>👤</b>" in text and "<b>0%</b>" not in text  # no topic hit: no "0%" badge
    assert "2608.00002" in text and "2608.00001" not in text  # excluded: speech


def run(store, settings, line: str, channel: str = "slack", address: str = "C123") -> str:
    name, _, arg = line.partition(" ")
    ctx = commands.CommandContext(channel=channel, address=address)
    return commands.execute(store, settings, ctx, name, arg).text


def test_slack_commands_validate_before_writing(store, settings) -> None:
    assert "已订阅" in run(store, settings, "subscribe 后训练")
    sub = subscribers.by_address(store, "slack", "C123")
    before = profile.get_profile(store, sub.id)
    assert "控制字符" in run(store, settings, "follow Ada\u200bLovelace")
    assert "不能为空" in run(store, settings, "must diffusion, ...")
    assert profile.get_profile(store, sub.id) == before
    assert "diffusion · 扩散模型" in run(store, settings, "must diffusion，扩散模型")
    assert "扩散模型" in run(store, settings, "must -diffusion") and \
        profile.get_profile(store, sub.id).must == ("扩散模型",)
    assert "已清空" in run(store, settings, "must clear")
    assert "没有关注" in run(store, settings, "unfollow Nobody")
    assert "follow" in run(store, settings, "help")


async def test_preferences_page_follows_and_keywords_escaped() -> None:
    async with running_site() as site:
        sub = subscribers.add_or_update(site.store, channel="email", address="ada@example.org",
                                        topics=["post-training"])
        subscribers.set_status(site.store, sub.id, "active")
        url = signing.preferences_path(site.settings, sub, now=site.clock())
        token = url.split("token=")[1]
        page = await site.client.get(url)
        assert 'name="follows"' in page.text and "关注作者" in page.text
        save = {"token": token, "csrf": csrf_of(page.text), "action": "save",
                "topic": ["post-training"], "thr.post-training": "60", "send_at": "08:30",
                "tz": "Asia/Shanghai", "lang": "zh",
                "follows": f"Bengio, Yoshua\n{HOSTILE}\n", "must": "diffusion，扩散模型",
                "exclude": "speech"}
        r = await site.client.post("/preferences", data=save)
        assert r.status_code == 303, r.text
        assert profile.get_profile(site.store, sub.id) == profile.Profile(
            ("Bengio, Yoshua", HOSTILE), ("diffusion", "扩散模型"), ("speech",))
        shown = await site.client.get(r.headers["location"])
        assert "<script>alert" not in shown.text and "&lt;script&gt;alert(1)" in shown.text
        # A bad line refuses the whole form and changes nothing.
        bad = await site.client.post("/preferences", data={**save, "follows": "Ada\n...",
                                                            "exclude": ""})
        assert bad.status_code == 400 and "作者姓名不能为空" in bad.text
        assert profile.get_profile(site.store, sub.id).exclude == ("speech",)
        # Emptying a box drops those entries.
        r = await site.client.post("/preferences", data={**save, "follows": "Yoshua Bengio",
                                                          "must": ""})
        assert profile.get_profile(site.store, sub.id) == profile.Profile(
            ("Bengio, Yoshua",), (), ("speech",))
