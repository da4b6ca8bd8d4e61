"""The cheap first stage before the LLM: papers that cannot reach any followed topic.

Scoring asks the LLM about a paper version for the followed topics it has no final score for.
Most of a day's papers are far from every followed topic, and the offline scorer (keywords
blended with embeddings, `offline.score_papers_offline`) says so for almost nothing. A paper
is dropped when, for every topic it still needs, its offline score is below that topic's
lowest subscriber threshold minus MARGIN; its offline scores are then stored as final, marked
`prefilter:offline-v2` (the pages say so, and the reason starts with NOTE), and no LLM call
is made for it. A topic nobody subscribes to (`enrich --topic`, an operator's list) has no
threshold to miss: a paper that needs it is never dropped. Scores are re-checked on each run,
so a reader who subscribes later with a lower threshold gets the LLM's view of papers dropped
before.

MARGIN is measured on tests/fixtures/labelled (392 hand-labelled real papers, 5 topics),
taking the labels as what the LLM alone would select at the default threshold 60: with MARGIN
30, 1 of 120 relevant (paper, topic) pairs is dropped (0.8 %; the budget is 2 %; 25 would
drop 2, right at it) while 61 % of the irrelevant pairs are spared a call. A paper goes to the
model if any followed topic keeps it, so the savings shrink as more topics are followed: on
the recorded cs.CL day (139 papers) it saves 31 calls for one reader of 后训练, 7 with the
five labelled topics followed and 1 with the whole catalogue (bench/offline.py). The
keywords alone could not do it: they score 4 of the 120 relevant pairs 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from digestbot.enrich import offline
from digestbot.models import Paper, Score, Topic
from digestbot.store import Store

MARGIN = 30
PREFILTERED = f"prefilter:{offline.SCORER}"
# Leads a dropped paper's reason, so a reader of the page knows no model judged it.
NOTE = "预筛，未送模型 / prefiltered, not sent to the model"

_LOWEST = """
select s.topic, min(s.threshold) threshold from subscriptions s
join subscribers b on b.id = s.subscriber_id
where b.status in ('active', 'paused') group by s.topic
"""


def lowest_thresholds(store: Store) -> dict[str, int]:
    """Topic slug → the lowest threshold among its subscribers (active or paused)."""
    return {r["topic"]: r["threshold"] for r in store.db.query(_LOWEST)}


def unreachable(score: int, threshold: int | None, margin: int = MARGIN) -> bool:
    """Whether an offline `score` says the LLM's score cannot reach `threshold`."""
    return threshold is not None and score < threshold - margin


def split(store: Store, todo: Sequence[tuple[Paper, list[Topic]]]
          ) -> tuple[list[tuple[Paper, list[Topic]]], list[Score]]:
    """(the work still for the LLM, the final offline scores of the papers dropped)."""
    if not todo:
        return [], []
    thresholds = lowest_thresholds(store)
    keep: list[tuple[Paper, list[Topic]]] = []
    dropped: list[Score] = []
    for (paper, missing), row in zip(todo, offline.score_papers_offline(todo), strict=True):
        scores = [(t.slug, score, reason) for t, (score, reason) in zip(missing, row, strict=True)]
        if all(unreachable(score, thresholds.get(slug)) for slug, score, _ in scores):
            dropped.extend(Score(paper.id, paper.version, slug, score, f"{NOTE}; {reason}",
                                 PREFILTERED) for slug, score, reason in scores)
        else:
            keep.append((paper, missing))
    return keep, dropped
