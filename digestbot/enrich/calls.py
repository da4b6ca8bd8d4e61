"""What scoring and enrichment share: the run's report, one recorded LLM call, the retry
limit, running calls side by side, and reading this stage's rows for a set of papers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from digestbot.enrich import offline
from digestbot.enrich.llm import LLMClient, Outcome, record_call
from digestbot.errors import DigestbotError
from digestbot.models import Paper
from digestbot.store import Store, chunks

log = logging.getLogger(__name__)

MAX_FAILED_CALLS = 3
_CHUNK = 500

Key = tuple[str, int]  # (arxiv_id, version)
M = TypeVar("M", bound=BaseModel)


@dataclass
class PipelineReport:
    date: str | None = None
    papers: int = 0
    topics: int = 0
    scorer: str = offline.SCORER
    scored: int = 0  # paper versions that got new scores
    score_calls: int = 0  # requests: one scores several papers (settings.llm_batch)
    prefiltered: int = 0  # paper versions kept from the LLM: no followed topic within reach
    enrich_selected: int = 0
    enriched: int = 0  # new enrichments written
    enrich_calls: int = 0
    cached: int = 0  # scoring and enrichment work found in the cache
    failures: int = 0  # papers that fell back to offline after an LLM failure
    # What the requests cost, as the provider reported it (cached: part of prompt).
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    waiting: int = 0  # papers left for a later run: their version is not known yet
    # Wall time of each phase, for operators' logs and bench/enrich.py's wall ÷ ideal.
    score_seconds: float = 0.0
    catalogue_topics: int = 0  # catalogue topics nobody follows, scored offline for the pages
    catalogue_seconds: float = 0.0
    enrich_seconds: float = 0.0

    def summary(self) -> str:
        if self.date is None:
            return "没有公告 / no announcement to process"
        return (f"{self.date}: {_n(self.papers, 'paper')} × {_n(self.topics, 'topic')} ({self.scorer}); "
                f"scored {self.scored} ({self.score_calls} LLM calls"
                + (f", prefiltered {self.prefiltered}" if self.prefiltered else "") + "), "
                f"enriched {self.enriched}/{self.enrich_selected} selected "
                f"({self.enrich_calls} LLM calls), {self.cached} cached, "
                f"{self.failures} failures"
                + (f", {self.waiting} waiting for their version" if self.waiting else "")
                + (f"; LLM tokens {self.prompt_tokens:,} prompt ({self.cached_tokens:,} cached)"
                   f" + {self.completion_tokens:,} completion"
                   if self.score_calls or self.enrich_calls else "")
                + (f"; {_n(self.catalogue_topics, 'other catalogue topic')} offline "
                   f"({self.catalogue_seconds:.1f} s)" if self.catalogue_topics else ""))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


async def ask_recorded(store: Store, llm: LLMClient, report: PipelineReport, kind: str,
                       paper: Paper, messages: list[dict[str, str]], answer: type[M], *,
                       name: str, check: Callable[[M], None],
                       schema: type[BaseModel] | None = None) -> M | None:
    """One logical call about `paper`: recorded in llm_calls and counted in the report.

    None means the caller falls back to the offline result; the failure is counted (and
    logged, unless the breaker skipped the call: it already said why, once).
    """
    result = await llm.ask(messages, answer, name=name, check=check, schema=schema)
    record_call(store, kind, llm.model, result,
                [(paper.id, paper.version, result.outcome, result.error)])
    count_call(report, kind, result)
    if result.value is None:
        report.failures += 1
        if result.called:
            log.warning("%s %s fell back to offline: %s", kind, paper.versioned_id,
                        result.error)
    return result.value


def count_call(report: PipelineReport, kind: str, result: Outcome[Any]) -> None:
    """One request (with its validation retry) in the report: nothing if it was not sent."""
    if not result.called:
        return
    if kind == "score":
        report.score_calls += 1
    else:
        report.enrich_calls += 1
    report.prompt_tokens += result.usage.prompt
    report.completion_tokens += result.usage.completion
    report.cached_tokens += result.usage.cached


def rows_for(store: Store, table: str, ids: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in chunks(ids, _CHUNK):
        marks = ",".join("?" * len(chunk))
        rows += store.db.query(f"select * from {table} where arxiv_id in ({marks})", chunk)
    return rows


def failed_often(store: Store, kind: str) -> set[Key]:
    """Paper versions whose LLM calls of `kind` failed MAX_FAILED_CALLS times: stop retrying."""
    rows = store.db.query(
        "select arxiv_id, version from llm_calls where kind = ? and outcome in ('fallback', 'error')"
        " group by arxiv_id, version having count(*) >= ?", [kind, MAX_FAILED_CALLS])
    return {(r["arxiv_id"], r["version"]) for r in rows}


async def run_all(coros: Any) -> None:
    """Run concurrently; the first DigestbotError (a 401) cancels the rest and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except* DigestbotError as errors:
        raise errors.exceptions[0] from None
