"""The outbox: planning, due times, retries, crashes, the `.eml` default and `digestbot send`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from digestbot import digest, outbox, subscribers
from digestbot.channels import build_senders
from digestbot.channels.email import EmailSender, OutboxFolderSender
from digestbot.cli import main
from digestbot.config import Settings, load_settings
from digestbot.errors import PermanentError, TransientError
from digestbot.outbox import DeliveryRow, deliver_pending, mark_part, parts_done, plan
from digestbot.store import Store
from tests.fakes.digests import (
    DAY,
    NEXT_DAY,
    Crash,
    CrashAt,
    add_enrichment,
    add_paper,
    add_subscriber,
)
from tests.fakes.outbox import asend, send

# 09:00 in Shanghai on DAY: a default subscriber (08:30 Asia/Shanghai) is due.
NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)


class Scripted:
    """A sender that raises the scripted errors per address, in order, then accepts."""

    channel = "email"

    def __init__(self, **errors: list[Exception]) -> None:
        self.errors = errors
        self.sent: list[tuple[str, list[str]]] = []

    async def send(self, store, row, digest) -> None:
        queue = self.errors.get(digest.subscriber.address.split("@")[0], [])
        if queue:
            raise queue.pop(0)
        self.sent.append((digest.subscriber.address, [e.paper.id for e in digest.entries]))


def rows(store: Store) -> list[dict]:
    return list(store.db.query("select * from deliveries order by id"))


def eml(path: Path):
    return message_from_bytes(path.read_bytes(), policy=policy.default)


def body(msg, subtype: str) -> str:
    return msg.get_body(preferencelist=(subtype,)).get_content()


def test_plan_writes_row_and_papers_before_any_send(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 70)
    add_paper(store, "2608.00002", 95)
    add_paper(store, "2608.00003", 40)
    ada = add_subscriber(store, "ada@example.org")
    add_subscriber(store, "picky@example.org", threshold=99)
    created = plan(store, settings, DAY, now=NOW)
    [row] = rows(store)
    assert created == [row["id"]]
    assert row["subscriber_id"] == ada.id and row["status"] == "pending"
    assert json.loads(row["paper_ids"]) == ["2608.00002", "2608.00001"]  # best first
    assert row["message_id"].startswith("<") and row["message_id"].endswith("@localhost>")
    papers = list(store.db.query("select arxiv_id, delivery_id from delivered_papers order by arxiv_id"))
    assert papers == [{"arxiv_id": "2608.00001", "delivery_id": row["id"]},
                      {"arxiv_id": "2608.00002", "delivery_id": row["id"]}]
    assert plan(store, settings, DAY, now=NOW) == []  # one row per (subscriber, date)
    assert not Path(settings.outbox).exists()  # planning sends nothing


def test_cap_is_recorded_so_a_retry_rebuilds_the_same_digest(settings: Settings, store: Store) -> None:
    for i, score in enumerate((90, 80, 70), start=1):
        add_paper(store, f"2608.0000{i}", score)
    add_subscriber(store, "ada@example.org", max_papers=2)
    plan(store, settings, DAY, now=NOW)
    [row] = rows(store)
    assert row["more"] == 1 and json.loads(row["paper_ids"]) == ["2608.00001", "2608.00002"]


def test_due_follows_each_subscribers_zone_and_dst(store: Store) -> None:
    shanghai = add_subscriber(store, "sh@example.org")
    ny = add_subscriber(store, "ny@example.org", tz="America/New_York", send_at="08:30")
    due = lambda now, date=None: {s.address for s in outbox.due_subscribers(store, now, False, date)}  # noqa: E731
    # Without a date: has the send time passed today, in their zone?
    assert due(datetime(2026, 8, 13, 0, 29, tzinfo=UTC)) == {"ny@example.org"}  # 08:29 / 20:29
    assert due(datetime(2026, 8, 13, 0, 30, tzinfo=UTC)) == {"sh@example.org", "ny@example.org"}
    # DAY's digest is not due before DAY in their zone: at 20:30 on the 12th New York waits.
    evening_before = datetime(2026, 8, 13, 0, 30, tzinfo=UTC)
    assert due(evening_before, DAY) == {"sh@example.org"}
    assert due(datetime(2026, 8, 13, 12, 29, tzinfo=UTC), DAY) == {"sh@example.org"}
    assert due(datetime(2026, 8, 13, 12, 30, tzinfo=UTC), DAY) == {"sh@example.org", "ny@example.org"}
    # December: New York is on EST (UTC-5), so 08:30 local is 13:30 UTC, not 12:30.
    assert due(datetime(2026, 12, 14, 12, 30, tzinfo=UTC), "2026-12-14") == {"sh@example.org"}
    assert "ny@example.org" in due(datetime(2026, 12, 14, 13, 30, tzinfo=UTC), "2026-12-14")
    assert {s.id for s in outbox.due_subscribers(store, evening_before, True)} == {shanghai.id, ny.id}


def test_not_due_yet_plans_nothing(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org", send_at="10:00")
    report = send(settings, store, now=NOW)
    assert rows(store) == [] and report.not_due == 1 and report.sent == 0
    assert send(settings, store, now=NOW, force=True).sent == 1  # --now


def test_eml_outbox_is_the_default(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 70)
    add_paper(store, "2608.00002", 95, title="<script>alert(1)</script> & $\\Delta$ tuning")
    add_paper(store, "2608.00003", 40)
    ada = add_subscriber(store, "ada@example.org")
    report = send(settings, store, now=NOW)
    assert (report.planned, report.sent, report.failed) == (1, 1, 0)
    outbox = Path(settings.outbox)
    [path] = list(outbox.iterdir())  # no temp files left behind
    assert path.name == f"{DAY}_{ada.id}_ada@example.org.eml"
    msg = eml(path)
    assert msg["Subject"] == f"arXiv 每日速递 {DAY} · 后训练 等 2 篇"
    assert msg["Message-ID"] == rows(store)[0]["message_id"]
    text, html = body(msg, "plain"), body(msg, "html")
    assert text.index("2608.00002") < text.index("2608.00001") and "2608.00003" not in text
    assert "<script>alert(1)</script> & $\\Delta$" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; $\\Delta$" in html and "<script>" not in html
    assert rows(store)[0]["status"] == "sent" and rows(store)[0]["sent_at"]
    # A second send sends nothing.
    before = path.stat().st_mtime_ns
    again = send(settings, store, now=NOW + timedelta(hours=1))
    assert (again.planned, again.sent) == (0, 0) and path.stat().st_mtime_ns == before
    assert again.summary().startswith("投递 / delivery: sent 0, failed 0")


def test_new_announcement_sends_only_new_papers(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    send(settings, store, now=NOW)
    add_paper(store, "2608.00002", 80, date=NEXT_DAY)
    report = send(settings, store, now=NOW + timedelta(days=1))
    assert report.sent == 1
    second = Path(settings.outbox) / f"{NEXT_DAY}_{ada.id}_ada@example.org.eml"
    text = body(eml(second), "plain")
    assert "2608.00002" in text and "2608.00001" not in text


def test_crash_after_three_of_ten_resumes_the_other_seven_once(settings: Settings) -> None:
    add_paper_store = Store(settings.db)
    add_paper(add_paper_store, "2608.00001", 90)
    for i in range(10):
        add_subscriber(add_paper_store, f"reader{i}@example.org")
    outbox = OutboxFolderSender(settings)
    with pytest.raises(Crash):
        send(settings, add_paper_store, now=NOW, senders={"email": CrashAt(outbox, 4)})
    add_paper_store.close()
    files = sorted(Path(settings.outbox).iterdir())
    assert len(files) == 3
    stamps = {f.name: f.stat().st_mtime_ns for f in files}

    with Store(settings.db) as store:  # the restarted process
        assert [r["status"] for r in rows(store)] == ["sent"] * 3 + ["sending"] + ["pending"] * 6
        report = send(settings, store, now=NOW + timedelta(minutes=1))
        assert (report.planned, report.sent) == (0, 7)
        assert [r["status"] for r in rows(store)] == ["sent"] * 10
    files = sorted(Path(settings.outbox).iterdir())
    assert len(files) == 10
    assert {f.name: f.stat().st_mtime_ns for f in files if f.name in stamps} == stamps


def test_crash_after_the_file_was_written_does_not_write_it_again(settings: Settings) -> None:
    store = Store(settings.db)
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    with pytest.raises(Crash):
        send(settings, store, now=NOW,
                 senders={"email": CrashAt(OutboxFolderSender(settings), 1, after_send=True)})
    store.close()
    [path] = Path(settings.outbox).iterdir()
    written = path.stat().st_mtime_ns
    with Store(settings.db) as store:
        assert rows(store)[0]["status"] == "sending"
        assert send(settings, store, now=NOW).sent == 1
        assert rows(store)[0]["status"] == "sent" and rows(store)[0]["attempts"] == 2
    assert path.stat().st_mtime_ns == written


async def test_transient_errors_back_off_and_give_up_after_max_attempts(
    settings: Settings, store: Store
) -> None:
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    plan(store, settings, DAY, now=NOW)
    sender = Scripted(ada=[TransientError("451 try later")] * outbox.MAX_ATTEMPTS)
    senders = {"email": sender}
    now = NOW
    for attempt in range(1, outbox.MAX_ATTEMPTS):
        report = await deliver_pending(store, senders, now=now)
        [row] = rows(store)
        assert (report.failed, row["status"], row["attempts"]) == (1, "failed", attempt)
        assert row["last_error"] == "TransientError: 451 try later"
        wait = outbox.BACKOFF * 2 ** (attempt - 1)
        assert row["next_attempt_at"] == (now + wait).isoformat(timespec="seconds")
        # Not retried before its time.
        assert (await deliver_pending(store, senders, now=now + wait / 2)).failed == 0
        now += wait
    await deliver_pending(store, senders, now=now)
    [row] = rows(store)
    assert row["status"] == "failed_permanent" and row["attempts"] == outbox.MAX_ATTEMPTS
    assert "gave up after 5 attempts" in row["last_error"]
    assert subscribers.get(store, ada.id).status == "active"  # our trouble, not their address
    assert sender.sent == []


async def test_permanent_error_marks_the_subscriber_and_others_continue(
    settings: Settings, store: Store
) -> None:
    add_paper(store, "2608.00001", 90)
    gone = add_subscriber(store, "gone@example.org")
    add_subscriber(store, "ada@example.org")
    weird = add_subscriber(store, "weird@example.org")
    plan(store, settings, DAY, now=NOW)
    sender = Scripted(gone=[PermanentError("Forbidden: bot was blocked by the user", "blocked")],
                      weird=[RuntimeError("template exploded")])
    report = await deliver_pending(store, {"email": sender}, now=NOW)
    assert (report.sent, report.failed, report.permanent) == (1, 1, 1)
    assert sender.sent == [("ada@example.org", ["2608.00001"])]
    blocked = subscribers.get(store, gone.id)
    assert blocked.status == "blocked" and "Forbidden" in blocked.status_reason
    statuses = {r["subscriber_id"]: r["status"] for r in rows(store)}
    assert statuses[gone.id] == "failed_permanent" and statuses[weird.id] == "failed"
    # Nothing more goes to the blocked subscriber, ever.
    report = await deliver_pending(store, {"email": sender}, now=NOW + timedelta(hours=1))
    assert report.sent == 1 and sender.sent[-1][0] == "weird@example.org"


async def test_unsubscribed_before_delivery_is_cancelled(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    plan(store, settings, DAY, now=NOW)
    subscribers.set_status(store, ada.id, "unsubscribed")
    sender = Scripted()
    report = await deliver_pending(store, {"email": sender}, now=NOW)
    assert report.cancelled == 1 and sender.sent == []
    assert rows(store)[0]["status"] == "cancelled"


async def test_a_removed_readers_rows_remain_and_nothing_more_is_sent(
    settings: Settings, store: Store
) -> None:
    """`sub rm` never deletes outbox rows: the sent digest and its papers stay on record, a
    pending one ends as 'cancelled', and the reader gets nothing more."""
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    sender = Scripted()
    plan(store, settings, DAY, now=NOW)
    assert (await deliver_pending(store, {"email": sender}, now=NOW)).sent == 1
    add_paper(store, "2608.00002", 90, date=NEXT_DAY)
    plan(store, settings, NEXT_DAY, now=NOW + timedelta(days=1))
    assert subscribers.remove(store, ada.id) is True
    report = await deliver_pending(store, {"email": sender}, now=NOW + timedelta(days=1))
    assert report.cancelled == 1 and len(sender.sent) == 1
    assert [(r["digest_date"], r["status"]) for r in rows(store)] == [
        (DAY, "sent"), (NEXT_DAY, "cancelled")]
    assert rows(store)[1]["last_error"] == "subscriber is removed"
    papers = store.db.query("select subscriber_id, arxiv_id from delivered_papers order by arxiv_id")
    assert [(r["subscriber_id"], r["arxiv_id"]) for r in papers] == [
        (ada.id, "2608.00001"), (ada.id, "2608.00002")]
    assert outbox.last_sent(store, ada.id).digest_date == DAY
    assert (await outbox.run_send(settings, store, {"email": sender},
                                  now=NOW + timedelta(days=2), force=True)).planned == 0


async def test_rows_of_an_unconfigured_channel_wait(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    subscribers.add_or_update(store, channel="telegram", address="12345", topics=["post-training"])
    plan(store, settings, DAY, now=NOW, force=True)
    report = await deliver_pending(store, {"email": Scripted()}, now=NOW)
    assert report.waiting == {"telegram": 1} and rows(store)[0]["status"] == "pending"
    assert rows(store)[0]["message_id"] is None  # Message-IDs are for email only
    assert "1 telegram waiting" in report.summary()


def test_parts_progress_for_chat_senders(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    [row_id] = plan(store, settings, DAY, now=NOW)
    assert parts_done(store, row_id) == set()
    mark_part(store, row_id, 0, "501")
    mark_part(store, row_id, 1, "502")
    mark_part(store, row_id, 1, "502")  # a resumed sender may repeat itself harmlessly
    assert parts_done(store, row_id) == {0, 1}
    assert rows(store)[0]["parts_sent"] == 2


def test_delivery_row_from_store(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    plan(store, settings, DAY, now=NOW)
    [(row, channel)] = outbox.ready_rows(store, NOW)
    assert channel == "email" and isinstance(row, DeliveryRow)
    assert (row.paper_ids, row.attempts, row.more, row.status) == (["2608.00001"], 0, 0, "pending")


def test_senders_follow_configuration(settings: Settings, tmp_path: Path) -> None:
    assert isinstance(build_senders(settings)["email"], OutboxFolderSender)
    smtp = load_settings(smtp_url="smtp://u:p@127.0.0.1:2525")
    senders = build_senders(smtp)
    assert isinstance(senders["email"], EmailSender)
    assert "telegram" not in senders and "slack" not in senders  # no tokens set


def test_cli_send_dry_run_then_send(settings: Settings, store: Store, capsys) -> None:
    add_paper(store, "2608.00001", 90)
    add_paper(store, "2608.00002", 80)
    add_subscriber(store, "ada@example.org")
    add_subscriber(store, "picky@example.org", threshold=99)
    assert main(["send", "--now", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ada@example.org 2026-08-13: 2 papers" in out and "picky" not in out
    assert rows(store) == [] and not Path(settings.outbox).exists()
    assert main(["send", "--now"]) == 0
    out = capsys.readouterr().out
    assert "sent 1, failed 0, nothing due for 1" in out
    assert main(["send", "--now"]) == 0
    assert "sent 0, failed 0" in capsys.readouterr().out


def test_transient_row_can_be_retried_from_cli_after_backoff(settings: Settings, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    plan(store, settings, DAY, now=NOW)
    report = send(settings, store, now=NOW, senders={"email": Scripted(ada=[TransientError("x")])})
    assert report.failed == 1
    later = NOW + outbox.BACKOFF
    assert send(settings, store, now=later).sent == 1


async def test_chat_resume_after_a_lang_change_sends_every_paper_once(store: Store) -> None:
    """Crash mid-digest, /lang en, restart: the en rendering packs entries at other split
    points, so resuming by message index would skip or repeat papers; by paper it cannot."""
    from digestbot.channels.telegram import FloodLimiter, TelegramSender, build_bot
    from tests.fakes.telegram import FakeTelegram

    token = "123456:TEST-token"
    with FakeTelegram(token) as tg:
        settings = load_settings(telegram_bot_token=token, telegram_api_url=tg.base_url)
        for i in range(30):
            pid = f"2608.{i:05d}"
            add_paper(store, pid, 90 - i % 20)
            add_enrichment(store, pid, "这是一段相当长的中文总结。" * 20)
        sub = subscribers.add_or_update(store, channel="telegram", address="42",
                                        topics=["post-training"], lang="zh")

        def sender() -> TelegramSender:
            limits = {"overall_per_s": 0, "chat_interval": 0.0, "group_per_min": 0}
            return TelegramSender(build_bot(settings, FloodLimiter(**limits)))

        tg.fail_next(42, 502, "Bad Gateway", after=2)  # header and one part, then down
        first = await asend(settings, store, now=NOW, force=True,
                                              senders={"telegram": sender()})
        assert first.failed == 1 and len(tg.sent_to(42)) == 2
        before = set(re.findall(r"<code>(2608\.\d+)</code>", tg.sent_to(42)[1]["text"]))
        assert 0 < len(before) < 30
        assert outbox.papers_sent(store, 1) == before

        subscribers.update_settings(store, sub.id, lang="en")
        second = await asend(settings, store, now=NOW + timedelta(hours=2),
                                               force=True, senders={"telegram": sender()})
        assert second.sent == 1
        texts = [m["text"] for m in tg.sent_to(42)]
    ids = re.findall(r"<code>(2608\.\d+)</code>", "".join(texts))
    assert sorted(ids) == [f"2608.{i:05d}" for i in range(30)]  # each exactly once
    assert "Topic match" in texts[-1] and "专题命中" in texts[1]  # really re-rendered in en
    assert sum("arXiv" in t and "/help" in t for t in texts) == 1  # one header
    seqs = [r["seq"] for r in store.db.query("select seq from delivery_parts order by seq")]
    assert seqs == list(range(len(texts)))


def test_an_empty_selection_is_remembered_until_its_inputs_change(store: Store, settings,
                                                                  monkeypatch) -> None:
    """A due subscriber with nothing to send gets no row; later ticks must not select again
    for them until a score, announcement or subscription changes."""
    add_paper(store, "2608.00001", 40)  # under the threshold: nothing to send
    sub = add_subscriber(store, "ada@example.org")
    calls: list[int] = []
    real = digest.select

    def counting(store, subscriber, date, **kw):
        calls.append(subscriber.id)
        return real(store, subscriber, date, **kw)

    monkeypatch.setattr(digest, "select", counting)
    assert plan(store, settings, DAY, now=NOW) == [] and calls == [sub.id]
    assert plan(store, settings, DAY, now=NOW + timedelta(minutes=1)) == []
    assert calls == [sub.id]  # remembered, not selected again
    add_paper(store, "2608.00002", 80)  # a new passing score
    assert len(plan(store, settings, DAY, now=NOW + timedelta(minutes=2))) == 1
    assert calls == [sub.id, sub.id]
    [row] = rows(store)
    assert json.loads(row["paper_ids"]) == ["2608.00002"]


def test_a_changed_threshold_reselects_an_empty_subscriber(store: Store, settings) -> None:
    add_paper(store, "2608.00001", 50)
    sub = add_subscriber(store, "ada@example.org")
    assert plan(store, settings, DAY, now=NOW) == []
    subscribers.add_or_update(store, channel="email", address=sub.address,
                              topics=["post-training"], threshold=40)
    assert len(plan(store, settings, DAY, now=NOW + timedelta(minutes=1))) == 1


def test_only_the_outbox_writes_its_tables() -> None:
    """`deliveries`, `delivery_parts` and `delivered_papers` are the outbox's: only it writes
    them (besides schema.py, which creates them); reads elsewhere are the store's statistics and
    selection's "never twice" (what a reader already received)."""
    root = Path(digest.__file__).parent
    tables = r"(deliveries|delivery_parts|delivered_papers)\b"
    writes = re.compile(rf"(?i)(insert\s+into|update|delete\s+from)\s+{tables}|db\[[\"']{tables}[\"']\]")
    reads = re.compile(rf"(?i)(from|join)\s+{tables}")
    found: dict[str, set[str]] = {"write": set(), "read": set()}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("outbox/"):
            continue
        text = path.read_text()
        found["write"] |= {rel} if writes.search(text) else set()
        found["read"] |= {rel} if reads.search(text) else set()
    assert found["write"] == {"schema.py"}  # its CREATE TABLE statements
    assert found["read"] <= {"schema.py", "digest.py"}
