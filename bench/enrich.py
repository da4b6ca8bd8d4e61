"""Benchmark: the pipeline against a local OpenAI-compatible server that answers slowly.

    .venv/bin/python bench/enrich.py [--papers 1500] [--delay 0.2] [--concurrency 8] [--batch 8]

Three runs: scoring `batch` papers per request with 10 and with 10,000 subscribers, and one
paper per request (batch 1, as before) with 10. Each prints its requests, prompt, cached and
completion tokens as the fake reports them (the README's token rule; the fake caches as
OpenAI does: a repeated prefix of >= 1,024 tokens, in steps of 128, once a request with it
has been answered), so batched and one-per-paper can be compared; and the LLM calls per
paper for scoring and enrichment: enrich once, deliver many, so they must be equal for 10
and 10,000 subscribers.

Every answer takes `delay` seconds whatever its length, with `concurrency` requests in
flight, so the best possible wall time is requests × delay ÷ concurrency; the run prints wall
÷ ideal (target ≤ 1.25) for the scoring phase and for the whole run. That fixed delay is
kind to batches (a real model takes longer to write eight papers' scores than one's): read
the token counts for the cost, and the wall times only for our overhead.

Papers carry API affiliations, so no PDF is fetched: PDF downloads are throttled to one per
`arxiv_delay` by arXiv's rules, which no concurrency setting should (or can) beat.
Not part of the test suite: it takes a couple of minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from digestbot.config import load_settings  # noqa: E402
from digestbot.enrich.pipeline import PipelineReport, run_pipeline  # noqa: E402
from digestbot.models import Announcement, Author, FeedBatch, Paper  # noqa: E402
from digestbot.sources.papers import save_batch  # noqa: E402
from digestbot.status import llm_cost  # noqa: E402
from digestbot.store import Store, now_iso  # noqa: E402
from tests.fakes.openai import FakeOpenAI  # noqa: E402

DAY = "2026-08-13"
TOPICS = ["post-training", "agents", "reasoning", "diffusion-models", "reinforcement-learning"]
TARGET = 1.25


def skewed_score(title: str, slug: str) -> int:
    """Deterministic, about one paper in ten relevant to a topic (like a real day)."""
    h = int(hashlib.sha1(f"{title}|{slug}".encode()).hexdigest(), 16)
    return 60 + h % 40 if h % 10 == 0 else h % 50


def seed(store: Store, n_papers: int, n_subscribers: int) -> None:
    papers = [Paper(id=f"2608.{i:05d}", version=1, title=f"Benchmark paper number {i}",
                    abstract=f"Paper {i} studies something. " * 20,
                    authors=[Author("Ada Lovelace", ("Tsinghua University",))],
                    categories=["cs.CL"]) for i in range(n_papers)]
    save_batch(store, FeedBatch(source="bench", date=DAY, papers=papers, announcements=[
        Announcement(DAY, p.id, "new", 1, "bench") for p in papers]))
    now = now_iso()
    # Every scenario has each topic's lowest threshold at 60, so the selection is the same.
    with store.db.atomic():
        store.db["subscribers"].insert_all(
            {"id": i + 1, "channel": "email", "address": f"u{i}@example.org", "lang": "zh",
             "tz": "Asia/Shanghai", "send_at": "08:30", "max_papers": 50, "status": "active",
             "token": secrets.token_urlsafe(16), "created_at": now, "updated_at": now}
            for i in range(n_subscribers))
        store.db["subscriptions"].insert_all(
            {"subscriber_id": i + 1, "topic": TOPICS[i % len(TOPICS)],
             "threshold": 60 + (i // len(TOPICS)) % 2 * 5, "created_at": now}
            for i in range(n_subscribers))


def scenario(fake: FakeOpenAI, workdir: Path, args: argparse.Namespace,
             n_subscribers: int, batch: int) -> tuple[PipelineReport, float]:
    db = workdir / f"bench-{n_subscribers}-{batch}.db"
    settings = load_settings({}, db=str(db), openai_api_key="sk-bench", openai_base_url=fake.url,
                             llm_concurrency=str(args.concurrency), llm_json="schema",
                             llm_batch=str(batch))
    fake.reset(score_for=skewed_score, delay=args.delay)
    with Store(db) as store:
        seed(store, args.papers, n_subscribers)
        started = time.monotonic()
        report = asyncio.run(run_pipeline(settings, store))
        wall = time.monotonic() - started
    return report, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=1500)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8, help="papers per scoring request")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    prices = load_settings({})
    print(f"settings: {args.papers} papers × {len(TOPICS)} topics, answers after "
          f"{args.delay * 1000:.0f} ms, concurrency {args.concurrency}, JSON mode schema, "
          f"scoring batch {args.batch} (and 1 to compare); prices per 1 M tokens: input "
          f"${prices.llm_price_input}, cached ${prices.llm_price_cached}, output "
          f"${prices.llm_price_output}")
    per_paper: dict[int, tuple[float, float]] = {}
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as fake:
        os.chdir(tmp)  # no stray digestbot.toml is read
        for n, batch in ((10, args.batch), (10_000, args.batch), (10, 1)):
            report, wall = scenario(fake, Path(tmp), args, n, batch)
            calls = report.score_calls + report.enrich_calls
            score_ideal = report.score_calls * args.delay / args.concurrency
            ideal = calls * args.delay / args.concurrency
            score_ratio = report.score_seconds / score_ideal if score_ideal else float("nan")
            ratio = wall / ideal if ideal else float("nan")
            worst = max(worst, score_ratio, ratio)
            if batch == args.batch:
                per_paper[n] = (report.score_calls / report.papers,
                                report.enrich_calls / report.papers)
            scoring = fake.usages[: report.score_calls]  # scoring ends before enrichment
            print(f"batch {batch:>2}, {n:>6} subscribers: {report.score_calls} scoring + "
                  f"{report.enrich_calls} enrichment requests, max {fake.max_in_flight} in "
                  f"flight, failures {report.failures}")
            print(f"{'':>6} tokens: {report.prompt_tokens:,} prompt ({report.cached_tokens:,} "
                  f"cached, {report.cached_tokens / max(report.prompt_tokens, 1):.0%}), "
                  f"{report.completion_tokens:,} completion; scoring alone "
                  f"{sum(u['prompt_tokens'] for u in scoring):,} prompt "
                  f"({sum(u['prompt_tokens_details']['cached_tokens'] for u in scoring):,} "
                  f"cached), {sum(u['completion_tokens'] for u in scoring):,} completion")
            tokens = {"prompt_tokens": report.prompt_tokens,
                      "cached_tokens": report.cached_tokens,
                      "completion_tokens": report.completion_tokens}
            scoring_tokens = {
                "prompt_tokens": sum(u["prompt_tokens"] for u in scoring),
                "cached_tokens": sum(u["prompt_tokens_details"]["cached_tokens"] for u in scoring),
                "completion_tokens": sum(u["completion_tokens"] for u in scoring)}
            print(f"{'':>6} cost at the default prices: ≈ ${llm_cost(prices, tokens):.4f}, "
                  f"scoring ≈ ${llm_cost(prices, scoring_tokens):.4f}")
            print(f"{'':>6} scoring wall {report.score_seconds:.1f} s / ideal {score_ideal:.1f} s "
                  f"= {score_ratio:.2f}; whole run {wall:.1f} s / ideal {ideal:.1f} s = "
                  f"{ratio:.2f} (target ≤ {TARGET})")
    equal = per_paper[10] == per_paper[10_000]
    print(f"calls per paper (batch {args.batch}): scoring {per_paper[10][0]:.3f}, enrichment "
          f"{per_paper[10][1]:.3f}; equal for 10 and 10,000 subscribers: "
          f"{'yes' if equal else 'NO'}; worst wall ÷ ideal {worst:.2f} "
          f"{'≤' if worst <= TARGET else '>'} {TARGET}")
    return 0 if equal and worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
