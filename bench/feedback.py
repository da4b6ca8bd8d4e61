"""Does 👍/👎 teach the digest? A simulation over real arXiv announcement days (issue 17).

    .venv/bin/python bench/feedback.py [--per-day 10] [--threshold 30] [--max 50]

Readers with fixed hidden tastes (a regular expression over title + abstract the ranker never
sees; it learns from embeddings and topic scores) each subscribe to a few topics and receive
their digest of every real day below, in date order, through the real selection
(`digest.select`), with the offline scorer's real scores. Each day the reader reads the first
`--per-day` papers of their digest and votes 👍 on those their taste likes, 👎 on the others
(`subscribers.feedback.record`). Beside each voter runs a twin with the same subscriptions who
never votes: their digest is the unranked one. Printed per reader and day: precision@10 (share
of the first 10 digest entries the hidden taste likes) with and without the re-ranker, the
votes given before the day, and how many "you may like" suggestions the digest carried.

Days (real announcements, oldest first):
- 2021-11-03  /work/shared/fixtures/arxiv/rss_old_rdf_cs_2021-11-02.xml   444 items, all of cs
- 2025-08-20  /work/shared/fixtures/arxiv/rss_atom_cs.AI_2025-08-20_TRUNCATED.xml  cs.AI; the
              download was cut mid-entry: the 86 complete entries are kept (the partial 87th is
              dropped and the feed closed) — see `repaired`
- 2026-08-13  /work/shared/fixtures/arxiv/rss_new_cs.CL_2026-08-13.xml    139 items, cs.CL
(provenance of each: /work/shared/fixtures/arxiv/SOURCES.md)

The issue's target: after 20 votes (the third day at --per-day 10), precision@10 at least 20
points above the unranked digest, and a reader who never votes never worse (their digest is
checked identical to the unranked one, entry for entry).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digestbot import digest, rerank, subscribers, topics  # noqa: E402
from digestbot.enrich.calls import PipelineReport  # noqa: E402
from digestbot.enrich.scoring import score_papers  # noqa: E402
from digestbot.models import Digest, Paper  # noqa: E402
from digestbot.sources import detect  # noqa: E402
from digestbot.sources.papers import save_batch  # noqa: E402
from digestbot.store import Store  # noqa: E402
from digestbot.subscribers import feedback  # noqa: E402

# Beside the checkout, as the tests find it (tests/conftest.py SHARED_ARXIV).
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "arxiv"
DAYS: tuple[tuple[str, str], ...] = (
    ("2021-11-03", "rss_old_rdf_cs_2021-11-02.xml"),
    ("2025-08-20", "rss_atom_cs.AI_2025-08-20_TRUNCATED.xml"),
    ("2026-08-13", "rss_new_cs.CL_2026-08-13.xml"),
)


@dataclass(frozen=True)
class Reader:
    """A simulated reader: what they subscribe to and what they secretly like."""

    name: str
    topics: tuple[str, ...]
    likes: str  # regular expression over title + abstract, case-insensitive

    def liked(self, paper: Paper) -> bool:
        return self.liked_text(f"{paper.title}\n{paper.abstract}")

    def liked_text(self, text: str) -> bool:
        return re.search(self.likes, text, re.I) is not None


READERS: tuple[Reader, ...] = (
    Reader("safety", ("agents", "reasoning", "evaluation"),
           r"\b(safety|safe|jailbreak\w*|harm\w*|attack\w*|adversar\w*|align\w*|risk\w*|"
           r"privacy|toxic\w*|bias\w*|fair\w*)\b"),
    Reader("multilingual", ("evaluation", "post-training", "dialogue"),
           r"\b(multilingual|cross-lingual|low-resource|translation|languages|chinese|arabic|"
           r"hindi|african|indic|bengali|korean|japanese|german|spanish|dialect\w*)\b"),
    Reader("health", ("information-extraction", "evaluation", "rag"),
           r"\b(medical|clinical|health\w*|patient\w*|disease\w*|biomedical|drug\w*|"
           r"hospital\w*|diagnos\w*|mental)\b"),
    Reader("speech", ("multimodal-llm", "dialogue", "evaluation"),
           r"\b(speech|spoken|audio|acoustic|voice|speaker\w*|asr|prosod\w*)\b"),
)


def repaired(data: bytes) -> bytes:
    """A feed download cut off mid-entry, with its complete entries only: everything after the
    last `</entry>` goes and the feed element is closed. Whole feeds come back unchanged."""
    end = data.rfind(b"</entry>")
    if data.rstrip().endswith(b"</feed>") or end < 0:
        return data
    return data[:end + len(b"</entry>")] + b"\n</feed>\n"


def load_days(store: Store, days: Sequence[tuple[str, str]], limit: int | None = None
              ) -> list[tuple[str, list[Paper]]]:
    """Each day's real feed parsed and stored as that day's announcement (at most `limit`
    papers a day, in feed order); the papers of each day."""
    out = []
    for date, name in days:
        batch = detect.parse_any(repaired((SHARED / name).read_bytes()), date=date, name=name)
        if limit is not None:
            keep = {p.id for p in batch.papers[:limit]}
            batch.papers = [p for p in batch.papers if p.id in keep]
            batch.announcements = [a for a in batch.announcements if a.arxiv_id in keep]
        batch.date = date
        batch.announcements = [type(a)(date, a.arxiv_id, a.announce_type, a.version, a.source)
                               for a in batch.announcements]
        save_batch(store, batch)
        out.append((date, batch.papers))
    return out


def score_days(store: Store, days: list[tuple[str, list[Paper]]], slugs: Sequence[str]) -> None:
    """The offline scorer's scores of every paper for every topic a reader follows (what the
    evening's pipeline stores without an API key)."""
    wanted = [topics.get_topic(s, store) for s in sorted(set(slugs))]
    for _, papers in days:
        asyncio.run(score_papers(store, papers, wanted, None, PipelineReport()))


