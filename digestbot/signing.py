"""Every link the product builds (unsubscribe, confirm, preferences), the signed, expiring
tokens they carry, and CSRF tokens, keyed by DIGESTBOT_SECRET.

A token is `payload.expiry.signature`: the payload and expiry travel in the clear, the
signature is HMAC-SHA256 over (purpose, payload, expiry) with the configured secret. The
purpose is part of the MAC so a confirm token can never be replayed as a preferences token.
Nothing is stored per token: a token is valid while it verifies and has not expired, and
callers check the subscriber's current status on top (a confirm link does nothing once
confirmed). The payload names the subscriber and their link generation (`subject`): when a
reader unsubscribes or is removed the generation moves on and every link handed out before
is dead ("no longer valid"), even if the id or the address comes back.

Without a secret nothing is signed: `SecretMissing` tells the web pages to refuse rather than
fall back to a guessable or per-process key (which would silently kill every emailed link at
the next restart).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
from urllib.parse import urlencode

from digestbot.config import Settings
from digestbot.errors import SecretMissing, TokenError, TokenExpired
from digestbot.models import Subscriber

CONFIRM = "confirm"
PREFERENCES = "preferences"
FEEDBACK = "feedback"
CSRF = "csrf"

# A confirmation link is for the next day or two; a preferences link rides in every digest
# and must still work when someone digs out a few weeks' old email.
CONFIRM_TTL = 48 * 3600
PREFERENCES_TTL = 120 * 24 * 3600
FEEDBACK_TTL = PREFERENCES_TTL

# base64url payload + "." + base-36 expiry + "." + 43 signature characters.
MAX_TOKEN_LENGTH = 200


def secret_of(settings: Settings) -> bytes:
    if not settings.secret:
        raise SecretMissing("DIGESTBOT_SECRET is not set; run `digestbot init` or set it")
    return settings.secret.get().encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, body: str) -> str:
    return _b64(hmac.new(secret, f"{purpose}\n{body}".encode(), hashlib.sha256).digest())


def sign(secret: bytes, purpose: str, payload: str, ttl: int, *, now: float | None = None) -> str:
    """A token carrying `payload` for `purpose`, valid for `ttl` seconds from `now`."""
    expires = int((time.time() if now is None else now) + ttl)
    body = f"{_b64(payload.encode())}.{_base36(expires)}"
    return f"{body}.{_mac(secret, purpose, body)}"


def verify(secret: bytes, purpose: str, token: str, *, now: float | None = None) -> str:
    """The payload of a genuine, unexpired token; `TokenError` / `TokenExpired` otherwise.

    The signature is checked (in constant time) before the expiry is believed, so a forged
    token is always "invalid", never "expired".
    """
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenError("malformed token")
    body, _, signature = token.rpartition(".")
    if not hmac.compare_digest(signature.encode(), _mac(secret, purpose, body).encode()):
        raise TokenError("bad signature")
    payload, _, expiry = body.partition(".")
    try:
        expires = int(expiry, 36)
        text = _unb64(payload).decode()
    except ValueError:  # also binascii.Error and UnicodeDecodeError
        raise TokenError("malformed token") from None
    if (time.time() if now is None else now) >= expires:
        raise TokenExpired("token expired")
    return text


@functools.lru_cache(maxsize=64)  # a batch's links mostly expire in the same few seconds
def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


# -- CSRF: a signed double-submit cookie ------------------------------------------------------


def csrf_token(secret: bytes, cookie: str) -> str:
    """The form field that goes with this browser's random CSRF cookie.

    Another site can make a browser POST to us with the cookie attached, but cannot read the
    cookie or compute this MAC over it, so it cannot fill in the field; and because the field
    is signed, a cookie planted by a sibling subdomain does not help either.
    """
    return _mac(secret, CSRF, cookie)


def check_csrf(secret: bytes, cookie: str | None, field: str | None) -> bool:
    if not cookie or not field or len(cookie) > MAX_TOKEN_LENGTH:
        return False
    return hmac.compare_digest(field.encode(), csrf_token(secret, cookie).encode())


# -- the links the product builds ------------------------------------------------------------


def link_path(path: str, token: str, **extra: str) -> str:
    """`{path}?token=…[&name=value…]`, the site-relative shape of every link with a token."""
    if not extra and _AS_IS.fullmatch(token):  # our tokens: nothing to quote (most links)
        return f"{path}?token={token}"
    return f"{path}?{urlencode({'token': token, **extra})}"


# What `urlencode` leaves as it is in a value (quote_plus's always-safe characters).
_AS_IS = re.compile(r"[A-Za-z0-9_.~-]*")


def public_link(settings: Settings, path: str, token: str) -> str | None:
    """`{DIGESTBOT_PUBLIC_URL}{path}?token=…`, the shape of every link a message carries."""
    if not settings.public_url:
        return None
    return f"{settings.public_url.rstrip('/')}{link_path(path, token)}"


def unsubscribe_url(settings: Settings, token: str) -> str | None:
    """The link put in emails and chat footers; None without DIGESTBOT_PUBLIC_URL.

    It carries the subscriber's stored random token, not a signed one: it must keep working
    for one-click unsubscribes from old emails and on a site that has no secret.
    """
    return public_link(settings, "/unsubscribe", token) if token else None


def pages_url(public_url: str | None, date: str) -> str | None:
    """The public day page of `date` (`web.pages`), where a digest's "另有 K 篇" can be read;
    None without DIGESTBOT_PUBLIC_URL (`settings.public_url`). Public, so no token."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/d/{date}"


