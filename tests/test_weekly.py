"""Weekly readers (issue 16 item 5), end to end through the CLI over several announcement days:
a Monday digest of the week's best per topic, nothing on other days, never a paper twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

from digestbot import digest, signing, subscribers
from digestbot.channels.telegram import FloodLimiter, TelegramSender, build_bot
from digestbot.cli import main
from digestbot.commands import CommandContext, execute
from digestbot.config import Settings, load_settings
from digestbot.digest import WEEKLY_PER_TOPIC
from digestbot.outbox import DeliveryHistory
from digestbot.outbox.plan import is_due, on_cadence, opens_week
from digestbot.render.slack import render_slack
from digestbot.store import Store
from tests.fakes.digests import TOPIC, add_paper
from tests.fakes.outbox import asend
from tests.fakes.site import csrf_of, path_of, running_site
from tests.fakes.telegram import FakeTelegram

THU, FRI, MON, TUE, NEXT_MON = "2026-08-13", "2026-08-14", "2026-08-17", "2026-08-18", "2026-08-24"


def sent(store: Store, address: str) -> dict[str, list[str]]:
    """digest date → the paper ids the reader's row for it carries."""
    sub = subscribers.by_address(store, "email", address)
    return {r["digest_date"]: json.loads(r["paper_ids"]) for r in store.db.query(
        "select digest_date, paper_ids from deliveries where subscriber_id = ? order by id",
        [sub.id])}


def mails(settings: Settings) -> list:
    return [message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in Path(settings.outbox).rglob("*.eml")]


def subjects(settings: Settings) -> list[str]:
    return sorted(m["Subject"] for m in mails(settings))


def add(address: str, *extra: str) -> None:
    assert main(["sub", "add", "--email", address, "--topic", TOPIC, *extra]) == 0


def backdate(store: Store) -> None:
    """Readers who joined before the first test day, so every day is in their window."""
    store.db.execute("update subscribers set created_at = '2026-08-01T00:00:00+00:00'")
    store.db.conn.commit()


def test_weekly_reader_gets_the_weeks_best_on_monday_only(settings: Settings, store: Store,
                                                          capsys, monkeypatch) -> None:
    monkeypatch.setenv("DIGESTBOT_PUBLIC_URL", "https://digest.example")
    add("daily@example.org")
    add("weekly@example.org", "--weekly")
    assert "Mondays 08:30 Asia/Shanghai (weekly)" in capsys.readouterr().out
    backdate(store)
    add_paper(store, "2608.10001", 90, date=THU)
    add_paper(store, "2608.10002", 70, date=THU)
    assert main(["send"]) == 0  # a Thursday: the daily reader only
    add_paper(store, "2608.10003", 95, date=FRI)
    assert main(["send"]) == 0
    assert set(sent(store, "daily@example.org")) == {THU, FRI}
    assert sent(store, "weekly@example.org") == {}

    for i in range(WEEKLY_PER_TOPIC + 1):
        add_paper(store, f"2608.2000{i}", 80 - i, date=MON)
    assert main(["send"]) == 0
    week = sent(store, "weekly@example.org")[MON]
    # The week's best, best first, at most WEEKLY_PER_TOPIC for the one topic; the rest counted.
    assert week == ["2608.10003", "2608.10001", "2608.20000", "2608.20001", "2608.20002"]
    more = store.db.execute("select more from deliveries where digest_date = ? and paper_ids = ?",
                            [MON, json.dumps(week)]).fetchone()[0]
    assert more == 4
    assert sent(store, "daily@example.org")[MON][:1] == ["2608.20000"]
    assert any(s.startswith(f"arXiv 每周精选 {MON}") for s in subjects(settings))
    assert sum("每日速递" in s for s in subjects(settings)) == 3
    weekly_mail = next(m for m in mails(settings) if "每周精选" in m["Subject"])
    text = weekly_mail.get_body(("plain",)).get_content()
    html = weekly_mail.get_body(("html",)).get_content()
    assert f"arXiv 每周精选 · {MON}" in text and f"arXiv 每周精选 · {MON}" in html
    assert f"另有 4 篇达到阈值，未在本期显示 · 在网页上查看: https://digest.example/d/{MON}" in text
    assert f'<a href="https://digest.example/d/{MON}"' in html

    add_paper(store, "2608.30001", 99, date=TUE)  # a Tuesday: again nothing weekly
    assert main(["send", "--now"]) == 0
    assert set(sent(store, "weekly@example.org")) == {MON}
    assert TUE in sent(store, "daily@example.org")

    add_paper(store, "2608.40001", 60, date=NEXT_MON)
    assert main(["send"]) == 0
    # Never twice: the cut papers of last week do not come back, this week's do.
    assert sent(store, "weekly@example.org")[NEXT_MON] == ["2608.30001", "2608.40001"]


