"""The LLM client's failure modes, through the real openai SDK and a local server.

Every unusable answer gets one retry that shows the model what was wrong, then the paper
falls back to the offline scorer and the call is recorded as a failure; a 401 stops the run
and the key appears nowhere.
"""

from __future__ import annotations

import json
import logging

import pytest

from digestbot import subscribers
from digestbot.cli import main
from digestbot.config import load_settings
from digestbot.enrich import offline, prompts
from digestbot.enrich.counts import counts as enrich_counts
from digestbot.enrich.llm import AUTH_ERROR, BREAKER_ERRORS, LLMClient, extract_json
from digestbot.errors import DigestbotError
from digestbot.store import Store
from tests.fakes.openai import FakeOpenAI, Reply, blank, ok, refusal, slow, status, truncated
from tests.fakes.pipeline import run_pipeline
from tests.test_enrich import KEY, add_papers, calls


def answer(*scores: dict, paper: str = "2608.00001v1") -> dict:
    """A scoring answer for one paper: the batch shape with one item."""
    return {"papers": [{"id": paper, "scores": list(scores)}]}


SCORE = {"topic": "post-training", "score": 88, "reason_zh": "GRPO后训练"}
GOOD = answer(SCORE)



def one_paper(store: Store) -> None:
    add_papers(store, ["A post-training recipe with GRPO"])
    subscribers.add_or_update(store, channel="email", address="a@example.org",
                              topics=["post-training"], threshold=95)  # no enrichment


def score_row(store: Store) -> dict:
    return store.db["scores"].get(("2608.00001", 1, "post-training"))


@pytest.mark.parametrize(("replies", "outcome", "requests"), [
    ([ok(GOOD)], "ok", 1),
    ([status(429), ok(GOOD)], "ok", 2),  # the SDK's own retry, honouring Retry-After
    ([status(503), status(500), ok(GOOD)], "ok", 3),
    (["{not json", ok(GOOD)], "retried", 2),
    ([truncated(), ok(GOOD)], "retried", 2),
    ([blank(), ok(GOOD)], "retried", 2),
    ([refusal(), ok(GOOD)], "retried", 2),
    ([ok(answer()), ok(GOOD)], "retried", 2),  # the topic is missing
    ([ok(answer(SCORE, paper="2608.00002v1")), ok(GOOD)], "retried", 2),  # another paper's id
    ([ok({"papers": GOOD["papers"] * 2}), ok(GOOD)], "retried", 2),  # answered twice
    ([ok(answer(SCORE, paper="2608.00001")), ok(GOOD)], "ok", 1),  # the bare id names it too
    ([ok("```json\n" + json.dumps(GOOD) + "\n```")], "ok", 1),  # fenced
])
def test_answers_that_end_well(store: Store, fake: FakeOpenAI, replies, outcome, requests) -> None:
    one_paper(store)
    fake.script(*[ok(r) if isinstance(r, str) else r for r in replies])
    report = run_pipeline(load_settings(), store)
    assert len(fake.bodies) == requests and report.failures == 0
    assert [c["outcome"] for c in calls(store)] == [outcome]  # one row per logical call
    assert (score_row(store)["score"], score_row(store)["scorer"]) == (88, "llm:gpt-4.1-mini")


def test_the_retry_shows_the_model_its_error(store: Store, fake: FakeOpenAI) -> None:
    one_paper(store)
    fake.script(ok(answer({"topic": "post-training", "score": 150, "reason_zh": "x"})))
    run_pipeline(load_settings(), store)
    first, second = fake.bodies
    assert second["messages"][:2] == first["messages"]
    assert second["messages"][2]["role"] == "assistant" and "150" in second["messages"][2]["content"]
    assert "scores.0.score" in second["messages"][3]["content"]
    assert calls(store)[0]["outcome"] == "retried"


