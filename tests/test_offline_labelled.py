"""The stored offline scorer (keywords blended with embeddings) on 392 real papers labelled by
hand for five topics (tests/fixtures/labelled): recall and false hits at the default threshold,
against floors it has to keep, and against the keyword scorer it replaces."""

from __future__ import annotations

import pytest

from digestbot.enrich import offline
from digestbot.models import Paper
from digestbot.subscribers import DEFAULT_THRESHOLD
from digestbot.topics import get_topic
from tests import labelled

# Measured when the blend was made (bench/offline.py): recall 0.917, false hits 0.032; the
# keyword scorer alone had 0.892 and 0.027. The floors leave a little room, no more.
MIN_RECALL = 0.90
MAX_FALSE_HITS = 0.035
MIN_TOPIC_RECALL = 0.85


@pytest.fixture(scope="module")
def data() -> labelled.Labelled:
    return labelled.load()


@pytest.fixture(scope="module")
def before(data) -> dict[str, list[int]]:
    return labelled.keyword_scores(data)


@pytest.fixture(scope="module")
def after(data) -> dict[str, list[int]]:
    return labelled.blended_scores(data)


def test_the_set_is_what_provenance_says(data) -> None:
    assert len(data.papers) == 392 == len({p.id for p in data.papers})
    assert {slug: sum(v) for slug, v in data.labels.items()} == {
        "post-training": 30, "agents": 44, "safety-alignment": 17, "machine-translation": 13,
        "speech-recognition": 16}


def test_recall_and_false_hits_at_the_default_threshold(data, before, after) -> None:
    now = labelled.at_threshold(data, after, DEFAULT_THRESHOLD)
    was = labelled.at_threshold(data, before, DEFAULT_THRESHOLD)["all"]
    assert now["all"].recall >= MIN_RECALL, now["all"]
    assert now["all"].false_hit_rate <= MAX_FALSE_HITS, now["all"]
    for slug in data.labels:
        assert now[slug].recall >= MIN_TOPIC_RECALL, (slug, now[slug])
    # Better than the keywords alone: more of the relevant papers, never fewer in any topic.
    assert now["all"].hits > was.hits
    old = labelled.at_threshold(data, before, DEFAULT_THRESHOLD)
    assert all(now[slug].hits >= old[slug].hits for slug in data.labels)


def test_papers_without_any_of_the_topics_words_are_no_longer_zero(data, before, after) -> None:
    """The relevant papers the keywords score 0 (QLoRA adapters, "customizing" LLMs, keyword
    spotting…) get a score from their meaning, so a margin can keep them for the model."""
    missed = [(slug, i) for slug, labels in data.labels.items()
              for i, y in enumerate(labels) if y and before[slug][i] == 0]
    assert len(missed) == 4
    assert all(after[slug][i] > 0 for slug, i in missed)
    assert sum(after[slug][i] >= 30 for slug, i in missed) >= 3


def test_scores_stay_on_the_scale_and_reasons_are_honest(data) -> None:
    topics = [get_topic(slug) for slug in data.labels]
    rows = offline.score_papers_offline([(p, topics) for p in data.papers])
    bands = (offline.CLOSE, offline.RELATED, offline.DISTANT)
    for paper, row in zip(data.papers, rows, strict=True):
        for topic, (score, reason) in zip(topics, row, strict=True):
            assert 0 <= score <= 100
            keyword, _, band = reason.rpartition("; ")
            assert band in bands, reason
            # The keyword part is the keyword scorer's own reason, matched terms or none.
            assert keyword == offline.score_offline(paper.title, paper.abstract, topic)[1]
            if keyword == offline.NO_MATCH and band == offline.DISTANT:
                assert score < 40, (paper.id, topic.slug, score, reason)


def test_meaning_lifts_and_never_lowers_the_keyword_score(data, before, after) -> None:
    for slug in data.labels:
        assert all(a >= b for a, b in zip(after[slug], before[slug], strict=True)), slug
    assert sum(a > b for slug in data.labels
               for a, b in zip(after[slug], before[slug], strict=True)) > 100


def test_an_empty_paper_is_not_close_to_anything() -> None:
    empty = Paper(id="2608.99999", version=1, title="", abstract="")
    topics = [get_topic("post-training"), get_topic("speech-recognition")]
    for score, reason in offline.score_papers_offline([(empty, topics)])[0]:
        assert reason == f"{offline.NO_MATCH}; {offline.DISTANT}"
        assert score < 40
