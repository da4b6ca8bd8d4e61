"""score → order → enrich for one announcement day, doing only work the cache lacks.

Enrich once, deliver many: the cost of a run grows with papers, never with subscribers.
- Scoring: one LLM call per paper version scores every active topic at once; scores are cached
  per (arxiv_id, version, topic), so a newly subscribed topic costs one call per paper for just
  that topic and a re-run costs nothing. Offline scores (no key, or an LLM failure) are
  upgraded by a later LLM run, up to MAX_FAILED_CALLS failed attempts per paper version.
  First the prefilter (`DIGESTBOT_PREFILTER`, on by default): a paper whose offline score is
  far below every followed topic's lowest threshold keeps it as final and costs no call.
- A timeline, not a batch: while the papers are scored, the first pages of those already
  above some reader's threshold are fetched (best score first; arXiv's 3 s between requests
  makes them the long pole, and the LLM is busy scoring meanwhile). Once every followed topic
  is scored, `priority` (the delivery side's reading order: readers by due time, each one's
  papers best first, followed authors and keywords included) says which papers to enrich
  first; the rest above the lowest threshold of a topic's subscribers (active or paused)
  follow, or every paper with `all_papers`. `enrich.progress` records which topics are scored
  and which papers are still pending, so delivery sends a reader as soon as their papers are
  final — never a partial digest.
- Enrichment: one call per paper version, cached per (arxiv_id, version, prompt_version,
  model); a replaced version is a new key and is enriched again. Calls run concurrently
  (DIGESTBOT_LLM_CONCURRENCY), first pages one at a time, both first come first served in
  that order.
- The rest of the catalogue: every catalogue topic nobody follows is scored with the offline
  scorer (cheap, no LLM) last, so the public day pages count every topic; an existing score
  (an LLM one included) is never replaced by an offline one.
Everything the LLM cannot do falls back to the offline result for that paper; only a 401
stops the run. Results are written as each call finishes, so an interrupted run keeps them.

The pieces: `scoring` (scores and the selection above thresholds), `enrichment`
(enrichments, and the one to show), `calls` (the report and the LLM call both record),
`progress` (what delivery may send); this module is the day's plan that runs them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from digestbot import topics as catalogue
from digestbot.config import Settings
from digestbot.enrich import progress as day_progress
from digestbot.enrich.calls import Key, PipelineReport
from digestbot.enrich.enrichment import enrich_papers
from digestbot.enrich.institutions import FILL_PER_RUN, fill_missing_institutions
from digestbot.enrich.llm import LLMClient
from digestbot.enrich.pdf import FirstPages, GivenUp, affiliations_text
from digestbot.enrich.scoring import above_threshold, score_papers
from digestbot.models import Paper, Topic
from digestbot.sources.papers import announcements_on, get_papers, latest_announcement_date
from digestbot.store import Store

log = logging.getLogger(__name__)

# The day's paper ids in the order readers need them (`outbox.timeline.reading_order`): the
# delivery side knows who is due when and what each reader gets; this stage sits below it.
Priority = Callable[[Store, str], list[str]]
# How often the first-page prefetch looks at the scores stored meanwhile, when it is idle.
PREFETCH_IDLE = 1.0
# How often at most the prefetch asks `priority` again while scores come in (it selects for
# every reader: seconds of CPU with thousands of them).
PREFETCH_REFRESH = 30.0


async def run_pipeline(settings: Settings, store: Store, *, date: str | None = None,
                       topics: Sequence[str] = (), all_papers: bool = False,
                       limit: int | None = None, offline: bool = False,
                       priority: Priority | None = None,
                       on_progress: Callable[[], None] | None = None) -> PipelineReport:
    """Score and enrich one announcement day (default: the latest).

    Papers announced on `date` are scored against the active topics plus `topics` (names),
    then what readers will receive is enriched in `priority` order, then the rest above a
    subscriber's threshold (all with `all_papers`); papers whose version is not known yet are
    left for a later run (`report.waiting`). `on_progress()` is called whenever more digests
    may have become final (the service plans a delivery then). Run it on the thread that
    opened `store` (sqlite connections belong to one thread): the CLI and the service's
    worker thread call it with asyncio.run.
    """
    day = date or latest_announcement_date(store)
    report = PipelineReport(date=day)
    if day is None:
        return report
    announced = day_papers(store, day, limit)
    # Work is cached per (arxiv_id, version): a paper whose version is still unknown (a listing
    # replacement the API has not described yet) has no key, and SQLite would let a NULL into
    # one, so a re-run could store it again. It waits: the API pass fills the version in and
    # the next run scores and enriches it.
    papers = [p for p in announced if p.version is not None]
    active = sorted(catalogue.active_topics(store, topics), key=lambda t: t.slug)
    report.papers, report.topics = len(announced), len(active)
    report.waiting = len(announced) - len(papers)
    llm = LLMClient(settings) if settings.llm_enabled and not offline else None
    # A `--limit` run scores part of the day: it must not tell delivery the day is final.
    progress = (day_progress.begin(store, day) if limit is None
                else day_progress.DayProgress(day, stored=False))
    told = on_progress or (lambda: None)
    first_pages = FirstPages(settings, store)
    pages = _Pages(first_pages)
    scoring_done = asyncio.Event()
    prefetch = (asyncio.create_task(_prefetch(store, day, papers, pages, priority, scoring_done))
                if llm is not None else None)
    try:
        if llm is not None:
            report.scorer = llm.scorer
        started = time.monotonic()
        try:
            await score_papers(store, papers, active, llm, report,
                               first_stage=settings.prefilter == "on")
            report.score_seconds = time.monotonic() - started
            selected = _enrich_order(store, day, papers, priority, all_papers)
        finally:
            # Not awaited here: a page it is fetching is shared with the enrichment (`_Pages`).
            scoring_done.set()
        report.enrich_selected = len(selected)
        # One write: scored topics and the papers they bring, never one without the other.
        progress.scored |= {t.slug for t in active}
        progress.pending = {p.id for p in selected}
        progress.save(store)
        told()

        def final(paper: Paper) -> None:
            progress.pending.discard(paper.id)
            progress.save(store)
            told()

        started = time.monotonic()
        await enrich_papers(store, selected, llm, pages, report, on_final=final)
        report.enrich_seconds = time.monotonic() - started
        progress.done = True
        progress.save(store)
        told()
        # Last: the digests wait on the followed topics' scores and enrichments, not on these.
        await _score_catalogue(store, papers, active, report)
        if llm is not None:  # pages given up while arXiv was away, a few per run (≈1 min)
            await fill_missing_institutions(settings, store, llm=llm, first_pages=first_pages,
                                            limit=FILL_PER_RUN)
    finally:
        if prefetch is not None:
            await prefetch
        first_pages.close()
        if llm is not None:
            await llm.aclose()
    log.debug("pipeline %s", report.summary())  # callers print or log the summary
    return report


def _enrich_order(store: Store, day: str, papers: list[Paper], priority: Priority | None,
                  all_papers: bool) -> list[Paper]:
    """What to enrich, in order: what readers will receive (`priority`), then the rest above
    the lowest threshold of a topic's subscribers, best first (or every paper)."""
    wanted = priority(store, day) if priority is not None else []
    rest = papers if all_papers else above_threshold(store, papers)
    ids = list(dict.fromkeys([*wanted, *(p.id for p in rest)]))
    by_id = {p.id: p for p in papers}
    # A reader's digest may carry a paper of an earlier day it missed (catch-up, a followed
    # author): enriched here too if it never was.
    others = get_papers(store, [i for i in ids if i not in by_id])
    found = {**others, **by_id}
    return [found[i] for i in ids if i in found and found[i].version is not None]


