"""The two kinds of failure the CLI distinguishes (DESIGN.md: exit 2 bad usage, 1 failure).

Messages are shown to people as one line, so they say what to do, bilingual where a user
(not only an operator) may read them.
"""


class DigestbotError(Exception):
    """A failure the operator can act on; the CLI prints it as one line and exits 1."""

    exit_code = 1


class UsageError(DigestbotError):
    """Bad input on the command line or in configuration; exit status 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration key or value is wrong; the message names the key and the expected form."""


class FeedError(DigestbotError):
    """A feed, listing page or API answer could not be parsed; nothing was stored."""


class NetworkError(DigestbotError):
    """A remote service could not be reached after retries."""


class TransientError(DigestbotError):
    """Try again later: connection refused or dropped, SMTP 4xx, rate limited, server 5xx.

    Raised by a channel's sender; the outbox retries the row after a backoff.
    """


class PermanentError(DigestbotError):
    """This recipient will never accept: stop sending to them.

    `status` is what the subscriber becomes: 'bounced' (the address does not exist, SMTP 5xx
    for the recipient, Slack channel_not_found) or 'blocked' (Telegram Forbidden: the user
    blocked the bot).
    """

    def __init__(self, message: str, status: str = "bounced") -> None:
        if status not in ("bounced", "blocked"):
            raise ValueError(f"PermanentError status must be bounced or blocked, not {status!r}")
        super().__init__(message)
        self.status = status