@pytest.mark.parametrize(("replies", "outcome", "error"), [
    (["{not json", "still { not json"], "fallback", "not valid JSON"),
    ([blank(), blank()], "fallback", "blank"),
    ([refusal(), refusal("No.")], "fallback", "refused"),
    ([truncated(), truncated()], "fallback", "cut off"),
    ([ok(answer({"topic": "post-training", "score": 50, "reason_zh": "长" * 41}))] * 2,
     "fallback", "reason_zh"),
    ([ok({"wrong": 1})] * 2, "fallback", "papers"),
    ([status(500)] * 5, "error", "HTTP 500"),  # 1 try + the SDK's 4 retries
    ([Reply(status=400, error="response_format is not supported")], "error", "HTTP 400"),
])
def test_failures_fall_back_to_offline_and_are_recorded(
        store: Store, fake: FakeOpenAI, replies, outcome, error) -> None:
    one_paper(store)
    fake.script(*[ok(r) if isinstance(r, str) else r for r in replies])
    report = run_pipeline(load_settings(), store)
    assert len(fake.bodies) == len(replies) and report.failures == 1
    [call] = calls(store)
    assert call["outcome"] == outcome and error in call["error"]
    assert score_row(store)["scorer"] == offline.SCORER
    assert score_row(store)["score"] >= 70  # the offline scorer's verdict, not a zero
    assert enrich_counts(store)["llm"]["failures"] == 1


def test_a_failed_paper_is_retried_on_the_next_run_but_not_forever(
        store: Store, fake: FakeOpenAI) -> None:
    one_paper(store)
    fake.script(*[blank()] * 6)
    for _ in range(3):
        run_pipeline(load_settings(), store)
    assert [c["outcome"] for c in calls(store)] == ["fallback"] * 3
    assert run_pipeline(load_settings(), store).score_calls == 0


def test_a_dead_endpoint_stops_being_called(store: Store, fake: FakeOpenAI, monkeypatch) -> None:
    monkeypatch.setenv("DIGESTBOT_LLM_CONCURRENCY", "1")
    monkeypatch.setenv("DIGESTBOT_LLM_BATCH", "2")
    add_papers(store, [f"Paper {i}" for i in range(12)])
    subscribers.add_or_update(store, channel="email", address="a@example.org", topics=["agents"])
    fake.script(*[Reply(status=404, error="model not found")] * 20)
    report = run_pipeline(load_settings(), store)
    # Six requests of two papers: five fail, the sixth is not sent.
    assert len(fake.bodies) == BREAKER_ERRORS == enrich_counts(store)["llm"]["calls"]
    assert len(calls(store)) == 2 * BREAKER_ERRORS
    assert {c["outcome"] for c in calls(store)} == {"error"}
    assert report.failures == 12 and store.db["scores"].count_where("topic = 'agents'") == 12


async def test_slow_answers_time_out(fake: FakeOpenAI) -> None:
    fake.script(slow(1.0), slow(1.0))
    async with LLMClient(load_settings(), timeout=0.2, max_retries=1) as llm:
        result = await llm.ask([{"role": "user", "content": "hi"}], prompts.ScoreAnswer,
                               name="x")
    assert (result.value, result.outcome, result.error) == (None, "error", "timed out")
    assert len(fake.bodies) == 2


@pytest.mark.parametrize("mode", ["schema", "object", "prompt"])
async def test_json_modes(fake: FakeOpenAI, monkeypatch, mode: str) -> None:
    monkeypatch.setenv("DIGESTBOT_LLM_JSON", mode)
    fake.script(ok(GOOD))
    async with LLMClient(load_settings()) as llm:
        # The real scoring prompt: json_object mode is refused unless it says "json".
        result = await llm.ask([{"role": "system", "content": prompts.score_system([])},
                                {"role": "user", "content": "hi"}], prompts.ScoreAnswer,
                               name="topic_scores")
    assert result.outcome == "ok" and result.value.papers[0].scores[0].score == 88
    [body] = fake.bodies
    if mode == "schema":
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        item = fmt["json_schema"]["schema"]["$defs"]["TopicScore"]
        assert item["required"] == ["topic", "score", "reason_zh"]
        assert item["additionalProperties"] is False and "maximum" not in item["properties"]["score"]
    elif mode == "object":
        assert body["response_format"] == {"type": "json_object"}
        # JSON mode needs the word "json" and an example in the prompt.
        system = prompts.score_system([])
        assert "JSON" in system and '{"papers": [' in system and '"scores": [' in system
    else:
        assert "response_format" not in body


