"""PoliteClient against a local server: spacing between requests, retries, Retry-After, bounds.

The gate's pauses run on a virtual clock (recorded, not slept), so the tests see every pause
the client decided on (arXiv's 3 s spacing, a server's Retry-After) without waiting for it.
"""

from __future__ import annotations

import pytest

from digestbot.errors import NetworkError
from digestbot.sources import http
from digestbot.sources.http import PoliteClient
from tests.fakes.http import FakeServer, Response


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    slept: list[float] = []
    now = [1000.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(http.GATE, "clock", lambda: now[0])
    monkeypatch.setattr(http.GATE, "sleep", sleep)
    return slept


def serve(*responses: Response) -> FakeServer:
    queue = list(responses)
    return FakeServer(lambda req: queue.pop(0) if queue else Response(200, "ok"))


def test_requests_are_spaced_by_the_delay(pauses):
    with serve() as server, PoliteClient(delay=3.0) as client:
        for _ in range(3):
            assert client.get(server.url).status_code == 200
    # Nothing before the first request; 3 s before each later one.
    assert pauses == [3.0, 3.0]
    assert all("digestbot" in r.headers["user-agent"] for r in server.requests)


def test_retry_after_is_honoured(pauses):
    with serve(Response(503, "busy", {"Retry-After": "7"}),
               Response(429, "slow", {"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"})) as server, \
            PoliteClient(delay=0) as client:
        assert client.get(server.url).status_code == 200
    # 7 s as asked, then 0 for a date already past; no pause of the client's own choosing.
    assert pauses == [7.0, 0.0] and len(server.requests) == 3


def test_backoff_without_retry_after(pauses):
    with serve(Response(500, "oops"), Response(502, "oops")) as server, \
            PoliteClient(delay=0) as client:
        assert client.get(server.url).status_code == 200
    assert pauses == [2.0, 4.0] and len(server.requests) == 3


def test_total_wait_is_bounded(pauses):
    with serve(Response(503, "down", {"Retry-After": "3600"})) as server, \
            PoliteClient(delay=0, max_wait=120) as client:
        # An hour's Retry-After is beyond the bound: the 503 comes back at once, unslept.
        assert client.get(server.url).status_code == 503
    assert pauses == [] and len(server.requests) == 1


def test_a_timeout_is_retried_then_reported(pauses):
    slow = Response(200, "late", delay=1.0)
    with serve(slow) as server, PoliteClient(delay=0, timeout=0.2) as client:
        assert client.get(server.url).text == "ok"
    assert pauses == [2.0]
    with serve(*[slow] * 4) as server, \
            PoliteClient(delay=0, timeout=0.2, attempts=2) as client, \
            pytest.raises(NetworkError, match=r"cannot reach 127\.0\.0\.1 \(ReadTimeout"):
        client.get(server.url)
