"""Scoring: every paper version × topic, cached per (arxiv_id, version, topic); the papers
the cache lacks are sent to the LLM several per request (`batches`), each asked once for all
its missing topics; offline scores are upgraded by a later LLM run. With `first_stage`, the
prefilter keeps papers no subscriber's threshold is within reach of from the LLM: their
offline scores are final (`prefilter`). Selection reads the stored scores back: which papers
some subscriber's threshold reaches.
"""

from __future__ import annotations

from collections.abc import Sequence

from digestbot.enrich import prefilter
from digestbot.enrich.batches import offline_scores, score_requests
from digestbot.enrich.calls import Key, PipelineReport, failed_often, rows_for
from digestbot.enrich.llm import LLMClient
from digestbot.models import Paper, Score, Topic
from digestbot.store import Store, now_iso


async def score_papers(store: Store, papers: Sequence[Paper], topics: Sequence[Topic],
                       llm: LLMClient | None, report: PipelineReport, *,
                       cache: bool = True, first_stage: bool = False
                       ) -> dict[Key, dict[str, Score]]:
    """Every paper × topic score, from the cache where possible; new ones are stored.

    With `cache=False` (papers that are not in the store) nothing is read or written
    except the llm_calls accounting. With `first_stage` (and an LLM), papers that cannot
    reach any subscriber's threshold get their offline scores as final and no LLM call
    (`prefilter`).
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
    if first_stage and llm is not None:
        todo, dropped = prefilter.split(store, todo)
        # Re-checked every run; only what changed is written (a re-run is not new work).
        fresh = [s for s in dropped if stored.get((s.arxiv_id, s.version), {}).get(s.topic) != s]
        _save_scores(store, fresh, cache)
        for s in dropped:
            results[(s.arxiv_id, s.version)][s.topic] = s
        papers_dropped = {(s.arxiv_id, s.version) for s in dropped}
        papers_fresh = {(s.arxiv_id, s.version) for s in fresh}
        report.prefiltered += len(papers_dropped)
        report.scored += len(papers_fresh)
        report.cached += len(papers_dropped - papers_fresh)
    if llm is None:
        rows = offline_scores(todo)
        _save_scores(store, rows, cache)
        for s in rows:
            results[(s.arxiv_id, s.version)][s.topic] = s
        report.scored += len(todo)
        return results

    def done(scores: list[Score]) -> None:
        _save_scores(store, scores, cache)
        for s in scores:
            results[(s.arxiv_id, s.version)][s.topic] = s
        report.scored += len({(s.arxiv_id, s.version) for s in scores})

    await score_requests(store, llm, report, topics, todo, done)
    return results


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

def above_threshold(store: Store, papers: Sequence[Paper]) -> list[Paper]:
    """Papers whose score reaches the lowest threshold of some subscriber of that topic."""
    thresholds = prefilter.lowest_thresholds(store)
    if not thresholds:
        return []
    stored = _stored_scores(store, papers)
    return [p for p in papers
            if any(s.score >= thresholds.get(slug, 101)
                   for slug, s in stored.get((p.id, p.version), {}).items())]