def subject(subscriber: Subscriber) -> str:
    """What a signed link names: "id:generation" (generation 0 as the bare id, the payload
    of links mailed before generations existed, so those stay valid until the reader leaves)."""
    gen = subscriber.link_gen
    return f"{subscriber.id}:{gen}" if gen else str(subscriber.id)


def parse_subject(payload: str) -> tuple[int, int] | None:
    """(id, generation) of a verified payload; None for one that names no subscriber."""
    match = re.fullmatch(r"(\d{1,18})(?::(\d{1,18}))?", payload)
    return (int(match[1]), int(match[2] or 0)) if match else None


def confirm_url(settings: Settings, subscriber: Subscriber, *, now: float | None = None) -> str | None:
    """The double opt-in link; None without DIGESTBOT_PUBLIC_URL (no address to send)."""
    token = sign(secret_of(settings), CONFIRM, subject(subscriber), CONFIRM_TTL, now=now)
    return public_link(settings, "/confirm", token)


def _preferences_token(settings: Settings, subscriber: Subscriber, now: float | None) -> str:
    return sign(secret_of(settings), PREFERENCES, subject(subscriber), PREFERENCES_TTL, now=now)


def preferences_url(
    settings: Settings, subscriber: Subscriber, *, now: float | None = None
) -> str | None:
    """The footer's "manage subscription" link; None without a public URL or a secret.

    Digest delivery must not fail for want of a secret, so that case yields no link rather
    than an error (the unsubscribe link still works without one).
    """
    if not settings.public_url or not settings.secret:
        return None
    return public_link(settings, "/preferences", _preferences_token(settings, subscriber, now))


def preferences_path(settings: Settings, subscriber: Subscriber, *, now: float | None = None,
                     **extra: str) -> str:
    """A same-site link to the preferences page with a fresh token (`SecretMissing` without
    a secret: the web pages check for one first)."""
    return link_path("/preferences", _preferences_token(settings, subscriber, now), **extra)


def feedback_link(settings: Settings, subscriber: Subscriber, *, now: float | None = None
                  ) -> str | None:
    """`{public}/feedback?token=…`, the base of a digest's 👍/👎 links (issue 17); None without
    a public URL or a secret, so delivery never fails for want of one.

    One signature per digest, not per paper: the token names the reader only (its own purpose,
    so it can vote and nothing else), and each entry appends `&paper=…&vote=…` — a string
    join, cheap for every entry of every digest. Anyone holding the link could vote on any
    paper for that reader, which is all it can do: the preferences link in the same email
    already carries more.
    """
    if not settings.public_url or not settings.secret:
        return None
    token = sign(secret_of(settings), FEEDBACK, subject(subscriber), FEEDBACK_TTL, now=now)
    return public_link(settings, "/feedback", token)
