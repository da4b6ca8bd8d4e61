"""Institutions given up while arXiv was away, filled in once it answers again.

A paper whose first page was given up (`enrich.pdf`: arXiv unreachable, refusing, breaker
open) went out without institutions, never with guessed ones. `fill_missing_institutions`
fetches those pages when arXiv's breaker lets it (newest first) and asks the LLM for the
institutions alone: the enrichment keeps the translations readers have already seen and
gains its institutions, grounded in the page as always, for later digests and the web pages.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pydantic import BaseModel

from digestbot.config import Settings
from digestbot.enrich import prompts
from digestbot.enrich.calls import PipelineReport, ask_recorded, rows_for
from digestbot.enrich.enrichment import grounded_institutions
from digestbot.enrich.llm import LLMClient
from digestbot.enrich.pdf import FirstPages, GivenUp, given_up
from digestbot.enrich.stored import OFFLINE_MODEL
from digestbot.models import Paper
from digestbot.sources.papers import get_papers
from digestbot.store import Store

log = logging.getLogger(__name__)

# Pages the day's pipeline fills in after its own work: about a minute at arXiv's 3 s, so a
# long outage's backlog never holds up the evening's digests (a job after the deliveries can
# call fill_missing_institutions without a limit).
FILL_PER_RUN = 20

SYSTEM = """You read the first page of an arXiv paper, extracted from its PDF.
Answer in JSON: {"institutions": [{"name": "Tsinghua University", "name_zh": "清华大学"}]} — \
the authors' institutions in author order, each once, taken ONLY from the first-page text: \
name as printed there, name_zh its usual Chinese name (or the name again if it has none). \
If the page names no institution, return []. Never infer institutions from author names, \
e-mail domains you have not been shown, or what you know about the authors."""


class InstitutionsAnswer(BaseModel):
    institutions: list[prompts.InstitutionAnswer]


@dataclass
class FillReport:
    waiting: int = 0  # first pages given up when the run began
    fetched: int = 0  # of those, fetched now
    filled: int = 0  # enrichments that gained institutions
    left: int = 0  # still given up (arXiv away again, or its breaker open)

    def summary(self) -> str:
        return (f"institutions: {self.waiting} first pages were given up, {self.fetched} "
                f"fetched now, {self.filled} enrichments filled in, {self.left} left")


def _accept(answer: InstitutionsAnswer) -> None:
    """Any well-formed answer will do: grounding in the page drops what is not there."""


async def fill_missing_institutions(settings: Settings, store: Store, *,
                                    llm: LLMClient | None = None,
                                    first_pages: FirstPages | None = None,
                                    limit: int | None = None) -> FillReport:
    """Fetch given-up first pages (at most `limit`) while arXiv's breaker is closed, and
    fill the institutions of their enrichments in. Returns at once while the breaker is open
    or without an LLM (nothing reads institutions then, so no PDF is worth fetching).

    Run it on the thread that opened `store`, like the pipeline (it can share the pipeline's
    `llm` and `first_pages`); each page costs one polite arXiv request and one small LLM call.
    """
    pending = given_up(store, limit)
    report = FillReport(waiting=len(pending), left=len(pending))
    if not pending or (llm is None and not settings.llm_enabled):
        return report
    pages = first_pages or FirstPages(settings, store)
    client = llm or LLMClient(settings)
    try:
        if pages.breaker_open:
            return report
        papers = get_papers(store, [arxiv_id for arxiv_id, _ in pending])
        for arxiv_id, version in pending:
            paper = papers.get(arxiv_id)
            if paper is None or paper.version != version:
                report.left -= 1  # a newer version replaced it: its own page is asked for
                continue
            page = await pages.get(paper)
            if isinstance(page, GivenUp):
                break  # arXiv is away again: the rest wait for the next run
            report.left -= 1
            report.fetched += 1
            if page.strip() and await _fill(store, client, paper, page):
                report.filled += 1
    finally:
        if first_pages is None:
            pages.close()
        if llm is None:
            await client.aclose()
    if report.waiting:
        log.info("%s", report.summary())
    return report


async def _fill(store: Store, llm: LLMClient, paper: Paper, page: str) -> bool:
    """The institutions on `page` into the paper's model enrichments that have none."""
    rows = [r for r in rows_for(store, "enrichments", [paper.id])
            if r["version"] == paper.version and r["model"] != OFFLINE_MODEL
            and not json.loads(r["institutions"] or "[]")]
    if not rows:
        return False  # not enriched yet: its enrichment will read the page now stored
    answer = await ask_recorded(
        store, llm, PipelineReport(), "institutions", paper,
        [{"role": "system", "content": SYSTEM},
         {"role": "user", "content": prompts.enrich_user(paper, page)}],
        InstitutionsAnswer, name="paper_institutions", check=_accept)
    if answer is None:
        return False
    found = grounded_institutions(answer.institutions, page)
    if not found:
        return False
    value = json.dumps([{"name": i.name, "name_zh": i.name_zh} for i in found],
                       ensure_ascii=False)
    for row in rows:
        store.db["enrichments"].upsert({**row, "institutions": value},
                                       pk=("arxiv_id", "version", "prompt_version", "model"))
    return True
