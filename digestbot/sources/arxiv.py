"""Tonight's arXiv announcement into the store (`digestbot fetch` prints its `FetchResult`).

Sources, earliest first (DESIGN.md, "Facts to respect"): the listing pages `/list/{cat}/new`
turn over at 20:00 ET, the RSS feed only at midnight ET, the API index later still. So a fetch
asks the listing first, then RSS (both configurable in `sources`), and lets the API fill what
neither carries (comments, DOI, affiliations, dates). Each source's batch is stored in one
transaction; a source that fails leaves the store as it was and the next source is tried.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import arxiv

from digestbot.clock import expected_announcement_date
from digestbot.config import Settings
from digestbot.errors import DigestbotError, FeedError, NetworkError, UsageError
from digestbot.models import ANNOUNCE_LABELS_ZH, ANNOUNCE_TYPES, FeedBatch, Paper
from digestbot.sources import detect, parsers
from digestbot.sources.api import (
    api_client,
    api_errors,
    api_fill,
    result_to_paper,
    submission_announced,
)
from digestbot.sources.http import STOP_STATUSES, PoliteClient, record_breaker
from digestbot.sources.listing import parse_listing
from digestbot.sources.papers import (
    announcements_on,
    latest_announcement_date,
    log_fetch,
    save_batch,
)
from digestbot.store import Store

log = logging.getLogger(__name__)

SAMPLE_FEED: Path = Path(__file__).resolve().parent.parent / "data" / "sample-announcement.xml"


@dataclass
class FetchResult:
    """What one `fetch` did; `message` is the one line shown to people."""

    status: str  # "ok" | "empty" | "stale"
    date: str | None
    counts: dict[str, int] = field(default_factory=dict)
    new_announcements: int = 0
    source: str = ""
    message: str = ""


# -- the public entry point ---------------------------------------------------------------


def fetch(settings: Settings, store: Store, *, feeds: list[str] | None = None,
          date: str | None = None, no_api: bool = False, since: str | None = None,
          now: datetime | None = None) -> FetchResult:
    """Ingest saved files (`feeds`), catch up through the API (`since`), or fetch tonight's batch.

    Raises NetworkError when arXiv cannot be reached and FeedError when what came back cannot
    be parsed; in both cases nothing of that source was stored.
    """
    now = now or datetime.now(UTC)
    try:
        if feeds:
            return _ingest_files(settings, store, feeds, date)
        if since:
            return _catch_up(settings, store, since, now)
        return _fetch_tonight(settings, store, date=date, no_api=no_api, now=now)
    finally:
        record_breaker(store)  # /status shows an outage a fetch met, not only one a PDF met



def _ingest_files(settings: Settings, store: Store, feeds: list[str], date: str | None) -> FetchResult:
    """Every file is read and parsed before any is stored: one bad file changes nothing."""
    batches = []
    with PoliteClient(settings.arxiv_delay) as client:
        for location in feeds:
            data = _read(location, client)
            batch = detect.parse_any(data, date=date, categories=settings.categories,
                                     name=Path(location).name or location)
            _warn_if_capped(batch, Path(location).name or location)
            batches.append(batch)
    return _combine([_store(store, batch, batch.source) for batch in batches])


def _fetch_tonight(settings: Settings, store: Store, *, date: str | None, no_api: bool,
                   now: datetime) -> FetchResult:
    """Sources in order; stop at the first that brought something new.

    At 20:00 ET the listing has the batch and RSS would still serve yesterday's; after midnight
    the listing adds nothing new and RSS confirms (and fills any gaps).
    """
    expected = expected_announcement_date(now)
    results: list[FetchResult] = []
    failed: list[tuple[str, DigestbotError]] = []
    fetchers: dict[str, Callable[[PoliteClient], FeedBatch]] = {
        "listing": lambda c: _fetch_listing(settings, c, date),
        "rss": lambda c: _fetch_rss(settings, c, date),
    }
    with PoliteClient(settings.arxiv_delay) as client:
        for name in settings.sources:
            try:
                batch = fetchers[name](client)
            except DigestbotError as exc:
                log_fetch(store, name, None, "error", 0, str(exc))
                failed.append((name, exc))
                continue
            if _is_stale(store, batch, expected):
                result = _stale(store, batch)
            else:
                if not no_api and batch.papers:
                    batch = api_fill(settings, store, batch)
                result = _store(store, batch, name)
            results.append(result)
            if result.status == "ok" and result.new_announcements:
                break
    errors = [exc for _name, exc in failed]
    # One source failing while another answered deserves a warning. arXiv unreachable as a
    # whole is said once, by whoever catches the NetworkError; fetch_log keeps each source's.
    offline = not results and not any(isinstance(e, FeedError) for e in errors)
    for name, exc in failed:
        log.log(logging.DEBUG if offline else logging.WARNING, "%s failed: %s", name, exc)
    if not results:
        raise _worst(errors)
    return _combine(results)


def _worst(errors: list[DigestbotError]) -> DigestbotError:
    # A parse failure is a bug or a format change and must not hide behind "offline".
    feed_errors = [e for e in errors if isinstance(e, FeedError)]
    if feed_errors:
        return feed_errors[0]
    return NetworkError(f"无法访问 arXiv / arXiv unreachable: {errors[0]}")


# -- sources ------------------------------------------------------------------------------


def _get(client: PoliteClient, url: str, params: dict[str, str] | None = None) -> bytes:
    response = client.get(url, params=params)
    # 403 is arXiv refusing a robot (its breaker is open now), not a feed that changed shape.
    if response.status_code >= 500 or response.status_code in STOP_STATUSES:
        raise NetworkError(f"{url} answered HTTP {response.status_code} after retries")
    if response.status_code == 400 and b"Feed error for query" in response.content[:4096]:
        # rss.arxiv.org explains a bad category in an error feed: its reason beats "HTTP 400".
        detect.parse_any(response.content, name=url)
    if response.status_code != 200:
        raise FeedError(f"{url} answered HTTP {response.status_code} instead of a feed")
    return response.content


def _read(location: str, client: PoliteClient) -> bytes:
    if location.startswith(("http://", "https://")):
        return _get(client, location)
    path = Path(location)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--feed {location}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--feed {location}: cannot read it ({exc.strerror})") from None


def _fetch_listing(settings: Settings, client: PoliteClient, date: str | None) -> FeedBatch:
    """One `/list/{cat}/new` page per category, merged into one batch."""
    batches = []
    for cat in settings.categories:
        data = _get(client, f"{settings.arxiv_list_url}{cat}/new", {"skip": "0", "show": "2000"})
        batches.append(parse_listing(data, date=date, categories=settings.categories))
    return _merge("listing", batches)


def _merge(source: str, batches: list[FeedBatch]) -> FeedBatch:
    """Several categories' pages or feeds of one evening as one batch."""
    dates = {b.date for b in batches if not b.empty}
    if len(dates) > 1:
        raise FeedError(f"{source} disagree on the date ({', '.join(sorted(dates))}); "
                        "arXiv is turning over, try again in a minute")
    return parsers.combine(source, dates.pop() if dates else batches[0].date,
                           [p for b in batches for p in b.papers],
                           [a for b in batches for a in b.announcements],
                           truncated=any(b.truncated for b in batches))


