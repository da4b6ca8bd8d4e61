"""A message to the operator (`DIGESTBOT_ADMIN`): an email, a Telegram chat or a Slack channel.

Plain text, no markup, outside the digest outbox (an alert is not a reader's digest and is
never retried here: `status.alerts` keeps the incident unsent, so the next check tries again).
Any failure is a `TransientError` whose text names no credential.
"""

from __future__ import annotations

import html

from slack_sdk.errors import SlackApiError
from telegram.error import TelegramError

from digestbot.channels import email, slack, telegram
from digestbot.config import Settings
from digestbot.errors import TransientError
from digestbot.store import protect, redact


async def send_admin(settings: Settings, subject: str, text: str) -> None:
    """Send `subject` and `text` to `settings.admin` (nothing when it is unset)."""
    target = settings.admin
    if not target:
        return
    protect(settings)  # before any client can log or echo a credential
    subject, text = redact(subject), redact(text)
    kind, _, where = target.partition(":")
    if kind == "telegram":
        bot = telegram.build_bot(settings)
        try:
            await telegram.initialize(bot)
            chat: int | str = int(where) if where.lstrip("-").isdigit() else where
            await bot.send_message(chat, f"{subject}\n{text}")
        except TelegramError as exc:
            raise TransientError(redact(f"telegram: {exc.message}")) from None
        finally:
            await bot.shutdown()
    elif kind == "slack":
        try:
            await slack.web_client(settings).chat_postMessage(
                channel=where, text=f"{subject}\n{text}", unfurl_links=False)
        except SlackApiError as exc:
            raise TransientError(f"slack: {slack.api_error(exc)}") from None
    else:
        await email.send_notice(settings, to=target, subject=subject, text=text,
                                html=f"<p>{html.escape(text)}</p>")
