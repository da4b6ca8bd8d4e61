"""The arXiv API (through the `arxiv` package): metadata for ids, merged into a feed's batch.

The API fills what the listing and RSS lack (comments, DOI, dates, affiliations, UTF-8 names),
throttled with every other arXiv request, and its failure never loses the feed's batch.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import arxiv
import requests

from digestbot.clock import announcement_date, next_fetch_time
from digestbot.config import Settings
from digestbot.errors import DigestbotError, FeedError, NetworkError
from digestbot.models import Author, FeedBatch, Paper
from digestbot.sources import parsers
from digestbot.sources.authors import clean_author
from digestbot.sources.http import PoliteClient
from digestbot.sources.papers import announcements_on, get_papers
from digestbot.store import Store, chunks

log = logging.getLogger(__name__)

API_BATCH = 100  # ids per API request (arXiv's guidance for id_list queries)
API_TIMEOUT = 30.0
# arXiv's submission deadline is 14:00 ET, six hours before the 20:00 announcement.
_DEADLINE_LEAD = timedelta(hours=6)


class _GatedSession(requests.Session):
    """The `arxiv` client's session: each of its requests is one GET through the process's
    arXiv gate (`sources.http.GATE`): the shared delay, connection, breaker and User-Agent.

    arxiv.Client would otherwise keep its own connection, its own 3 s clock and its own
    User-Agent, and could ask arXiv at the same moment as a PDF download on another thread.
    It retries failed pages itself (num_retries), so the gate's client makes one attempt;
    while the breaker is open that attempt raises ArxivDown and nothing is sent.
    """

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.client = PoliteClient(delay, timeout=API_TIMEOUT, attempts=1)

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        answer = self.client.get(url.decode() if isinstance(url, bytes) else url)
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers.update(answer.headers)
        response.url = str(answer.url)
        response.raw = io.BytesIO(answer.content)  # what `.content` reads
        return response


def api_client(settings: Settings, page_size: int = API_BATCH) -> arxiv.Client:
    """An arxiv.Client aimed at settings.arxiv_api_url, its requests through the gate."""
    # The gate spaces requests, so the client's own delay would only double it.
    client = arxiv.Client(page_size=page_size, delay_seconds=0, num_retries=2)
    # arxiv 4.x builds every page URL from this format string (a class attribute).
    client.query_url_format = settings.arxiv_api_url + "?{}"
    client._session = _GatedSession(settings.arxiv_delay)
    return client


def result_to_paper(result: arxiv.Result) -> Paper:
    arxiv_id, version = parsers.split_id(result.entry_id)
    return Paper(
        id=arxiv_id, version=version, title=parsers.squash(result.title),
        abstract=parsers.squash(result.summary),
        authors=[clean_author(Author(a.name, tuple(a.affiliation))) for a in result.authors],
        categories=list(result.categories), primary_category=result.primary_category or None,
        comment=result.comment, journal_ref=result.journal_ref, doi=result.doi,
        published=result.published.isoformat(), updated=result.updated.isoformat(),
    )


@contextmanager
def api_errors() -> Iterator[None]:
    """The `arxiv` client's exceptions as our one-line NetworkError/FeedError."""
    try:
        yield
    except arxiv.HTTPError as exc:
        raise NetworkError(f"arXiv API answered HTTP {exc.status}") from None
    except requests.RequestException as exc:
        raise NetworkError(f"arXiv API unreachable ({type(exc).__name__})") from None
    except arxiv.ArxivError as exc:
        raise FeedError(f"arXiv API: {exc}") from None


def api_papers(settings: Settings, ids: list[str]) -> dict[str, Paper]:
    """Metadata for `ids`, ≤ 100 per request. Raises NetworkError/FeedError on failure."""
    client = api_client(settings)
    out: dict[str, Paper] = {}
    with api_errors():
        for chunk in chunks(ids, API_BATCH):
            search = arxiv.Search(id_list=chunk, max_results=len(chunk))
            for result in client.results(search):
                paper = result_to_paper(result)
                out[paper.id] = paper
    return out


def _needs_api(store: Store, batch: FeedBatch) -> list[str]:
    """Papers of this batch the API has not filled yet, plus earlier misses of the same day.

    `published` only comes from the API, so a NULL there marks "ask again" and a failed API
    pass is retried by the next fetch without any bookkeeping of its own.
    """
    stored = get_papers(store, [p.id for p in batch.papers])
    ids = [p.id for p in batch.papers
           if p.id not in stored or not stored[p.id].published or p.version is None
           or (stored[p.id].version or 0) < p.version]
    if batch.date:
        day = [a.arxiv_id for a in announcements_on(store, batch.date)]
        ids += [i for i, p in get_papers(store, day).items() if not p.published and i not in ids]
    return ids


def api_fill(settings: Settings, store: Store, batch: FeedBatch) -> FeedBatch:
    """The batch with API metadata merged in; on failure the batch as it was (logged)."""
    ids = _needs_api(store, batch)
    if not ids:
        return batch
    try:
        found = api_papers(settings, ids)
    except DigestbotError as exc:
        log.warning("API pass failed, keeping %s metadata (retried next fetch): %s",
                    batch.source, exc)
        return batch
    papers = [merge_api(p, found[p.id]) if p.id in found else p for p in batch.papers]
    in_batch = {p.id for p in papers}
    papers += [p for i, p in found.items() if i not in in_batch]  # earlier misses
    versions = {p.id: p.version for p in papers}
    anns = [replace(a, version=versions[a.arxiv_id]) if a.version is None else a
            for a in batch.announcements]
    log.info("API filled %d of %d papers", len(found), len(ids))
    return replace(batch, papers=papers, announcements=anns)


def merge_api(feed: Paper, api: Paper) -> Paper:
    """The feed's paper with what the API knows; a lagging API index never downgrades it.

    The API's names are UTF-8 as the authors typed them, so they win over the feed's TeX; the
    feed's affiliations are kept when the API has none and the two lists match one to one.
    """
    if feed.version is not None and api.version is not None and api.version < feed.version:
        return replace(feed, published=feed.published or api.published,
                       doi=feed.doi or api.doi, journal_ref=feed.journal_ref or api.journal_ref)
    authors = feed.authors
    if api.authors:
        authors = api.authors
        if not any(a.affiliations for a in api.authors) and len(api.authors) == len(feed.authors):
            authors = [replace(a, affiliations=f.affiliations)
                       for a, f in zip(api.authors, feed.authors, strict=True)]
    return replace(
        feed, version=max(v for v in (feed.version, api.version, 0) if v is not None) or None,
        authors=authors,
        categories=api.categories or feed.categories,
        primary_category=api.primary_category or feed.primary_category,
        comment=api.comment or feed.comment, journal_ref=api.journal_ref or feed.journal_ref,
        doi=api.doi or feed.doi, published=api.published, updated=api.updated,
    )


def submission_announced(stamp: str) -> str:
    """The announcement date of a version submitted at `stamp` (14:00 ET deadline)."""
    submitted = datetime.fromisoformat(stamp)
    return announcement_date(next_fetch_time(submitted + _DEADLINE_LEAD))
