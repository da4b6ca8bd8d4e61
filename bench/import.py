"""Import benchmark: 10,000 readers through `digestbot sub import`, the real CLI entry.

    .venv/bin/python bench/import.py [--readers 10000] [--format csv|jsonl] [--seed 1]

Generates readers over email, Telegram and Slack (1–3 topics each, named as people type them:
Chinese names, English names and slugs; thresholds, zones, times and languages varied), writes
them to a file in a temp folder and runs `digestbot.cli.main(["sub", "import", FILE])` against a
fresh temp database — the whole command: reading, validating every row, topic lookup and the one
transaction. Then it imports the same file again (every row now an update) and exports it.

Not part of the test suite: it measures this machine. Wall time is the target ("in seconds");
CPU time is printed beside it because other work on the machine inflates wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digestbot import topics  # noqa: E402
from digestbot.cli import main  # noqa: E402

ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]
LANGS = ["zh", "en", "both"]


def readers(n: int, rng: random.Random) -> list[dict[str, object]]:
    catalogue = list(topics.load_catalogue().topics.values())
    out: list[dict[str, object]] = []
    for i in range(n):
        channel = ("email", "telegram", "slack")[i % 3]
        address = {"email": f"reader{i}@example.org", "telegram": str(100_000 + i),
                   "slack": f"C{i:08d}"}[channel]
        names = [rng.choice([t.name_zh, t.name_en, t.slug])
                 for t in rng.sample(catalogue, rng.randint(1, 3))]
        out.append({"channel": channel, "address": address, "topics": names,
                    "threshold": rng.randint(50, 80), "zone": rng.choice(ZONES),
                    "time": f"{rng.randint(0, 23):02d}:{rng.choice(['00', '30'])}",
                    "lang": rng.choice(LANGS)})
    return out


def write(path: Path, rows: list[dict[str, object]], fmt: str) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
        return
    lines = ["channel,address,topics,threshold,zone,time,lang"]
    lines += [f"{r['channel']},{r['address']},{';'.join(r['topics'])},{r['threshold']},"  # type: ignore[arg-type]
              f"{r['zone']},{r['time']},{r['lang']}" for r in rows]
    path.write_text("\n".join(lines) + "\n", "utf-8")


def timed(argv: list[str]) -> tuple[float, float, str]:
    out = io.StringIO()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"digestbot {' '.join(argv)} exited {code}")
    return wall, cpu, out.getvalue()


def run(n: int, fmt: str, seed: int) -> None:
    with tempfile.TemporaryDirectory(prefix="digestbot-import-") as tmp:
        folder = Path(tmp)
        db = folder / "bench.db"
        # Only this temp database; no digestbot.toml from the current folder.
        os.environ["DIGESTBOT_DB"] = str(db)
        os.environ["DIGESTBOT_CONFIG"] = str(folder / "none.toml")
        (folder / "none.toml").write_text("", "utf-8")
        source = folder / f"readers.{fmt}"
        write(source, readers(n, random.Random(seed)), fmt)
        print(f"settings: readers={n} format={fmt} seed={seed} file={source.stat().st_size} bytes "
              f"db={db} (temp, fresh) entry=digestbot.cli.main python={sys.version.split()[0]} "
              f"sqlite={sqlite3.sqlite_version}")
        wall, cpu, out = timed(["sub", "import", str(source)])
        print(f"import (all new):     {wall:6.2f} s wall, {cpu:6.2f} s CPU — {out.strip()}")
        wall, cpu, out = timed(["sub", "import", str(source)])
        print(f"import (all updates): {wall:6.2f} s wall, {cpu:6.2f} s CPU — {out.strip()}")
        wall, cpu, out = timed(["sub", "export", str(folder / f"export.{fmt}")])
        print(f"export:               {wall:6.2f} s wall, {cpu:6.2f} s CPU")
        with sqlite3.connect(db) as conn:
            counts = [conn.execute(f"select count(*) from {t}").fetchone()[0]
                      for t in ("subscribers", "subscriptions")]
        print(f"database: {counts[0]} subscribers, {counts[1]} subscriptions")


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--readers", type=int, default=10_000)
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    run(args.readers, args.format, args.seed)


if __name__ == "__main__":
    cli()
