"""`digestbot run` as a process through a simulated announcement day, on loopback servers.

A virtual clock (`--now`, `--speed`) runs Wednesday evening to Thursday morning in seconds:
arXiv's RSS (tests/fakes/arxiv_day.py) turns over at 20:00 ET, the LLM is the OpenAI fake,
mail goes to aiosmtpd, Telegram to the fake Bot API. Then SIGTERM must end it with status 0 within 10 s, and a
second `run` on the same database must refuse to start.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

# The run loop drives ingest and the pipeline; until those stages land there is nothing to run.
pytest.importorskip("digestbot.sources.arxiv")
pytest.importorskip("digestbot.enrich.pipeline")

from digestbot import subscribers  # noqa: E402
from digestbot.clock import ET, Clock
from digestbot.store import Store
from tests.fakes.arxiv_day import ArxivDay
from tests.fakes.openai import FakeOpenAI
from tests.fakes.smtp import SmtpServer, free_port

# Wednesday evening, early enough that start-up (about 2 virtual hours at this speed) is over
# before the 20:00 ET announcement, so the cron job — not the catch-up — fetches it.
START = datetime(2026, 8, 12, 18, 0, tzinfo=ET)
PUBLISHED = datetime(2026, 8, 12, 20, 0, tzinfo=ET)
SPEED = 5000  # 16 virtual hours in ~12 real seconds
STARTED = re.compile(rb"virtual clock at (\S+), ")
HAS_TELEGRAM = importlib.util.find_spec("tests.fakes.telegram") is not None and hasattr(
    importlib.import_module("digestbot.bots.telegram"), "start_bot")
HAS_WEB = importlib.util.find_spec("digestbot.web") is not None


def _to(smtp: SmtpServer, addr: str) -> list:
    return [m.message for m in smtp.messages if addr in m.rcpt_tos]


def _wait(what: str, cond, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"run exited {proc.returncode} while waiting for {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def _sent_rows(db: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "select s.address, d.digest_date, d.status from deliveries d"
            " join subscribers s on s.id = d.subscriber_id order by s.address").fetchall()


def _env(arxiv_day: ArxivDay, llm: FakeOpenAI, smtp: SmtpServer, http_port: int) -> dict[str, str]:
    """`run`'s environment: every service it talks to is one of the fakes on loopback."""
    env = {**os.environ,
           "DIGESTBOT_SOURCES": "rss", "DIGESTBOT_CATEGORIES": "cs.CL",
           "DIGESTBOT_SMTP_URL": smtp.url, "DIGESTBOT_HTTP_PORT": str(http_port),
           "DIGESTBOT_ARXIV_DELAY": "0", "DIGESTBOT_ARXIV_RSS_URL": arxiv_day.rss_url,
           "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": llm.url}
    for name in ("API", "LIST", "PDF"):
        env[f"DIGESTBOT_ARXIV_{name}_URL"] = f"{arxiv_day.url}/{name.lower()}/"
    return env


@pytest.fixture
def telegram():
    if not HAS_TELEGRAM:
        yield None
        return
    from tests.fakes.telegram import FakeTelegram

    with FakeTelegram() as tg:
        yield tg


