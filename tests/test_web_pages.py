"""The daily pages and the Atom feed over HTTP against the running app."""

from __future__ import annotations

import json
import re

from lxml import etree

from digestbot import topics
from digestbot.store import now_iso
from tests.fakes.digests import DAY, NEXT_DAY, add_paper
from tests.fakes.site import running_site

ATOM = "{http://www.w3.org/2005/Atom}"
HOSTILE = "<script>alert(1)</script> & $\\Delta$ attention"


def _seed(store) -> None:
    add_paper(store, "2608.00001", 72)
    add_paper(store, "2608.00002", 95, title=HOSTILE)
    add_paper(store, "2608.00003", 40)  # under the page's 60%
    add_paper(store, "2608.00004", 88, topic="agents")
    add_paper(store, "2608.00005", 66, date=NEXT_DAY)
    store.db["enrichments"].insert({
        "arxiv_id": "2608.00002", "version": 1, "prompt_version": "t", "model": "test-model",
        "title_zh": "注意力的中文标题", "summary_zh": "一句话总结。", "summary_en": "One line.",
        "abstract_zh": "中文摘要全文。", "created_at": now_iso(),
        "institutions": json.dumps([{"name": "Tsinghua University", "name_zh": "清华大学"}]),
    })
    store.db["papers"].update("2608.00002", {"comment": "Accepted by TPAMI 2026",
                                             "categories": json.dumps(["cs.AI", "cs.CL"])})
    store.db["announcements"].update((DAY, "2608.00001"), {"announce_type": "replace"})


async def test_topic_day_page_is_the_seed_listing() -> None:
    async with running_site() as site:
        _seed(site.store)
        r = await site.client.get(f"/d/{DAY}/post-training")
        assert r.status_code == 200
        assert r.headers["cache-control"].startswith("public")
        html = r.text
        topic = topics.get_topic("post-training")
        group = next(g for a in topics.load_catalogue().areas for g in a.groups
                     if any(t.slug == topic.slug for t in g.topics))
        # Header: area, group, description, categories, count.
        for text in (topic.area, group.name_zh, group.description, ", ".join(topic.categories),
                     "收录 2 篇"):
            assert text in html, text
        # Sorted by match; the paper under 60% is not listed; the other topic's paper neither.
        assert html.index("2608.00002") < html.index("2608.00001")
        assert "2608.00003" not in html and "2608.00004" not in html
        # Every seed field of the enriched paper, abstracts folded.
        for text in ("95%", "新提交", "注意力的中文标题", "Ada Lovelace", "清华大学", "专题命中",
                     "reason for 2608.00002", "一句话总结。", "中文摘要全文。", "<details>",
                     "https://arxiv.org/pdf/2608.00002v1"):
            assert text in html, text
        assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in html
        # …each in the seed entry's order, inside that paper's own entry.
        entry = html.split('<article class="entry">')[1].split("</article>")[0]
        seed_order = ["2608.00002", DAY, "cs.AI cs.CL", "新提交", "95%", "&lt;script&gt;alert(1)",
                      "注意力的中文标题", "Ada Lovelace", "发表机构", "Tsinghua University(清华大学)",
                      "专题命中", "reason for 2608.00002", "AI总结", "一句话总结。", "Comments",
                      "Accepted by TPAMI 2026", "<details>", "AI中文摘要", "中文摘要全文。",
                      "英文摘要", "We study 2608.00002."]
        places = [entry.find(text) for text in seed_order]
        assert -1 not in places and places == sorted(places), list(zip(seed_order, places, strict=True))
        assert "版本更新" in html.split('<article class="entry">')[2]  # a replaced paper
        # Picker: the next announcement day, same topic; and the Atom link.
        assert f'href="/d/{NEXT_DAY}/post-training"' in html
        assert 'href="/feed/post-training.xml"' in html
        assert "<script" not in html.replace("&lt;script", "")  # no JavaScript on day pages

        lower = await site.client.get(f"/d/{DAY}/post-training?min=30")
        assert "2608.00003" in lower.text and "收录 3 篇" in lower.text


