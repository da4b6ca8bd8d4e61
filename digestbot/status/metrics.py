"""`/metrics`: the status as Prometheus metrics, written by prometheus-client.

A collector reads the store at each scrape (its own `CollectorRegistry`, not the process-wide
default one: nothing else of the process, and no state kept between scrapes). Labels carry
channel, status, token kind and breaker kind only — never a reader or a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from digestbot.config import Settings
from digestbot.status import QUEUED, snapshot, totals
from digestbot.store import Store

BREAKER_STATES = ("closed", "open", "half-open")
# What `generate_latest` writes (0.0.4 text; the client's "latest" names a newer format).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


class StatusCollector(Collector):
    def __init__(self, settings: Settings, store: Store, now: datetime) -> None:
        self.settings, self.store, self.now = settings, store, now

    def collect(self) -> Iterator[Metric]:
        status = snapshot(self.settings, self.store, self.now)
        total = totals(self.store)
        yield from _announcement(status)
        papers = GaugeMetricFamily("digestbot_papers", "Papers stored")
        papers.add_metric([], total["papers"])
        yield papers
        yield from _llm(total["llm"])
        digests = GaugeMetricFamily("digestbot_digests", "Digest rows by channel and status",
                                    labels=["channel", "status"])
        for channel, counts in sorted(total["digests"].items()):
            for state, n in sorted(counts.items()):
                digests.add_metric([channel, state], n)
        yield digests
        queue = GaugeMetricFamily("digestbot_queue_depth", "Digests waiting to be sent",
                                  labels=["status"])
        for state in QUEUED:
            queue.add_metric([state], status["queue"][state])
        yield queue
        breaker = GaugeMetricFamily("digestbot_breaker_state",
                                    "1 for each sender breaker's current state",
                                    labels=["breaker", "state"])
        for b in total["breakers"]:
            for state in BREAKER_STATES:
                breaker.add_metric([b["name"], state], float(b["state"] == state))
        yield breaker


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:  # an unknown time is left out, not reported as 1970
        gauge = GaugeMetricFamily(name, doc)
        gauge.add_metric([], value)
        yield gauge


def _announcement(status: dict[str, Any]) -> Iterator[Metric]:
    last, expected = status["last_announcement"] or {}, status["expected"]
    yield from _gauge("digestbot_announcement_lag_seconds",
                      "From arXiv's announcement (20:00 ET) to the batch reaching us",
                      last.get("lag_s"))
    yield from _gauge("digestbot_announcement_papers", "Papers in the last announcement seen",
                      last.get("total"))
    yield from _gauge("digestbot_announcement_expected_timestamp_seconds",
                      "When the batch that should exist by now was announced",
                      _ts(expected["announced_at"]))
    yield from _gauge("digestbot_announcement_seen",
                      "1 when the batch that should exist by now was fetched",
                      float(expected["state"] == "seen"))
    yield from _gauge("digestbot_last_successful_fetch_timestamp_seconds",
                      "The last fetch that arXiv answered", _ts(status["fetch"]["last_ok_at"]))


def _llm(llm: dict[str, int]) -> Iterator[Metric]:
    requests = CounterMetricFamily("digestbot_llm_requests", "LLM calls")
    requests.add_metric([], llm["calls"])
    failures = CounterMetricFamily("digestbot_llm_failures", "LLM calls that failed")
    failures.add_metric([], llm["failures"])
    tokens = CounterMetricFamily("digestbot_llm_tokens", "LLM tokens", labels=["kind"])
    for kind in ("prompt", "completion", "cached"):
        tokens.add_metric([kind], llm[f"{kind}_tokens"])
    yield from (requests, failures, tokens)


def exposition(settings: Settings, store: Store, now: datetime) -> bytes:
    """The Prometheus text format of the status at `now`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(settings, store, now))
    return generate_latest(registry)
