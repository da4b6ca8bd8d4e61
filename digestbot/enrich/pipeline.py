"""score → select → enrich for one announcement day, doing only work the cache lacks.

Enrich once, deliver many: the cost of a run grows with papers, never with subscribers.
- Scoring: one LLM call per paper version scores every active topic at once; scores are cached
  per (arxiv_id, version, topic), so a newly subscribed topic costs one call per paper for just
  that topic and a re-run costs nothing. Offline scores (no key, or an LLM failure) are
  upgraded by a later LLM run, up to MAX_FAILED_CALLS failed attempts per paper version.
- Selection: a paper version is enriched when it reaches, on some topic, the lowest threshold
  of that topic's subscribers (active or paused), or always with `all_papers`.
- Enrichment: one call per selected paper version, cached per (arxiv_id, version,
  prompt_version, model); a replaced version is a new key and is enriched again.
Everything the LLM cannot do falls back to the offline result for that paper; only a 401
stops the run. Results are written as each call finishes, so an interrupted run keeps them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from digestbot import topics as catalogue
from digestbot.config import Settings
from digestbot.enrich import offline, prompts
from digestbot.enrich.llm import LLMClient, record_call
from digestbot.enrich.pdf import FirstPages
from digestbot.errors import AnswerError, DigestbotError
from digestbot.models import Enrichment, Institution, Paper, Score, Topic
from digestbot.sources.papers import announcements_on, get_papers, latest_announcement_date
from digestbot.store import Store, chunks, now_iso

log = logging.getLogger(__name__)

OFFLINE_MODEL = "offline"
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
    score_calls: int = 0
    enrich_selected: int = 0
    enriched: int = 0  # new enrichments written
    enrich_calls: int = 0
    cached: int = 0  # scoring and enrichment work found in the cache
    failures: int = 0  # papers that fell back to offline after an LLM failure
    # Wall time of each phase, for operators' logs and bench/enrich.py's wall ÷ ideal.
    score_seconds: float = 0.0
    enrich_seconds: float = 0.0

    def summary(self) -> str:
        if self.date is None:
            return "没有公告 / no announcement to process"
        return (f"{self.date}: {_n(self.papers, 'paper')} × {_n(self.topics, 'topic')} ({self.scorer}); "
                f"scored {self.scored} ({self.score_calls} LLM calls), "
                f"enriched {self.enriched}/{self.enrich_selected} selected "
                f"({self.enrich_calls} LLM calls), {self.cached} cached, "
                f"{self.failures} failures")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def run_pipeline(settings: Settings, store: Store, *, date: str | None = None,
                 topics: Sequence[str] = (), all_papers: bool = False, limit: int | None = None,
                 offline: bool = False) -> PipelineReport:
    """Score and enrich one announcement day (default: the latest). Blocking; see below."""
    return asyncio.run(run_pipeline_async(settings, store, date=date, topics=topics,
                                          all_papers=all_papers, limit=limit, offline=offline))


async def run_pipeline_async(settings: Settings, store: Store, *, date: str | None = None,
                             topics: Sequence[str] = (), all_papers: bool = False,
                             limit: int | None = None, offline: bool = False) -> PipelineReport:
    """`run_pipeline` for callers already in an event loop (`store` belongs to its thread).

    Papers announced on `date` are scored against the active topics plus `topics` (names),
    then the ones above a subscriber's threshold (all with `all_papers`) are enriched.
    """
    day = date or latest_announcement_date(store)
    report = PipelineReport(date=day)
    if day is None:
        return report
    papers = day_papers(store, day, limit)
    active = sorted(catalogue.active_topics(store, topics), key=lambda t: t.slug)
    report.papers, report.topics = len(papers), len(active)
    llm = LLMClient(settings) if settings.llm_enabled and not offline else None
    first_pages = FirstPages(settings, store)
    try:
        if llm is not None:
            report.scorer = llm.scorer
        started = time.monotonic()
        await score_papers(store, papers, active, llm, report)
        report.score_seconds = time.monotonic() - started
        selected = papers if all_papers else above_threshold(store, papers)
        report.enrich_selected = len(selected)
        started = time.monotonic()
        await enrich_papers(store, selected, llm, first_pages, report)
        report.enrich_seconds = time.monotonic() - started
    finally:
        first_pages.close()
        if llm is not None:
            await llm.aclose()
    log.debug("pipeline %s", report.summary())  # callers print or log the summary
    return report


def day_papers(store: Store, date: str, limit: int | None = None) -> list[Paper]:
    """The papers announced on `date`, at their latest stored version, in id order."""
    ids = [a.arxiv_id for a in announcements_on(store, date)]
    if limit is not None:
        ids = ids[:limit]
    found = get_papers(store, ids)
    return [found[i] for i in ids if i in found]


# -- scoring ---------------------------------------------------------------------------------


async def score_papers(store: Store, papers: Sequence[Paper], topics: Sequence[Topic],
                       llm: LLMClient | None, report: PipelineReport, *,
                       cache: bool = True) -> dict[Key, dict[str, Score]]:
    """Every paper × topic score, from the cache where possible; new ones are stored.

    With `cache=False` (papers that are not in the store) nothing is read or written
    except the llm_calls accounting.
    """
    topics = sorted(topics, key=lambda t: t.slug)
    results: dict[Key, dict[str, Score]] = {(p.id, p.version): {} for p in papers}
    if not topics or not papers:
        return results
    stored = _stored_scores(store, papers) if cache else {}
    retry_blocked = _failed_often(store, "score") if cache and llm else set()
    todo: list[tuple[Paper, list[Topic]]] = []
    for paper in papers:
        key = (paper.id, paper.version)
        have = stored.get(key, {})
        missing = []
        for topic in topics:
            score = have.get(topic.slug)
            upgrade = (llm is not None and score is not None and not score.scorer.startswith("llm:")
                       and key not in retry_blocked)
            if score is None or upgrade:
                missing.append(topic)
            else:
                results[key][topic.slug] = score
        if missing:
            todo.append((paper, missing))
        else:
            report.cached += 1
    if llm is None:
        rows = [s for paper, missing in todo for s in _offline_scores(paper, missing)]
        _save_scores(store, rows, cache)
        for s in rows:
            results[(s.arxiv_id, s.version)][s.topic] = s
        report.scored += len(todo)
        return results

    system = prompts.score_system(topics)

    async def one(paper: Paper, missing: list[Topic]) -> None:
        scores = await _llm_scores(store, llm, system, paper, missing, report)
        _save_scores(store, scores, cache)
        for s in scores:
            results[(s.arxiv_id, s.version)][s.topic] = s
        report.scored += 1

    await _all(one(paper, missing) for paper, missing in todo)
    return results


async def _llm_scores(store: Store, llm: LLMClient, system: str, paper: Paper,
                      missing: list[Topic], report: PipelineReport) -> list[Score]:
    slugs = [t.slug for t in missing]

    def check(answer: prompts.ScoreAnswer) -> None:
        absent = set(slugs) - {s.topic for s in answer.scores}
        if absent:
            raise AnswerError(f"missing topics: {', '.join(sorted(absent))}")

    answer = await _ask_recorded(
        store, llm, report, "score", paper,
        [{"role": "system", "content": system},
         {"role": "user", "content": prompts.score_user(paper, slugs)}],
        prompts.ScoreAnswer, name="topic_scores", check=check)
    if answer is None:
        return _offline_scores(paper, missing)
    by_topic = {s.topic: s for s in answer.scores}
    return [Score(paper.id, paper.version, slug, by_topic[slug].score,
                  by_topic[slug].reason_zh.strip(), llm.scorer) for slug in slugs]


async def _ask_recorded(store: Store, llm: LLMClient, report: PipelineReport, kind: str,
                        paper: Paper, messages: list[dict[str, str]], answer: type[M], *,
                        name: str, check: Callable[[M], None]) -> M | None:
    """One logical call about `paper`: recorded in llm_calls and counted in the report.

    None means the caller falls back to the offline result; the failure is counted (and
    logged, unless the breaker skipped the call: it already said why, once).
    """
    result = await llm.ask(messages, answer, name=name, check=check)
    record_call(store, kind, paper.id, paper.version, llm.model, result)
    if result.called:
        if kind == "score":
            report.score_calls += 1
        else:
            report.enrich_calls += 1
    if result.value is None:
        report.failures += 1
        if result.called:
            log.warning("%s %s fell back to offline: %s", kind, paper.versioned_id,
                        result.error)
    return result.value


def _offline_scores(paper: Paper, topics: Sequence[Topic]) -> list[Score]:
    out = []
    for topic in topics:
        score, reason = offline.score_offline(paper.title, paper.abstract, topic)
        out.append(Score(paper.id, paper.version, topic.slug, score, reason, offline.SCORER))
    return out


def _save_scores(store: Store, scores: Sequence[Score], cache: bool) -> None:
    if not cache or not scores:
        return
    created = now_iso()
    store.db["scores"].upsert_all(
        [{**asdict(s), "created_at": created} for s in scores],
        pk=("arxiv_id", "version", "topic"))


def _stored_scores(store: Store, papers: Sequence[Paper]) -> dict[Key, dict[str, Score]]:
    wanted = {(p.id, p.version) for p in papers}
    out: dict[Key, dict[str, Score]] = {}
    for row in _rows_for(store, "scores", [p.id for p in papers]):
        key = (row["arxiv_id"], row["version"])
        if key in wanted:
            out.setdefault(key, {})[row["topic"]] = Score(
                row["arxiv_id"], row["version"], row["topic"], row["score"], row["reason"] or "",
                row["scorer"] or "")
    return out


def _rows_for(store: Store, table: str, ids: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in chunks(ids, _CHUNK):
        marks = ",".join("?" * len(chunk))
        rows += store.db.query(f"select * from {table} where arxiv_id in ({marks})", chunk)
    return rows


def _failed_often(store: Store, kind: str) -> set[Key]:
    """Paper versions whose LLM calls of `kind` failed MAX_FAILED_CALLS times: stop retrying."""
    rows = store.db.query(
        "select arxiv_id, version from llm_calls where kind = ? and outcome in ('fallback', 'error')"
        " group by arxiv_id, version having count(*) >= ?", [kind, MAX_FAILED_CALLS])
    return {(r["arxiv_id"], r["version"]) for r in rows}


async def _all(coros: Any) -> None:
    """Run concurrently; the first DigestbotError (a 401) cancels the rest and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except* DigestbotError as errors:
        raise errors.exceptions[0] from None


