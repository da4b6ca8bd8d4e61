"""One polite HTTP client for everything we ask arXiv (listing, RSS, API, PDF).

arXiv asks for at most one request every 3 seconds, one connection at a time, and a
User-Agent that names the bot. The throttle is process-wide (a lock and the time of the last
request), so the API pass, the PDF downloads and a listing fetch share the same budget.
Retries cover connection errors, 429 and 5xx, honour Retry-After, and stop at a total wait
bound so a dead mirror fails in minutes, not hours.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from datetime import UTC, datetime

import httpx

from digestbot import USER_AGENT
from digestbot.errors import NetworkError

log = logging.getLogger(__name__)

_lock = threading.Lock()
_last_request = 0.0

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def wait_turn(delay: float) -> None:
    """Block until `delay` seconds have passed since the process's last request to arXiv.

    Shared by PoliteClient and the `arxiv` package's session, so both count against one budget.
    """
    global _last_request
    with _lock:
        pause = _last_request + delay - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        _last_request = time.monotonic()


class PoliteClient:
    """Throttled, retrying GETs. Blocking: call from a thread in async code."""

    def __init__(
        self,
        delay: float = 3.0,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        max_wait: float = 120.0,
    ) -> None:
        self.delay = delay
        self.attempts = attempts
        self.max_wait = max_wait
        self._client = httpx.Client(
            headers={"User-Agent": USER_AGENT},
            # A dead or unresolvable host should be known in seconds, a slow page waited for.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=1),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        """GET with politeness and retries; returns the final response, errors or not.

        Raises NetworkError when the host cannot be reached within the retry budget.
        """
        waited = 0.0
        for attempt in range(1, self.attempts + 1):
            wait_turn(self.delay)
            pause = min(2.0**attempt, 30.0)  # backoff, unless the server names a wait
            try:
                response = self._client.get(url, params=params)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                # DNS failure or refused connection: no network or a wrong URL, which waiting
                # will not fix within one fetch (the scheduler tries again in minutes).
                fatal = isinstance(exc, httpx.ConnectError)
                if fatal or attempt == self.attempts or waited + pause > self.max_wait:
                    raise NetworkError(f"cannot reach {_host(url)} ({reason})") from None
            else:
                if response.status_code not in RETRY_STATUSES or attempt == self.attempts:
                    return response
                asked = _retry_after(response)  # "Retry-After: 0" means now, not "unset"
                if asked is not None:
                    pause = asked
                reason = f"HTTP {response.status_code}"
                if waited + pause > self.max_wait:
                    return response
            log.info("%s from %s; retry %d in %.0fs", reason, _host(url), attempt, pause)
            time.sleep(pause)
            waited += pause
        raise AssertionError("unreachable")  # the loop always returns or raises


def _host(url: str) -> str:
    return httpx.URL(url).host or url
