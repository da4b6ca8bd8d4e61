"""digestbot's one exception tree: every failure the code raises on purpose is a DigestbotError.

The CLI distinguishes two kinds (DESIGN.md: exit 2 bad usage, 1 failure) by `exit_code`.
Messages are shown to people as one line, so they say what to do, bilingual where a user (not
only an operator) may read them. A message meant for readers of one language is given as
separate `zh` and `en` texts; `str()` is then the "中文 / English" line the CLI prints, and a
chat answers an English reader with `en` alone.
"""

from __future__ import annotations


class DigestbotError(Exception):
    """A failure the operator can act on; the CLI prints it as one line and exits 1.

    Raise it with one message, or with `zh=` and `en=` (both) when a reader who chose one
    language should see only theirs; `zh` and `en` are None for a one-message error.
    """

    exit_code = 1

    def __init__(self, message: str = "", *, zh: str | None = None, en: str | None = None) -> None:
        if (zh is None) != (en is None):
            raise TypeError("give both zh and en, or neither")
        if zh is not None and en is not None and not message:
            message = f"{zh} / {en}"
        super().__init__(message)
        self.zh = zh
        self.en = en


class UsageError(DigestbotError):
    """Bad input on the command line, in a chat command or in configuration; exit status 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration key or value is wrong; the message names the key and the expected form."""


class FeedError(DigestbotError):
    """A feed, listing page or API answer could not be parsed; nothing was stored."""


class NetworkError(DigestbotError):
    """A remote service could not be reached after retries."""


class ArxivDown(NetworkError):
    """arXiv's circuit breaker is open (it was unreachable or said 403/429/503): no request
    was made. `retry_after` is the number of seconds until the next trial request."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Rollback(DigestbotError):
    """Raised inside a transaction only to undo it; the code that raises it catches it."""


# -- the web app (web/) --------------------------------------------------------------------------


class FormError(UsageError):
    """A form that cannot be taken as sent: shown to the user with its HTTP status, nothing
    is changed."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- signed links (signing.py) ----------------------------------------------------------------


class TokenError(DigestbotError):
    """A signed token is malformed, forged or for another purpose."""


class TokenExpired(TokenError):
    """The token was genuine but its time is up."""


class SecretMissing(DigestbotError):
    """DIGESTBOT_SECRET is not configured; `digestbot init` writes one."""


# -- enrichment (enrich/) ---------------------------------------------------------------------


class AnswerError(DigestbotError):
    """An LLM answer arrived but cannot be used; the message is shown to the model on retry."""


class PdfError(DigestbotError):
    """The bytes are not a PDF whose first page has text we can read."""


# -- delivery (outbox/, channels/) -------------------------------------------------------------


class TransientError(DigestbotError):
    """Try again later: connection refused or dropped, SMTP 4xx, rate limited, server 5xx.

    Raised by a channel's sender; the outbox retries the row after a backoff.
    """


class ServiceDown(TransientError):
    """The service is down: known to be (a sender's circuit breaker is open: nothing was
    tried), or found to be by this very attempt (`tried`: the server did not answer at all).

    The outbox leaves the row 'failed' until `retry_after` seconds from now without counting
    an attempt: the reader's address is not in question, and a long outage must never use up
    their retries (five attempts used to turn a two-hour outage into lost digests).
    """

    def __init__(self, message: str, retry_after: float, *, tried: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.tried = tried


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


# -- reader libraries (subscribers/zotero.py) --------------------------------------------------


class ZoteroError(DigestbotError):
    """The Zotero Web API could not be read (network, server error); nothing was changed."""


class ZoteroBusy(DigestbotError):
    """Zotero asked for a wait (`Backoff`/`Retry-After`) longer than a reader should sit
    through; raised inside the HTTP client to stop pyzotero from sleeping it out."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"Zotero asks for a {wait:.0f} s wait")
        self.wait = wait
