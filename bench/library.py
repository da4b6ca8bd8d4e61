"""Benchmark: reader libraries as profiles (issue 16 item 3) — import and selection cost.

    .venv/bin/python bench/library.py [--papers 1500] [--readers 200] [--entries 300]

On the recorded 139-paper cs.CL day (../shared/fixtures/arxiv/rss_new_cs.CL_2026-08-13.xml),
grown to `--papers` distinct papers (each copy's title and abstract changed, so no cache of
text helps): parse a BibTeX and a RIS file of `--entries` entries with titles and abstracts
(real ones, from two recorded API answers of other papers), then select the day's digest for `--readers` readers twice:
without a library (topic scores only) and each with their own `--entries`-entry library. The
first selection with libraries pays for embedding the day's papers (once, for everyone) and
each library (once per import); the figure per reader after that is what a delivery run pays.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.catalogue import copies  # noqa: E402
from digestbot import digest, subscribers  # noqa: E402
from digestbot.models import Announcement, FeedBatch, Paper  # noqa: E402
from digestbot.outbox import DeliveryHistory  # noqa: E402
from digestbot.sources.detect import parse_any  # noqa: E402
from digestbot.sources.papers import save_batch  # noqa: E402
from digestbot.store import Store, now_iso  # noqa: E402
from digestbot.subscribers import library  # noqa: E402
from digestbot.subscribers.library_files import parse_library  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "arxiv"
FEED = SHARED / "rss_new_cs.CL_2026-08-13.xml"
# The readers' libraries: other real papers (an API answer of 100 software-testing papers and
# one of 20 cs.LG/cs.AI ones), so only the day's papers close to them pass, as in life.
KEPT = (SHARED / "api_query_search_all-testing_100entries_2026-04-12.xml",
        SHARED / "api_query_cat_cs.LG_OR_cs.AI_20entries_2026-04-30.xml")
DAY = "2026-08-13"


def bibtex(papers: list[Paper]) -> bytes:
    def clean(text: str) -> str:
        return text.replace("{", "(").replace("}", ")").replace("%", " percent")
    return "".join(f"@misc{{k{i},\n  title = {{{clean(p.title)}}},\n  abstract = "
                   f"{{{clean(p.abstract)}}},\n}}\n\n" for i, p in enumerate(papers)).encode()


def ris(papers: list[Paper]) -> bytes:
    return "".join(f"TY  - JOUR\nID  - k{i}\nTI  - {p.title}\nAB  - {p.abstract}\nER  - \n\n"
                   for i, p in enumerate(papers)).encode()


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--papers", type=int, default=1500)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--entries", type=int, default=300)
    args = parser.parse_args()
    print(f"settings: {args.papers} papers on {DAY}, {args.readers} readers, {args.entries} "
          f"library entries each, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    recorded = [p for p in parse_any(FEED.read_bytes(), date=DAY).papers if p.version]
    day = copies(recorded, args.papers)
    others = [p for path in KEPT for p in parse_any(path.read_bytes()).papers]
    kept = copies(others, args.entries, prefix="2607")
    for kind, data in (("BibTeX", bibtex(kept)), ("RIS", ris(kept))):
        (_, entries), seconds = timed(parse_library, data, kind)
        print(f"parse {kind}: {len(entries)} entries, {len(data) / 1e6:.2f} MB in {seconds:.2f} s "
              f"({seconds / len(entries) * 1000:.1f} ms/entry)")
    _, entries = parse_library(ris(kept), "lib.ris")
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        save_batch(store, FeedBatch(source="bench", date=DAY, papers=day, announcements=[
            Announcement(DAY, p.id, "new", 1, "bench") for p in day]))
        store.db["scores"].insert_all(
            {"arxiv_id": p.id, "version": 1, "topic": "post-training", "score": 30 + i % 70,
             "reason": "bench", "scorer": "bench", "created_at": now_iso()}
            for i, p in enumerate(day))
        readers = [subscribers.add_or_update(store, channel="email", address=f"r{i}@example.org",
                                             topics=["post-training"]) for i in range(args.readers)]

        def select_all() -> int:
            batch, history = digest.Library(store), DeliveryHistory(store)
            return sum(len(d.entries) for r in readers
                       if (d := digest.select(store, r, DAY, history=history, library=batch)))

        plain, t_plain = timed(select_all)
        for i, reader in enumerate(readers):  # each reader's own slice of the entries
            mine = entries[i % len(entries):] + entries[:i % len(entries)]
            library.replace_library(store, reader.id, "ris", "lib.ris", mine)
        first, t_first = timed(select_all)
        again, t_again = timed(select_all)
    n = args.readers
    print(f"select without libraries: {t_plain:.2f} s ({t_plain / n * 1000:.1f} ms/reader), "
          f"{plain} entries")
    print(f"select with libraries, first run (embeds the day and each library): {t_first:.2f} s "
          f"({t_first / n * 1000:.1f} ms/reader), {first} entries")
    print(f"select with libraries, cached vectors: {t_again:.2f} s "
          f"({t_again / n * 1000:.1f} ms/reader; +{(t_again - t_plain) / n * 1000:.1f} ms/reader "
          f"for the library), {again} entries")


if __name__ == "__main__":
    main()