# -- selection -------------------------------------------------------------------------------

_MIN_THRESHOLDS = """
select s.topic, min(s.threshold) threshold from subscriptions s
join subscribers b on b.id = s.subscriber_id
where b.status in ('active', 'paused') group by s.topic
"""


def above_threshold(store: Store, papers: Sequence[Paper]) -> list[Paper]:
    """Papers whose score reaches the lowest threshold of some subscriber of that topic."""
    thresholds = {r["topic"]: r["threshold"] for r in store.db.query(_MIN_THRESHOLDS)}
    if not thresholds:
        return []
    stored = _stored_scores(store, papers)
    return [p for p in papers
            if any(s.score >= thresholds.get(slug, 101)
                   for slug, s in stored.get((p.id, p.version), {}).items())]


# -- enrichment ------------------------------------------------------------------------------


async def enrich_papers(store: Store, papers: Sequence[Paper], llm: LLMClient | None,
                        first_pages: FirstPages, report: PipelineReport) -> None:
    done = _enriched_keys(store, papers, llm)
    todo = []
    for paper in papers:
        if (paper.id, paper.version) in done:
            report.cached += 1
        else:
            todo.append(paper)
    if llm is None:
        for paper in todo:
            save_enrichment(store, offline_enrichment(paper))
        report.enriched += len(todo)
        return

    async def one(paper: Paper) -> None:
        enrichment = await _llm_enrichment(store, llm, first_pages, paper, report)
        save_enrichment(store, enrichment)
        report.enriched += 1

    await _all(one(paper) for paper in todo)


