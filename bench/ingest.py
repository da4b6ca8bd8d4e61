"""Parse and store a 2,000-item announcement; print items/s and wall time (target ≤ 2 s).

The feed interleaves the real cs.CL RSS fixture (../shared/fixtures/arxiv; TeX names in about
one item in ten) with the astro-ph RSS rendered by arXiv's serializer logic from a real mailing
(tests/fixtures/arxiv_real; `Name (Affiliation, …)` creators, numbered legends, a collaboration,
TeX), repeated with fresh ids; the bundled sample stands in when the shared folder is absent.
So the author rule and pylatexenc are on the clock. Run: `.venv/bin/python bench/ingest.py [N]`.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

from digestbot.sources import detect, parsers
from digestbot.sources.arxiv import SAMPLE_FEED
from digestbot.sources.papers import save_batch
from digestbot.store import Store

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "arxiv" / "rss_new_cs.CL_2026-08-13.xml"
AFFILIATIONS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "arxiv_real" / "rss_astro-ph_2023-03-03_rendered.xml"
ID_RE = re.compile(r"\d{4}\.\d{4,5}")


def build_feed(sources: Path | list[Path], n: int) -> bytes:
    """`n` items cloned from the sources' items in turn, each with a unique id in guid, link
    and description; the first source's channel is the frame."""
    sources = [sources] if isinstance(sources, Path) else sources
    root = etree.parse(str(sources[0]), parsers._parser()).getroot()
    channel = root.find("channel")
    pools = [etree.parse(str(s), parsers._parser()).getroot().find("channel").findall("item")
             for s in sources]
    items = [item for group in zip(*[p * (max(map(len, pools)) // len(p) + 1) for p in pools],
                                   strict=False) for item in group]
    for item in channel.findall("item"):
        channel.remove(item)
    for k in range(n):
        clone = etree.fromstring(etree.tostring(items[k % len(items)]))
        new_id = f"29{k // 100000:02d}.{k % 100000:05d}"
        for tag in ("guid", "link", "description"):
            el = clone.find(tag)
            el.text = ID_RE.sub(new_id, el.text, count=1)
        channel.append(clone)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def main(n: int = 2000) -> None:
    source = REAL if REAL.is_file() else SAMPLE_FEED
    if source is SAMPLE_FEED:
        print(f"{REAL} is absent; repeating the bundled sample instead")
    data = build_feed([source, AFFILIATIONS], n)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        start = time.perf_counter()
        batch = detect.parse_any(data)
        parsed = time.perf_counter()
        saved = save_batch(store, batch)
        done = time.perf_counter()
        store.close()
    assert saved["announcements_new"] == n, saved
    wall = done - start
    with_aff = sum(any(a.affiliations for a in p.authors) for p in batch.papers)
    creators = etree.fromstring(data).iter("{http://purl.org/dc/elements/1.1/}creator")
    tex = sum("\\" in (c.text or "") for c in creators)
    print(f"settings: {n} items, sources {source.name} + {AFFILIATIONS.name} interleaved; "
          f"{with_aff} items with affiliations, {tex} with TeX in dc:creator; SQLite file, WAL")
    print(f"{n} items ({len(data) / 1e6:.1f} MB): parse {parsed - start:.2f} s, "
          f"store {done - parsed:.2f} s, wall {wall:.2f} s, {n / wall:,.0f} items/s "
          f"(target ≤ 2 s: {'ok' if wall <= 2 else 'SLOW'})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