async def test_day_overview_counts_and_hides_custom_topics() -> None:
    async with running_site() as site:
        _seed(site.store)
        custom = topics.custom_topic(site.store, "secret interest of one reader")
        add_paper(site.store, "2608.00009", 99, topic=custom.slug)
        r = await site.client.get(f"/d/{DAY}")
        assert r.status_code == 200
        counts = dict(re.findall(r'href="/d/' + DAY + r'/([a-z0-9-]+)">[^<]*</a> — (\d+) 篇', r.text))
        assert counts["post-training"] == "2" and counts["agents"] == "1"
        assert counts["post-training"] == "2" and "pretraining" not in counts
        # Never scored that day is not "0 篇": it says so.
        assert re.search(r'/pretraining">[^<]*</a> — 未评分', r.text)
        assert "secret interest" not in r.text and custom.slug not in r.text
        # …though a custom topic's page is there for whoever has its address.
        assert (await site.client.get(f"/d/{DAY}/{custom.slug}")).status_code == 200

        home = await site.client.get("/")
        assert f'href="/d/{NEXT_DAY}/post-training"' in home.text  # the latest day's overview


async def test_picker_names_and_missing_pages() -> None:
    async with running_site() as site:
        _seed(site.store)
        c = site.client
        r = await c.get(f"/d?date={DAY}&topic=post-training")
        assert r.status_code == 303 and r.headers["location"] == f"/d/{DAY}/post-training"
        r = await c.get("/d?topic=后训练")
        assert r.headers["location"] == f"/d/{NEXT_DAY}/post-training"  # latest day by default
        r = await c.get(f"/d/{DAY}/后训练")
        assert r.status_code == 301 and r.headers["location"] == f"/d/{DAY}/post-training"
        assert (await c.get("/d/2026-02-30")).status_code == 404
        missing = await c.get(f"/d/{DAY}/no-such-topic")
        assert missing.status_code == 404 and "没有这个页面" in missing.text
        assert "退订" not in missing.text  # not the emailed-link page
        holiday = await c.get("/d/2026-08-15/post-training")
        assert holiday.status_code == 404 and "没有 arXiv 公告" in holiday.text
        assert (await c.get("/feed/no-such-topic.xml")).status_code == 404


async def test_atom_feed_is_valid_and_escaped() -> None:
    async with running_site() as site:
        _seed(site.store)
        r = await site.client.get("/feed/post-training.xml")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/atom+xml")
        feed = etree.fromstring(r.content)  # well-formed XML or this raises
        assert feed.tag == f"{ATOM}feed"
        for name in ("id", "title", "updated", "author"):
            assert feed.find(f"{ATOM}{name}") is not None, name
        assert feed.find(f"{ATOM}link[@rel='self']").get("href") == f"{site.url}/feed/post-training.xml"
        assert feed.findtext(f"{ATOM}updated") == f"{NEXT_DAY}T00:00:00Z"
        alternate = feed.find(f"{ATOM}link[@rel='alternate']").get("href")
        assert alternate == f"{site.url}/d/{NEXT_DAY}/post-training"
        entries = feed.findall(f"{ATOM}entry")
        # Newest day first, then by match.
        assert [e.find(f"{ATOM}link[@rel='alternate']").get("href") for e in entries] == [
            "https://arxiv.org/abs/2608.00005", "https://arxiv.org/abs/2608.00002",
            "https://arxiv.org/abs/2608.00001"]
        ids = [e.findtext(f"{ATOM}id") for e in entries]
        assert len(set(ids)) == 3
        for e in entries:
            for name in ("id", "title", "updated"):
                assert e.findtext(f"{ATOM}{name}"), name
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00Z", e.findtext(f"{ATOM}updated"))
        hostile = entries[1]
        # The title is text: the parser gives back exactly the characters we stored.
        assert HOSTILE in hostile.findtext(f"{ATOM}title")
        content = hostile.find(f"{ATOM}content")
        assert content.get("type") == "html"
        assert "&lt;script&gt;" in content.text and "<details>" in content.text
        assert b"<script>" not in r.content


async def test_empty_feed_is_valid_and_links_home() -> None:
    async with running_site() as site:
        r = await site.client.get("/feed/pretraining.xml")
        assert r.status_code == 200
        feed = etree.fromstring(r.content)
        assert feed.findall(f"{ATOM}entry") == []
        assert feed.findtext(f"{ATOM}updated") == "1970-01-01T00:00:00Z"
        home = feed.find(f"{ATOM}link[@rel='alternate']").get("href")
        assert home == f"{site.url}/"
        assert (await site.client.get(home)).status_code == 200
