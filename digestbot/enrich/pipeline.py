"""score → select → enrich for one announcement day, doing only work the cache lacks.

Enrich once, deliver many: the cost of a run grows with papers, never with subscribers.
- Scoring: one LLM call per paper version scores every active topic at once; scores are cached
  per (arxiv_id, version, topic), so a newly subscribed topic costs one call per paper for just
  that topic and a re-run costs nothing. Offline scores (no key, or an LLM failure) are
  upgraded by a later LLM run, up to MAX_FAILED_CALLS failed attempts per paper version.
  First the prefilter (`DIGESTBOT_PREFILTER`, on by default): a paper whose offline score is
  far below every followed topic's lowest threshold keeps it as final and costs no call.
- Selection: a paper version is enriched when it reaches, on some topic, the lowest threshold
  of that topic's subscribers (active or paused), or always with `all_papers`.
- Enrichment: one call per selected paper version, cached per (arxiv_id, version,
  prompt_version, model); a replaced version is a new key and is enriched again.
- The rest of the catalogue: every catalogue topic nobody follows is scored with the offline
  scorer (cheap, no LLM) after the followed ones, so the public day pages count every topic; an existing score
  (an LLM one included) is never replaced by an offline one.
Everything the LLM cannot do falls back to the offline result for that paper; only a 401
stops the run. Results are written as each call finishes, so an interrupted run keeps them.

The pieces: `scoring` (scores and the selection above thresholds), `enrichment`
(enrichments, and the one to show), `calls` (the report and the LLM call both record); this
module is the day's plan that runs them in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from digestbot import topics as catalogue
from digestbot.config import Settings
from digestbot.enrich.calls import PipelineReport
from digestbot.enrich.enrichment import enrich_papers
from digestbot.enrich.institutions import FILL_PER_RUN, fill_missing_institutions
from digestbot.enrich.llm import LLMClient
from digestbot.enrich.pdf import FirstPages
from digestbot.enrich.scoring import above_threshold, score_papers
from digestbot.models import Paper, Topic
from digestbot.sources.papers import announcements_on, get_papers, latest_announcement_date
from digestbot.store import Store

log = logging.getLogger(__name__)


async def run_pipeline(settings: Settings, store: Store, *, date: str | None = None,
                       topics: Sequence[str] = (), all_papers: bool = False,
                       limit: int | None = None, offline: bool = False) -> PipelineReport:
    """Score and enrich one announcement day (default: the latest).

    Papers announced on `date` are scored against the active topics plus `topics` (names),
    then the ones above a subscriber's threshold (all with `all_papers`) are enriched; papers
    whose version is not known yet are left for a later run (`report.waiting`). Run it on the
    thread that opened `store` (sqlite connections belong to one thread): the CLI and the
    service's worker thread call it with asyncio.run.
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
    first_pages = FirstPages(settings, store)
    try:
        if llm is not None:
            report.scorer = llm.scorer
        started = time.monotonic()
        await score_papers(store, papers, active, llm, report,
                           first_stage=settings.prefilter == "on")
        report.score_seconds = time.monotonic() - started
        # After the followed topics' scores (the digests wait on those, not on these).
        await _score_catalogue(store, papers, active, report)
        selected = papers if all_papers else above_threshold(store, papers)
        report.enrich_selected = len(selected)
        started = time.monotonic()
        await enrich_papers(store, selected, llm, first_pages, report)
        report.enrich_seconds = time.monotonic() - started
        if llm is not None:  # pages given up while arXiv was away, a few per run (≈1 min)
            await fill_missing_institutions(settings, store, llm=llm, first_pages=first_pages,
                                            limit=FILL_PER_RUN)
    finally:
        first_pages.close()
        if llm is not None:
            await llm.aclose()
    log.debug("pipeline %s", report.summary())  # callers print or log the summary
    return report


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
