"""Every request to arXiv (listing, RSS, API, PDF) passes one gate: one budget per process.

arXiv asks for at most one request every 3 seconds, one connection at a time, and a
User-Agent that names the bot (DESIGN.md, "Facts to respect"). `GATE` is the process's only
way to arXiv: a lock held for the whole request (one in flight, across threads), the earliest
time the next request may start (`arxiv_delay` after the last start, or later when arXiv sent
Retry-After), one shared httpx connection pool of size 1 (so PoliteClient instances and the
`arxiv` package's session, `sources.api`, share one connection), and arXiv's circuit breaker.

The breaker opens at once when arXiv cannot be reached (connection refused, DNS) or says
stop (403 blocked, 429 too many, 503 busy — for its Retry-After when it gives one), and after
TIMEOUTS_TO_OPEN timeouts or dropped connections in a row. While it is open no request is
made: `ArxivDown` is raised at once, so an evening without arXiv costs no 3 s per paper.
After the cooldown one trial request goes (half-open); its answer closes or reopens it.

PoliteClient retries 500/502/504 and timeouts with backoff (the breaker permitting), waits
out a Retry-After that fits in `max_wait`, and stops at that total wait bound.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from digestbot import USER_AGENT
from digestbot.breaker import Breaker
from digestbot.errors import ArxivDown, NetworkError, ServiceDown
from digestbot.store import Store

log = logging.getLogger(__name__)

# arXiv telling us to stop: the breaker opens on the first one.
STOP_STATUSES = frozenset({403, 429, 503})
# A server hiccup: retried with backoff, not held against arXiv's breaker.
RETRY_STATUSES = frozenset({500, 502, 504})
TIMEOUTS_TO_OPEN = 2  # one slow PDF is not an outage, two in a row are
COOLDOWN_S = 300.0  # without a Retry-After, five minutes before the trial request
MAX_REDIRECTS = 5


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


class Gate:
    """The process's one way to arXiv (see the module's docstring).

    `clock` and `sleep` are attributes so tests can run the pauses on a virtual clock; the
    breaker shares that clock.
    """

    def __init__(self) -> None:
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        # Not among the senders' breakers (`breaker.snapshots`): those page the operator the
        # moment they open, while arXiv being away is an incident only when the evening's
        # batch misses its deadline (`status.alerts`).
        self.breaker = Breaker("arXiv", threshold=TIMEOUTS_TO_OPEN, cooldown=COOLDOWN_S,
                               clock=lambda: self.clock())
        self._lock = threading.Lock()
        self._next_start = 0.0  # no request starts before this (monotonic)
        self._http: httpx.Client | None = None
        self.started = 0  # requests that went out, for tests and benchmarks
        self.refused = 0  # requests not made because the breaker was open

    @property
    def is_open(self) -> bool:
        """True while no request would be made (the cooldown is still running)."""
        return self.breaker.state == "open"

    def reset(self) -> None:
        """Forget every earlier request and close the breaker (tests, a fresh process)."""
        with self._lock:
            self._next_start, self.started, self.refused = 0.0, 0, 0
            self.breaker.succeeded()
            if self._http is not None:
                self._http.close()
                self._http = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                # Redirects are followed by PoliteClient, each hop in its own turn.
                headers={"User-Agent": USER_AGENT}, follow_redirects=False,
                # One connection for the process, to whichever arXiv host is asked.
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        return self._http

    def get(self, url: str, *, delay: float, timeout: httpx.Timeout,
            params: dict[str, str] | None = None) -> httpx.Response:
        """One GET in its turn, its outcome counted by the breaker.

        Raises ArxivDown (nothing sent) while the breaker is open, httpx.TransportError when
        the request failed on the way.
        """
        with self._lock:
            try:
                self.breaker.before()
            except ServiceDown as exc:
                self.refused += 1
                raise ArxivDown(f"arXiv 暂停访问 / not asking arXiv for {exc.retry_after:.0f} s "
                                f"(unreachable or refused us)", exc.retry_after) from None
            try:
                client = self._client()  # made first: its set-up must not eat into the delay
                pause = self._next_start - self.clock()
                if pause > 0:
                    self.sleep(pause)
                self._next_start = self.clock() + delay
                self.started += 1
                response = client.get(url, params=params, timeout=timeout)
            except httpx.ConnectError:
                self.breaker.trip()  # refused or no such host: nobody is there
                raise
            except httpx.TransportError:
                self.breaker.failed()
                raise
            except BaseException:
                self.breaker.abandon()  # no verdict (interrupted): the next call is the trial
                raise
            if response.status_code in STOP_STATUSES:
                asked = _retry_after(response)
                self.breaker.trip(asked)
                if asked is not None:
                    self._next_start = max(self._next_start, self.clock() + asked)
                log.warning("arXiv answered HTTP %d (Retry-After %s): not asking it for %.0f s",
                            response.status_code, asked, self.breaker.remaining())
            else:
                self.breaker.succeeded()
            return response


GATE = Gate()
# Where `/status` (another process, maybe) reads arXiv's breaker as this process saw it last.
BREAKER_KEY = "arxiv:breaker"


def record_breaker(store: Store) -> None:
    """Keep arXiv's breaker state where `/status` reads it (only when it changed): after a
    fetch and after each first page, so an outage seen by either shows."""
    value = json.dumps(dataclasses.asdict(GATE.breaker.snapshot()))
    if store.get_meta(BREAKER_KEY) != value:
        store.set_meta(BREAKER_KEY, value)


def recorded_breaker(store: Store) -> dict[str, Any] | None:
    """arXiv's breaker as last recorded, or None before any request was made."""
    recorded = store.get_meta(BREAKER_KEY)
    return json.loads(recorded) if recorded else None


