"""A busy database: writers wait their turn (BEGIN IMMEDIATE + busy_timeout), and the web app
keeps answering while one of its requests waits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from digestbot import subscribers
from digestbot.cli import main
from digestbot.config import Settings
from digestbot.store import Store
from tests.fakes.busy import hold_write_lock
from tests.fakes.site import csrf_of, running_site


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
