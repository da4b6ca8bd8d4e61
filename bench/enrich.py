"""Benchmark: the pipeline against a local OpenAI-compatible server that answers slowly.

    .venv/bin/python bench/enrich.py [--papers 1500] [--delay 0.2] [--concurrency 8]

With every answer taking `delay` seconds and `concurrency` requests in flight, the best
possible wall time is calls × delay ÷ concurrency (1,500 scoring calls: 37.5 s). The run
prints wall ÷ ideal (target ≤ 1.25) for the scoring phase (against 37.5 s) and for the whole
run (scoring + enrichment calls), and the LLM calls per paper for scoring and enrichment
with 10 and with 10,000 subscribers: enrich once, deliver many, so they must be equal.

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
             n_subscribers: int) -> tuple[PipelineReport, float]:
    db = workdir / f"bench-{n_subscribers}.db"
    settings = load_settings({}, db=str(db), openai_api_key="sk-bench", openai_base_url=fake.url,
                             llm_concurrency=str(args.concurrency), llm_json="schema")
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"{args.papers} papers, answers after {args.delay * 1000:.0f} ms, "
          f"concurrency {args.concurrency}; ideal for scoring alone: "
          f"{args.papers * args.delay / args.concurrency:.1f} s")
    per_paper: dict[int, tuple[float, float]] = {}
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as fake:
        os.chdir(tmp)  # no stray digestbot.toml is read
        for n in (10, 10_000):
            report, wall = scenario(fake, Path(tmp), args, n)
            calls = report.score_calls + report.enrich_calls
            score_ideal = report.score_calls * args.delay / args.concurrency
            ideal = calls * args.delay / args.concurrency
            score_ratio = report.score_seconds / score_ideal if score_ideal else float("nan")
            ratio = wall / ideal if ideal else float("nan")
            worst = max(worst, score_ratio, ratio)
            per_paper[n] = (report.score_calls / report.papers, report.enrich_calls / report.papers)
            print(f"{n:>6} subscribers: {report.score_calls} scoring + {report.enrich_calls} "
                  f"enrichment calls, max {fake.max_in_flight} in flight, failures "
                  f"{report.failures}")
            print(f"{'':>6} scoring wall {report.score_seconds:.1f} s / ideal {score_ideal:.1f} s "
                  f"= {score_ratio:.2f}; whole run {wall:.1f} s / ideal {ideal:.1f} s = "
                  f"{ratio:.2f} (target ≤ {TARGET})")
            print(f"{'':>6} calls per paper: scoring {per_paper[n][0]:.3f}, "
                  f"enrichment {per_paper[n][1]:.3f}")
    equal = per_paper[10] == per_paper[10_000]
    print(f"calls per paper equal for 10 and 10,000 subscribers: {'yes' if equal else 'NO'}; "
          f"worst wall ÷ ideal {worst:.2f} {'≤' if worst <= TARGET else '>'} {TARGET}")
    return 0 if equal and worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