def test_a_simulated_day_end_to_end_then_sigterm(tmp_path: Path, telegram) -> None:
    # arXiv's clock is the process's: set from its start-up line, nothing is published before.
    clocks: list[Clock] = []
    arxiv_day = ArxivDay(on_topic=3, off_topic=2, published_for=lambda: (
        "2026-08-13" if clocks and clocks[0].now() >= PUBLISHED else None))
    smtp = SmtpServer()
    port = free_port()
    with arxiv_day, FakeOpenAI() as llm:
        env = _env(arxiv_day, llm, smtp, port)
        if telegram is not None:
            env["TELEGRAM_BOT_TOKEN"] = telegram.token
            env["DIGESTBOT_TELEGRAM_API_URL"] = telegram.base_url
        db = env["DIGESTBOT_DB"]
        with Store(db) as store:
            for addr, tz, at in (("bj@example.org", "Asia/Shanghai", "08:30"),
                                 ("la@example.org", "America/Los_Angeles", "07:00")):
                subscribers.add_or_update(store, channel="email", address=addr,
                                          topics=["post-training"], tz=tz, send_at=at)
            if telegram is not None:
                subscribers.add_or_update(store, channel="telegram", address="4242",
                                          topics=["post-training"], tz="Asia/Shanghai", send_at="08:30")
        smtp.start()
        log = tmp_path / "run.log"
        cmd = [sys.executable, "-m", "digestbot", "run", "--now", START.isoformat(),
               "--speed", str(SPEED)]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait("start-up", lambda: STARTED.search(log.read_bytes()), proc, log)
            virtual = STARTED.search(log.read_bytes()).group(1).decode()
            clocks.append(Clock(datetime.fromisoformat(virtual), SPEED))
            _wait("the Beijing email", lambda: _to(smtp, "bj@example.org"), proc, log)
            assert _to(smtp, "la@example.org") == []  # 07:00 in Los Angeles is hours away
            subject = str(_to(smtp, "bj@example.org")[0]["Subject"])  # decoded by policy.default
            assert "2026-08-13" in subject

            second = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                                    timeout=30)
            assert second.returncode == 1
            assert "already using" in second.stderr

            if HAS_WEB:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            if telegram is not None:
                _wait("the Telegram digest", lambda: telegram.sent_to(4242), proc, log)

            _wait("the Los Angeles email", lambda: _to(smtp, "la@example.org"), proc, log)

            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - started < 10
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            smtp.stop()

    rows = _sent_rows(db)
    assert [(a, d) for a, d, s in rows if s == "sent"] == [
        ("4242", "2026-08-13")] * (telegram is not None) + [
        ("bj@example.org", "2026-08-13"), ("la@example.org", "2026-08-13")]
    assert len(_to(smtp, "bj@example.org")) == 1 and len(_to(smtp, "la@example.org")) == 1
    with sqlite3.connect(db) as conn:  # scored and enriched by the model, once for everyone
        calls = dict(conn.execute("select kind, count(*) from llm_calls group by kind").fetchall())
    assert calls and all(n <= 5 for n in calls.values())
    text = log.read_text()
    assert "catch-up: latest announcement none" in text
    # Fetched in the evening window (by the 20:00 job or its retries), then once after midnight.
    assert "announcement 2026-08-13 seen; next attempt Thu 00:10 ET" in text
    assert "stopped" in text


def test_sigterm_in_the_middle_of_the_pipeline_exits_0_and_the_next_start_resumes(
    tmp_path: Path,
) -> None:
    # Thursday's batch is out; a Beijing reader at 08:00 is due the moment it is enriched.
    now = datetime(2026, 8, 12, 20, 1, tzinfo=ET)
    arxiv_day = ArxivDay(on_topic=3, off_topic=2)
    arxiv_day.publish("2026-08-13")
    smtp = SmtpServer()
    # Each answer takes 8 s: SIGTERM lands while the pipeline waits on the model, and the
    # pipeline cannot finish within the stop grace.
    with arxiv_day, FakeOpenAI(delay=8.0) as llm:
        env = _env(arxiv_day, llm, smtp, 0)
        with Store(env["DIGESTBOT_DB"]) as store:
            subscribers.add_or_update(store, channel="email", address="bj@example.org",
                                      topics=["post-training"], tz="Asia/Shanghai", send_at="08:00")
        smtp.start()
        log = tmp_path / "run.log"

        def start(at: datetime) -> subprocess.Popen:
            with log.open("ab") as out:
                return subprocess.Popen(
                    [sys.executable, "-m", "digestbot", "run", "--now", at.isoformat()],
                    env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)

        proc = start(now)
        try:
            _wait("a model request in flight", lambda: llm.in_flight > 0, proc, log)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - started < 10
            assert "handed back 1 unfinished job(s)" in log.read_text()
            assert smtp.messages == []

            # The next start finds the half-done day and finishes it: one email, not two.
            llm.delay = 0.0
            proc = start(now + timedelta(minutes=10))
            _wait("the Beijing email", lambda: _to(smtp, "bj@example.org"), proc, log)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            smtp.stop()
    assert len(_to(smtp, "bj@example.org")) == 1
    assert _sent_rows(env["DIGESTBOT_DB"]) == [("bj@example.org", "2026-08-13", "sent")]
