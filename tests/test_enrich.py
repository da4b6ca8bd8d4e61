"""The pipeline against a local OpenAI-compatible server, through the real openai SDK.

Cost grows with papers, never with subscribers; re-runs cost nothing; only papers above a
subscriber's threshold are enriched; a replaced version is done again; offline works alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from digestbot import subscribers
from digestbot.cli import main
from digestbot.config import Settings, load_settings
from digestbot.enrich import offline, prompts
from digestbot.enrich.calls import MAX_FAILED_CALLS
from digestbot.enrich.counts import counts as enrich_counts
from digestbot.enrich.stored import OFFLINE_MODEL, get_enrichment
from digestbot.models import Announcement, Author, FeedBatch, Paper
from digestbot.sources.papers import get_paper, save_batch
from digestbot.store import Store
from digestbot.topics import load_catalogue
from tests.fakes.openai import OPENAI_TEST_KEY, FakeOpenAI, Reply, blank
from tests.fakes.pipeline import run_pipeline

DAY = "2026-08-13"
KEY = OPENAI_TEST_KEY


@pytest.fixture
def llm_settings(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DIGESTBOT_LLM_MODEL", "fake-mini")
    return load_settings()


def add_papers(store: Store, titles: list[str], *, date: str = DAY, version: int | None = 1,
               affiliations: bool = True) -> list[Paper]:
    """Papers 2608.0000N with these titles, announced on `date`; API affiliations by default
    so no PDF is needed."""
    papers = [
        Paper(id=f"2608.{i:05d}", version=version, title=title,
              abstract=f"We study {title.lower()}. Experiments show gains on three benchmarks.",
              authors=[Author("Ada Lovelace", ("Tsinghua University",) if affiliations else ())],
              categories=["cs.CL"])
        for i, title in enumerate(titles, 1)
    ]
    kind = "new" if version == 1 else "replace"
    save_batch(store, FeedBatch(source="test", date=date, papers=papers, announcements=[
        Announcement(date, p.id, kind, version, "test") for p in papers]))
    return papers


def subscribe(store: Store, n: int, topics: list[str], threshold: int = 60) -> None:
    for i in range(n):
        subscribers.add_or_update(store, channel="email", address=f"u{i}@example.org",
                                  topics=topics, threshold=threshold)


def calls(store: Store, kind: str | None = None) -> list[dict]:
    sql = "select * from llm_calls" + (" where kind = ?" if kind else "") + " order by id"
    return list(store.db.query(sql, [kind] if kind else []))


TITLES = ["A post-training recipe with GRPO", "Sign language recognition",
          "Agents that plan", "Post-training for small models", "Speech codecs", "Graph layouts"]


def scoring_bodies(fake: FakeOpenAI) -> list[dict]:
    return [b for b in fake.bodies if b["messages"][1]["content"].startswith("Topics to score")]


def ids_sent(body: dict) -> list[str]:
    """The arXiv ids of the papers a scoring request carries, in order."""
    return re.findall(r"^\[\d+\] arXiv id: (\S+)$", body["messages"][1]["content"], re.M)


@pytest.mark.parametrize("n_subscribers", [1, 30])
def test_scoring_requests_grow_with_papers_not_subscribers(
        store: Store, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, n_subscribers: int) -> None:
    monkeypatch.setenv("DIGESTBOT_LLM_MODEL", "fake-mini")
    monkeypatch.setenv("DIGESTBOT_LLM_BATCH", "4")
    add_papers(store, TITLES)
    subscribe(store, n_subscribers, ["post-training", "agents"])
    report = run_pipeline(load_settings(), store)
    scoring = scoring_bodies(fake)
    # Six papers, four a request, in their order; each paper once (in flight side by side).
    assert sorted(ids_sent(b) for b in scoring) == [[f"2608.0000{i}v1" for i in range(1, 5)],
                                                    ["2608.00005v1", "2608.00006v1"]]
    assert report.score_calls == 2 == len({c["request"] for c in calls(store, "score")})
    assert len(calls(store, "score")) == len(TITLES)  # a row per paper
    # Every request scores both topics at once, behind one byte-identical static prefix.
    assert {b["messages"][1]["content"].splitlines()[0] for b in scoring} == {
        "Topics to score: agents, post-training"}
    assert len({b["messages"][0]["content"] for b in scoring}) == 1
    assert store.db["scores"].count_where("scorer like 'llm:%'") == 2 * len(TITLES)
    # …and every other catalogue topic offline, for the public pages: no LLM call.
    assert store.db["scores"].count == len(TITLES) * len(load_catalogue().topics)
    row = store.db["scores"].get(("2608.00001", 1, "post-training"))
    assert (row["score"], row["scorer"]) == (90, "llm:fake-mini")
    assert row["reason"] == "与post-training相关程度的判断"
    assert store.db["scores"].get(("2608.00006", 1, "post-training"))["score"] == 10
    # Enriched: papers 1 and 4 (post-training) and 3 (agents) reach the threshold of 60.
    assert report.enrich_calls == report.enriched == 3
    assert {c["arxiv_id"] for c in calls(store, "enrich")} == {"2608.00001", "2608.00003",
                                                                "2608.00004"}


def test_second_run_makes_no_calls_and_new_topics_are_scored_alone(
        llm_settings: Settings, store: Store, fake: FakeOpenAI) -> None:
    add_papers(store, TITLES)
    subscribe(store, 2, ["post-training"])
    run_pipeline(llm_settings, store)
    before = len(fake.bodies)
    again = run_pipeline(llm_settings, store)
    assert len(fake.bodies) == before
    assert (again.score_calls, again.enrich_calls) == (0, 0)
    assert again.cached == len(TITLES) + 2  # every paper's scores, both enrichments

    subscribers.add_or_update(store, channel="telegram", address="42", topics=["agents"])
    third = run_pipeline(llm_settings, store)
    [scoring] = scoring_bodies(fake)[-1:]
    assert third.score_calls == 1 and len(ids_sent(scoring)) == len(TITLES)
    assert scoring["messages"][1]["content"].startswith("Topics to score: agents\n")
    # The prefix lists every active topic, sorted by slug, so it stays cacheable.
    system = scoring["messages"][0]["content"]
    assert system.index("- agents:") < system.index("- post-training:")
    assert third.enrich_calls == 1  # "Agents that plan"


def test_enrichment_only_at_the_lowest_threshold_of_a_topic(
        llm_settings: Settings, store: Store, fake: FakeOpenAI) -> None:
    add_papers(store, TITLES)
    subscribe(store, 1, ["post-training"], threshold=95)
    assert run_pipeline(llm_settings, store).enrich_calls == 0  # 90 < 95
    subscribers.add_or_update(store, channel="email", address="low@example.org",
                              topics=["post-training"], threshold=85)
    subscribers.add_or_update(store, channel="email", address="gone@example.org",
                              topics=["agents"], threshold=5,
                              status="unsubscribed")
    report = run_pipeline(llm_settings, store)
    assert report.score_calls == 0  # the unsubscribed one's topic is not active
    assert {c["arxiv_id"] for c in calls(store, "enrich")} == {"2608.00001", "2608.00004"}
    e = get_enrichment(store, "2608.00001", 1)
    assert e.title_zh == "中文标题:A post-training recipe with GRPO"
    assert e.summary_zh and e.summary_en and e.abstract_zh.startswith("中文翻译")
    assert [i.name for i in e.institutions] == ["Tsinghua University"]
    assert (e.model, e.prompt_version) == ("fake-mini", prompts.PROMPT_VERSION)
    assert get_enrichment(store, "2608.00002", 1) is None


def test_a_replaced_version_is_scored_and_enriched_again(
        llm_settings: Settings, store: Store, fake: FakeOpenAI) -> None:
    add_papers(store, TITLES[:1])
    subscribe(store, 1, ["post-training"])
    run_pipeline(llm_settings, store)
    add_papers(store, ["A post-training recipe with GRPO, revised"], date="2026-08-14", version=2)
    report = run_pipeline(llm_settings, store)
    assert report.date == "2026-08-14"
    assert (report.score_calls, report.enrich_calls) == (1, 1)
    assert get_enrichment(store, "2608.00001", 2).title_zh.endswith("revised")
    assert get_enrichment(store, "2608.00001", 1) is not None  # the old version's stays


def test_a_paper_whose_version_is_unknown_waits_for_the_api_to_say(
        llm_settings: Settings, store: Store, fake: FakeOpenAI) -> None:
    """Work is keyed by version: with none known yet nothing is stored (no NULL-version rows
    a re-run would add again); the run after the API pass fills it in does the work."""
    add_papers(store, TITLES[:2], version=None)
    subscribe(store, 1, ["post-training"])
    for _ in range(2):
        report = run_pipeline(llm_settings, store, all_papers=True)
        assert (report.papers, report.waiting, report.scored, report.enriched) == (2, 2, 0, 0)
        assert "2 waiting for their version" in report.summary()
    assert fake.bodies == [] and calls(store) == []
    assert store.db["scores"].count == store.db["enrichments"].count == 0
    add_papers(store, TITLES[:2], version=3)  # the API pass: same day, the version now known
    report = run_pipeline(llm_settings, store, all_papers=True)
    assert (report.waiting, report.score_calls, report.enrich_calls) == (0, 1, 2)
    assert "waiting" not in report.summary()
    assert {r["version"] for r in store.db["scores"].rows} == {3}
    assert get_enrichment(store, "2608.00001", 3) is not None
    assert run_pipeline(llm_settings, store, all_papers=True).cached == 4  # nothing new


def test_the_score_command_stores_no_score_of_an_unknown_version(
        store: Store, capsys) -> None:
    add_papers(store, TITLES[:1], version=None)
    for _ in range(2):
        assert main(["score", "--topic", "post-training", "--offline"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["id"] for x in lines] == ["2608.00001", "2608.00001"]
    assert store.db["scores"].count == 0


def test_an_enrichment_that_keeps_failing_is_given_up_and_the_offline_one_stays(
        llm_settings: Settings, store: Store, fake: FakeOpenAI) -> None:
    add_papers(store, TITLES[:1])
    subscribe(store, 1, ["post-training"])
    fake.script(Reply())  # the first run's scoring call, answered from the request
    for _ in range(MAX_FAILED_CALLS):
        fake.script(blank(), blank())  # the answer and its retry: one failed call
        report = run_pipeline(llm_settings, store)
        assert (report.enrich_calls, report.failures) == (1, 1)
    assert get_enrichment(store, "2608.00001", 1).model == OFFLINE_MODEL
    before = len(fake.bodies)
    report = run_pipeline(llm_settings, store)
    assert len(fake.bodies) == before and report.enrich_calls == 0
    assert report.cached == 2  # the scores and the offline enrichment
    assert get_enrichment(store, "2608.00001", 1).model == OFFLINE_MODEL


def test_tokens_and_cached_tokens_reach_stats(
        store: Store, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DIGESTBOT_LLM_MODEL", "fake-mini")
    monkeypatch.setenv("DIGESTBOT_LLM_BATCH", "2")
    monkeypatch.setenv("DIGESTBOT_LLM_CONCURRENCY", "1")  # one after the other: a known order
    add_papers(store, TITLES)
    subscribe(store, 1, ["post-training"])
    report = run_pipeline(load_settings(), store)
    rows = calls(store)
    stats = enrich_counts(store)["llm"]
    # Three scoring requests of two papers, then two enrichments: five requests, eight rows.
    assert stats["calls"] == 5 == report.score_calls + report.enrich_calls
    assert len(rows) == 8 and stats["failures"] == 0
    for field in ("prompt_tokens", "completion_tokens", "cached_tokens"):
        assert stats[field] == sum(r[field] for r in rows) == getattr(report, field)
    assert stats["prompt_tokens"] == sum(u["prompt_tokens"] for u in fake.usages)
    # The fake caches as OpenAI does: the scoring prefix (≥ 1,024 tokens) from the second
    # request on, in steps of 128; enrichment's short prompt never.
    cached = [u["prompt_tokens_details"]["cached_tokens"] for u in fake.usages]
    assert cached[0] == 0 and cached[3:] == [0, 0]
    assert all(1024 <= c < u["prompt_tokens"] and c % 128 == 0
               for c, u in zip(cached[1:3], fake.usages[1:3], strict=True))
    assert all(r["outcome"] == "ok" and r["model"] == "fake-mini" for r in rows)
    assert f"({stats['cached_tokens']:,} cached)" in report.summary()
    assert main(["stats", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["llm"]["calls"] == 5
    assert printed["llm"]["cached_tokens"] == stats["cached_tokens"] > 0
    assert printed["llm"]["cost_usd"] > 0


def test_deepseek_cache_hits_are_counted(monkeypatch, store: Store, fake: FakeOpenAI) -> None:
    fake.reset(deepseek=True)
    monkeypatch.setenv("DIGESTBOT_LLM_JSON", "object")
    monkeypatch.setenv("DIGESTBOT_LLM_BATCH", "1")
    monkeypatch.setenv("DIGESTBOT_LLM_CONCURRENCY", "1")  # a prefix is cached once answered
    add_papers(store, TITLES[:3])
    subscribe(store, 1, ["agents"])
    run_pipeline(load_settings(), store)
    assert {b["response_format"]["type"] for b in fake.bodies} == {"json_object"}
    assert all("prompt_tokens_details" not in u for u in fake.usages)
    reported = sum(u["prompt_cache_hit_tokens"] for u in fake.usages)
    assert enrich_counts(store)["llm"]["cached_tokens"] == reported > 0


def test_cost_estimate_uses_the_configured_prices(
        store: Store, fake: FakeOpenAI, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DIGESTBOT_LLM_BATCH", "2")  # three scoring requests: two find a cache
    monkeypatch.setenv("DIGESTBOT_LLM_CONCURRENCY", "1")
    add_papers(store, TITLES)
    subscribe(store, 1, ["post-training"])
    run_pipeline(load_settings(), store)
    llm = enrich_counts(store)["llm"]
    prompt, cached, completion = llm["prompt_tokens"], llm["cached_tokens"], llm["completion_tokens"]
    assert 0 < cached < prompt and completion > 0
    # USD per million tokens: fresh prompt tokens, cached prompt tokens, completion tokens.
    monkeypatch.setenv("DIGESTBOT_LLM_PRICE_INPUT", "1000")
    monkeypatch.setenv("DIGESTBOT_LLM_PRICE_CACHED", "100")
    monkeypatch.setenv("DIGESTBOT_LLM_PRICE_OUTPUT", "10000")
    expected = round(((prompt - cached) * 1000 + cached * 100 + completion * 10000) / 1e6, 4)
    assert main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["llm"]["cost_usd"] == expected
    assert main(["stats"]) == 0
    assert f"≈ ${expected}" in capsys.readouterr().out


def test_a_call_records_its_latency_and_a_retry_costs_both_attempts(
        llm_settings: Settings, store: Store, fake: FakeOpenAI) -> None:
    fake.reset(delay=0.05)
    add_papers(store, TITLES[:1])
    subscribe(store, 1, ["post-training"], threshold=95)  # scoring only
    fake.script(blank())
    run_pipeline(llm_settings, store)
    [call] = calls(store)
    assert call["outcome"] == "retried" and len(fake.usages) == 2
    for field in ("prompt_tokens", "completion_tokens"):
        assert call[field] == sum(u[field] for u in fake.usages)
    assert call["latency_ms"] >= 100  # two answers of 50 ms each


def test_concurrency_is_bounded(monkeypatch, store: Store, fake: FakeOpenAI) -> None:
    fake.reset(delay=0.1)
    monkeypatch.setenv("DIGESTBOT_LLM_CONCURRENCY", "3")
    add_papers(store, [f"Paper {i}" for i in range(9)])
    subscribe(store, 1, ["agents"])
    run_pipeline(load_settings(), store)
    assert 1 < fake.max_in_flight <= 3


def test_offline_without_a_key(settings: Settings, store: Store) -> None:
    add_papers(store, TITLES)
    subscribe(store, 1, ["post-training"])
    report = run_pipeline(settings, store)
    assert report.scorer == offline.SCORER and report.score_calls == 0
    assert {r["scorer"] for r in store.db["scores"].rows} == {offline.SCORER}
    assert calls(store) == []
    for pid in ("2608.00001", "2608.00004"):  # the offline scorer finds post-training too
        e = get_enrichment(store, pid, 1)
        assert e.model == "offline" and e.summary_en == offline.first_sentence(
            get_paper(store, pid).abstract) == f"We study {get_paper(store, pid).title.lower()}."
        assert (e.title_zh, e.summary_zh, e.abstract_zh, e.institutions) == ("", "", "", [])


def test_offline_scores_are_upgraded_and_offline_never_shadows_the_model(
        settings: Settings, store: Store, fake: FakeOpenAI) -> None:
    add_papers(store, TITLES[:1])
    subscribe(store, 1, ["post-training"])
    run_pipeline(settings, store)  # `settings` was loaded before the key was set: offline
    assert get_enrichment(store, "2608.00001", 1).model == "offline"
    report = run_pipeline(load_settings(), store)
    assert (report.score_calls, report.enrich_calls) == (1, 1)
    assert store.db["scores"].get(("2608.00001", 1, "post-training"))["scorer"] == "llm:gpt-4.1-mini"
    assert run_pipeline(load_settings(), store, offline=True).enriched == 0
    assert get_enrichment(store, "2608.00001", 1).model == "gpt-4.1-mini"


def test_enrich_command_enriches_everything_before_anyone_subscribes(
        llm_settings: Settings, store: Store, fake: FakeOpenAI, capsys) -> None:
    add_papers(store, TITLES[:3])
    assert main(["enrich", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 papers × 0 topics" in out and "enriched 2/2" in out
    assert [c["kind"] for c in calls(store)] == ["enrich", "enrich"]


def test_enrich_command_scores_extra_topics(
        llm_settings: Settings, store: Store, fake: FakeOpenAI, capsys) -> None:
    add_papers(store, TITLES[:2])
    subscribe(store, 1, ["agents"], threshold=95)
    assert main(["enrich", "--topic", "后训练", "--topic", "Agents"]) == 0
    assert "2 papers × 2 topics" in capsys.readouterr().out
    assert {r["topic"] for r in store.db["scores"].rows_where("scorer like 'llm:%'")} == {
        "agents", "post-training"}
    assert main(["enrich", "--topic", "后训"]) == 2
    assert "post-training" in capsys.readouterr().err


def test_enrich_command_with_an_empty_database(capsys) -> None:
    assert main(["enrich"]) == 0
    assert "digestbot fetch" in capsys.readouterr().out


# -- digestbot score ---------------------------------------------------------------------------


def test_score_command_offline_from_jsonl(tmp_path, capsys) -> None:
    path = tmp_path / "papers.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"id": "2401.00001v2", "title": "GRPO for reasoning post-training",
         "abstract": "We apply RLHF and DPO with a reward model."},
        {"id": "2401.00002", "title": "Sign language recognition", "abstract": "Video."},
    ]) + "\n", encoding="utf-8")
    assert main(["score", "--topic", "后训练", "--jsonl", str(path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["id"], x["topic"]) for x in lines] == [("2401.00001", "post-training"),
                                                      ("2401.00002", "post-training")]
    assert lines[0]["score"] >= 70 > 40 > lines[1]["score"]
    assert lines[0]["reason"].startswith("命中")


def test_score_command_uses_the_llm_and_the_store(
        llm_settings: Settings, store: Store, fake: FakeOpenAI, capsys) -> None:
    add_papers(store, TITLES[:2])
    assert main(["score", "--topic", "Agents"]) == 0
    assert main(["score", "--topic", "agents"]) == 0  # cached: no new call
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4 and lines[0] == lines[2]
    assert lines[0] == {"id": "2608.00001", "topic": "agents", "score": 10,
                        "reason": "与agents相关程度的判断"}
    assert len(fake.bodies) == 1 and len(ids_sent(fake.bodies[0])) == 2
    assert main(["score", "--topic", "agents", "--offline"]) == 0


def test_score_command_bad_input(tmp_path, capsys, settings: Settings) -> None:
    assert main(["score", "--topic", "post-trainnig"]) == 2
    err = capsys.readouterr().err
    assert "未知主题" in err and "unknown topic" in err and "post-training" in err
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1", "title": "t", "abstract": "a"}\n{"id": 2}\n', encoding="utf-8")
    assert main(["score", "--topic", "后训练", "--jsonl", str(path)]) == 2
    assert f"{path}:2: 'id' 须为非空字符串 / must be a non-empty string" in capsys.readouterr().err
    path.write_text('{"id": "1", "title": "t", "abstract": "a"}\nnot json\n', encoding="utf-8")
    assert main(["score", "--topic", "后训练", "--jsonl", str(path)]) == 2
    assert f"{path}:2: 不是有效的 JSON / not valid JSON" in capsys.readouterr().err
    # The same id twice would print one line's score for both.
    path.write_text('{"id": "1v2", "title": "GRPO", "abstract": ""}\n\n'
                    '{"id": "1v2", "title": "Sign language", "abstract": ""}\n', encoding="utf-8")
    assert main(["score", "--topic", "后训练", "--jsonl", str(path)]) == 2
    assert f"{path}:3: id '1v2' 与第 1 行重复 / repeats line 1" in capsys.readouterr().err
    assert main(["score", "--topic", "后训练", "--jsonl", str(tmp_path / "missing.jsonl")]) == 2
    assert "无法读取 / cannot read" in capsys.readouterr().err
    assert not Path(settings.db).exists()  # refused input leaves no database behind
    assert main(["score", "--topic", "后训练"]) == 1
    err = capsys.readouterr().err
    assert "没有可评分的论文" in err and "digestbot fetch" in err
