"""Selection per subscriber (thresholds, order, at-most-once, catch-up, cap) and `preview`."""

from __future__ import annotations

import json

import pytest

from digestbot import digest, render, subscribers
from digestbot.cli import main
from digestbot.models import Announcement, Author, FeedBatch, Paper, Subscriber
from digestbot.outbox import DeliveryHistory
from digestbot.sources.papers import save_batch
from digestbot.store import Store, now_iso

DAY = "2026-08-13"


def add_paper(store: Store, pid: str, date: str = DAY, *, kind: str = "new", version: int = 1,
              scores: dict[str, int] | None = None, title: str | None = None) -> None:
    """A paper announced on `date`, scored for topics at `version` (the announced one)."""
    paper = Paper(id=pid, version=version, title=title or f"Title of {pid}",
                  abstract=f"Abstract of {pid}.", authors=[Author("Ada Lovelace")],
                  categories=["cs.CL"])
    save_batch(store, FeedBatch(source="test", date=date, papers=[paper],
                               announcements=[Announcement(date, pid, kind, version, "test")]))
    for topic, score in (scores or {}).items():
        set_score(store, pid, version, topic, score)


def set_score(store: Store, pid: str, version: int, topic: str, score: int) -> None:
    store.db["scores"].insert(
        {"arxiv_id": pid, "version": version, "topic": topic, "score": score,
         "reason": f"{topic} reason for {pid}", "scorer": "test", "created_at": now_iso()},
        replace=True,
    )


def make_sub(store: Store, address: str = "a@example.org", *, created: str = "2026-08-01",
             topics: dict[str, int] | None = None, **settings) -> Subscriber:
    topics = topics or {"post-training": 60}
    sub = None
    for slug, threshold in topics.items():
        sub = subscribers.add_or_update(store, channel="email", address=address, topics=[slug],
                                        threshold=threshold, **settings)
    store.db["subscribers"].update(sub.id, {"created_at": f"{created}T00:00:00+00:00"})
    return subscribers.get(store, sub.id)


def sent(store: Store, sub: Subscriber, date: str, ids: list[str] = (), status: str = "sent") -> None:
    """Record a delivery as the outbox would, with its papers marked delivered."""
    row_id = store.db["deliveries"].insert(
        {"subscriber_id": sub.id, "digest_date": date, "status": status, "attempts": 1,
         "created_at": now_iso(), "updated_at": now_iso()}).last_pk
    if status == "sent":
        for pid in ids:
            store.db["delivered_papers"].insert(
                {"subscriber_id": sub.id, "arxiv_id": pid, "version": 1, "delivery_id": row_id})


def select(store: Store, sub: Subscriber, date: str):
    """`digest.select` with the history the outbox passes in."""
    return digest.select(store, sub, date, history=DeliveryHistory(store))


def ids(d) -> list[str]:
    return [e.paper.id for e in d.entries] if d else []


def test_thresholds_any_topic_sorted_by_best_score(store: Store) -> None:
    add_paper(store, "2608.00001", scores={"post-training": 90})
    add_paper(store, "2608.00002", scores={"post-training": 59, "agents": 75})
    add_paper(store, "2608.00003", scores={"post-training": 70, "agents": 80})
    add_paper(store, "2608.00005", scores={"post-training": 70})
    add_paper(store, "2608.00004", scores={"post-training": 70})
    add_paper(store, "2608.00006", scores={"agents": 69, "reasoning": 99})
    add_paper(store, "2608.00007")  # never scored
    sub = make_sub(store, topics={"post-training": 60, "agents": 70})
    d = select(store, sub, DAY)
    assert ids(d) == ["2608.00001", "2608.00003", "2608.00002", "2608.00004", "2608.00005"]
    both = d.entries[1]
    assert [(h.topic, h.topic_name, h.score) for h in both.hits] == [
        ("agents", "智能体", 80), ("post-training", "后训练", 70)]
    assert both.hits[0].reason == "agents reason for 2608.00003"
    assert d.entries[2].hits[0].topic == "agents"  # 59 on post-training is not a hit
    assert d.thresholds == {"post-training": 60, "agents": 70}
    assert [t.slug for t in d.topics] == ["post-training", "agents"]
    assert d.more == 0 and d.date == DAY


def test_english_subscriber_gets_english_topic_names(store: Store) -> None:
    add_paper(store, "2608.00001", scores={"post-training": 90})
    sub = make_sub(store, lang="en")
    assert select(store, sub, DAY).entries[0].hits[0].topic_name == "Post-training"


def test_each_paper_at_most_once_ever(store: Store) -> None:
    add_paper(store, "2608.00001", scores={"post-training": 90})
    add_paper(store, "2608.00002", scores={"post-training": 80})
    sub = make_sub(store)
    sent(store, sub, "2026-08-12", ["2608.00001"])
    assert ids(select(store, sub, DAY)) == ["2608.00002"]


