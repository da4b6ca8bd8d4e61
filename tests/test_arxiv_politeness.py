"""One politeness budget and one breaker for every arXiv request, on the wire.

A local server plays arXiv (listing page, RSS, the API's Atom, PDFs made with fpdf2) and
records when each request arrived, when its answer was ready, and on which connection; the
listing, the `arxiv` package's API calls, RSS and PDF downloads from two threads must start
`arxiv_delay` apart, never overlap, and share one connection. 403/429/503 and a refused
connection open the breaker: no request while it is open, one trial after the cooldown, and
the institutions given up meanwhile are filled in once arXiv answers again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from digestbot import status, subscribers
from digestbot.config import Settings, load_settings
from digestbot.enrich.institutions import fill_missing_institutions
from digestbot.enrich.pdf import FETCHED, GIVEN_UP, FirstPages, GivenUp, arxiv_status
from digestbot.enrich.stored import get_enrichment
from digestbot.errors import ArxivDown, NetworkError
from digestbot.models import Author, Paper
from digestbot.sources.api import api_papers
from digestbot.sources.arxiv import SAMPLE_FEED, fetch
from digestbot.sources.http import COOLDOWN_S, GATE, PoliteClient
from digestbot.store import Store
from tests.fakes.arxiv import FakeArxiv, fixture
from tests.fakes.http import FakeServer, Request, Response
from tests.fakes.openai import FakeOpenAI
from tests.fakes.pipeline import run_pipeline
from tests.test_enrich import add_papers
from tests.test_pdf import WITH_AFFILIATIONS

NIGHT = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)
DELAY = 0.3
WORK = 0.05  # every answer takes a moment, so requests let through together would overlap


class WireArxiv(FakeArxiv):
    """FakeArxiv with PDFs: `/pdf/{id}v{n}` is a real small PDF naming two institutions."""

    def handle(self, req: Request) -> Response:
        threading.Event().wait(WORK)
        if req.path.startswith("/pdf/") and not self.script.get("/pdf/"):
            return Response(200, WITH_AFFILIATIONS, {"Content-Type": "application/pdf"})
        return super().handle(req)


@pytest.fixture
def arxiv() -> Iterator[tuple[WireArxiv, FakeServer]]:
    fake = WireArxiv(listings={"cs.CL": fixture("listing_cs.CL_new.html")},
                     rss=SAMPLE_FEED.read_bytes(), api=fixture("api_answer.xml"))
    with fake.serve() as server:
        yield fake, server


def point(settings: Settings, url: str, **extra: object) -> Settings:
    return dataclasses.replace(
        settings, categories=["cs.CL"], arxiv_list_url=f"{url}/list/",
        arxiv_rss_url=f"{url}/rss/", arxiv_api_url=f"{url}/api/query",
        arxiv_pdf_url=f"{url}/pdf/", **extra)


def bare(n: int) -> Paper:
    """A paper without feed/API affiliations: its institutions need the PDF."""
    return Paper(id=f"2611.9{n:04d}", version=1, title=f"Paper {n}", abstract="We study.",
                 authors=[Author("Ada Lovelace")])


@pytest.fixture
def virtual(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The gate's clock (and its breaker's) as a number the test moves."""
    now = [1000.0]
    monkeypatch.setattr(GATE, "clock", lambda: now[0])
    return now