@pytest.mark.parametrize("mode", ["schema", "object", "prompt"])
def test_the_pipeline_in_every_json_mode(store: Store, fake: FakeOpenAI, monkeypatch,
                                         mode: str) -> None:
    """Scoring and enrichment end to end: the fake rejects json_object without "json" in the
    prompt and answers `prompt` mode in a fenced block after prose, as such servers do."""
    monkeypatch.setenv("DIGESTBOT_LLM_JSON", mode)
    add_papers(store, ["A post-training recipe with GRPO", "Agents that plan", "Speech codecs"])
    subscribers.add_or_update(store, channel="email", address="a@example.org",
                              topics=["post-training", "agents"])
    report = run_pipeline(load_settings(), store)
    # One scoring request for the three papers, in every mode.
    assert (report.score_calls, report.enrich_calls, report.failures) == (1, 2, 0)
    [scoring] = [b for b in fake.bodies if b["messages"][1]["content"].startswith("Topics to")]
    assert [line.split(": ")[1] for line in scoring["messages"][1]["content"].splitlines()
            if " arXiv id: " in line] == ["2608.00001v1", "2608.00002v1", "2608.00003v1"]
    assert {c["outcome"] for c in calls(store)} == {"ok"}
    followed = "topic in ('post-training', 'agents')"
    assert {r["scorer"] for r in store.db["scores"].rows_where(followed)} == {"llm:gpt-4.1-mini"}
    assert {r["scorer"] for r in store.db["scores"].rows_where(f"not {followed}")} == {
        offline.SCORER}
    formats = {(b.get("response_format") or {}).get("type") for b in fake.bodies}
    assert formats == {"schema": {"json_schema"}, "object": {"json_object"},
                       "prompt": {None}}[mode]
    if mode == "schema":
        names = {b["response_format"]["json_schema"]["name"] for b in fake.bodies}
        assert names == {"topic_scores", "paper_enrichment"}


def test_extract_json_tolerates_fences_and_prose() -> None:
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('Here you go: {"a": 1} hope it helps') == {"a": 1}


def test_401_stops_the_run_and_the_key_leaks_nowhere(
        store: Store, fake: FakeOpenAI, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    add_papers(store, [f"Paper {i}" for i in range(5)])
    subscribers.add_or_update(store, channel="email", address="a@example.org", topics=["agents"])
    fake.script(*[Reply(status=401, error=f"Incorrect API key provided: {KEY}")] * 10)
    with pytest.raises(DigestbotError, match="check OPENAI_API_KEY"):
        run_pipeline(load_settings(), store)
    assert main(["enrich"]) == 1
    captured = capsys.readouterr()
    assert AUTH_ERROR in captured.err
    dump = "\n".join(store.db.iterdump())
    for text in (captured.out, captured.err, caplog.text, dump):
        assert KEY not in text
    # It did reach the server, so the SDK really sent it.
    assert fake.server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_an_error_that_echoes_the_key_is_stored_without_it(store: Store, fake: FakeOpenAI) -> None:
    one_paper(store)
    fake.script(Reply(status=400, error=f"bad request for key {KEY}"))
    run_pipeline(load_settings(), store)
    [call] = calls(store)
    assert call["outcome"] == "error" and "bad request for key ***" in call["error"]
    assert KEY not in "\n".join(store.db.iterdump())