async def _llm_enrichment(store: Store, llm: LLMClient, first_pages: FirstPages, paper: Paper,
                          report: PipelineReport) -> Enrichment:
    page = await first_pages.get(paper)

    def check(answer: prompts.EnrichAnswer) -> None:
        # A summary passed off as the translation is the typical failure; Chinese runs at
        # roughly a third of the English character count, a summary far below that.
        if not catalogue.is_cjk(answer.abstract_zh):
            raise AnswerError("abstract_zh must be a Chinese translation")
        if len(answer.abstract_zh) < 0.15 * len(paper.abstract):
            raise AnswerError("abstract_zh is a summary; translate the whole abstract")

    answer = await _ask_recorded(
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


def save_enrichment(store: Store, e: Enrichment) -> None:
    store.db["enrichments"].upsert({
        "arxiv_id": e.arxiv_id, "version": e.version, "prompt_version": e.prompt_version,
        "model": e.model, "title_zh": e.title_zh, "summary_zh": e.summary_zh,
        "summary_en": e.summary_en, "abstract_zh": e.abstract_zh,
        "institutions": _institutions_json(e.institutions), "created_at": now_iso(),
    }, pk=("arxiv_id", "version", "prompt_version", "model"))


def _institutions_json(items: Sequence[Institution]) -> str:
    return json.dumps([{"name": i.name, "name_zh": i.name_zh} for i in items], ensure_ascii=False)


def _enriched_keys(store: Store, papers: Sequence[Paper], llm: LLMClient | None) -> set[Key]:
    """Versions that need no new enrichment: offline, any at all (an offline run never shadows
    a model's work); with the LLM, this prompt and model's, or any for a version whose calls
    failed too often (retrying would only fail again)."""
    rows = _rows_for(store, "enrichments", [p.id for p in papers])
    enriched = {(r["arxiv_id"], r["version"]) for r in rows}
    if llm is None:
        return enriched
    current = {(r["arxiv_id"], r["version"]) for r in rows
               if r["model"] == llm.model and r["prompt_version"] == prompts.PROMPT_VERSION}
    return current | (enriched & _failed_often(store, "enrich"))


def get_enrichment(store: Store, arxiv_id: str, version: int) -> Enrichment | None:
    """The enrichment to show for that version: a model's before offline, then the current
    prompt's, then the newest."""
    rows = list(store.db.query(
        "select * from enrichments where arxiv_id = ? and version = ?"
        " order by model = ? asc, prompt_version = ? desc, created_at desc, rowid desc limit 1",
        [arxiv_id, version, OFFLINE_MODEL, prompts.PROMPT_VERSION]))
    if not rows:
        return None
    row = rows[0]
    return Enrichment(
        arxiv_id=row["arxiv_id"], version=row["version"], title_zh=row["title_zh"] or "",
        summary_zh=row["summary_zh"] or "", abstract_zh=row["abstract_zh"] or "",
        institutions=[Institution(i["name"], i.get("name_zh", ""))
                      for i in json.loads(row["institutions"] or "[]")],
        model=row["model"], prompt_version=row["prompt_version"] or "",
        summary_en=row["summary_en"] or "",
    )
