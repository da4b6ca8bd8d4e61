"""Shared fixtures: an isolated environment and settings pointing into a temp folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from digestbot.bots.telegram import start_bot
from digestbot.channels.telegram import FloodLimiter
from digestbot.config import Settings, load_settings
from digestbot.sources.http import GATE
from digestbot.store import Store
from tests.fakes.openai import OPENAI_TEST_KEY, FakeOpenAI
from tests.fakes.telegram import NO_LIMITS, TOKEN, FakeTelegram

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
SHARED_ARXIV = TESTS.parent.parent / "shared" / "fixtures" / "arxiv"

needs_shared = pytest.mark.skipif(
    not SHARED_ARXIV.is_dir(), reason="../shared/fixtures/arxiv is absent (fresh clone)"
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees the developer's config or keys, and state goes to a temp folder."""
    import os

    for name in list(os.environ):
        if name.startswith(("DIGESTBOT_", "OPENAI_", "TELEGRAM_", "SLACK_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGESTBOT_DB", str(tmp_path / "var" / "digestbot.db"))
    monkeypatch.setenv("DIGESTBOT_OUTBOX", str(tmp_path / "var" / "outbox"))
    monkeypatch.setenv("DIGESTBOT_ARXIV_DELAY", "0")
    GATE.reset()  # arXiv's gate and breaker are the process's: no earlier test's state
    return tmp_path


@pytest.fixture
def settings(isolated_env: Path) -> Settings:
    return load_settings()


@pytest.fixture
def store(settings: Settings):
    s = Store(settings.db)
    yield s
    s.close()


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    """One OpenAI-compatible fake per test module: starting one per test is the slow part."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake(openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The module's fake, reset, with OPENAI_BASE_URL/OPENAI_API_KEY pointing at it.

    The prefilter is off here: these tests count the model's calls paper by paper, on toy
    papers far from every topic that it would keep from the model. tests/test_prefilter.py
    turns it on and checks what it keeps and drops."""
    monkeypatch.setenv("DIGESTBOT_PREFILTER", "off")
    return openai_server.use(monkeypatch, OPENAI_TEST_KEY)


# The Telegram fake and a running bot, for tests/test_telegram.py and tests/test_profile_chat.py.
@pytest.fixture
def tg():
    with FakeTelegram(TOKEN) as fake:
        yield fake


@pytest.fixture
def tg_settings(tg):
    return load_settings(telegram_bot_token=TOKEN, telegram_api_url=tg.base_url)


@pytest.fixture
async def bot(tg, tg_settings):
    handle = await start_bot(tg_settings, tg_settings.db, limiter=FloodLimiter(**NO_LIMITS),
                             poll_timeout=1)
    yield handle
    await handle.stop()
