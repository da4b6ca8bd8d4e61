"""Another process holding SQLite's write lock, for tests of what waits for it and what must not."""

from __future__ import annotations

import subprocess
import sys

from digestbot.store import Store

# Another process takes the write lock, says so, holds it for argv[2] seconds, then commits.
HOLD = (
    "import sqlite3, sys, time\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE')\n"
    "c.execute(\"insert or replace into meta values ('held', 'yes')\")\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "c.execute('COMMIT')\n"
)


def hold_write_lock(db: str, seconds: float = 3.0) -> subprocess.Popen[str]:
    Store(db).close()  # migrated, so the holder's insert has its table
    proc = subprocess.Popen([sys.executable, "-c", HOLD, db, str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc
