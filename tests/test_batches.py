"""Several papers per scoring request, through the real openai SDK and the local fake.

What goes on the wire (several papers, one byte-identical prefix long enough to be cached),
what the provider's cache reports, and that a bad item costs only its own paper: it is asked
again alone, and a score is never taken from another paper's item.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from digestbot import subscribers
from digestbot.cli import main
from digestbot.config import load_settings
from digestbot.enrich import offline, prompts
from digestbot.enrich.batches import ANSWER_TOKENS, PAPER_TOKENS, TOPIC_TOKENS, batch_size
from digestbot.enrich.calls import PipelineReport
from digestbot.enrich.counts import counts as enrich_counts
from digestbot.enrich.llm import LLMClient
from digestbot.enrich.scoring import score_papers
from digestbot.errors import ConfigError, DigestbotError
from digestbot.sources.papers import get_papers
from digestbot.store import Store
from digestbot.topics import load_catalogue
from tests.fakes.openai import FakeOpenAI, Reply, blank, edited, ok, status
from tests.fakes.pipeline import run_pipeline
from tests.test_enrich import add_papers, calls

PAPERS = 8


def number_score(title: str, slug: str) -> int:
    """Each paper's own score: the number in its title (Paper 11 → 11), so a score taken from
    another paper's item would show."""
    return int(re.search(r"\d+", title).group())


def ids_sent(body: dict) -> list[str]:
    return re.findall(r"^\[\d+\] arXiv id: (\S+)$", body["messages"][1]["content"], re.M)


