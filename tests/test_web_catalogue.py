"""Every catalogue topic on the public pages: the pipeline scores the topics nobody follows with
the offline scorer, the pages name the scorer, a day without scores says "未评分", and an LLM
score is never replaced by an offline one."""

from __future__ import annotations

import re

from digestbot.config import load_settings
from digestbot.enrich import offline
from digestbot.enrich.pipeline import run_pipeline
from digestbot.models import Announcement, Author, FeedBatch, Paper
from digestbot.sources.papers import save_batch
from digestbot.store import Store, now_iso
from tests.fakes.site import running_site

DAY = "2026-08-13"
AGENT_TITLE = "Autonomous LLM agents with tool use and multi-agent planning"


def _add(store: Store) -> None:
    papers = [
        Paper(id="2608.00001", version=1, title=AGENT_TITLE,
              abstract="We build LLM agents that call tools; agentic planning with multi-agent "
                       "collaboration beats single agents.",
              authors=[Author("Ada Lovelace", ("Tsinghua University",))], categories=["cs.CL"]),
        Paper(id="2608.00002", version=1, title="Crystal lattice vibrations in granite",
              abstract="We measure phonon spectra of granite.",
              authors=[Author("Ada Lovelace", ("Tsinghua University",))], categories=["cs.CL"]),
    ]
    save_batch(store, FeedBatch(source="test", date=DAY, papers=papers, announcements=[
        Announcement(DAY, p.id, "new", 1, "test") for p in papers]))


def _count(html: str, slug: str) -> str:
    m = re.search(r'href="/d/' + DAY + "/" + slug + r'">[^<]*</a> — ([^<]*)<', html)
    assert m, slug
    return m.group(1).strip()


async def test_a_topic_nobody_follows_shows_its_offline_count_and_scorer() -> None:
    async with running_site() as site:
        _add(site.store)
        report = await run_pipeline(load_settings(), site.store)  # no key, nobody subscribed
        assert report.topics == 0 and report.catalogue_topics >= 30
        rows = list(site.store.db.query("select distinct topic, scorer from scores"))
        assert {r["scorer"] for r in rows} == {offline.SCORER}
        assert len({r["topic"] for r in rows}) == report.catalogue_topics
        index = (await site.client.get(f"/d/{DAY}")).text
        assert _count(index, "agents") == "1 篇"
        assert _count(index, "pretraining") == "0 篇"  # scored, and nothing passed
        assert "未评分" not in index and "离线评分 / offline scorer" in index
        page = (await site.client.get(f"/d/{DAY}/agents")).text
        assert "收录 1 篇" in page and "离线评分 / offline scorer" in page and "2608.00001" in page


async def test_an_unscored_day_says_not_scored() -> None:
    async with running_site() as site:
        _add(site.store)  # announced, but the pipeline has not run
        index = (await site.client.get(f"/d/{DAY}")).text
        assert _count(index, "agents") == "未评分"
        assert " 0 篇" not in index
        page = await site.client.get(f"/d/{DAY}/agents")
        assert page.status_code == 200
        assert "未评分" in page.text and "收录 0 篇" not in page.text


async def test_an_llm_score_is_never_replaced_by_an_offline_one() -> None:
    async with running_site() as site:
        _add(site.store)
        # Scored by the model while someone followed agents; that reader has since left.
        site.store.db["scores"].insert({
            "arxiv_id": "2608.00001", "version": 1, "topic": "agents", "score": 97,
            "reason": "model reason", "scorer": "llm:test-model", "created_at": now_iso()})
        await run_pipeline(load_settings(), site.store)
        row = site.store.db["scores"].get(("2608.00001", 1, "agents"))
        assert (row["scorer"], row["score"], row["reason"]) == ("llm:test-model", 97, "model reason")
        # The other paper had no agents score: it got an offline one.
        assert site.store.db["scores"].get(("2608.00002", 1, "agents"))["scorer"] == offline.SCORER
        index = (await site.client.get(f"/d/{DAY}")).text
        # Most of the day's agents scores came from the model, one from the offline scorer.
        assert "模型评分 / model test-model + 离线评分 / offline scorer" in index
        await run_pipeline(load_settings(), site.store, offline=True)
        assert site.store.db["scores"].get(("2608.00001", 1, "agents"))["scorer"] == "llm:test-model"
