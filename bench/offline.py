"""Benchmark: the offline scorer and the prefilter, measured on hand-labelled real papers.

    .venv/bin/python bench/offline.py [--threshold 60]

1. Recall and false hits at the threshold on tests/fixtures/labelled (392 real papers, five
   topics, labelled by hand; see its PROVENANCE.md): before (keywords alone, offline-v1) and
   after (keywords blended with embeddings, offline-v2), pooled and per topic.
2. The prefilter on the same set, each topic followed alone at the threshold (the strictest
   case): relevant pairs it would drop (budget 2 %, the labels standing in for what the LLM
   alone would select) and irrelevant pairs it spares the model.
3. LLM scoring calls on a real day, the recorded cs.CL announcement of 2026-08-13 (139 papers,
   ../shared/fixtures/arxiv), with the prefilter off and on, for a few sets of followed topics.
   The scoring stage runs against a local OpenAI-compatible server that answers at once (the
   calls are counted, not timed); nothing reaches arXiv or the internet.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from digestbot import embed, subscribers  # noqa: E402
from digestbot import topics as catalogue  # noqa: E402
from digestbot.config import load_settings  # noqa: E402
from digestbot.enrich import offline, prefilter, semantic  # noqa: E402
from digestbot.enrich.calls import PipelineReport  # noqa: E402
from digestbot.enrich.llm import LLMClient  # noqa: E402
from digestbot.enrich.scoring import score_papers  # noqa: E402
from digestbot.models import Paper  # noqa: E402
from digestbot.sources.detect import parse_any  # noqa: E402
from digestbot.store import Store  # noqa: E402
from tests import labelled  # noqa: E402
from tests.fakes.openai import FakeOpenAI  # noqa: E402

FEED = (Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "arxiv"
        / "rss_new_cs.CL_2026-08-13.xml")
FOLLOWED = {
    "one reader on 后训练 (the demo default)": ["post-training"],
    "the five labelled topics": ["post-training", "agents", "safety-alignment",
                                 "machine-translation", "speech-recognition"],
    "every catalogue topic": None,  # filled in from topics.toml
}


def settings_line(threshold: int) -> str:
    return (f"threshold {threshold}; embeddings {embed.CONFIG} dim {embed.DIM} (wordllama, "
            f"offline); blend SEM_WEIGHT {offline.SEM_WEIGHT}, SEM_NEUTRAL {offline.SEM_NEUTRAL}, "
            f"SEM_ALONE_SLOPE {offline.SEM_ALONE_SLOPE}, SEM_ALONE_FROM {offline.SEM_ALONE_FROM}, "
            f"background percentile {semantic.BACKGROUND_PERCENTILE}; prefilter MARGIN "
            f"{prefilter.MARGIN}")


def quality(data: labelled.Labelled, threshold: int) -> None:
    before, after = labelled.keyword_scores(data), labelled.blended_scores(data)
    print(f"\n1. {len(data.papers)} labelled papers × {len(data.labels)} topics, at ≥ {threshold}")
    print(f"   {'topic':<20} {'before: recall  false hits':>30} {'after: recall  false hits':>30}")
    was = labelled.at_threshold(data, before, threshold)
    now = labelled.at_threshold(data, after, threshold)
    for slug in [*data.labels, "all"]:
        b, a = was[slug], now[slug]
        print(f"   {slug:<20} {b.hits:>4}/{b.positives:<3} {b.recall:6.1%} {b.false_hits:>5}/"
              f"{b.negatives:<4} {b.false_hit_rate:5.1%}   {a.hits:>4}/{a.positives:<3} "
              f"{a.recall:6.1%} {a.false_hits:>5}/{a.negatives:<4} {a.false_hit_rate:5.1%}")
    print(f"\n2. prefilter (drop when offline < threshold − {prefilter.MARGIN}), each topic "
          f"followed alone at {threshold}")
    for name, scores in (("keywords alone", before), ("blended (used)", after)):
        kept = labelled.kept_by_prefilter(data, scores, threshold)["all"]
        lost = kept.positives - kept.hits
        spared = kept.negatives - kept.false_hits
        print(f"   {name:<15} relevant pairs dropped {lost}/{kept.positives} "
              f"({lost / kept.positives:.1%}; budget 2 %), irrelevant pairs spared the model "
              f"{spared}/{kept.negatives} ({spared / kept.negatives:.0%})")
    sweep = []
    for margin in (15, 20, 25, 30, 35, 40):
        kept = labelled.kept_by_prefilter(data, after, threshold, margin)["all"]
        sweep.append(f"{margin}: {kept.positives - kept.hits} dropped, "
                     f"{(kept.negatives - kept.false_hits) / kept.negatives:.0%} spared")
    print("   other margins (blended): " + "; ".join(sweep))


async def _score_day(settings, store: Store, papers: list[Paper], topics, first_stage: bool
                     ) -> PipelineReport:
    report = PipelineReport()
    async with LLMClient(settings) as llm:
        await score_papers(store, papers, topics, llm, report, first_stage=first_stage)
    return report


def real_day(threshold: int) -> None:
    if not FEED.is_file():
        print(f"\n3. skipped: {FEED} is absent")
        return
    papers = parse_any(FEED.read_bytes()).papers
    print(f"\n3. LLM scoring calls on {FEED.name} ({len(papers)} papers), readers at {threshold}")
    everything = sorted(catalogue.load_catalogue().topics)
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as fake:
        os.chdir(tmp)  # no stray digestbot.toml is read
        for label, slugs in FOLLOWED.items():
            slugs = slugs or everything
            calls = {}
            for switch in ("off", "on"):
                db = Path(tmp) / f"{len(slugs)}-{switch}.db"
                settings = load_settings({}, db=str(db), openai_api_key="sk-bench",
                                         openai_base_url=fake.url, prefilter=switch)
                fake.reset()
                with Store(db) as store:
                    subscribers.add_or_update(store, channel="email", address="r@example.org",
                                              topics=slugs, threshold=threshold)
                    topics = [catalogue.get_topic(s) for s in slugs]
                    calls[switch] = asyncio.run(_score_day(settings, store, papers, topics,
                                                           switch == "on"))
            off, on = calls["off"], calls["on"]
            saved = off.score_calls - on.score_calls
            print(f"   {label} ({len(slugs)} topics): {off.score_calls} calls off → "
                  f"{on.score_calls} on, prefiltered {on.prefiltered}, saved {saved} "
                  f"({saved / off.score_calls:.0%})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=int, default=subscribers.DEFAULT_THRESHOLD)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("httpx", "httpx2"):  # one line per request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    print(settings_line(args.threshold))
    quality(labelled.load(), args.threshold)
    real_day(args.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
