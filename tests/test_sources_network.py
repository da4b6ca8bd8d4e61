"""Network fetches against a fake arXiv on 127.0.0.1, through httpx and the real `arxiv` client."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import pytest

from digestbot.errors import FeedError, NetworkError
from digestbot.sources.api import submission_announced
from digestbot.sources.arxiv import SAMPLE_FEED, fetch
from digestbot.sources.papers import announcement_dates, announcements_on, get_paper
from tests.fakes.arxiv import FakeArxiv, fixture
from tests.fakes.http import Response

# Tue 17 Nov 2026 21:00 ET: Tuesday evening's batch (labelled Wed 18 Nov) is out.
NIGHT = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)
# Wed 18 Nov 2026 21:00 ET: the next batch (Thu 19 Nov) should be out.
NEXT_NIGHT = datetime(2026, 11, 19, 2, 0, tzinfo=UTC)


@pytest.fixture
def arxiv_fake():
    fake = FakeArxiv(listings={"cs.CL": fixture("listing_cs.CL_new.html")},
                     rss=SAMPLE_FEED.read_bytes(), api=fixture("api_answer.xml"))
    with fake.serve() as server:
        yield fake, server


def point(settings, url: str, **extra):
    return dataclasses.replace(
        settings, categories=["cs.CL"], arxiv_list_url=f"{url}/list/",
        arxiv_rss_url=f"{url}/rss/", arxiv_api_url=f"{url}/api/query", **extra)


def test_listing_then_api(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    cfg = point(settings, server.url)
    result = fetch(cfg, store, now=NIGHT)
    assert (result.status, result.date, result.source) == ("ok", "2026-11-18", "listing")
    assert result.counts == {"new": 2, "cross": 1, "replace": 1, "replace-cross": 1}
    paths = [r.path for r in server.requests]
    assert paths == ["/list/cs.CL/new", "/api/query"]  # new announcements: RSS not asked
    listing, api = server.requests
    assert listing.query == {"skip": ["0"], "show": ["2000"]}
    assert "digestbot" in listing.headers["user-agent"] and "digestbot" in api.headers["user-agent"]
    assert api.query["id_list"][0].split(",") == [
        "2611.91001", "2611.91002", "2611.91003", "2609.98765", "2608.97531"]
    grpo = get_paper(store, "2611.91001")
    assert grpo.comment.endswith("code at https://example.org/vgrpo")
    assert grpo.authors[0].affiliations == ("Tsinghua University",) and grpo.published
    # The listing had no version for this replacement; the API supplied v3.
    assert get_paper(store, "2609.98765").version == 3
    assert {a.arxiv_id: a.version for a in announcements_on(store, "2026-11-18")}["2609.98765"] == 3


def test_api_failure_keeps_listing_and_next_fetch_retries(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    fake.script["/api/"] = [Response(500, "oops")] * 3  # the client's first try and 2 retries
    cfg = point(settings, server.url, sources=["listing"])
    first = fetch(cfg, store, now=NIGHT)
    assert first.status == "ok" and first.new_announcements == 5
    grpo = get_paper(store, "2611.91001")
    assert grpo.published is None and grpo.comment == "12 pages, 4 figures"
    # Unknown replacement version: unknown (None), never guessed, until the API says.
    assert get_paper(store, "2609.98765").version is None
    assert {a.arxiv_id: a.version for a in announcements_on(store, "2026-11-18")}[
        "2609.98765"] is None
    second = fetch(cfg, store, now=NIGHT)
    assert second.new_announcements == 0
    assert get_paper(store, "2611.91001").published and get_paper(store, "2609.98765").version == 3
    assert {a.arxiv_id: a.version for a in announcements_on(store, "2026-11-18")}[
        "2609.98765"] == 3


def test_no_api_skips_it(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    fetch(point(settings, server.url), store, no_api=True, now=NIGHT)
    assert [r.path for r in server.requests] == ["/list/cs.CL/new"]


def test_listing_broken_falls_back_to_rss(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    fake.listings["cs.CL"] = b"<html><body><p>Service busy</p></body></html>"
    result = fetch(point(settings, server.url, sources=["listing", "rss"]), store, no_api=True,
                   now=datetime(2026, 11, 17, 6, 0, tzinfo=UTC))
    assert result.source == "rss"
    assert result.status == "ok" and result.date == "2026-11-17"
    assert [r.path for r in server.requests] == ["/list/cs.CL/new", "/rss/cs.CL"]


def test_one_rss_request_per_category(settings, store, arxiv_fake, caplog):
    # A combined cs.CL+cs.AI+cs.LG feed is cut at 2,000 items on a busy day (issue 13.6).
    fake, server = arxiv_fake
    cfg = dataclasses.replace(point(settings, server.url), categories=["cs.CL", "cs.AI", "cs.LG"],
                              sources=["rss"])
    with caplog.at_level(logging.INFO, logger="digestbot.sources.arxiv"):
        fetch(cfg, store, no_api=True, now=datetime(2026, 11, 17, 6, 0, tzinfo=UTC))
    assert [r.path for r in server.requests] == ["/rss/cs.CL", "/rss/cs.AI", "/rss/cs.LG"]
    assert "3 categories requested one feed each" in caplog.text


def test_retries_503_and_429_with_retry_after(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    fake.script["/rss/"] = [Response(503, "busy", {"Retry-After": "0"}),
                            Response(429, "slow down", {"Retry-After": "0"})]
    result = fetch(point(settings, server.url, sources=["rss"]), store, no_api=True,
                   now=datetime(2026, 11, 17, 6, 0, tzinfo=UTC))
    assert result.status == "ok" and len(server.requests) == 3


def test_persistent_503_is_a_network_error_and_stores_nothing(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    fake.script["/rss/"] = [Response(503, "busy", {"Retry-After": "0"})] * 4
    with pytest.raises(NetworkError, match="HTTP 503"):
        fetch(point(settings, server.url, sources=["rss"]), store, no_api=True, now=NIGHT)
    assert store.db["announcements"].count == 0


def test_error_page_is_a_feed_error(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    cfg = dataclasses.replace(point(settings, server.url, sources=["rss"]), arxiv_rss_url=f"{server.url}/nowhere/")
    with pytest.raises(FeedError, match="HTTP 404"):
        fetch(cfg, store, no_api=True, now=NIGHT)


def test_unreachable_host_fails_fast(settings, store):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError, match="unreachable"):
        fetch(point(settings, f"http://127.0.0.1:{port}"), store, now=NIGHT)


def test_stale_feed_is_reported_not_stored(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    cfg = point(settings, server.url, sources=["rss"])
    first = fetch(cfg, store, no_api=True, now=datetime(2026, 11, 17, 6, 0, tzinfo=UTC))
    assert first.status == "ok" and first.date == "2026-11-17"
    # A day later the feed still serves the same batch: stale, nothing new stored.
    later = fetch(cfg, store, no_api=True, now=NEXT_NIGHT)
    assert later.status == "stale" and later.new_announcements == 0
    # …also when arXiv relabels the old items with a new date.
    fake.rss = fake.rss.replace(b"Tue, 17 Nov 2026", b"Wed, 18 Nov 2026")
    relabelled = fetch(cfg, store, no_api=True, now=NEXT_NIGHT)
    assert relabelled.status == "stale"
    assert announcement_dates(store) == ["2026-11-17"]
    logged = [r["status"] for r in store.db["fetch_log"].rows]
    assert logged == ["ok", "stale", "stale"]


def test_empty_channel_is_no_announcement(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    fake.rss = fixture("rss_empty.xml")
    result = fetch(point(settings, server.url, sources=["rss"]), store, now=NIGHT)
    assert result.status == "empty" and store.db["announcements"].count == 0


def test_since_catches_up_through_the_api(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    result = fetch(point(settings, server.url), store, since="2026-11-15", now=NIGHT)
    assert result.status == "ok"
    query = server.requests[0].query["search_query"][0]
    assert query.startswith("(cat:cs.CL) AND lastUpdatedDate:[202611150000 TO ")
    kinds = {a.arxiv_id: (a.date, a.announce_type) for d in announcement_dates(store)
             for a in announcements_on(store, d)}
    # Submitted Mon 16 Nov 15:11 ET (after the 14:00 deadline) → Tuesday evening's batch (Wed 18).
    assert kinds["2611.91003"] == ("2026-11-18", "cross")
    assert kinds["2609.98765"] == ("2026-11-18", "replace")
    assert kinds["2611.91001"] == ("2026-11-18", "new")


def test_since_with_a_broken_api_page_is_a_feed_error(settings, store, arxiv_fake):
    fake, server = arxiv_fake
    # totalResults promises 10 papers but the second page has none: the arxiv client gives up
    # with UnexpectedEmptyPageError after its retries, which must become our one-line FeedError.
    first = fixture("api_answer.xml").replace(b"totalResults>5<", b"totalResults>10<")
    empty = first.split(b"<entry>")[0] + b"</feed>"
    atom = {"Content-Type": "application/atom+xml"}
    fake.script["/api/"] = [Response(200, first, atom)] + [Response(200, empty, atom)] * 3
    with pytest.raises(FeedError, match="arXiv API"):
        fetch(point(settings, server.url), store, since="2026-11-15", now=NIGHT)
    assert store.db["announcements"].count == 0


def test_submission_deadline_mapping():
    assert submission_announced("2026-11-17T18:59:00+00:00") == "2026-11-18"  # Tue 13:59 ET
    assert submission_announced("2026-11-17T19:01:00+00:00") == "2026-11-19"  # Tue 14:01 ET
    assert submission_announced("2026-11-20T15:00:00+00:00") == "2026-11-23"  # Fri → Sun eve
