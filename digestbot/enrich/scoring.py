"""Scoring: every paper version × topic, one LLM call per paper version for all its missing
topics, cached per (arxiv_id, version, topic); offline scores are upgraded by a later LLM run.
Selection reads the stored scores back: which papers some subscriber's threshold reaches.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from digestbot.errors import AnswerError
from digestbot.models import Paper, Score, Topic
from digestbot.store import Store, now_iso


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
    retry_blocked = failed_often(store, "score") if cache and llm else set()
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

    await run_all(one(paper, missing) for paper, missing in todo)
    return results


async def _llm_scores(store: Store, llm: LLMClient, system: str, paper: Paper,
                      missing: list[Topic], report: PipelineReport) -> list[Score]:
    slugs = [t.slug for t in missing]

    def check(answer: prompts.ScoreAnswer) -> None:
        absent = set(slugs) - {s.topic for s in answer.scores}
        if absent:
            raise AnswerError(f"missing topics: {', '.join(sorted(absent))}")

    answer = await ask_recorded(
        store, llm, report, "score", paper,
        [{"role": "system", "content": system},
         {"role": "user", "content": prompts.score_user(paper, slugs)}],
        prompts.ScoreAnswer, name="topic_scores", check=check)
    if answer is None:
        return _offline_scores(paper, missing)
    by_topic = {s.topic: s for s in answer.scores}
    return [Score(paper.id, paper.version, slug, by_topic[slug].score,
                  by_topic[slug].reason_zh.strip(), llm.scorer) for slug in slugs]


def _offline_scores(paper: Paper, topics: Sequence[Topic]) -> list[Score]:
    out = []
    for topic in topics:
        score, reason = offline.score_offline(paper.title, paper.abstract, topic)
        out.append(Score(paper.id, paper.version, topic.slug, score, reason, offline.SCORER))
    return out


def _save_scores(store: Store, scores: Sequence[Score], cache: bool) -> None:
    # A score of a version not known yet (`digestbot score` on such a day) is returned but
    # not stored: a NULL in the key would never be found again and a re-run would add another.
    scores = [s for s in scores if s.version is not None]
    if not cache or not scores:
        return
    created = now_iso()
    # Spelled out: asdict's deep copy was half the cost of storing a day's catalogue scores.
    store.db["scores"].upsert_all(
        [{"arxiv_id": s.arxiv_id, "version": s.version, "topic": s.topic, "score": s.score,
          "reason": s.reason, "scorer": s.scorer, "created_at": created} for s in scores],
        pk=("arxiv_id", "version", "topic"))


def _stored_scores(store: Store, papers: Sequence[Paper]) -> dict[Key, dict[str, Score]]:
    wanted = {(p.id, p.version) for p in papers}
    out: dict[Key, dict[str, Score]] = {}
    for row in rows_for(store, "scores", [p.id for p in papers]):
        key = (row["arxiv_id"], row["version"])
        if key in wanted:
            out.setdefault(key, {})[row["topic"]] = Score(
                row["arxiv_id"], row["version"], row["topic"], row["score"], row["reason"] or "",
                row["scorer"] or "")
    return out


# -- selection -------------------------------------------------------------------------------

_MIN_THRESHOLDS = """
select s.topic, min(s.threshold) threshold from subscriptions s
join subscribers b on b.id = s.subscriber_id
where b.status in ('active', 'paused') group by s.topic
"""


def above_threshold(store: Store, papers: Sequence[Paper]) -> list[Paper]:
    """Papers whose score reaches the lowest threshold of some subscriber of that topic, best
    passing score first (ties in the given order): the order their first pages are wanted."""
    thresholds = {r["topic"]: r["threshold"] for r in store.db.query(_MIN_THRESHOLDS)}
    if not thresholds:
        return []
    stored = _stored_scores(store, papers)
    best = {(p.id, p.version): max((s.score for slug, s in stored.get((p.id, p.version), {}).items()
                                    if s.score >= thresholds.get(slug, 101)), default=None)
            for p in papers}
    passing = [p for p in papers if best[(p.id, p.version)] is not None]
    return sorted(passing, key=lambda p: -(best[(p.id, p.version)] or 0))
