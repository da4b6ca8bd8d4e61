"""A circuit breaker: stop calling a server that keeps failing, and try it again later.

Used by the SMTP sender (`channels.email`) and by every request to arXiv (`sources.http`).
An SMTP server that accepts connections and never answers costs a full timeout per message;
with hundreds of readers that is hours in which nothing else moves. After `threshold`
connection failures in a row the breaker opens: calls fail at once with `ServiceDown` (the
outbox keeps the rows 'failed' with a `next_attempt_at`, no attempt counted) until
`cooldown` has passed; then one trial call goes through (half-open). Its success closes
the breaker, its failure opens it for another cooldown. A server that says "stop" outright
(arXiv's 403/429/503) is `trip`ped: open at once, for as long as its Retry-After asks.

Breakers are kept per server for the whole process (`breaker_for`), so `run`, which builds
fresh senders at every delivery tick, remembers that a server is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from digestbot.errors import ServiceDown
from digestbot.models import BreakerState

FAILURES_TO_OPEN = 3
COOLDOWN_S = 300.0


class Breaker:
    def __init__(self, name: str, *, threshold: int | None = None, cooldown: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.threshold = FAILURES_TO_OPEN if threshold is None else threshold
        self.cooldown = COOLDOWN_S if cooldown is None else cooldown
        self.clock = clock
        self.failures = 0  # in a row
        self.opened_at: float | None = None
        self.hold = self.cooldown  # how long this opening lasts (a Retry-After may set it)
        self.opened_wall: float | None = None  # the same moment on the wall clock, for status
        self.trial = False  # a half-open trial call is in flight
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.remaining() <= 0 else "open"

    def remaining(self) -> float:
        """Seconds until the half-open trial may go (0 when closed or already due)."""
        if self.opened_at is None:
            return 0.0
        return max(self.opened_at + self.hold - self.clock(), 0.0)

    def snapshot(self) -> BreakerState:
        """The state for `/status`: the kind of server only (its first word), no address."""
        since = (datetime.fromtimestamp(self.opened_wall, UTC).isoformat(timespec="seconds")
                 if self.opened_wall is not None else None)
        return BreakerState(self.name.split(" ", 1)[0], self.state, self.failures,
                            since)

    def before(self) -> None:
        """Call before each attempt: raises `ServiceDown` while the server is known dead."""
        with self._lock:
            if self.opened_at is None:
                return
            left = self.opened_at + self.hold - self.clock()
            if left > 0 or self.trial:
                raise self._down(left)
            self.trial = True  # this caller is the half-open trial

    def check(self) -> None:
        """`before` without becoming the half-open trial: raises `ServiceDown` while the
        cooldown runs. For a caller with costly work to do before its attempt (`guard`)."""
        with self._lock:
            left = 0.0 if self.opened_at is None else self.opened_at + self.hold - self.clock()
            if left > 0:
                raise self._down(left)

    def _down(self, left: float) -> ServiceDown:
        return ServiceDown(
            f"{self.name} is not answering ({self.failures} failures in a row); "
            f"not trying again for {max(left, 0):.0f} s", retry_after=max(left, 1.0))

    async def admit(self) -> None:
        """`before`, except that while another call is the half-open trial this one waits for
        its verdict (one timeout at most), so a server back up gets the whole batch."""
        while True:
            try:
                self.before()
                return
            except ServiceDown:
                if not self.trial:
                    raise
                await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def guard(self, unreachable: type[BaseException]) -> AsyncIterator[None]:
        """Admit the call, then count it: `unreachable` is a failure, any other answer (even a
        refusal) a success, a cancellation no verdict at all."""
        await self.admit()
        try:
            yield
        except unreachable:
            self.failed()
            raise
        except Exception:
            self.succeeded()  # the server answered, if only to refuse
            raise
        except BaseException:
            self.abandon()
            raise
        self.succeeded()

    def succeeded(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self.trial = 0, None, False
            self.opened_wall = None

    def abandon(self) -> None:
        """The call was cut off (cancelled) before any verdict: let the next one be the trial."""
        with self._lock:
            self.trial = False

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            if self.trial or self.failures >= self.threshold:
                self._open(self.cooldown)
            self.trial = False

    def trip(self, hold: float | None = None) -> None:
        """Open now, whatever the count: the server said to stop (for `hold` seconds, when it
        said how long; else the cooldown)."""
        with self._lock:
            self.failures += 1
            self._open(self.cooldown if hold is None else hold)
            self.trial = False

    def _open(self, hold: float) -> None:
        if self.opened_at is None:  # a failed trial keeps the incident's start
            self.opened_wall = time.time()
        self.opened_at, self.hold = self.clock(), hold


_BREAKERS: dict[str, Breaker] = {}
_REGISTRY_LOCK = threading.Lock()


def breaker_for(name: str, *, threshold: int | None = None,
                cooldown: float | None = None) -> Breaker:
    """The process's breaker for server `name` (host:port), made on first use (with
    `threshold` and `cooldown`, which a later call does not change)."""
    with _REGISTRY_LOCK:
        if name not in _BREAKERS:
            _BREAKERS[name] = Breaker(name, threshold=threshold, cooldown=cooldown)
        return _BREAKERS[name]


def snapshots() -> list[BreakerState]:
    """Every breaker this process made, for the entry points to record (`status.record_breakers`)."""
    with _REGISTRY_LOCK:
        breakers = list(_BREAKERS.values())
    return [b.snapshot() for b in breakers]
