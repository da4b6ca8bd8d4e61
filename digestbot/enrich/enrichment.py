"""Enrichment: one LLM call per selected paper version (Chinese title, summaries, Chinese
abstract, institutions grounded in the first page), cached per (arxiv_id, version,
prompt_version, model); a replaced version is a new key and is enriched again. What is stored
and read back is `enrich.stored`'s.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from digestbot import topics as catalogue
from digestbot.enrich import offline, prompts
from digestbot.enrich.calls import (
    Key,
    PipelineReport,
    ask_recorded,
    failed_often,
    rows_for,
    run_all,
)
from digestbot.enrich.llm import LLMClient
from digestbot.enrich.pdf import GivenUp, page_text
from digestbot.enrich.stored import OFFLINE_MODEL, save_enrichment
from digestbot.errors import AnswerError
from digestbot.models import Enrichment, Institution, Paper
from digestbot.store import Store

log = logging.getLogger(__name__)

class PageSource(Protocol):
    """Where the institutions' text comes from (`pdf.FirstPages`, or the pipeline's memo of
    it): feed/API affiliations or page 1 of the PDF, "" when there is none to be had, GivenUp
    while arXiv is away (the paper goes without institutions now, filled in later)."""

    async def get(self, paper: Paper) -> str | GivenUp: ...


async def enrich_papers(store: Store, papers: Sequence[Paper], llm: LLMClient | None,
                        first_pages: PageSource, report: PipelineReport, *,
                        on_final: Callable[[Paper], None] | None = None) -> None:
    """Enrich `papers`, started in the order given (the pipeline passes them in the order
    readers need them: the PDF turn and the LLM slots are first come, first served).
    `on_final(paper)` is called once a paper's enrichment is stored or found in the cache."""
    final = on_final or (lambda paper: None)
    done = _enriched_keys(store, papers, llm)
    todo = []
    for paper in papers:
        if (paper.id, paper.version) in done:
            report.cached += 1
            final(paper)
        else:
            todo.append(paper)
    if llm is None:
        for paper in todo:
            save_enrichment(store, offline_enrichment(paper))
            final(paper)
        report.enriched += len(todo)
        return

    async def one(paper: Paper) -> None:
        enrichment = await _llm_enrichment(store, llm, first_pages, paper, report)
        save_enrichment(store, enrichment)
        report.enriched += 1
        final(paper)

    await run_all(one(paper) for paper in todo)


async def _llm_enrichment(store: Store, llm: LLMClient, first_pages: PageSource, paper: Paper,
                          report: PipelineReport) -> Enrichment:
    page = page_text(await first_pages.get(paper))

    def check(answer: prompts.EnrichAnswer) -> None:
        # A summary passed off as the translation is the typical failure; Chinese runs at
        # roughly a third of the English character count, a summary far below that.
        if not catalogue.is_cjk(answer.abstract_zh):
            raise AnswerError("abstract_zh must be a Chinese translation")
        if len(answer.abstract_zh) < 0.15 * len(paper.abstract):
            raise AnswerError("abstract_zh is a summary; translate the whole abstract")

    answer = await ask_recorded(
        store, llm, report, "enrich", paper,
        [{"role": "system", "content": prompts.enrich_system()},
         {"role": "user", "content": prompts.enrich_user(paper, page)}],
        prompts.EnrichAnswer, name="paper_enrichment", check=check)
    if answer is None:
        return offline_enrichment(paper)
    return Enrichment(
        arxiv_id=paper.id, version=paper.version, title_zh=answer.title_zh.strip(),
        summary_zh=answer.summary_zh.strip(), abstract_zh=answer.abstract_zh.strip(),
        institutions=grounded_institutions(answer.institutions, page),
        model=llm.model, prompt_version=prompts.PROMPT_VERSION,
        summary_en=answer.summary_en.strip(),
    )


def _squash(text: str) -> str:
    return re.sub(r"\W+", "", text.casefold())


def grounded_institutions(found: Sequence[prompts.InstitutionAnswer], page: str) -> list[Institution]:
    """Keep only institutions whose name occurs in the first-page text (never a guess).

    Compared without case, spaces and punctuation, so PDF line breaks and hyphenation
    ("Uni-\\nversity") do not hide a real name.
    """
    text = _squash(page)
    out: list[Institution] = []
    seen: set[str] = set()
    for inst in found:
        key = _squash(inst.name)
        if key and key in text and key not in seen:
            seen.add(key)
            out.append(Institution(inst.name.strip(), inst.name_zh.strip()))
        elif key not in seen:
            log.debug("dropped institution %r: not on the first page", inst.name)
    return out


def offline_enrichment(paper: Paper) -> Enrichment:
    """No LLM: the abstract's first sentence as the one-liner, Chinese fields empty."""
    return Enrichment(arxiv_id=paper.id, version=paper.version, model=OFFLINE_MODEL,
                      prompt_version=prompts.PROMPT_VERSION,
                      summary_en=offline.first_sentence(paper.abstract))


def _enriched_keys(store: Store, papers: Sequence[Paper], llm: LLMClient | None) -> set[Key]:
    """Versions that need no new enrichment: offline, any at all (an offline run never shadows
    a model's work); with the LLM, this prompt and model's, or any for a version whose calls
    failed too often (retrying would only fail again)."""
    rows = rows_for(store, "enrichments", [p.id for p in papers])
    enriched = {(r["arxiv_id"], r["version"]) for r in rows}
    if llm is None:
        return enriched
    current = {(r["arxiv_id"], r["version"]) for r in rows
               if r["model"] == llm.model and r["prompt_version"] == prompts.PROMPT_VERSION}
    return current | (enriched & failed_often(store, "enrich"))