def test_every_kind_of_request_from_two_threads_shares_one_budget(settings, store, arxiv):
    # `store`: the database exists (migrated) before the two threads open their own.
    fake, server = arxiv
    cfg = point(settings, server.url, arxiv_delay=DELAY)
    errors: list[BaseException] = []

    def feeds() -> None:  # listing → API (the `arxiv` package), then RSS
        try:
            with Store(cfg.db) as store:
                assert fetch(cfg, store, now=NIGHT).status == "ok"
            assert PoliteClient(cfg.arxiv_delay).get(f"{server.url}/rss/cs.CL").status_code == 200
            assert api_papers(cfg, ["2611.91001"])["2611.91001"].authors
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def pdfs() -> None:  # the enrich worker's first pages
        try:
            with Store(cfg.db) as store:
                pages = FirstPages(cfg, store)
                for n in range(4):
                    assert "Shanghai AI Laboratory" in asyncio.run(pages.get(bare(n)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=feeds), threading.Thread(target=pdfs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = sorted(server.requests, key=lambda r: r.started)
    kinds = {r.path.split("/")[1] for r in got}
    assert kinds == {"list", "api", "rss", "pdf"} and len(got) == 8
    for a, b in zip(got, got[1:], strict=False):
        assert b.started >= a.finished, f"{b.path} began before {a.path} was answered"
        # arXiv's clock starts at our request, theirs at its arrival: a little jitter.
        assert b.started - a.started >= DELAY - 0.05, (a.path, b.path, b.started - a.started)
    assert len({r.peer for r in got}) == 1  # one connection for the whole process
    assert all("digestbot" in r.headers["user-agent"] for r in got)


@pytest.mark.parametrize("status", [403, 429, 503])
def test_arxiv_saying_stop_opens_the_breaker_until_one_trial(settings, store, arxiv, virtual,
                                                             status):
    fake, server = arxiv
    cfg = point(settings, server.url)
    fake.script["/pdf/"] = [Response(status, "stop")]
    pages = FirstPages(cfg, store)
    assert isinstance(asyncio.run(pages.get(bare(1))), GivenUp)
    assert pages.breaker_open and len(server.requests) == 1
    # Open: nothing is asked of arXiv, whatever the kind of request.
    assert isinstance(asyncio.run(pages.get(bare(2))), GivenUp)
    with pytest.raises(ArxivDown):
        api_papers(cfg, ["2611.91001"])
    with pytest.raises(NetworkError, match="unreachable"):
        fetch(cfg, store, now=NIGHT)
    assert len(server.requests) == 1 and GATE.refused == 3
    assert [pages.state(bare(n)) for n in (1, 2)] == [GIVEN_UP, GIVEN_UP]
    # After the cooldown one trial goes; arXiv answers, so the breaker closes.
    virtual[0] += COOLDOWN_S
    assert not pages.breaker_open
    assert "Tsinghua University" in asyncio.run(pages.get(bare(2)))
    assert GATE.breaker.state == "closed" and pages.state(bare(2)) == FETCHED
    assert fetch(cfg, store, now=NIGHT).status == "ok"


def test_a_retry_after_from_the_api_holds_the_pdfs_back_that_long(settings, store, arxiv):
    fake, server = arxiv
    cfg = point(settings, server.url)
    fake.script["/api/"] = [Response(503, "busy", {"Retry-After": "1"})]
    with pytest.raises(ArxivDown):  # the `arxiv` package's retry is refused, not sent
        api_papers(cfg, ["2611.91001"])
    pages = FirstPages(cfg, store)
    assert pages.breaker_open
    # A second is worth waiting for: the PDF waits it out, then is the trial.
    assert "Tsinghua University" in asyncio.run(pages.get(bare(1)))
    api, pdf = server.requests
    assert pdf.path == "/pdf/2611.90001v1" and pdf.started - api.started >= 1.0 - 0.05
    assert GATE.breaker.state == "closed"


def test_a_failed_trial_reopens_it(settings, store, arxiv, virtual):
    fake, server = arxiv
    fake.script["/pdf/"] = [Response(429, "slow down"), Response(403, "blocked")]
    pages = FirstPages(point(settings, server.url), store)
    asyncio.run(pages.get(bare(1)))
    virtual[0] += COOLDOWN_S
    assert isinstance(asyncio.run(pages.get(bare(2))), GivenUp)  # the trial: 403
    assert isinstance(asyncio.run(pages.get(bare(3))), GivenUp)  # open again: not asked
    assert len(server.requests) == 2 and GATE.breaker.state == "open"


def refused_url() -> str:
    """A loopback port nobody listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_enrich_with_arxiv_down_is_quick_then_institutions_are_filled_in(
        store: Store, fake: FakeOpenAI, arxiv, virtual, monkeypatch: pytest.MonkeyPatch) -> None:
    _, server = arxiv
    monkeypatch.setenv("DIGESTBOT_ARXIV_PDF_URL", refused_url() + "/pdf/")
    monkeypatch.setenv("DIGESTBOT_ARXIV_DELAY", "3")  # production politeness
    slept: list[float] = []
    monkeypatch.setattr(GATE, "sleep", slept.append)
    titles = [f"A post-training recipe with GRPO, part {n}" for n in range(1, 7)]
    add_papers(store, titles, affiliations=False)
    subscribers.add_or_update(store, channel="email", address="a@example.org",
                              topics=["post-training"])
    report = run_pipeline(load_settings(), store)
    # One connection attempt opened the breaker; the other five pages were given up without
    # a request and without waiting their 3 s turn.
    assert report.enriched == 6 and GATE.started == 1 and GATE.refused == 0
    assert slept == []
    ids = [f"2608.{i:05d}" for i in range(1, 7)]
    assert all(get_enrichment(store, i, 1).title_zh for i in ids)  # final, no institutions
    assert all(get_enrichment(store, i, 1).institutions == [] for i in ids)
    states = {r["arxiv_id"]: r["state"] for r in store.db["first_pages"].rows}
    assert states == dict.fromkeys(ids, GIVEN_UP)
    arxiv = status.snapshot(load_settings(), store, NIGHT)["arxiv"]
    assert arxiv["breaker"]["state"] == "open" and arxiv["first_pages"][GIVEN_UP] == 6

    # While the breaker is open, filling in asks nothing.
    monkeypatch.setenv("DIGESTBOT_ARXIV_PDF_URL", f"{server.url}/pdf/")
    monkeypatch.setenv("DIGESTBOT_ARXIV_DELAY", "0")
    filled = asyncio.run(fill_missing_institutions(load_settings(), store))
    assert (filled.waiting, filled.fetched, filled.left) == (6, 0, 6) and not server.requests
    # arXiv is back and the cooldown over: the next pipeline run (nothing new to enrich)
    # fills in; the trial succeeds and every page is fetched.
    virtual[0] += COOLDOWN_S
    run_pipeline(load_settings(), store)
    assert sorted(r.path for r in server.requests) == [f"/pdf/{i}v1" for i in ids]
    for i in ids:
        assert [x.name for x in get_enrichment(store, i, 1).institutions] == [
            "Tsinghua University, Beijing", "Shanghai AI Laboratory"]
    assert {r["state"] for r in store.db["first_pages"].rows} == {FETCHED}
    arxiv = status.snapshot(load_settings(), store, NIGHT)["arxiv"]
    assert arxiv == {"breaker": {"name": "arXiv", "state": "closed", "failures": 0, "since": None},
                     "first_pages": {FETCHED: 6, "no_text": 0, GIVEN_UP: 0}}
    asks = [b for b in fake.bodies if b["response_format"]["json_schema"]["name"]
            == "paper_institutions"]
    assert len(asks) == 6
    # Nothing left to fill: a second run asks nobody.
    again = asyncio.run(fill_missing_institutions(load_settings(), store))
    assert again.waiting == 0 and len(server.requests) == 6


def test_no_pdf_for_a_paper_nobody_receives(store: Store, fake: FakeOpenAI, arxiv,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, server = arxiv
    monkeypatch.setenv("DIGESTBOT_ARXIV_PDF_URL", f"{server.url}/pdf/")
    add_papers(store, ["A post-training recipe with GRPO", "Crystal lattices in granite"],
               affiliations=False)
    subscribers.add_or_update(store, channel="email", address="a@example.org",
                              topics=["post-training"])
    run_pipeline(load_settings(), store)
    assert [r.path for r in server.requests] == ["/pdf/2608.00001v1"]


def test_two_timeouts_in_a_row_open_it(monkeypatch: pytest.MonkeyPatch) -> None:
    slow = Response(200, "late", delay=1.0)
    with FakeServer(lambda req: slow) as server:
        client = PoliteClient(delay=0, timeout=0.2, attempts=4)
        monkeypatch.setattr(GATE, "sleep", lambda s: None)
        with pytest.raises(NetworkError, match="ReadTimeout"):
            client.get(server.url)
        assert len(server.requests) == 2 and GATE.breaker.state == "open"
        with pytest.raises(ArxivDown):
            client.get(server.url)
        assert len(server.requests) == 2


def test_a_redirect_is_another_request_in_its_own_turn(arxiv):
    fake, server = arxiv
    fake.script["/pdf/"] = [Response(301, "", {"Location": "/pdf/2611.90001v1"})]
    answer = PoliteClient(DELAY).get(f"{server.url}/pdf/2611.90001")  # the latest version
    assert answer.status_code == 200 and answer.content == WITH_AFFILIATIONS
    moved, pdf = server.requests
    assert (moved.path, pdf.path) == ("/pdf/2611.90001", "/pdf/2611.90001v1")
    assert pdf.started - moved.started >= DELAY - 0.05 and GATE.started == 2


def test_a_403_on_the_listing_is_arxiv_refusing_not_a_bad_feed(settings, store, arxiv):
    fake, server = arxiv
    fake.script["/list/"] = [Response(403, "<html>Access denied</html>")]
    with pytest.raises(NetworkError, match="unreachable.*HTTP 403"):
        fetch(point(settings, server.url), store, now=NIGHT)
    assert [r.path for r in server.requests] == ["/list/cs.CL/new"]  # RSS: not asked
    # /status (maybe another process) sees the outage though no PDF was asked for.
    assert arxiv_status(store)["breaker"]["state"] == "open"
