"""Parse and store a 2,000-item announcement; print items/s and wall time (target ≤ 2 s).

The feed is the real cs.CL RSS fixture (../shared/fixtures/arxiv) repeated with fresh ids, or
the bundled sample repeated when the shared folder is absent, so the numbers reflect arXiv's
real item sizes where possible. Run: `.venv/bin/python bench/ingest.py [N]`.
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
from digestbot.store import Store

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "arxiv" / "rss_new_cs.CL_2026-08-13.xml"
ID_RE = re.compile(r"\d{4}\.\d{4,5}")


def build_feed(source: Path, n: int) -> bytes:
    """`n` items cloned from `source`, each with a unique id in guid, link and description."""
    root = etree.parse(str(source), parsers._parser()).getroot()
    channel = root.find("channel")
    items = channel.findall("item")
    for item in items:
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
    data = build_feed(source, n)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        start = time.perf_counter()
        batch = detect.parse_any(data)
        parsed = time.perf_counter()
        saved = store.save_batch(batch)
        done = time.perf_counter()
        store.close()
    assert saved["announcements_new"] == n, saved
    wall = done - start
    print(f"{n} items from {source.name} ({len(data) / 1e6:.1f} MB): parse {parsed - start:.2f} s, "
          f"store {done - parsed:.2f} s, wall {wall:.2f} s, {n / wall:,.0f} items/s "
          f"(target ≤ 2 s: {'ok' if wall <= 2 else 'SLOW'})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