def _fetch_rss(settings: Settings, client: PoliteClient, date: str | None) -> FeedBatch:
    """One feed per category: rss.arxiv.org cuts a feed at 2,000 items (replacements first),
    so a `cs.CL+cs.AI+cs.LG` request on a busy day would lose papers without a word."""
    batches = []
    for cat in settings.categories:
        data = _get(client, settings.arxiv_rss_url + cat)
        batch = detect.parse_any(data, date=date, categories=settings.categories,
                                 name=f"RSS feed {cat}")
        _warn_if_capped(batch, f"RSS feed {cat}")
        batches.append(batch)
    log.info("RSS: %d categories requested one feed each (%s) to stay under the %d-item cap",
             len(batches), ", ".join(settings.categories), parsers.FEED_CAP)
    return _merge("rss", batches)


def _warn_if_capped(batch: FeedBatch, what: str) -> None:
    if batch.truncated:
        log.warning("%s has %d items, arXiv's cap: it may be cut (replacements, and any at v6+, "
                    "are left out first); the listing pages and the API fill what it lacks",
                    what, len(batch.announcements))


# -- catch-up through the API -------------------------------------------------------------


def _catch_up(settings: Settings, store: Store, since: str, now: datetime) -> FetchResult:
    """Everything in our categories updated since `since`, grouped by announcement date."""
    cats = " OR ".join(f"cat:{c}" for c in settings.categories)
    start = since.replace("-", "")
    query = f"({cats}) AND lastUpdatedDate:[{start}0000 TO {now:%Y%m%d%H%M}]"
    client = api_client(settings, page_size=500)
    search = arxiv.Search(query=query, max_results=None,
                          sort_by=arxiv.SortCriterion.LastUpdatedDate)
    with api_errors():
        papers = [result_to_paper(r) for r in client.results(search)]
    by_date: dict[str, list[Paper]] = {}
    for paper in papers:
        by_date.setdefault(submission_announced(paper.updated or ""), []).append(paper)
    results = []
    for day, group in sorted(by_date.items()):
        batch = parsers.api_batch(group, day, settings.categories)
        results.append(_store(store, batch, "api"))
    if not results:
        return FetchResult("empty", None, source="api",
                           message=f"自 {since} 无更新 / nothing updated since {since}")
    return _combine(results)


