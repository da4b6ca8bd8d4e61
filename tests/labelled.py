"""The hand-labelled set (tests/fixtures/labelled) and what is measured on it: the offline
scorer's recall and false hits at a threshold, and what the prefilter would drop.
Shared by the tests and bench/offline.py, so both report the same figures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from digestbot.enrich import offline, prefilter
from digestbot.models import Paper
from digestbot.topics import get_topic

LABELLED = Path(__file__).parent / "fixtures" / "labelled" / "papers.jsonl"


@dataclass(frozen=True)
class Labelled:
    papers: list[Paper]
    labels: dict[str, list[int]]  # topic slug → 0/1 per paper, in paper order


def load() -> Labelled:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    papers = [Paper(id=r["id"], version=1, title=r["title"], abstract=r["abstract"])
              for r in rows]
    return Labelled(papers, {slug: [r["labels"][slug] for r in rows] for slug in rows[0]["labels"]})


def keyword_scores(data: Labelled) -> dict[str, list[int]]:
    """Before: the keyword scorer alone (offline-v1's scores)."""
    out = {}
    for slug in data.labels:
        topic = get_topic(slug)
        out[slug] = [offline.score_offline(p.title, p.abstract, topic)[0] for p in data.papers]
    return out


def blended_scores(data: Labelled) -> dict[str, list[int]]:
    """After: keywords blended with embeddings, as stored (offline-v2)."""
    topics = [get_topic(slug) for slug in data.labels]
    rows = offline.score_papers_offline([(p, topics) for p in data.papers])
    return {t.slug: [row[j][0] for row in rows] for j, t in enumerate(topics)}


@dataclass(frozen=True)
class Counts:
    positives: int
    negatives: int
    hits: int  # positives at or above the cut (recall's numerator)
    false_hits: int  # negatives at or above the cut

    @property
    def recall(self) -> float:
        return self.hits / self.positives

    @property
    def false_hit_rate(self) -> float:
        return self.false_hits / self.negatives


def at_threshold(data: Labelled, scores: dict[str, list[int]], threshold: int
                 ) -> dict[str, Counts]:
    """Per topic, and under "all" the pooled (paper, topic) pairs."""
    out = {slug: _counts(data.labels[slug], [s >= threshold for s in scores[slug]])
           for slug in data.labels}
    out["all"] = _pooled(out.values())
    return out


def kept_by_prefilter(data: Labelled, scores: dict[str, list[int]], threshold: int,
                      margin: int = prefilter.MARGIN) -> dict[str, Counts]:
    """What the prefilter keeps for the LLM when a topic is followed alone at `threshold`
    (the strictest case: one topic, so nothing else keeps a paper): `hits` are the relevant
    pairs kept, `false_hits` the irrelevant ones still sent to the model."""
    out = {slug: _counts(data.labels[slug],
                         [not prefilter.unreachable(s, threshold, margin)
                          for s in scores[slug]])
           for slug in data.labels}
    out["all"] = _pooled(out.values())
    return out


def _counts(labels: list[int], selected: list[bool]) -> Counts:
    return Counts(positives=sum(labels), negatives=len(labels) - sum(labels),
                  hits=sum(1 for y, s in zip(labels, selected, strict=True) if y and s),
                  false_hits=sum(1 for y, s in zip(labels, selected, strict=True) if s and not y))


def _pooled(parts: Iterable[Counts]) -> Counts:
    parts = list(parts)
    return Counts(*(sum(getattr(c, f) for c in parts)
                    for f in ("positives", "negatives", "hits", "false_hits")))
