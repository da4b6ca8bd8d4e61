"""`digestbot run` as a process through a simulated announcement day, on loopback servers.

A virtual clock (`--now`, `--speed`) runs Wednesday evening to Thursday morning in seconds:
arXiv's RSS (tests/fakes/arxiv_day.py) turns over at 20:00 ET, mail goes to aiosmtpd,
Telegram to the fake Bot API. Then SIGTERM must end it with status 0 within 10 s, and a
second `run` on the same database must refuse to start.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

# The run loop drives ingest and the pipeline; until those stages land there is nothing to run.
pytest.importorskip("digestbot.sources.arxiv")
pytest.importorskip("digestbot.enrich.pipeline")

from digestbot import subscribers  # noqa: E402
from digestbot.clock import ET, Clock
from digestbot.store import Store
from tests.fakes.arxiv_day import ArxivDay

START = datetime(2026, 8, 12, 19, 40, tzinfo=ET)  # Wednesday, before the announcement
PUBLISHED = datetime(2026, 8, 12, 20, 0, tzinfo=ET)
SPEED = 5000  # 14 virtual hours in ~10 real seconds
HAS_TELEGRAM = importlib.util.find_spec("tests.fakes.telegram") is not None and hasattr(
    importlib.import_module("digestbot.channels.telegram"), "start_bot")
HAS_WEB = importlib.util.find_spec("digestbot.web") is not None


class Inbox:
    """aiosmtpd handler: keeps (recipient, message) pairs."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, object]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        for rcpt in envelope.rcpt_tos:
            self.messages.append((rcpt, message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, addr: str) -> list[object]:
        return [m for r, m in self.messages if r == addr]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture
def telegram():
    if not HAS_TELEGRAM:
        yield None
        return
    from tests.fakes.telegram import FakeTelegram

    with FakeTelegram() as tg:
        yield tg


def test_a_simulated_day_end_to_end_then_sigterm(tmp_path: Path, telegram) -> None:
    clock = Clock(START, SPEED)
    arxiv_day = ArxivDay(on_topic=3, off_topic=2,
                         published_for=lambda: "2026-08-13" if clock.now() >= PUBLISHED else None)
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    port = _free_port()
    env = {**os.environ,
           "DIGESTBOT_SOURCES": "rss", "DIGESTBOT_CATEGORIES": "cs.CL",
           "DIGESTBOT_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
           "DIGESTBOT_HTTP_PORT": str(port), "DIGESTBOT_ARXIV_DELAY": "0"}
    with arxiv_day:
        env["DIGESTBOT_ARXIV_RSS_URL"] = arxiv_day.rss_url
        for name in ("API", "LIST", "PDF"):
            env[f"DIGESTBOT_ARXIV_{name}_URL"] = f"{arxiv_day.url}/{name.lower()}/"
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
            _wait("the Beijing email", lambda: inbox.to("bj@example.org"), proc, log)
            assert inbox.to("la@example.org") == []  # 07:00 in Los Angeles is hours away
            subject = str(make_header(decode_header(inbox.to("bj@example.org")[0]["Subject"])))
            assert "2026-08-13" in subject

            second = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                                    timeout=30)
            assert second.returncode == 1
            assert "already using" in second.stderr

            if HAS_WEB:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            if telegram is not None:
                _wait("the Telegram digest", lambda: telegram.sent_to(4242), proc, log)

            _wait("the Los Angeles email", lambda: inbox.to("la@example.org"), proc, log)

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
    assert len(inbox.to("bj@example.org")) == 1 and len(inbox.to("la@example.org")) == 1
    text = log.read_text()
    assert "announcement 2026-08-13 seen" in text
    assert "stopped" in text
