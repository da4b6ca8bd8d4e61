"""Followed authors and keywords in and out, end to end through the CLI (issue 16 items 1-2):
storage, selection, the reason in every rendering, removal with the reader."""

from __future__ import annotations

import pytest

from digestbot import digest, render, subscribers
from digestbot.cli import main
from digestbot.models import Announcement, Author, FeedBatch, Paper, Subscriber
from digestbot.outbox import DeliveryHistory
from digestbot.render.slack import render_slack
from digestbot.render.telegram import render_telegram
from digestbot.sources.papers import save_batch
from digestbot.store import Store
from digestbot.subscribers import profile
from tests.test_digest import DAY, make_sub, set_score

HOSTILE = "<script>alert(1)</script> Bengio"


def paper(store: Store, pid: str, *, authors: list[str], title: str = "", abstract: str = "",
          score: int | None = None, date: str = DAY) -> None:
    save_batch(store, FeedBatch(source="test", date=date, papers=[
        Paper(id=pid, version=1, title=title or f"Title of {pid}",
              abstract=abstract or f"Abstract of {pid}.",
              authors=[Author(a) for a in authors], categories=["cs.LG"])],
        announcements=[Announcement(date, pid, "new", 1, "test")]))
    if score is not None:
        set_score(store, pid, 1, "post-training", score)


def select(store: Store, sub: Subscriber):
    return digest.select(store, sub, DAY, history=DeliveryHistory(store))


def ids(d) -> list[str]:
    return [e.paper.id for e in d.entries] if d else []


@pytest.fixture
def day(store: Store) -> Subscriber:
    paper(store, "2608.00001", authors=["Y. Bengio", "Ada Lovelace"], score=10)
    paper(store, "2608.00002", authors=["Samy Bengio"], score=10)
    paper(store, "2608.00003", authors=["Ada Lovelace"], title="Speech models at scale", score=90)
    paper(store, "2608.00004", authors=["Ada Lovelace"], abstract="We align ＬＬＭs with DPO.",
          score=80)
    paper(store, "2608.00005", authors=["Ada Lovelace"], score=70)
    return make_sub(store)


def test_cli_follow_brings_the_paper_first_with_its_reason(store: Store, day: Subscriber,
                                                          capsys) -> None:
    assert ids(select(store, day)) == ["2608.00003", "2608.00004", "2608.00005"]
    assert main(["sub", "follow", str(day.id), "--author", "Bengio, Yoshua"]) == 0
    assert "Bengio, Yoshua" in capsys.readouterr().out
    d = select(store, day)
    assert ids(d) == ["2608.00001", "2608.00003", "2608.00004", "2608.00005"]
    assert d.entries[0].hits == []
    assert [(a.followed, a.spelling) for a in d.entries[0].authors] == [("Bengio, Yoshua", "Y. Bengio")]
    text = render.render_email(d).text
    assert "关注作者: Bengio, Yoshua (署名 Y. Bengio)" in text
    # Following the same person under another spelling keeps one entry.
    assert main(["sub", "follow", str(day.id), "--author", "yoshua bengio"]) == 0
    assert "already followed" in capsys.readouterr().out
    assert profile.get_profile(store, day.id).follows == ("Bengio, Yoshua",)
    assert main(["sub", "unfollow", str(day.id), "--author", "Yoshua Bengio"]) == 0
    assert ids(select(store, day))[0] == "2608.00003"


def test_cli_keywords_must_and_exclude(store: Store, day: Subscriber, capsys) -> None:
    assert main(["sub", "keywords", str(day.id), "--exclude", "ＳＰＥＥＣＨ"]) == 0
    assert ids(select(store, day)) == ["2608.00004", "2608.00005"]
    assert main(["sub", "keywords", str(day.id), "--must", "llm", "--must", "强化学习"]) == 0
    out = capsys.readouterr().out
    assert "ＳＰＥＥＣＨ" in out and "强化学习" in out
    assert ids(select(store, day)) == ["2608.00004"]
    # A followed author's paper comes whatever the keywords say.
    assert main(["sub", "follow", str(day.id), "--author", "Samy Bengio"]) == 0
    assert ids(select(store, day)) == ["2608.00002", "2608.00004"]
    assert main(["sub", "keywords", str(day.id), "--clear", "all"]) == 0
    assert profile.get_profile(store, day.id).must == ()
    assert ids(select(store, day)) == ["2608.00002", "2608.00003", "2608.00004", "2608.00005"]


def test_cli_refuses_bad_input_and_changes_nothing(store: Store, day: Subscriber, capsys) -> None:
    assert main(["sub", "keywords", str(day.id), "--must", "ok", "--exclude", "..."]) == 2
    assert main(["sub", "follow", str(day.id), "--author", "x" * 200]) == 2
    assert main(["sub", "follow", "999", "--author", "Yoshua Bengio"]) == 2
    assert main(["sub", "unfollow", str(day.id)]) == 2
    assert profile.get_profile(store, day.id).empty


def test_a_profile_change_counts_as_a_subscriber_change(store: Store, day: Subscriber) -> None:
    before = subscribers.fingerprint(store)
    profile.add_keywords(store, day.id, "exclude", ["speech"])
    assert subscribers.fingerprint(store) != before


def test_rebuild_keeps_the_reason_and_removal_forgets_the_profile(store: Store,
                                                                   day: Subscriber) -> None:
    profile.follow(store, day.id, ["Yoshua Bengio"])
    profile.add_keywords(store, day.id, "must", ["dpo"])
    d = digest.rebuild(store, day, DAY, ["2608.00001", "2608.00004"], more=0)
    assert d.entries[0].authors[0].spelling == "Y. Bengio"
    assert subscribers.remove(store, day.id)
    for table in ("followed_authors", "keyword_filters"):
        assert store.db[table].count == 0


def test_hostile_followed_name_is_escaped_in_every_rendering(store: Store, day: Subscriber) -> None:
    paper(store, "2608.00009", authors=[HOSTILE], score=5)
    profile.follow(store, day.id, [HOSTILE])
    d = select(store, day)
    assert ids(d)[0] == "2608.00009"
    html = render.render_email(d).html
    assert "<script>" not in html and "&lt;script&gt;" in html
    tg = "".join(render_telegram(d))
    assert "<script>" not in tg and "&lt;script&gt;" in tg
    slack = str([m.blocks for m in render_slack(d)])
    assert "<script>" not in slack and "&lt;script&gt;" in slack


def test_cli_quoted_name_drops_a_false_match_through_an_initial(store: Store, day: Subscriber,
                                                                capsys) -> None:
    assert main(["sub", "follow", str(day.id), "--author", "Yasmin Bengio"]) == 0
    d = select(store, day)
    assert [(a.followed, a.spelling) for a in d.entries[0].authors] == [("Yasmin Bengio", "Y. Bengio")]
    assert main(["sub", "unfollow", str(day.id), "--author", "Yasmin Bengio"]) == 0
    assert main(["sub", "follow", str(day.id), "--author", '"Yasmin Bengio"']) == 0
    assert ids(select(store, day)) == ["2608.00003", "2608.00004", "2608.00005"]
