"""The fault suite: real `digestbot send --now` processes and a real SMTP server (aiosmtpd),
several times each: kill -9 mid-send then restart, two senders at once, a hung and a
flapping server, a busy database.

Every scenario adds its digests to one tally; the closing test prints it as one line —
digests planned, delivered once, delivered twice, lost — and asserts: nothing lost, and a
digest delivered twice only for the one message in flight at a kill, both copies with the
same Message-ID (which mail clients fold into one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest

from digestbot import breaker as breaker_module
from digestbot.channels import email as email_channel
from digestbot.channels.email import EmailSender
from digestbot.cli import main
from digestbot.config import Settings, load_settings
from digestbot.outbox import deliver_pending, plan
from digestbot.store import Store
from tests.fakes.digests import DAY, add_paper, add_subscriber
from tests.fakes.smtp import FaultyHandler, HungServer, Received, SmtpServer
from tests.test_busy_store import hold_write_lock

pytestmark = pytest.mark.faults

NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)
ROUNDS = 3  # each scenario, this many times


@dataclass
class Tally:
    planned: int = 0
    once: int = 0
    twice: int = 0
    lost: int = 0
    kills: int = 0
    scenarios: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        return (f"fault suite: digests planned {self.planned}, delivered once {self.once}, "
                f"delivered twice {self.twice} (kills {self.kills}), lost {self.lost}; "
                + ", ".join(f"{name} ×{n}" for name, n in sorted(self.scenarios.items())))


TALLY = Tally()


def readers(settings: Settings, n: int) -> None:
    with Store(settings.db) as store:
        add_paper(store, "2608.00001", 90)
        for i in range(n):
            add_subscriber(store, f"reader{i}@example.org")


def count(name: str, settings: Settings, messages: list[Received], *,
          in_flight: set[str] = frozenset()) -> None:
    """Add a scenario's digests to the tally; each row's copies are counted by Message-ID.

    A copy with a Message-ID no row holds, or two copies of a row not in `in_flight` (the
    Message-ID the server held at a kill), fails the scenario on the spot.
    """
    with Store(settings.db) as store:
        rows = list(store.db.query("select message_id, status from deliveries"))
    got = Counter(str(message_from_bytes(m.data, policy=policy.default)["Message-ID"])
                  for m in messages)
    assert set(got) <= {r["message_id"] for r in rows}, "a message no outbox row planned"
    TALLY.scenarios[name] += 1
    for row in rows:
        TALLY.planned += 1
        copies = got[row["message_id"]]
        if copies == 0:
            TALLY.lost += 1
        elif copies == 1:
            TALLY.once += 1
        else:
            assert copies == 2 and row["message_id"] in in_flight, (name, row, copies)
            TALLY.twice += 1
    assert {r["status"] for r in rows} == {"sent"}, rows


def digestbot(settings: Settings, smtp_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DIGESTBOT_SMTP_URL": smtp_url}
    return subprocess.Popen([sys.executable, "-m", "digestbot", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out


def send_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              smtp_url: str) -> str:
    """`digestbot send --now` in this process: the same entry point as a second process, its
    own connections and claims, without paying a new interpreter's start-up each time."""
    monkeypatch.setenv("DIGESTBOT_SMTP_URL", smtp_url)
    assert main(["send", "--now"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return out


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill_9_mid_send_then_restart(
    settings: Settings, round_: int, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    readers(settings, 10)
    handler = FaultyHandler(gate_at=3 + 2 * round_)
    with SmtpServer(handler=handler) as smtp:
        first = digestbot(settings, smtp.url, "send", "--now")
        assert handler.gated.wait(30), first.communicate()[1]
        time.sleep(0.3)  # the other connections' answers are in; one message hangs
        first.kill()  # kill -9 while the server holds the message it recorded
        first.wait()
        TALLY.kills += 1
        # In flight at the kill: what the server recorded whose row was not marked sent yet —
        # the held message, and on a loaded machine maybe another connection's, accepted a
        # moment before the kill. Only those may come twice (with the same Message-ID).
        with Store(settings.db) as store:
            unmarked = {r["message_id"] for r in store.db.query(
                "select message_id from deliveries where status != 'sent'")}
        recorded = {str(m.message["Message-ID"]) for m in handler.messages}
        in_flight = recorded & unmarked
        assert str(handler.messages[-1].message["Message-ID"]) in in_flight
        handler.released.set()
        assert "sent" in send_here(monkeypatch, capsys, smtp.url)  # the restart
        count("kill -9", settings, smtp.messages, in_flight=in_flight)


@pytest.mark.parametrize("round_", range(2))
def test_two_senders_at_once(
    settings: Settings, round_: int, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    readers(settings, 30)
    with SmtpServer(handler=FaultyHandler(delay=0.03)) as smtp:
        other = digestbot(settings, smtp.url, "send", "--now")
        deadline = time.monotonic() + 60
        while not smtp.messages and other.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert smtp.messages and other.poll() is None  # the other process is mid-batch
        send_here(monkeypatch, capsys, smtp.url)  # and this one joins in
        finished(other)
        count("two senders", settings, smtp.messages)


@pytest.mark.parametrize("round_", range(2))
def test_busy_database(
    settings: Settings, round_: int, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    readers(settings, 8)
    with SmtpServer() as smtp:
        holder = hold_write_lock(settings.db, 1.5)  # another process's write, for 1.5 s
        started = time.monotonic()
        send_here(monkeypatch, capsys, smtp.url)
        assert time.monotonic() - started > 1.0  # it waited for the lock, then sent
        holder.wait(timeout=30)
        count("busy database", settings, smtp.messages)


async def until_all_sent(store: Store, settings: Settings, start: datetime) -> None:
    """Delivery ticks an hour apart (past every backoff) until no row is left to send."""
    now = start
    for _ in range(12):
        await deliver_pending(store, {"email": EmailSender(settings)}, now=now)
        left = store.db.execute(
            "select count(*) from deliveries where status != 'sent'").fetchone()[0]
        if not left:
            return
        now += timedelta(hours=1)
    raise AssertionError("rows still unsent after 12 ticks")


@pytest.mark.parametrize("round_", range(2))
async def test_hung_server_then_back(
    settings: Settings, round_: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_channel, "SMTP_TIMEOUT", 0.3)
    monkeypatch.setattr(breaker_module, "COOLDOWN_S", 0.2)
    readers(settings, 10)
    with HungServer() as hung:
        conf = load_settings(smtp_url=hung.url)
        with Store(conf.db) as store:
            plan(store, conf, DAY, now=NOW)
            started = time.monotonic()
            report = await deliver_pending(store, {"email": EmailSender(conf)}, now=NOW)
            assert report.failed == 10 and time.monotonic() - started < 10 * 0.3
    with SmtpServer(port=hung.port) as smtp, Store(conf.db) as store:
        time.sleep(0.25)  # the breaker's cooldown
        await until_all_sent(store, conf, NOW + timedelta(hours=1))
    count("hung server", settings, smtp.messages)


@pytest.mark.parametrize("round_", range(2))
async def test_flapping_server(
    settings: Settings, round_: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(breaker_module, "COOLDOWN_S", 0.0)
    readers(settings, 20)
    # A drop is no answer: never counted against the reader, so even a row unlucky five
    # times in a row is not given up on.
    with SmtpServer(handler=FaultyHandler(drop=0.3, seed=round_)) as smtp:
        conf = load_settings(smtp_url=smtp.url)
        with Store(conf.db) as store:
            plan(store, conf, DAY, now=NOW)
            await until_all_sent(store, conf, NOW)
        count("flapping server", settings, smtp.messages)


def test_closing_tally(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this file: the whole suite's count, on one line."""
    with capsys.disabled():
        print(f"\n{TALLY.line()}")
    if not TALLY.scenarios:
        pytest.skip("no fault scenario ran (selected alone)")
    assert TALLY.lost == 0
    assert TALLY.once + TALLY.twice == TALLY.planned
    assert TALLY.twice <= TALLY.kills