class _History:
    """What each simulated reader was sent (the outbox's record, kept in memory here)."""

    def __init__(self) -> None:
        self.sent: dict[int, dict[str, str]] = {}

    def last_sent(self, subscriber_id: int, before: str) -> str | None:
        days = [d for d in self.sent.get(subscriber_id, {}).values() if d < before]
        return max(days, default=None)

    def delivered(self, subscriber_id: int, arxiv_ids: Sequence[str]) -> set[str]:
        got = self.sent.get(subscriber_id, {})
        return {pid for pid in arxiv_ids if pid in got}

    def record(self, d: Digest) -> None:
        for e in d.entries:
            self.sent.setdefault(d.subscriber.id, {})[e.paper.id] = d.date


def precision(d: Digest | None, reader: Reader, k: int = 10) -> float:
    entries = d.entries[:k] if d else []
    return sum(reader.liked(e.paper) for e in entries) / k


@dataclass
class DayResult:
    date: str
    votes_before: int
    ranked: float
    unranked: float
    suggestions: int
    silent_same: bool  # the never-voting twin's digest equals the unranked one
    ranked_ms: float = 0.0  # selecting the voter's digest, training and ranking included
    unranked_ms: float = 0.0  # the same selection with the re-ranker off


@dataclass
class ReaderResult:
    reader: Reader
    days: list[DayResult] = field(default_factory=list)


def simulate(store: Store, days: list[tuple[str, list[Paper]]], readers: Sequence[Reader],
             per_day: int, threshold: int, max_papers: int) -> list[ReaderResult]:
    """Every reader through every day: a voter, a twin who never votes, and the voter's digest
    made again with the re-ranker switched off (`rerank.MIN_VOTES` out of reach) for the
    unranked figure on the same history."""
    history = _History()
    results = []
    joined = f"{days[0][0][:8]}01T00:00:00+00:00"
    for reader in readers:
        voter = subscribers.add_or_update(store, channel="email", address=f"voter-{reader.name}@example.org",
                                          topics=list(reader.topics), threshold=threshold,
                                          max_papers=max_papers)
        twin = subscribers.add_or_update(store, channel="email", address=f"twin-{reader.name}@example.org",
                                         topics=list(reader.topics), threshold=threshold,
                                         max_papers=max_papers)
        for sub in (voter, twin):
            store.db["subscribers"].update(sub.id, {"created_at": joined})
        voter, twin = subscribers.get(store, voter.id), subscribers.get(store, twin.id)
        out = ReaderResult(reader)
        for date, _ in days:
            votes_before = len(feedback.votes(store, voter.id))
            started = time.perf_counter()
            ranked = digest.select(store, voter, date, history=history)
            ranked_ms = 1000 * (time.perf_counter() - started)
            started = time.perf_counter()
            unranked = _without_ranker(store, voter, date, history)
            unranked_ms = 1000 * (time.perf_counter() - started)
            silent = digest.select(store, twin, date, history=history)
            silent_same = _ids(silent) == _ids(_without_ranker(store, twin, date, history))
            suggestions = sum(e.hits and e.hits[0].topic == rerank.SUGGESTED
                              for e in (ranked.entries if ranked else []))
            out.days.append(DayResult(date, votes_before, precision(ranked, reader),
                                      precision(unranked, reader), suggestions, silent_same,
                                      ranked_ms, unranked_ms))
            for d in (ranked, silent):
                if d:
                    history.record(d)
            for paper, vote in votes_on(ranked, reader, per_day):
                feedback.record(store, voter.id, paper.id, vote)
        results.append(out)
    return results


