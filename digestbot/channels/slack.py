"""Slack: the outbox's sender for channel digests (rendered by `render.slack`).

A channel id is posted to with the bot token through slack-sdk's AsyncWebClient (`base_url` =
`DIGESTBOT_SLACK_API_URL`); a subscriber with an incoming-webhook URL is posted to through
AsyncWebhookClient instead (webhooks return no `ts`, so they cannot thread: their parts go one
after another). Each message is recorded with `outbox.mark_part` (its `ts`; the summary's
`ts` also as `deliveries.thread_ts`), so a restart goes on at the next unsent message, inside
the same thread. At most one message a second per channel; a 429 waits out `Retry-After`
(slack-sdk's retry handler) and then counts as transient. `channel_not_found`,
`not_in_channel`, `is_archived`, `account_inactive`, `invalid_auth` (and their webhook
equivalents) mark the subscriber blocked with the reason; other errors are transient and the
batch goes on. A webhook URL is a credential: it is registered with the store's redaction
filter before a client is made, so neither slack-sdk's log lines nor a stored error show it.

The `/arxiv` slash command is `digestbot.bots.slack`; it uses these clients and this sender.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from digestbot import outbox, signing, subscribers
from digestbot.config import Settings
from digestbot.errors import PermanentError, TransientError
from digestbot.models import Digest, Subscriber
from digestbot.render.slack import MODES, SlackMessage, render_slack
from digestbot.store import Store, add_secrets, protect, redact

log = logging.getLogger(__name__)

# Errors after which posting to this channel will not work until a person acts.
BLOCKING_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "account_inactive", "invalid_auth",
    "token_revoked", "team_access_not_granted",
})
# What an incoming webhook answers (as a plain-text body) when it is gone for good.
WEBHOOK_BLOCKING_ERRORS = frozenset({
    "no_service", "no_active_hooks", "channel_not_found", "channel_is_archived",
    "action_prohibited", "invalid_token", "team_disabled", "posting_to_general_channel_denied",
})



class _Pacer:
    """At most one message per `interval` seconds per channel (Slack's ~1/s guidance)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, key: str) -> None:
        async with self._locks.setdefault(key, asyncio.Lock()):
            delay = self._last.get(key, float("-inf")) + self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._last[key] = time.monotonic()


def web_client(settings: Settings, token: str | None = None) -> AsyncWebClient:
    """The bot's Web API client against `slack_api_url`, waiting out 429s (Retry-After)."""
    if token is None and settings.slack_bot_token:
        token = settings.slack_bot_token.get()
    protect(settings)
    add_secrets(token)
    return AsyncWebClient(
        token=token, base_url=settings.slack_api_url, timeout=30,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )


def webhook_client(url: str, timeout: float = 30) -> AsyncWebhookClient:
    """An incoming webhook or `response_url` client that waits out 429s and never logs the URL
    (slack-sdk logs it at INFO on every 429 retry and at DEBUG on every post)."""
    add_secrets(url)
    return AsyncWebhookClient(
        url, timeout=timeout, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])


def api_error(exc: SlackApiError) -> str:
    """Slack's error code (`not_in_channel`), or the HTTP status when there is none."""
    return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")


