"""A timeline, not a batch: a reader's digest leaves as soon as every paper that could be in
it is final for them, the earliest-due readers' papers are enriched first, nobody gets a
partial digest, nothing goes twice, and everything a reader will receive is enriched."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest

from digestbot import subscribers
from digestbot.clock import ET
from digestbot.config import Settings, load_settings
from digestbot.enrich import progress
from digestbot.enrich.pipeline import run_pipeline
from digestbot.models import Announcement, Author, FeedBatch, Paper
from digestbot.outbox import DeliveryReport
from digestbot.outbox.plan import plan_into
from digestbot.outbox.timeline import reading_order
from digestbot.scheduler import Service
from digestbot.sources.papers import save_batch
from digestbot.store import Store
from tests.fakes.arxiv_day import paper_id, served_day
from tests.fakes.openai import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.test_enrich import DAY, add_papers
from tests.test_pdf import WITH_AFFILIATIONS, PdfHost, pdfs  # noqa: F401 (a fixture)
from tests.test_scheduler_service import ManualClock

# Post-training papers first, so id order alone would enrich them first.
TITLES = ["Post-training with GRPO", "Post-training for small models", "Post-training recipes",
          "Agents that plan", "Agents that browse"]
PT, AGENTS = ["2608.00001", "2608.00002", "2608.00003"], ["2608.00004", "2608.00005"]
# Both readers are due by then (08:00 and 09:00 in Beijing on the digest's day).
LATER = datetime(2026, 8, 13, 10, 0, tzinfo=ET)


def enrichments(store: Store) -> set[str]:
    return {r["arxiv_id"] for r in store.db.query("select arxiv_id from enrichments")}


def rows(store: Store) -> dict[int, list[str]]:
    return {r["subscriber_id"]: json.loads(r["paper_ids"])
            for r in store.db.query("select * from deliveries order by id")}


def two_readers(store: Store) -> tuple[int, int]:
    early = subscribers.add_or_update(store, channel="email", address="early@example.org",
                                      topics=["agents"], tz="Asia/Shanghai", send_at="08:00")
    late = subscribers.add_or_update(store, channel="email", address="late@example.org",
                                     topics=["post-training"], tz="Asia/Shanghai", send_at="09:00")
    return early.id, late.id


@pytest.fixture
def one_at_a_time(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, pdfs: PdfHost) -> Settings:  # noqa: F811
    """The LLM answers one request at a time and every paper needs its PDF: the order of the
    work is the order of the events."""
    monkeypatch.setenv("DIGESTBOT_LLM_CONCURRENCY", "1")
    for pid in [*PT, *AGENTS]:
        pdfs.files[f"/pdf/{pid}v1"] = WITH_AFFILIATIONS
    return load_settings()


def test_the_earliest_due_readers_papers_are_enriched_first(
    store: Store, fake: FakeOpenAI, one_at_a_time: Settings,
) -> None:
    # Affiliations from the feed: no page to wait for, so the model takes them in turn.
    add_papers(store, TITLES)
    early, late = two_readers(store)
    asyncio.run(run_pipeline(one_at_a_time, store, priority=reading_order))
    enriched = [b["messages"][1]["content"] for b in fake.bodies
                if not b["messages"][1]["content"].startswith("Topics to score:")]
    order = [next(t for t in TITLES if f"Title: {t}\n" in text) for text in enriched]
    assert order == ["Agents that plan", "Agents that browse", "Post-training with GRPO",
                     "Post-training for small models", "Post-training recipes"]
    assert reading_order(store, DAY) == [*AGENTS, *PT]


def test_an_early_reader_is_planned_before_the_rest_of_the_day_is_enriched(
    store: Store, fake: FakeOpenAI, one_at_a_time: Settings,
) -> None:
    add_papers(store, TITLES, affiliations=False)
    early, late = two_readers(store)
    events: list[tuple[str, object]] = []

    def on_progress() -> None:  # what a delivery tick does while the pipeline runs
        report = DeliveryReport()
        plan_into(store, one_at_a_time, DAY, now=LATER, force=False, report=report, strict=True)
        for sub_id, paper_ids in rows(store).items():
            if ("row", sub_id) not in [e[:2] for e in events]:
                events.append(("row", sub_id, paper_ids, enrichments(store)))
        events.append(("unready", report.unready))

    asyncio.run(run_pipeline(one_at_a_time, store, priority=reading_order,
                             on_progress=on_progress))
    planned = [e for e in events if e[0] == "row"]
    assert [e[1] for e in planned] == [early, late]
    # The early reader's row was written while post-training papers were not enriched yet…
    _, _, early_papers, enriched_then = planned[0]
    assert sorted(early_papers) == AGENTS and not set(PT) <= enriched_then
    # …and nobody's row before every paper of theirs was final.
    for _, _, paper_ids, enriched_then in planned:
        assert set(paper_ids) <= enriched_then
    assert ("unready", 2) in events  # right after scoring, both waited


class Died(Exception):
    """The process dies here (a crash, a kill) in the middle of the enrichment."""


def test_no_partial_digest_after_a_pipeline_that_died_and_nothing_twice_after_a_rerun(
    store: Store, fake: FakeOpenAI, one_at_a_time: Settings,
) -> None:
    add_papers(store, TITLES, affiliations=False)
    early, late = two_readers(store)
    finals = 0

    def die_after_the_agents() -> None:
        nonlocal finals
        finals += 1
        if finals == 3:  # scored, then two papers final: the agents ones
            raise Died

    with pytest.raises(ExceptionGroup) as died:  # raised inside the enrichment's task group
        asyncio.run(run_pipeline(one_at_a_time, store, priority=reading_order,
                                 on_progress=die_after_the_agents))
    assert died.value.subgroup(Died) is not None
    day = progress.get(store, DAY)
    assert day is not None and not day.done and set(PT) <= day.pending
    # `digestbot send` meanwhile (not strict: no pipeline runs): only the early reader.
    report = DeliveryReport()
    plan_into(store, one_at_a_time, DAY, now=LATER, force=False, report=report)
    assert list(rows(store)) == [early] and report.unready == 1

    asyncio.run(run_pipeline(one_at_a_time, store, priority=reading_order))
    again = DeliveryReport()
    plan_into(store, one_at_a_time, DAY, now=LATER, force=False, report=again)
    assert rows(store) == {early: AGENTS, late: PT}
    plan_into(store, one_at_a_time, DAY, now=LATER, force=False, report=DeliveryReport())
    assert len(rows(store)) == 2
    twice = list(store.db.query("select subscriber_id, arxiv_id, count(*) n from delivered_papers"
                                " group by subscriber_id, arxiv_id having n > 1"))
    assert twice == []


def test_a_paper_that_comes_only_through_a_followed_author_is_enriched(
    store: Store, fake: FakeOpenAI, one_at_a_time: Settings,
) -> None:
    add_papers(store, TITLES, affiliations=False)
    odd = Paper(id="2608.00099", version=1, title="Crystal lattice vibrations in granite",
                abstract="We measure phonon spectra of granite at low temperature.",
                authors=[Author("Grace Hopper")], categories=["cs.CL"])
    save_batch(store, FeedBatch(source="test", date=DAY, papers=[odd], announcements=[
        Announcement(DAY, odd.id, "new", 1, "test")]))
    early, _late = two_readers(store)
    subscribers.profile.follow(store, early, ["Grace Hopper"])
    asyncio.run(run_pipeline(one_at_a_time, store, priority=reading_order))
    assert odd.id in enrichments(store)
    plan_into(store, one_at_a_time, DAY, now=LATER, force=False, report=DeliveryReport())
    assert odd.id in rows(store)[early]


def test_a_paper_that_comes_only_through_a_library_is_enriched(
    store: Store, fake: FakeOpenAI, one_at_a_time: Settings,
) -> None:
    """The reading order is the digest's own selection, so a paper only a reader's library
    brings is enriched (translated, summarised) before that reader's digest is planned."""
    add_papers(store, TITLES, affiliations=False)
    odd = Paper(id="2608.00098", version=1,
                title="Phonon spectra of granite at low temperature",
                abstract="We measure lattice vibrations of granite samples from three quarries "
                         "with inelastic neutron scattering at 10 kelvin.",
                categories=["cs.CL"])
    save_batch(store, FeedBatch(source="test", date=DAY, papers=[odd], announcements=[
        Announcement(DAY, odd.id, "new", 1, "test")]))
    early, _late = two_readers(store)
    subscribers.library.replace_library(store, early, "bibtex", "rocks.bib", [
        subscribers.library.Item("k1", "Phonon spectra of granite at low temperatures",
                                 "Lattice vibrations of granite measured by neutron scattering."),
    ])
    asyncio.run(run_pipeline(one_at_a_time, store, priority=reading_order))
    assert odd.id in enrichments(store)
    plan_into(store, one_at_a_time, DAY, now=LATER, force=False, report=DeliveryReport())
    assert odd.id in rows(store)[early]