def test_replaced_version_only_for_those_who_never_got_the_paper(store: Store) -> None:
    add_paper(store, "2608.00001", "2026-08-10", scores={"post-training": 90})
    add_paper(store, "2608.00001", DAY, kind="replace", version=2, scores={"post-training": 85})
    got_it = make_sub(store, "old@example.org")
    sent(store, got_it, "2026-08-10", ["2608.00001"])
    missed_it = make_sub(store, "new@example.org", created="2026-08-12")
    assert ids(select(store, got_it, DAY)) == []
    d = select(store, missed_it, DAY)
    assert ids(d) == ["2608.00001"]
    entry = d.entries[0]
    assert (entry.announcement.announce_type, entry.announcement.version) == ("replace", 2)
    assert entry.best_score == 85 and entry.paper.version == 2


def test_the_announced_versions_score_counts(store: Store) -> None:
    add_paper(store, "2608.00001", "2026-08-10", scores={"post-training": 90})
    add_paper(store, "2608.00001", DAY, kind="replace", version=2, scores={"post-training": 40})
    sub = make_sub(store, created="2026-08-12")
    assert select(store, sub, DAY) is None
    # Both announcements in the window: the later one decides.
    assert select(store, make_sub(store, "b@example.org", created="2026-08-01"), DAY) is None
    # Not yet scored at v2: the latest scored version stands in.
    add_paper(store, "2608.00002", "2026-08-10", scores={"post-training": 88})
    add_paper(store, "2608.00002", DAY, kind="replace", version=2)
    assert ids(select(store, sub, DAY)) == ["2608.00002"]


def test_catch_up_since_last_sent_digest(store: Store) -> None:
    for day in ("2026-08-10", "2026-08-11", "2026-08-12", DAY):
        add_paper(store, f"2608.{day[-2:]}001", day, scores={"post-training": 80})
    add_paper(store, "2608.14001", "2026-08-14", scores={"post-training": 80})
    sub = make_sub(store)
    sent(store, sub, "2026-08-11", [])
    sent(store, sub, "2026-08-12", [], status="failed")  # a failed one does not count
    d = select(store, sub, DAY)
    # 08-10 was not delivered but is older than the last sent digest; 08-14 is later.
    assert ids(d) == ["2608.12001", "2608.13001"]
    assert {e.announcement.date for e in d.entries} == {"2026-08-12", DAY}


def test_catch_up_is_bounded(store: Store) -> None:
    add_paper(store, "2607.20001", "2026-07-20", scores={"post-training": 80})
    add_paper(store, "2608.05001", "2026-08-05", scores={"post-training": 80})
    add_paper(store, "2608.13001", DAY, scores={"post-training": 80})
    sub = make_sub(store, created="2026-06-01")
    sent(store, sub, "2026-07-01", [])
    assert ids(select(store, sub, DAY)) == ["2608.05001", "2608.13001"]


def test_new_subscriber_gets_the_day_but_nothing_from_before_joining(store: Store) -> None:
    add_paper(store, "2608.11001", "2026-08-11", scores={"post-training": 80})
    add_paper(store, "2608.12001", "2026-08-12", scores={"post-training": 80})
    add_paper(store, "2608.13001", DAY, scores={"post-training": 80})
    assert ids(select(store, make_sub(store, "b@example.org", created="2026-08-12"),
                             DAY)) == ["2608.12001", "2608.13001"]
    # Subscribed after the latest announcement: still that day's digest.
    assert ids(select(store, make_sub(store, "c@example.org", created="2026-08-20"),
                             DAY)) == ["2608.13001"]


def test_cap_counts_the_rest(store: Store) -> None:
    for i in range(5):
        add_paper(store, f"2608.0000{i}", scores={"post-training": 90 - i})
    sub = make_sub(store, max_papers=2)
    d = select(store, sub, DAY)
    assert ids(d) == ["2608.00000", "2608.00001"] and d.more == 3 and d.total == 5


def test_empty_selection_is_none(store: Store) -> None:
    add_paper(store, "2608.00001", scores={"post-training": 30})
    sub = make_sub(store)
    assert select(store, sub, DAY) is None
    assert select(store, sub, "2026-09-01") is None
    subscribers.remove_subscription(store, sub.id, None)
    add_paper(store, "2608.00002", scores={"post-training": 99})
    assert select(store, sub, DAY) is None


