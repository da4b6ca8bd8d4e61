"""Benchmark: the offline pass over the whole topic catalogue (issue 15 item 6).

    .venv/bin/python bench/catalogue.py [--papers 1500]

Every evening `run_pipeline` scores each catalogue topic nobody follows with the offline
scorer, so the public day pages count every topic. This measures that pass's wall time on the
recorded 139-paper cs.CL day (../shared/fixtures/arxiv/rss_new_cs.CL_2026-08-13.xml) and on
`--papers` papers made from it (each copy's title and abstract made distinct, so no text cache
helps), plus a re-run (everything cached) and the score rows and database bytes it adds.
Nobody is subscribed, so no topic is followed, nothing is enriched and no PDF is asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from digestbot.config import load_settings  # noqa: E402
from digestbot.enrich.pipeline import run_pipeline  # noqa: E402
from digestbot.models import Announcement, FeedBatch, Paper  # noqa: E402
from digestbot.sources.detect import parse_any  # noqa: E402
from digestbot.sources.papers import save_batch  # noqa: E402
from digestbot.store import Store  # noqa: E402

FEED = (Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "arxiv"
        / "rss_new_cs.CL_2026-08-13.xml")
DAY = "2026-08-13"


def copies(papers: list[Paper], n: int, prefix: str = "2608") -> list[Paper]:
    """`n` papers cycled from `papers`, each with its own id; repeats say which copy they are."""
    out = []
    for i in range(n):
        p, k = papers[i % len(papers)], i // len(papers)
        out.append(dataclasses.replace(
            p, id=f"{prefix}.{i:05d}", version=1,
            title=p.title if k == 0 else f"{p.title} (copy {k})",
            abstract=p.abstract if k == 0 else f"{p.abstract} Copy {k}."))
    return out


def measure(label: str, papers: list[Paper]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DIGESTBOT_DB"] = db = str(Path(tmp) / "bench.db")
        settings = load_settings()
        with Store(settings.db) as store:
            save_batch(store, FeedBatch(source="bench", date=DAY, papers=papers, announcements=[
                Announcement(DAY, p.id, "new", p.version, "bench") for p in papers]))
            size = Path(db).stat().st_size
            first = asyncio.run(run_pipeline(settings, store, date=DAY, offline=True))
            again = asyncio.run(run_pipeline(settings, store, date=DAY, offline=True))
            rows = store.db["scores"].count
        store_growth = Path(db).stat().st_size - size
        print(f"{label}: {len(papers)} papers × {first.catalogue_topics} catalogue topics "
              f"offline: {first.catalogue_seconds:.2f} s "
              f"({first.catalogue_seconds / len(papers) * 1000:.2f} ms/paper); re-run (cached) "
              f"{again.catalogue_seconds:.2f} s; {rows} score rows, +{store_growth / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--papers", type=int, default=1500)
    args = parser.parse_args()
    os.environ.pop("OPENAI_API_KEY", None)
    print(f"settings: offline scorer only, no subscribers, {os.cpu_count()} CPUs")
    recorded = [p for p in parse_any(FEED.read_bytes(), date=DAY).papers if p.version]
    measure("recorded day", recorded)
    measure("generated day", copies(recorded, args.papers))


if __name__ == "__main__":
    main()