async def test_the_service_sends_an_early_digest_while_the_pipeline_still_works(
    monkeypatch: pytest.MonkeyPatch, store: Store, fake: FakeOpenAI, tmp_path: Path,
) -> None:
    """End to end through `Service`: the last post-training paper's enrichment is held by the
    model until the early reader's email is out (or 20 s pass, which fails the test)."""
    with served_day(monkeypatch, on_topic=3, off_topic=2) as arxiv:
        settings = load_settings()
        held = paper_id("2026-11-19", 2)
        released: list[bool] = []
        answer = fake.answer

        def slow_answer(body: dict) -> dict:
            text = body["messages"][1]["content"]
            if not text.startswith("Topics to score:") and "part 2\n" in text:
                released.append(_wait_for_a_sent_row(settings.db, 20.0))
            return answer(body)

        monkeypatch.setattr(fake, "answer", slow_answer)
        one = subscribers.add_or_update(store, channel="email", address="one@example.org",
                                        topics=["post-training"], tz="Asia/Shanghai",
                                        send_at="08:30")
        subscribers.update_settings(store, one.id, max_papers=1)
        everything = subscribers.add_or_update(store, channel="email", address="all@example.org",
                                               topics=["post-training"], tz="Asia/Shanghai",
                                               send_at="08:30")
        announce = datetime(2026, 11, 18, 20, 0, tzinfo=ET)  # 09:00 in Beijing: both due
        arxiv.publish("2026-11-19")
        service = Service(settings, store, ManualClock(announce))
        await service.fetch_cycle()
        assert released == [True]
        sent = {r["subscriber_id"]: r for r in store.db.query(
            "select * from deliveries where status = 'sent'")}
        assert set(sent) == {one.id, everything.id}
        assert sent[one.id]["id"] < sent[everything.id]["id"]
        assert held in sent[everything.id]["paper_ids"]
        mails = {m["To"]: m for m in (
            email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            for f in Path(settings.outbox).glob("*.eml"))}
        assert set(mails) == {"one@example.org", "all@example.org"}
        # The later digest waited for the held paper: it carries its Chinese title.
        text = mails["all@example.org"].get_body(("plain",)).get_content()
        assert "中文标题:Direct Preference Optimization for Post-Training" in text
        assert text.count("中文标题:") == 3