def test_cadence_changes_for_an_existing_reader_and_shows_in_the_list(store: Store,
                                                                      capsys) -> None:
    add("ada@example.org")
    add("ada@example.org", "--cadence", "weekly")
    assert subscribers.by_address(store, "email", "ada@example.org").cadence == "weekly"
    capsys.readouterr()
    assert main(["sub", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["cadence"] == "weekly"
    add("ada@example.org", "--cadence", "daily")
    assert subscribers.by_address(store, "email", "ada@example.org").cadence == "daily"
    assert main(["sub", "add", "--email", "ada@example.org", "--topic", TOPIC,
                 "--cadence", "monthly"]) == 2


def test_weekly_readers_are_due_at_their_time_on_monday_in_their_zone(store: Store) -> None:
    sub = subscribers.add_or_update(store, channel="email", address="w@example.org",
                                    topics=[TOPIC], tz="America/New_York", send_at="07:00",
                                    cadence="weekly")
    assert on_cadence(sub, MON) and not on_cadence(sub, TUE)
    # 07:00 in New York on Monday is 11:00 UTC.
    assert not is_due(sub, datetime(2026, 8, 17, 10, 59, tzinfo=UTC), MON)
    assert is_due(sub, datetime(2026, 8, 17, 11, 0, tzinfo=UTC), MON)
    assert not is_due(sub, datetime(2026, 8, 18, 11, 0, tzinfo=UTC), TUE)
    assert not is_due(sub, datetime(2026, 8, 18, 11, 0, tzinfo=UTC))  # a local Tuesday


def test_a_holiday_monday_moves_the_weekly_digest_to_the_next_announcement(
        store: Store, capsys) -> None:
    """No announcement on a Monday (an arXiv holiday): the week's first announcement brings the
    weekly digest instead, once; the next day is an ordinary day again."""
    add("weekly@example.org", "--weekly")
    backdate(store)
    add_paper(store, "2608.10001", 90, date=FRI)
    assert main(["send", "--now"]) == 0
    assert sent(store, "weekly@example.org") == {}
    assert opens_week(store, MON)  # a Monday always opens its week
    add_paper(store, "2608.30001", 80, date=TUE)  # Monday MON brought nothing
    assert opens_week(store, TUE)
    assert main(["send", "--now"]) == 0
    assert sent(store, "weekly@example.org") == {TUE: ["2608.10001", "2608.30001"]}
    wed = "2026-08-19"
    add_paper(store, "2608.40001", 85, date=wed)
    assert not opens_week(store, wed)
    assert main(["send", "--now"]) == 0
    assert set(sent(store, "weekly@example.org")) == {TUE}
    assert opens_week(store, NEXT_MON)


async def test_weekly_digest_through_telegram(store: Store) -> None:
    with FakeTelegram("123456:TEST-token") as tg:
        tg_settings = load_settings(telegram_bot_token="123456:TEST-token",
                                    telegram_api_url=tg.base_url)
        sender = TelegramSender(build_bot(tg_settings, FloodLimiter(0, 0.0, 0)),
                                public_url="https://digest.example")
        add_paper(store, "2608.10001", 90, date=FRI)
        for i in range(WEEKLY_PER_TOPIC):
            add_paper(store, f"2608.2000{i}", 80 - i, date=MON)
        subscribers.add_or_update(store, channel="telegram", address="42", topics=[TOPIC],
                                  cadence="weekly")
        backdate(store)
        report = await asend(tg_settings, store, now=datetime(2026, 8, 17, 2, 0, tzinfo=UTC),
                             force=True, senders={"telegram": sender})
        assert report.sent == 1
        text = "\n".join(m["text"] for m in tg.sent_to(42))
        assert "arXiv 每周精选" in text and "2608.10001" in text and "2608.20003" in text
        assert "2608.20004" not in text
        assert f'另有 1 篇达到阈值，未在本期显示 · <a href="https://digest.example/d/{MON}">' in text


def test_slack_more_line_links_to_the_day_page(store: Store) -> None:
    for i in range(WEEKLY_PER_TOPIC + 1):
        add_paper(store, f"2608.2000{i}", 80 - i, date=MON)
    sub = subscribers.add_or_update(store, channel="slack", address="C0123", topics=[TOPIC],
                                    cadence="weekly")
    backdate(store)
    weekly = digest.select(store, subscribers.get(store, sub.id), MON,
                           history=DeliveryHistory(store))
    assert weekly is not None and weekly.more == 1
    payload = json.dumps(render_slack(weekly, pages_url=f"https://digest.example/d/{MON}")[0].blocks,
                         ensure_ascii=False)
    assert "arXiv 每周精选" in payload
    assert f"另有 1 篇达到阈值，未在本期显示 · <https://digest.example/d/{MON}|在网页上查看>" in payload


def test_weekly_from_chat_shows_in_help_and_list(store: Store, settings: Settings) -> None:
    ctx = CommandContext("telegram", "42", now=datetime(2026, 8, 12, 12, 0, tzinfo=UTC))
    assert "/weekly" in execute(store, settings, ctx, "help", "").text
    execute(store, settings, ctx, "subscribe", "后训练")
    reply = execute(store, settings, ctx, "weekly", "on")
    assert "每周一 08:30" in reply.text and f"最多 {WEEKLY_PER_TOPIC} 篇" in reply.text
    assert subscribers.by_address(store, "telegram", "42").cadence == "weekly"
    assert "每周一 08:30(Asia/Shanghai),每周精选" in execute(store, settings, ctx, "list", "").text
    # A Wednesday: the next weekly digest is Monday's.
    assert "2026-08-17 08:30" in execute(store, settings, ctx, "subscribe", "智能体").text
    before = subscribers.by_address(store, "telegram", "42")
    assert "daily" in execute(store, settings, ctx, "cadence", "monthly").text
    assert subscribers.by_address(store, "telegram", "42") == before
    assert "每天" in execute(store, settings, ctx, "weekly", "off").text
    assert subscribers.by_address(store, "telegram", "42").cadence == "daily"


async def test_preferences_page_changes_the_cadence() -> None:
    async with running_site() as site:
        sub = subscribers.add_or_update(site.store, channel="email", address="ada@example.org",
                                        topics=[TOPIC])
        url = path_of(signing.preferences_url(site.settings, sub, now=site.clock()))
        page = await site.client.get(url)
        assert 'name="cadence"' in page.text and '<option value="daily" selected>' in page.text
        save = {"token": url.split("token=")[1], "csrf": csrf_of(page.text), "action": "save",
                "topic": [TOPIC], "send_at": "08:30", "tz": "Asia/Shanghai", "lang": "zh"}
        r = await site.client.post("/preferences", data={**save, "cadence": "weekly"})
        assert r.status_code == 303, r.text
        assert subscribers.get(site.store, sub.id).cadence == "weekly"
        assert '<option value="weekly" selected>' in (await site.client.get(url)).text
        # A form without the field (rendered before weekly existed) keeps the cadence.
        assert (await site.client.post("/preferences", data=save)).status_code == 303
        assert subscribers.get(site.store, sub.id).cadence == "weekly"
        before = subscribers.get(site.store, sub.id)
        r = await site.client.post("/preferences", data={**save, "cadence": "monthly"})
        assert r.status_code != 303 and subscribers.get(site.store, sub.id) == before