class SlackSender:
    """Posts digests to Slack channels (bot token) or incoming webhooks, part by part."""

    channel = "slack"

    def __init__(self, client: AsyncWebClient | None, *, mode: str = "thread",
                 interval: float = 1.0, public_url: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"slack mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.client = client
        self.mode = mode
        self.public_url = public_url  # for the "另有 K 篇" link to the day page
        self.pacer = _Pacer(interval)

    async def send(self, store: Store, delivery_row: outbox.DeliveryRow, digest: Digest) -> None:
        row_id = delivery_row.id
        messages = render_slack(digest, self._mode(digest),
                                pages_url=signing.pages_url(self.public_url, digest.date))
        outbox.set_parts_total(store, row_id, len(messages))

        def record(seq: int, ts: str | None) -> None:
            if seq == 0 and ts:
                outbox.set_thread_ts(store, row_id, ts)
            # Split points depend only on the entry count, fixed by the row's paper_ids, so
            # resuming by index is safe here; the ids keep the outbox uniform with Telegram.
            outbox.mark_part(store, row_id, seq, ts, paper_ids=messages[seq].paper_ids)

        await self._post_all(digest, messages, record, outbox.parts_done(store, row_id),
                             delivery_row.thread_ts or outbox.part_external_id(store, row_id, 0))

    async def post_again(self, digest: Digest) -> None:
        """A digest asked for again (`/arxiv digest again`): posted as `send` would, unrecorded."""
        messages = render_slack(digest, self._mode(digest),
                                pages_url=signing.pages_url(self.public_url, digest.date))
        await self._post_all(digest, messages, None, set(), None)

    async def notice(self, store: Store, subscriber: Subscriber, text: str) -> None:
        """One plain line outside any digest (the notices a reader asked for with /notify)."""
        message = SlackMessage(text)
        await self.pacer.wait(subscriber.webhook_url or subscriber.address)
        if subscriber.webhook_url:
            await self._post_webhook(subscriber.webhook_url, message)
        else:
            await self._post(subscriber.address, message, None)

    def _mode(self, digest: Digest) -> str:
        # Webhooks answer "ok", not a ts: their parts can only follow one another.
        return "sequential" if digest.subscriber.webhook_url else self.mode

    async def _post_all(self, digest: Digest, messages: list[SlackMessage],
                        record: Callable[[int, str | None], None] | None, done: set[int],
                        thread_ts: str | None) -> None:
        """Post the messages not in `done`, the parts under the first one's ts in thread mode."""
        sub = digest.subscriber
        webhook = sub.webhook_url
        threaded = self._mode(digest) == "thread"
        for seq, message in enumerate(messages):
            if seq in done:
                continue
            await self.pacer.wait(webhook or sub.address)
            ts = None
            if webhook:
                await self._post_webhook(webhook, message)
            else:
                ts = await self._post(sub.address, message,
                                      thread_ts if threaded and seq > 0 else None)
                if seq == 0:
                    thread_ts = ts
            if record is not None:
                record(seq, ts)

    async def _post(self, channel: str, message: SlackMessage, thread_ts: str | None) -> str:
        if self.client is None:
            raise TransientError(
                "SLACK_BOT_TOKEN is not set and this subscriber has no webhook; set the token "
                "or `digestbot sub add --slack CHANNEL --slack-webhook URL`")
        try:
            response = await self.client.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks, thread_ts=thread_ts,
                unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:
            error = api_error(exc)
            if error in BLOCKING_ERRORS:
                raise PermanentError(f"slack: {error}", status="blocked") from None
            raise TransientError(f"slack: {error}") from None
        except (TimeoutError, OSError) as exc:
            raise TransientError(f"slack: {type(exc).__name__}: {exc}") from None
        return str(response["ts"])

    async def _post_webhook(self, url: str, message: SlackMessage) -> None:
        try:
            response = await webhook_client(url).send(
                text=message.text, blocks=message.blocks, unfurl_links=False, unfurl_media=False)
        except (TimeoutError, OSError) as exc:
            # The URL is a credential: name the failure, never the address.
            raise TransientError(f"slack webhook: {type(exc).__name__}") from None
        if response.status_code == 200:
            return
        # Masked before it is cut: a server may echo the URL, and half a URL is not recognised.
        error = redact((response.body or "").strip())[:100] or f"HTTP {response.status_code}"
        if error in WEBHOOK_BLOCKING_ERRORS:
            raise PermanentError(f"slack webhook: {error}", status="blocked")
        raise TransientError(f"slack webhook: HTTP {response.status_code} {error}")


def make_sender(settings: Settings) -> SlackSender | None:
    """A sender when a bot token is set or some Slack subscriber has a webhook; else None."""
    if settings.slack_bot_token:
        return SlackSender(web_client(settings), mode=settings.slack_mode,
                           public_url=settings.public_url)
    with Store(settings.db) as store:
        hooked = subscribers.has_webhooks(store)
    if not hooked:
        return None
    return SlackSender(None, mode=settings.slack_mode, public_url=settings.public_url)