class PoliteClient:
    """Throttled, retrying GETs to arXiv through `GATE`. Blocking: call from a thread in
    async code. Instances are cheap: the connection belongs to the gate."""

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
        # A dead or unresolvable host should be known in seconds, a slow page waited for.
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))

    def close(self) -> None:
        """Nothing to release: the connection is the process's (GATE)."""

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        """GET with politeness and retries; returns the final response, errors or not.

        Raises NetworkError when the host cannot be reached within the retry budget, and
        ArxivDown (a NetworkError) when arXiv's breaker is open.
        """
        waited = 0.0
        for attempt in range(1, self.attempts + 1):
            pause = min(2.0**attempt, 30.0)  # backoff, unless the server names a wait
            try:
                response = self._follow(url, params)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                # Refused, no such host, or arXiv not answering twice: the breaker is open
                # and waiting will not fix it within one fetch.
                if (GATE.is_open or attempt == self.attempts
                        or waited + pause > self.max_wait):
                    raise NetworkError(f"cannot reach {_host(url)} ({reason})") from None
            else:
                status = response.status_code
                if status not in RETRY_STATUSES | STOP_STATUSES or attempt == self.attempts:
                    return response
                asked = _retry_after(response)  # "Retry-After: 0" means now, not "unset"
                if status in STOP_STATUSES and asked is None:
                    return response  # the breaker's cooldown is beyond any fetch's patience
                if asked is not None:
                    pause = asked
                reason = f"HTTP {status}"
                if waited + pause > self.max_wait:
                    return response
            log.info("%s from %s; retry %d in %.0fs", reason, _host(url), attempt, pause)
            GATE.sleep(pause)
            waited += pause
        raise AssertionError("unreachable")  # the loop always returns or raises


    def _follow(self, url: str, params: dict[str, str] | None) -> httpx.Response:
        """One GET through the gate, and each redirect it answers as another, in its turn."""
        response = GATE.get(url, delay=self.delay, timeout=self.timeout, params=params)
        for _ in range(MAX_REDIRECTS):
            if response.next_request is None:
                break
            response = GATE.get(str(response.next_request.url), delay=self.delay,
                                timeout=self.timeout)
        return response


def _host(url: str) -> str:
    return httpx.URL(url).host or url
