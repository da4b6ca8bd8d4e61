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