# -- storing and reporting ----------------------------------------------------------------


def _is_stale(store: Store, batch: FeedBatch, expected: str) -> bool:
    """The feed serves a batch we already hold: an old one, or an old one with a new date."""
    if batch.empty or not batch.date:
        return False
    ids = {a.arxiv_id for a in batch.announcements}
    held_same_day = {a.arxiv_id for a in announcements_on(store, batch.date)}
    if batch.date < expected and ids <= held_same_day:
        return True
    latest = latest_announcement_date(store)
    if latest and latest < batch.date:
        return ids == {a.arxiv_id for a in announcements_on(store, latest)}
    return False


def _stale(store: Store, batch: FeedBatch) -> FetchResult:
    log_fetch(store, batch.source, batch.date, "stale", len(batch.announcements))
    return FetchResult(
        "stale", batch.date, _counts(batch), 0, batch.source,
        f"{batch.source} 仍是旧批次 / still serves an earlier batch ({len(batch.papers)} papers "
        f"labelled {batch.date}); nothing stored, try again later",
    )


def _store(store: Store, batch: FeedBatch, source: str) -> FetchResult:
    if batch.empty:
        log_fetch(store, source, batch.date, "empty", 0)
        when = f"{batch.date}: " if batch.date else ""
        return FetchResult("empty", batch.date, {}, 0, source,
                           f"{when}今日无公告 / no announcement (weekend or holiday) ({source})")
    saved = save_batch(store, batch)
    counts = _counts(batch)
    log_fetch(store, source, batch.date, "ok", len(batch.announcements), str(saved))
    return FetchResult("ok", batch.date, counts, saved["announcements_new"], source,
                       summary_line(batch.date, counts, source, saved["announcements_new"],
                                    len(batch.papers)))


def _counts(batch: FeedBatch) -> dict[str, int]:
    c = Counter(a.announce_type for a in batch.announcements)
    return {t: c[t] for t in ANNOUNCE_TYPES if c[t]}


def summary_line(date: str | None, counts: dict[str, int], source: str, added: int,
                 papers: int) -> str:
    """'2026-08-13: 139 papers — 新提交 56, 交叉列表 36, 版本更新 47 (rss)'."""
    labels: dict[str, int] = {}
    for kind, n in counts.items():
        labels[ANNOUNCE_LABELS_ZH[kind]] = labels.get(ANNOUNCE_LABELS_ZH[kind], 0) + n
    parts = ", ".join(f"{k} {v}" for k, v in labels.items())
    total = sum(counts.values())
    head = f"{date}: {total} papers" if total else f"{papers} papers' metadata (no announcement)"
    line = f"{head} — {parts} ({source})" if parts else f"{head} ({source})"
    if total and not added:
        line += "; 已入库 / already stored"
    elif total and added < total:
        line += f"; {added} new"
    return line


def _combine(results: list[FetchResult]) -> FetchResult:
    """One result for several sources or files: the most useful status, summed counts."""
    for status in ("ok", "stale", "empty"):
        picked = [r for r in results if r.status == status]
        if picked:
            break
    counts: Counter[str] = Counter()
    for r in picked:
        counts.update(r.counts)
    return FetchResult(
        status, picked[-1].date, dict(counts), sum(r.new_announcements for r in results),
        "+".join(dict.fromkeys(r.source for r in results)),
        " · ".join(r.message for r in results),
    )

