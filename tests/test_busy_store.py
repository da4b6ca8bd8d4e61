"""A busy database: writers wait their turn (BEGIN IMMEDIATE + busy_timeout), and the web app
keeps answering while one of its requests waits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from digestbot import subscribers
from digestbot.cli import main
from digestbot.config import Settings
from digestbot.store import Store
from tests.fakes.site import csrf_of, running_site

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


def test_sub_add_waits_for_a_write_lock_held_elsewhere(
    settings: Settings, capsys
) -> None:
    holder = hold_write_lock(settings.db)
    started = time.monotonic()
    try:
        code = main(["sub", "add", "--email", "ada@example.org", "--topic", "post-training"])
    finally:
        holder.wait(timeout=30)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert time.monotonic() - started >= 2.0  # it waited rather than failing at once
    assert "database is locked" not in out.err
    with Store(settings.db) as store:
        assert subscribers.by_address(store, "email", "ada@example.org") is not None


async def test_signup_waits_for_the_lock_and_healthz_stays_fast(tmp_path: Path) -> None:
    async with running_site() as site:
        home = await site.client.get("/")
        form = {"email": "ada@example.org", "topic": "post-training", "csrf": csrf_of(home.text)}
        holder = await asyncio.to_thread(hold_write_lock, site.settings.db)
        try:
            signup = asyncio.create_task(site.client.post("/subscribe", data=form))
            await asyncio.sleep(0.5)  # the signup is now waiting on the lock
            assert not signup.done()
            started = time.monotonic()
            health = await site.client.get("/healthz")
            assert health.status_code == 200 and time.monotonic() - started < 1.0
            answer = await signup
        finally:
            await asyncio.to_thread(holder.wait, 30)
        assert answer.status_code == 200 and "请查收邮件" in answer.text
        sub = subscribers.by_address(site.store, "email", "ada@example.org")
        assert sub is not None and sub.status == "pending"