class _Pages:
    """First pages for this run, each asked of `FirstPages` once: the prefetch and the
    enrichment share one download (and one "none to be had") per paper version."""

    def __init__(self, first_pages: FirstPages) -> None:
        self.first_pages = first_pages
        self._asked: dict[Key, asyncio.Task[str | GivenUp]] = {}

    def has(self, paper: Paper) -> bool:
        """Known without asking arXiv: fetched (or asked) already, or in the feed."""
        key = (paper.id, paper.version)
        return (key in self._asked or bool(affiliations_text(paper))
                or self.first_pages.cached(paper.id, paper.version) is not None)

    async def get(self, paper: Paper) -> str | GivenUp:
        key = (paper.id, paper.version)
        if key not in self._asked:
            self._asked[key] = asyncio.create_task(self.first_pages.get(paper))
        return await self._asked[key]


async def _prefetch(store: Store, day: str, papers: list[Paper], pages: _Pages,
                    priority: Priority | None, scoring_done: asyncio.Event) -> None:
    """While scoring runs: fetch first pages one at a time, in the readers' order as far as
    the scores stored so far tell it (`priority`, asked again every PREFETCH_REFRESH seconds
    or ten times what it cost, whichever is longer), then the other papers already above
    some reader's threshold, best score first. Stops when scoring is done (the enrichment
    then asks for the rest in the final order). Each of these papers is enriched in any
    case, so nothing fetched here is wasted."""
    by_id = {p.id: p for p in papers}
    order: list[str] = []
    refresh_at = 0.0
    while not scoring_done.is_set():
        if priority is not None and time.monotonic() >= refresh_at:
            started = time.monotonic()
            order = priority(store, day)
            spent = time.monotonic() - started
            refresh_at = time.monotonic() + max(PREFETCH_REFRESH, 10 * spent)
        ids = dict.fromkeys([*order, *(p.id for p in above_threshold(store, papers))])
        wanted = next((by_id[i] for i in ids if i in by_id and not pages.has(by_id[i])), None)
        if wanted is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(scoring_done.wait(), PREFETCH_IDLE)
            continue
        await pages.get(wanted)


async def _score_catalogue(store: Store, papers: list[Paper], active: Sequence[Topic],
                           report: PipelineReport) -> None:
    """Offline scores for the catalogue topics nobody follows, for the public pages. Without an
    LLM the stored ones are kept as they are (an LLM score of a topic followed earlier stays)."""
    followed = {t.slug for t in active}
    rest = [t for slug, t in sorted(catalogue.load_catalogue().topics.items())
            if slug not in followed]
    started = time.monotonic()
    # Its own report: `scored` and `cached` count the followed topics' work.
    await score_papers(store, papers, rest, None, PipelineReport())
    report.catalogue_topics = len(rest)
    report.catalogue_seconds = time.monotonic() - started


def day_papers(store: Store, date: str, limit: int | None = None) -> list[Paper]:
    """The papers announced on `date`, at their latest stored version, in id order."""
    ids = [a.arxiv_id for a in announcements_on(store, date)]
    if limit is not None:
        ids = ids[:limit]
    found = get_papers(store, ids)
    return [found[i] for i in ids if i in found]
