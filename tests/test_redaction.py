"""The one redaction filter (store.py): no secret reaches a log line or a stored error text.

Peers that echo the request in their error body (a debugging proxy, a misconfigured server)
hand back the bot token, the Authorization header or the webhook URL; the real client libraries
raise and log that text, and the outbox stores it. The filter is fed from the settings' secrets
and every webhook URL read from the store.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from digestbot import subscribers
from digestbot.channels.slack import SlackSender, make_sender, web_client
from digestbot.channels.telegram import FloodLimiter, TelegramSender, build_bot
from digestbot.config import load_settings
from digestbot.store import protect, redact
from tests.fakes.digests import TOPIC, add_paper
from tests.fakes.outbox import asend
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.fakes.telegram import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

NOW = datetime(2026, 8, 13, 2, 0, tzinfo=UTC)
TG_TOKEN = "987654:ECHOED-telegram-token"


def seed(store, channel: str, address: str, **extra) -> None:
    for i in range(2):
        add_paper(store, f"2608.{i:05d}", 90)
    subscribers.add_or_update(store, channel=channel, address=address, topics=[TOPIC], **extra)


def stored_errors(store) -> str:
    rows = store.db.query("select last_error from deliveries union all"
                          " select status_reason from subscribers")
    return " ".join(str(r["last_error"]) for r in rows)


@pytest.fixture
def debug_logs(caplog):
    for name in ("", "httpx", "telegram", "slack_sdk", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def test_telegram_error_echoing_the_token(store, debug_logs):
    with FakeTelegram(TG_TOKEN) as tg:
        settings = load_settings(telegram_bot_token=TG_TOKEN, telegram_api_url=tg.base_url)
        seed(store, "telegram", "42")
        tg.echo_errors.add(42)
        sender = TelegramSender(build_bot(settings, FloodLimiter(0, 0.0, 0)))
        report = await asend(settings, store, now=NOW, force=True, senders={"telegram": sender})
    assert report.failed == 1
    errors = stored_errors(store)
    assert "cannot handle post" in errors.lower()  # the echo did arrive, masked
    for text in (errors, debug_logs.text):
        assert "ECHOED-telegram-token" not in text and "987654:" not in text


async def test_slack_webhook_error_echoing_the_url(store, debug_logs):
    with FakeSlack() as slack:
        settings = load_settings(slack_api_url=slack.api_url)
        url = slack.hook_url("T0ECHO-B0ECHO-webhooksecret")
        seed(store, "slack", "C0HOOK123", webhook_url=url)
        slack.echo_hooks.add("T0ECHO-B0ECHO-webhooksecret")
        report = await asend(settings, store, now=NOW, force=True,
                             senders={"slack": make_sender(settings)})
    assert report.failed == 1
    errors = stored_errors(store)
    assert "invalid_payload: POST ***" in errors
    for text in (errors, debug_logs.text):
        assert "webhooksecret" not in text and "/hooks/T0ECHO" not in text


async def test_slack_api_error_echoing_the_bot_token(store, debug_logs):
    with FakeSlack() as slack:
        settings = load_settings(slack_bot_token=BOT_TOKEN, slack_api_url=slack.api_url)
        seed(store, "slack", "C0ECHO123")
        slack.echo_channels.add("C0ECHO123")
        sender = SlackSender(web_client(settings), mode="thread", interval=0.0)
        report = await asend(settings, store, now=NOW, force=True, senders={"slack": sender})
    assert report.failed == 1
    assert "Bearer" in debug_logs.text  # slack-sdk logged the echoed header, masked
    for text in (stored_errors(store), debug_logs.text):
        assert BOT_TOKEN not in text


def test_every_secret_of_the_settings_is_masked_in_any_logger(caplog):
    settings = load_settings(
        secret="signing-secret-0123456789", openai_api_key="sk-any-key-0123",
        smtp_url="smtp://mailer:pa%24%24word-42@127.0.0.1:2525",
        slack_app_token="app-level-token-99", telegram_bot_token="1:short-but-registered")
    protect(settings)
    for name in ("", "some.library", "aiohttp.access"):  # `setup_logging` may have quietened aiohttp
        caplog.set_level(logging.INFO, logger=name)
    quoted = ("signing-secret-0123456789", "sk-any-key-0123", "pa$$word-42", "pa%24%24word-42",
              "app-level-token-99", "1:short-but-registered")
    # A third-party logger, the message in args, a traceback, an `extra` field.
    try:
        raise RuntimeError(f"upstream said {quoted[1]}")
    except RuntimeError:
        logging.getLogger("some.library").exception("failed with %s", " ".join(quoted))
    logging.getLogger("aiohttp.access").info("GET /x", extra={"first_request_line": quoted[0]})
    [record] = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert record.first_request_line == "***"
    assert not any(q in caplog.text for q in quoted)
    assert not any(q in redact(f"error: {' '.join(quoted)}") for q in quoted)
    # Ordinary text is left alone: short or common words are never registered.
    assert redact("token expired after 5 attempts; passed to BOT_TOKEN") == \
        "token expired after 5 attempts; passed to BOT_TOKEN"