def votes_on(d: Digest | None, reader: Reader, n: int) -> list[tuple[Paper, int]]:
    """What a reader taps on a digest they scrolled through: 👍 on the papers they like, in
    digest order, up to half of `n`; 👎 on the first papers they do not, for the rest."""
    papers = [e.paper for e in d.entries] if d else []
    ups = [p for p in papers if reader.liked(p)][:n // 2]
    downs = [p for p in papers if not reader.liked(p)][:n - len(ups)]
    return [(p, feedback.UP) for p in ups] + [(p, feedback.DOWN) for p in downs]


def _ids(d: Digest | None) -> list[str]:
    return [e.paper.id for e in d.entries] if d else []


def _without_ranker(store: Store, sub: subscribers.Subscriber, date: str, history: _History
                    ) -> Digest | None:
    saved = rerank.MIN_VOTES
    rerank.MIN_VOTES = 10**9
    try:
        return digest.select(store, sub, date, history=history)
    finally:
        rerank.MIN_VOTES = saved


def build(db: Path, limit: int | None = None) -> tuple[Store, list[tuple[str, list[Paper]]]]:
    store = Store(db)
    days = load_days(store, DAYS, limit)
    score_days(store, days, [s for r in READERS for s in r.topics])
    return store, days


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-day", type=int, default=10, help="votes a reader gives a day")
    ap.add_argument("--threshold", type=int, default=30, help="readers' match threshold")
    ap.add_argument("--max", type=int, default=50, help="readers' max papers a digest")
    args = ap.parse_args(argv)
    print(f"settings: days={[d for d, _ in DAYS]} readers={[r.name for r in READERS]} "
          f"votes/day={args.per_day} threshold={args.threshold} max_papers={args.max} "
          f"min_votes={rerank.MIN_VOTES} may_like={rerank.MAY_LIKE} "
          f"may_like_min_p={rerank.MAY_LIKE_MIN_P} C={rerank.C} score_weight={rerank.SCORE_WEIGHT}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        store, days = build(Path(tmp) / "bench.db")
        print(f"loaded and scored {sum(len(p) for _, p in days)} papers in "
              f"{time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        results = simulate(store, days, READERS, args.per_day, args.threshold, args.max)
        took = time.perf_counter() - started
        print(f"{'reader':<13}{'day':<12}{'votes':>6}{'p@10 ranked':>13}{'unranked':>10}"
              f"{'gain':>7}{'may-like':>10}{'silent=unranked':>17}")
        gains = []
        for r in results:
            for d in r.days:
                print(f"{r.reader.name:<13}{d.date:<12}{d.votes_before:>6}{d.ranked:>13.2f}"
                      f"{d.unranked:>10.2f}{100 * (d.ranked - d.unranked):>+7.0f}"
                      f"{d.suggestions:>10}{str(d.silent_same):>17}")
                if d.votes_before >= 20:
                    gains.append(d.ranked - d.unranked)
        selects = len(results) * len(days) * 4
        trained = [d for r in results for d in r.days if d.votes_before >= rerank.MIN_VOTES]
        extra = sorted(d.ranked_ms - d.unranked_ms for d in trained)
        train_ms: list[float] = []
        train_cpu: list[float] = []  # other work on the machine inflates wall time, not this
        for r in results:  # the model alone, warm: what a reader's votes cost per digest
            sub = subscribers.by_address(store, "email", f"voter-{r.reader.name}@example.org")
            for _ in range(5):
                started, cpu = time.perf_counter(), time.process_time()
                rerank.learn(store, sub.id, list(r.reader.topics))
                train_ms.append(1000 * (time.perf_counter() - started))
                train_cpu.append(1000 * (time.process_time() - cpu))
        print(f"after ≥20 votes: mean precision@10 gain {100 * sum(gains) / max(len(gains), 1):+.1f}"
              f" points over {len(gains)} reader-days (target ≥ +20); "
              f"never-voters identical to unranked: "
              f"{all(d.silent_same for r in results for d in r.days)}")
        print(f"{selects} selections in {took:.2f} s ({1000 * took / selects:.0f} ms each on "
              "average, the first one loading the embedding model)")
        print(f"training a reader's model from 10-30 votes: median "
              f"{sorted(train_ms)[len(train_ms) // 2]:.1f} ms wall, "
              f"{sorted(train_cpu)[len(train_cpu) // 2]:.1f} ms CPU; "
              f"a trained reader's selection minus the unranked one (training, embedding the "
              f"day's papers once per process, ranking): median {extra[len(extra) // 2]:.0f} ms "
              f"over {len(extra)} digests")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