def _wait_for_a_sent_row(db: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db, timeout=5) as conn:
            if conn.execute("select count(*) from deliveries where status = 'sent'").fetchone()[0]:
                return True
        time.sleep(0.1)
    return False



def test_a_partial_run_does_not_tell_delivery_the_day_is_final(
    store: Store, settings: Settings,
) -> None:
    add_papers(store, TITLES)
    two_readers(store)
    asyncio.run(run_pipeline(settings, store, limit=2, priority=reading_order))
    assert progress.get(store, DAY) is None
    asyncio.run(run_pipeline(settings, store, priority=reading_order))
    day = progress.get(store, DAY)
    assert day is not None and day.done and {"agents", "post-training"} <= day.scored


async def test_email_does_not_wait_for_telegrams_pace(
    monkeypatch: pytest.MonkeyPatch, store: Store, tmp_path: Path,
) -> None:
    """A Telegram digest that takes long to go out (every Bot API answer after 1 s) does not
    hold up an email digest planned by a later tick: each channel drains on its own."""
    with served_day(monkeypatch, on_topic=3, off_topic=2) as arxiv, FakeTelegram() as tg:
        inner = tg.server.handle

        def slow(req):
            resp = inner(req)
            resp.delay = max(resp.delay, 1.0)
            return resp

        tg.server.handle = slow
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", tg.token)
        monkeypatch.setenv("DIGESTBOT_TELEGRAM_API_URL", tg.base_url)
        settings = load_settings()
        chat = subscribers.add_or_update(store, channel="telegram", address="4242",
                                         topics=["post-training"], tz="Asia/Shanghai",
                                         send_at="08:30")
        mail = subscribers.add_or_update(store, channel="email", address="late@example.org",
                                         topics=["post-training"], tz="Asia/Shanghai",
                                         send_at="10:00")
        announce = datetime(2026, 11, 18, 20, 0, tzinfo=ET)  # 09:00 in Beijing
        arxiv.publish("2026-11-19")
        clock = ManualClock(announce)
        service = Service(settings, store, clock)
        evening = asyncio.create_task(service.fetch_cycle())
        while not tg.sent:  # the Telegram digest is on its way
            await asyncio.sleep(0.05)
        clock.set(datetime(2026, 11, 18, 21, 0, tzinfo=ET))  # 10:00 in Beijing
        await service.deliver_tick()
        assert not evening.done()  # Telegram is still sending…
        assert [p.name for p in Path(settings.outbox).glob("*.eml")]  # …the email is out
        await evening
        sent = {r["subscriber_id"] for r in store.db.query(
            "select subscriber_id from deliveries where status = 'sent'")}
        assert sent == {chat.id, mail.id}
