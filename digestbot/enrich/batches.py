"""Scoring requests: several papers per LLM request behind one shared prompt prefix.

Papers that need the same topics go together, up to `llm.batch` a request (fewer when many
topics would make the answer long), in the order given (the caller's priority). The system
message (instructions, rubric and every active topic) is the same for every request of a run
and longer than the providers' caching minimum, so from the second request on it is served
from the prompt cache; only the papers are new.

The answer holds one item per paper id, and each item is checked on its own. An item whose id
is not one of the request's is ignored; a paper whose item is missing, given twice or wrong (a
topic missing or given twice, a score outside 0–100, a reason too long) is asked again alone,
once, with the usual validation retry, and gets the offline score if that fails too. A score
is only ever taken from the item that carries its own paper's id. An answer unusable as a
whole (not JSON, cut off, refused) sends each of its papers alone the same way; a transport
failure the SDK's retries did not cure gives them the offline score at once, as for a single
paper, and counts toward giving up on them (MAX_FAILED_CALLS). A paper version and topic that
got an answer is never asked again.

In llm_calls a request has one row per paper: `ok`, `rejected` (asked again alone: that
request has its own row) or `error`, sharing the request's id and tokens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from digestbot.enrich import offline, prompts
from digestbot.enrich.calls import Key, PipelineReport, ask_recorded, count_call, run_all
from digestbot.enrich.llm import LLMClient, record_call, shape_problems
from digestbot.errors import AnswerError
from digestbot.models import Paper, Score, Topic
from digestbot.store import Store

log = logging.getLogger(__name__)

Checked = dict[Key, dict[str, prompts.TopicScore]]

# An answer's size, by the README's token rule: some servers stop at 4,096 completion tokens
# unless told otherwise (DeepSeek's default), so a request asks for at most ~3,000. One topic's
# entry at its longest (a reason of REASON_MAX_CHARS Chinese characters), and a paper's id.
ANSWER_TOKENS = 3000
TOPIC_TOKENS = prompts.estimate_tokens(json.dumps(
    {"topic": "computational-social-science", "score": 100,
     "reason_zh": "长" * prompts.REASON_MAX_CHARS}, ensure_ascii=False) + ", ")
PAPER_TOKENS = prompts.estimate_tokens('{"id": "2608.00001v12", "scores": []}, ')


async def score_requests(store: Store, llm: LLMClient, report: PipelineReport,
                         topics: Sequence[Topic], todo: Sequence[tuple[Paper, list[Topic]]],
                         done: Callable[[list[Score]], None]) -> None:
    """Score every (paper, missing topics) of `todo`; `done` gets each request's scores
    (the model's, or offline ones where it failed) as soon as they are known."""
    system = prompts.score_system(topics)
    groups: dict[tuple[str, ...], tuple[list[Topic], list[Paper]]] = {}
    seen: set[Key] = set()
    for paper, missing in todo:
        if (paper.id, paper.version) in seen:  # one request per paper version, even if listed twice
            continue
        seen.add((paper.id, paper.version))
        groups.setdefault(tuple(t.slug for t in missing), (missing, []))[1].append(paper)

    async def one(papers: list[Paper], missing: list[Topic]) -> None:
        done(await _request(store, llm, report, system, papers, missing))

    await run_all(one(papers[i : i + size], missing)
                  for missing, papers in groups.values()
                  for size in [batch_size(llm.batch, len(missing))]
                  for i in range(0, len(papers), size))


def batch_size(batch: int, topics: int) -> int:
    """Papers per request: `batch`, fewer when that many papers' answers could outgrow
    ANSWER_TOKENS (many topics each), so a default output limit never cuts an answer off."""
    per_paper = PAPER_TOKENS + topics * TOPIC_TOKENS
    return max(1, min(batch, ANSWER_TOKENS // per_paper))


async def _request(store: Store, llm: LLMClient, report: PipelineReport, system: str,
                   papers: list[Paper], missing: list[Topic]) -> list[Score]:
    slugs = [t.slug for t in missing]
    if len(papers) == 1:
        return await _alone(store, llm, report, system, papers[0], missing)
    # No validation retry for a batch: what it gets wrong is asked again paper by paper.
    result = await llm.ask(_messages(system, papers, slugs), prompts.ScoreReply,
                           name="topic_scores", schema=prompts.ScoreAnswer, attempts=1)
    if not result.called or result.outcome == "error":
        record_call(store, "score", llm.model, result,
                    [(p.id, p.version, "error", result.error) for p in papers])
        count_call(report, "score", result)
        report.failures += len(papers)
        if result.called:
            log.warning("scoring request of %d papers fell back to offline: %s", len(papers),
                        result.error)
        return offline_scores([(p, missing) for p in papers])
    if result.value is None:
        good: Checked = {}
        problems = {(p.id, p.version): f"unusable answer ({result.error})" for p in papers}
    else:
        good, problems = check_items(result.value, papers, slugs)
    record_call(store, "score", llm.model, result,
                [(p.id, p.version, "rejected", problems[(p.id, p.version)])
                 if (p.id, p.version) in problems else (p.id, p.version, result.outcome, None)
                 for p in papers])
    count_call(report, "score", result)
    scores = [s for p in papers if (p.id, p.version) in good
              for s in _from_answer(p, slugs, good[(p.id, p.version)], llm.scorer)]
    rest = [p for p in papers if (p.id, p.version) in problems]
    for p in rest:
        log.info("scoring %s again alone: %s", p.versioned_id, problems[(p.id, p.version)])

    async def again(paper: Paper) -> None:
        scores.extend(await _alone(store, llm, report, system, paper, missing))

    await run_all(again(p) for p in rest)
    return scores


async def _alone(store: Store, llm: LLMClient, report: PipelineReport, system: str,
                 paper: Paper, missing: list[Topic]) -> list[Score]:
    """One paper in a request of its own (same prefix, same answer shape): the validation
    retry shows the model what was wrong; then the offline scores."""
    slugs = [t.slug for t in missing]
    found: Checked = {}

    def check(reply: prompts.ScoreReply) -> None:
        good, problems = check_items(reply, [paper], slugs)
        if problems:
            raise AnswerError("; ".join(problems.values()))
        found.update(good)

    reply = await ask_recorded(store, llm, report, "score", paper,
                               _messages(system, [paper], slugs), prompts.ScoreReply,
                               name="topic_scores", check=check, schema=prompts.ScoreAnswer)
    if reply is None:
        return offline_scores([(paper, missing)])
    return _from_answer(paper, slugs, found[(paper.id, paper.version)], llm.scorer)


def check_items(reply: prompts.ScoreReply, papers: Sequence[Paper], slugs: Sequence[str]
                ) -> tuple[Checked, dict[Key, str]]:
    """Each paper's requested topic scores from its own item, or what is wrong with it."""
    items: dict[Key, list[Any]] = {(p.id, p.version): [] for p in papers}
    unknown = []
    for item in reply.papers:
        paper = _paper_of(item, papers)
        if paper is None:
            unknown.append(str(item.get("id") if isinstance(item, dict) else item)[:40])
        else:
            items[(paper.id, paper.version)].append(item)
    note = f" (the answer had unknown ids: {', '.join(unknown[:3])})" if unknown else ""
    good: Checked = {}
    problems: dict[Key, str] = {}
    for p in papers:
        key, found = (p.id, p.version), items[(p.id, p.version)]
        try:
            if not found:
                raise AnswerError("missing from the answer")
            if len(found) > 1:
                raise AnswerError(f"answered {len(found)} times")
            good[key] = _topic_scores(found[0], slugs)
        except AnswerError as exc:
            problems[key] = f"paper {p.versioned_id}: {exc}{note}"
    return good, problems


def _topic_scores(item: Any, slugs: Sequence[str]) -> dict[str, prompts.TopicScore]:
    try:
        answer = prompts.PaperScores.model_validate(item)
    except ValidationError as exc:
        raise AnswerError(shape_problems(exc)) from None
    by_topic: dict[str, prompts.TopicScore] = {}
    for s in answer.scores:
        if s.topic in by_topic:
            raise AnswerError(f"topic {s.topic} given twice")
        by_topic[s.topic] = s
    absent = [slug for slug in slugs if slug not in by_topic]
    if absent:
        raise AnswerError(f"missing topics: {', '.join(absent)}")
    return by_topic


def _paper_of(item: Any, papers: Sequence[Paper]) -> Paper | None:
    """The request's paper an item names: its versioned id as written, or the bare id when
    only one version is in the request; anything else is no paper."""
    ident = item.get("id") if isinstance(item, dict) else None
    if not isinstance(ident, str):
        return None
    ident = ident.strip().removeprefix("arXiv:").removeprefix("arxiv:")
    exact = [p for p in papers if p.versioned_id == ident]
    bare = [p for p in papers if p.id == ident]
    return exact[0] if len(exact) == 1 else bare[0] if len(bare) == 1 else None


def _from_answer(paper: Paper, slugs: Sequence[str], by_topic: dict[str, prompts.TopicScore],
                 scorer: str) -> list[Score]:
    return [Score(paper.id, paper.version, slug, by_topic[slug].score,
                  by_topic[slug].reason_zh.strip(), scorer) for slug in slugs]


def _messages(system: str, papers: Sequence[Paper], slugs: Sequence[str]) -> list[dict[str, str]]:
    return [{"role": "system", "content": system},
            {"role": "user", "content": prompts.score_user(papers, slugs)}]


def offline_scores(work: Sequence[tuple[Paper, Sequence[Topic]]]) -> list[Score]:
    """The offline scorer's (blended) scores for each (paper, its topics): no LLM, or the
    fallback when it could not answer. The papers are embedded in one batch."""
    if not work:
        return []
    return [Score(paper.id, paper.version, t.slug, score, reason, offline.SCORER)
            for (paper, topics), row in zip(work, offline.score_papers_offline(work), strict=True)
            for t, (score, reason) in zip(topics, row, strict=True)]