def test_rebuild_reproduces_the_planned_digest(store: Store) -> None:
    for i in range(4):
        add_paper(store, f"2608.0000{i}", scores={"post-training": 90 - i, "agents": 75})
    sub = make_sub(store, topics={"post-training": 60, "agents": 70}, max_papers=3)
    planned = select(store, sub, DAY)
    sent(store, sub, DAY, ids(planned))  # as if sent, then the process died before rendering
    subscribers.set_subscription(store, sub.id, "post-training", 95)  # and thresholds changed
    again = digest.rebuild(store, sub, DAY, ids(planned), planned.more)
    assert ids(again) == ids(planned) and again.more == planned.more == 1
    assert again.entries[0].announcement == planned.entries[0].announcement
    assert [h.topic for h in again.entries[0].hits] == ["agents"]
    assert render.render_email(again).subject == "arXiv 每日速递 2026-08-13 · 智能体 等 4 篇"


def test_rebuild_keeps_given_order_and_skips_unknown_ids(store: Store) -> None:
    add_paper(store, "2608.00001", scores={"post-training": 70})
    add_paper(store, "2608.00002", scores={"post-training": 90})
    sub = make_sub(store)
    d = digest.rebuild(store, sub, DAY, ["2608.00001", "2608.99999", "2608.00002"], 0)
    assert ids(d) == ["2608.00001", "2608.00002"]


# -- digestbot preview ------------------------------------------------------------------------


@pytest.fixture
def previewable(store: Store) -> Subscriber:
    add_paper(store, "2608.00001", scores={"post-training": 90},
              title="Robust <script>alert(1)</script> & DPO")
    add_paper(store, "2608.00002", scores={"post-training": 70})
    store.db["enrichments"].insert({
        "arxiv_id": "2608.00001", "version": 1, "prompt_version": "test", "model": "test-model",
        "title_zh": "稳健的直接偏好优化", "summary_zh": "一句话总结", "summary_en": "One line.",
        "abstract_zh": "中文摘要。", "institutions": '[{"name": "Peking University", "name_zh": "北京大学"}]',
        "created_at": now_iso()})
    return make_sub(store)


def test_preview_text_and_html_send_nothing(store: Store, previewable: Subscriber, capsys,
                                           monkeypatch) -> None:
    monkeypatch.setenv("DIGESTBOT_PUBLIC_URL", "https://digest.example")
    monkeypatch.setenv("DIGESTBOT_SECRET", "preview-test-secret")
    assert main(["preview", "--subscriber", str(previewable.id)]) == 0
    out = capsys.readouterr().out
    assert f"https://digest.example/unsubscribe?token={previewable.token}" in out
    # The footer's manage link, as build_message puts it in the real email (needs the secret).
    assert "https://digest.example/preferences?token=" in out
    assert out.startswith("Subject: arXiv 每日速递 2026-08-13 · 后训练 等 2 篇")
    assert out.index("2608.00001") < out.index("2608.00002")
    assert "Robust <script>alert(1)</script> & DPO" in out
    # Enriched paper in Chinese; the other one in English only.
    for field in ("稳健的直接偏好优化", "AI总结: 一句话总结", "Peking University(北京大学)", "中文摘要。"):
        assert field in out
    assert out.count("AI总结") == 1
    assert main(["preview", "--subscriber", str(previewable.id), "--format", "html",
                 "--date", DAY]) == 0
    html = capsys.readouterr().out
    assert html.lstrip().startswith("<!DOCTYPE html>") and "&lt;script&gt;" in html
    assert store.db["deliveries"].count == 0 and store.db["delivered_papers"].count == 0


def test_preview_nothing_to_show(store: Store, previewable: Subscriber, capsys) -> None:
    assert main(["preview", "--subscriber", str(previewable.id), "--date", "2026-09-01"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no new papers for subscriber #1 on 2026-09-01" in out
    assert main(["preview", "--subscriber", "99"]) == 2
    assert "no subscriber #99" in capsys.readouterr().err


def test_preview_chat_formats(previewable: Subscriber, capsys) -> None:
    assert main(["preview", "--subscriber", "1", "--format", "telegram"]) == 0
    out = capsys.readouterr().out
    assert "Robust &lt;script&gt;alert(1)&lt;/script&gt; &amp; DPO" in out and "<script>" not in out
    assert main(["preview", "--subscriber", "1", "--format", "slack"]) == 0
    first = json.loads(capsys.readouterr().out.split("────────")[0])
    assert first["blocks"][0]["type"] == "header" and first["text"]
    assert "Robust &lt;script&gt;alert(1)&lt;/script&gt; &amp; DPO" in json.dumps(first)


def test_preview_of_a_planned_day_shows_what_the_outbox_holds(store: Store, previewable,
                                                             capsys) -> None:
    sent(store, previewable, DAY, ["2608.00002"])
    store.db["deliveries"].update(1, {"paper_ids": '["2608.00002"]', "more": 4})
    assert main(["preview", "--subscriber", "1"]) == 0
    captured = capsys.readouterr()
    assert "2608.00002" in captured.out and "2608.00001" not in captured.out
    assert "另有 4 篇" in captured.out and "this digest is sent" in captured.err