@pytest.fixture
def day(store: Store, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Store:
    """Eight papers "Paper 11" … "Paper 18" and one reader of agents who gets none of them
    (scoring only); the fake scores each paper by its number; one request at a time."""
    fake.reset(score_for=number_score)
    monkeypatch.setenv("DIGESTBOT_LLM_CONCURRENCY", "1")
    add_papers(store, [f"Paper {10 + i}" for i in range(1, PAPERS + 1)])
    subscribers.add_or_update(store, channel="email", address="a@example.org",
                              topics=["agents"], threshold=95)
    return store


def agents_scores(store: Store) -> dict[str, tuple[int, str]]:
    return {r["arxiv_id"]: (r["score"], r["scorer"])
            for r in store.db["scores"].rows_where("topic = 'agents'")}


def right_scores(store: Store, *, offline_ids: tuple[str, ...] = ()) -> bool:
    """Every paper holds its own number, from the model (or the offline scorer where said)."""
    got = agents_scores(store)
    want = {f"2608.{i:05d}": (10 + i, "llm:gpt-4.1-mini") for i in range(1, PAPERS + 1)}
    return all(got[k] == want[k] for k in want if k not in offline_ids) and all(
        got[k][1] == offline.SCORER for k in offline_ids)


def test_the_shared_prefix_is_long_enough_to_be_cached() -> None:
    # By the README's rule, with room to spare: the instructions alone, and with any one
    # catalogue topic (the fewest a deployment can score).
    assert prompts.estimate_tokens(prompts.score_system([])) >= prompts.CACHE_MIN_TOKENS
    smallest = min(prompts.estimate_tokens(prompts.score_system([t]))
                   for t in load_catalogue().topics.values())
    assert smallest >= 1.2 * prompts.CACHE_MIN_TOKENS


def test_the_wire_carries_several_papers_behind_one_prefix_and_the_cache_shows_in_stats(
        day: Store, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DIGESTBOT_LLM_BATCH", "3")
    report = run_pipeline(load_settings(), day)
    bodies = fake.bodies
    assert [ids_sent(b) for b in bodies] == [
        ["2608.00001v1", "2608.00002v1", "2608.00003v1"],
        ["2608.00004v1", "2608.00005v1", "2608.00006v1"], ["2608.00007v1", "2608.00008v1"]]
    assert len({json.dumps(b["messages"][0]) + json.dumps(b["response_format"])
                for b in bodies}) == 1
    assert {b["response_format"]["json_schema"]["name"] for b in bodies} == {"topic_scores"}
    assert all(b["messages"][1]["content"].startswith("Topics to score: agents\n")
               for b in bodies)
    assert right_scores(day) and report.failures == 0
    # The first request fills the cache; the next ones repeat its ≥ 1,024-token prefix.
    cached = [u["prompt_tokens_details"]["cached_tokens"] for u in fake.usages]
    assert cached[0] == 0 and all(c >= prompts.CACHE_MIN_TOKENS for c in cached[1:])
    assert report.cached_tokens == sum(cached) and report.score_calls == 3
    assert main(["stats", "--json"]) == 0
    llm = json.loads(capsys.readouterr().out)["llm"]
    assert {k: llm[k] for k in ("calls", "failures", "cached_tokens")} == {
        "calls": 3, "failures": 0, "cached_tokens": sum(cached)}
    assert llm["prompt_tokens"] == sum(u["prompt_tokens"] for u in fake.usages)
    assert llm["completion_tokens"] == sum(u["completion_tokens"] for u in fake.usages)


def _drop(answer: dict, body: dict) -> dict:
    answer["papers"] = [p for p in answer["papers"] if p["id"] != "2608.00003v1"]
    return answer


def _unknown_id(answer: dict, body: dict) -> dict:
    answer["papers"][2]["id"] = "2608.99999v1"
    return answer


def _twice(answer: dict, body: dict) -> dict:
    answer["papers"].append(json.loads(json.dumps(answer["papers"][2])))
    return answer


def _out_of_range(answer: dict, body: dict) -> dict:
    answer["papers"][2]["scores"][0]["score"] = 150
    return answer


def _another_papers_id(answer: dict, body: dict) -> dict:
    # Paper 5's item claims to be paper 3's: paper 3 is answered twice, paper 5 not at all.
    answer["papers"][4]["id"] = "2608.00003v1"
    return answer


def _topic_missing(answer: dict, body: dict) -> dict:
    answer["papers"][2]["scores"] = []
    return answer


@pytest.mark.parametrize(("edit", "alone"), [
    (_drop, ["2608.00003v1"]),
    (_unknown_id, ["2608.00003v1"]),
    (_twice, ["2608.00003v1"]),
    (_out_of_range, ["2608.00003v1"]),
    (_topic_missing, ["2608.00003v1"]),
    (_another_papers_id, ["2608.00003v1", "2608.00005v1"]),
])
def test_a_bad_item_costs_only_its_paper(day: Store, fake: FakeOpenAI, edit, alone) -> None:
    fake.script(edited(edit))
    report = run_pipeline(load_settings(), day)
    first, *again = fake.bodies
    assert len(ids_sent(first)) == PAPERS
    assert sorted(ids_sent(b)[0] for b in again) == alone and all(
        len(ids_sent(b)) == 1 for b in again)
    # Asked alone behind the same prefix, and answered: every paper has its own score.
    assert {b["messages"][0]["content"] for b in fake.bodies} == {first["messages"][0]["content"]}
    assert right_scores(day) and report.failures == 0
    rows = calls(day, "score")
    batch = [r for r in rows if r["request"] == rows[0]["request"]]
    assert len(batch) == PAPERS
    assert sorted(f"{r['arxiv_id']}v1" for r in batch if r["outcome"] == "rejected") == alone
    assert all(r["error"].startswith(f"paper {r['arxiv_id']}v1: ")
               for r in batch if r["outcome"] == "rejected")
    assert [r["outcome"] for r in rows[PAPERS:]] == ["ok"] * len(alone)
    assert report.score_calls == enrich_counts(day)["llm"]["calls"] == 1 + len(alone)


def test_a_paper_that_fails_alone_too_gets_the_offline_score(day: Store, fake: FakeOpenAI) -> None:
    fake.script(edited(_drop), blank(), blank())  # the batch, then paper 3 alone and its retry
    report = run_pipeline(load_settings(), day)
    assert len(fake.bodies) == 3 and report.failures == 1
    assert right_scores(day, offline_ids=("2608.00003",))
    assert [r["outcome"] for r in calls(day, "score") if r["arxiv_id"] == "2608.00003"] == [
        "rejected", "fallback"]
    # A failed request each: the batch (one paper rejected) and paper 3's own.
    assert (enrich_counts(day)["llm"]["calls"], enrich_counts(day)["llm"]["failures"]) == (2, 2)


def test_an_answer_unusable_as_a_whole_sends_each_paper_alone(day: Store, fake: FakeOpenAI) -> None:
    fake.script(ok("{not json"))
    report = run_pipeline(load_settings(), day)
    assert [len(ids_sent(b)) for b in fake.bodies] == [PAPERS] + [1] * PAPERS
    assert right_scores(day) and report.failures == 0
    batch = calls(day)[:PAPERS]
    assert {r["outcome"] for r in batch} == {"rejected"}
    assert all(r["error"].startswith("unusable answer (not valid JSON") for r in batch)


def test_429_and_5xx_are_retried_as_the_same_request(day: Store, fake: FakeOpenAI) -> None:
    fake.script(status(429), status(503), Reply())
    report = run_pipeline(load_settings(), day)
    assert len(fake.bodies) == 3 and fake.bodies[0] == fake.bodies[1] == fake.bodies[2]
    assert right_scores(day) and report.failures == 0
    assert {r["outcome"] for r in calls(day)} == {"ok"} and len(calls(day)) == PAPERS
    assert enrich_counts(day)["llm"]["calls"] == 1


def test_a_transport_failure_gives_the_papers_offline_scores_without_asking_again(
        day: Store, fake: FakeOpenAI) -> None:
    fake.script(*[status(500)] * 5)  # one try and the SDK's four retries
    report = run_pipeline(load_settings(), day)
    assert len(fake.bodies) == 5 and report.failures == PAPERS
    assert right_scores(day, offline_ids=tuple(f"2608.{i:05d}" for i in range(1, PAPERS + 1)))
    assert {r["outcome"] for r in calls(day)} == {"error"} and len(calls(day)) == PAPERS


def test_401_stops_the_run(day: Store, fake: FakeOpenAI) -> None:
    fake.script(Reply(status=401, error="Incorrect API key provided"))
    with pytest.raises(DigestbotError, match="OPENAI_API_KEY"):
        run_pipeline(load_settings(), day)
    assert len(fake.bodies) == 1 and len(ids_sent(fake.bodies[0])) == PAPERS
    assert agents_scores(day) == {}


def test_papers_missing_different_topics_go_in_different_requests(
        day: Store, fake: FakeOpenAI) -> None:
    # Papers 1–2 already have an LLM agents score: only post-training is asked for them.
    for pid in ("2608.00001", "2608.00002"):
        day.db["scores"].insert({"arxiv_id": pid, "version": 1, "topic": "agents", "score": 7,
                                 "reason": "", "scorer": "llm:old", "created_at": "x"})
    papers = list(get_papers(day, [f"2608.{i:05d}" for i in range(1, 5)]).values())
    topics = [load_catalogue().topics[s] for s in ("agents", "post-training")]

    async def score() -> dict:
        async with LLMClient(load_settings()) as llm:
            return await score_papers(day, papers, topics, llm, PipelineReport())

    results = asyncio.run(score())
    assert sorted((b["messages"][1]["content"].splitlines()[0], tuple(ids_sent(b)))
                  for b in fake.bodies) == [
        ("Topics to score: agents, post-training", ("2608.00003v1", "2608.00004v1")),
        ("Topics to score: post-training", ("2608.00001v1", "2608.00002v1"))]
    assert results[("2608.00001", 1)]["agents"].score == 7  # cached, not asked again
    assert results[("2608.00001", 1)]["post-training"].score == 11
    assert {b["messages"][0]["content"] for b in fake.bodies} == {
        prompts.score_system(topics)}


def test_one_request_per_paper_version_even_when_listed_twice(
        day: Store, fake: FakeOpenAI) -> None:
    [paper] = get_papers(day, ["2608.00001"]).values()
    topic = load_catalogue().topics["agents"]

    async def score() -> None:
        async with LLMClient(load_settings()) as llm:
            await score_papers(day, [paper, paper], [topic], llm, PipelineReport())

    asyncio.run(score())
    assert [ids_sent(b) for b in fake.bodies] == [["2608.00001v1"]]


def test_the_batch_setting_is_checked() -> None:
    for bad in ("0", "33", "many"):
        with pytest.raises(ConfigError, match="DIGESTBOT_LLM_BATCH: expected a whole number"):
            load_settings({"DIGESTBOT_LLM_BATCH": bad})
    assert load_settings({}).llm_batch == 8


def test_many_topics_make_smaller_requests_so_no_answer_is_cut_off(
        day: Store, fake: FakeOpenAI) -> None:
    topics = sorted(load_catalogue().topics.values(), key=lambda t: t.slug)[:20]
    papers = list(get_papers(day, [f"2608.{i:05d}" for i in range(1, PAPERS + 1)]).values())

    async def score() -> None:
        async with LLMClient(load_settings()) as llm:
            await score_papers(day, papers, topics, llm, PipelineReport())

    asyncio.run(score())
    size = batch_size(8, 20)
    assert 1 < size < 8  # the worst-case answer of `size` papers fits ANSWER_TOKENS
    assert size * (PAPER_TOKENS + 20 * TOPIC_TOKENS) <= ANSWER_TOKENS
    assert [len(ids_sent(b)) for b in fake.bodies] == [size] * (PAPERS // size) + (
        [PAPERS % size] if PAPERS % size else [])
    assert max(u["completion_tokens"] for u in fake.usages) <= ANSWER_TOKENS
