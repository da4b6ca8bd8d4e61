"""What the evening did, for operators and readers: `/status`, `/metrics`, `digestbot status`.

`snapshot` gathers each stage's own account (sources: the last announcement and the fetches;
enrich: scoring, enrichment and the LLM's bill; outbox: the digests and the queue) and the
calendar (`clock`) into one dict with a stable schema (`SCHEMA`, tested). It is public: it
carries counts, times and states only — no address, subscriber id, token or error text.

Circuit breakers live in the process that sends (`digestbot.breaker`), which may not be the
one serving `/status`; the entry points that send record their breakers' states in `meta`
(`record_breakers`) after each delivery, and the snapshot reads them from there.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from digestbot import outbox
from digestbot.clock import (
    ET,
    announcement_date,
    expected_announcement_date,
    is_announcement_day,
    last_announcement,
    next_attempt,
    next_fetch_time,
)
from digestbot.config import Settings
from digestbot.enrich.counts import counts as enrich_counts
from digestbot.enrich.counts import evening_times, llm_since
from digestbot.enrich.pdf import arxiv_status
from digestbot.models import BreakerState
from digestbot.sources import papers
from digestbot.store import Store

SCHEMA = 1
BREAKER_KEY = "breaker:"
# Queue rows still to be sent: `pending` not tried yet, `failed` waiting for a retry.
QUEUED = ("pending", "failed")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def llm_cost(settings: Settings, llm: dict[str, int]) -> float:
    """USD for these tokens at the configured prices (cached prompt tokens are cheaper)."""
    uncached = max(llm["prompt_tokens"] - llm["cached_tokens"], 0)
    return round((uncached * settings.llm_price_input
                  + llm["cached_tokens"] * settings.llm_price_cached
                  + llm["completion_tokens"] * settings.llm_price_output) / 1_000_000, 4)


SEVERITY = {"open": 0, "half-open": 1, "closed": 2}


def record_breakers(store: Store, states: list[BreakerState]) -> None:
    """Keep the sending process's breaker states where `/status` can read them (changes only).

    One entry per kind of server: when several breakers share one ("SMTP" on two ports), the
    worst state is the one shown.
    """
    worst: dict[str, BreakerState] = {}
    for state in sorted(states, key=lambda b: SEVERITY.get(b.state, 0)):
        worst.setdefault(state.name, state)
    for state in worst.values():
        key, value = BREAKER_KEY + state.name, json.dumps(dataclasses.asdict(state))
        if store.get_meta(key) != value:
            store.set_meta(key, value)


def breakers(store: Store) -> list[BreakerState]:
    return [BreakerState(**json.loads(value))
            for value in store.meta_items(BREAKER_KEY).values()]


def expectation(now: datetime, latest: str | None) -> dict[str, Any]:
    """Whether the batch that should exist by `now` was seen, and the next one to expect.

    `state`: "seen"; "waiting" while tonight's fetching still retries (until 03:00 ET); or
    "missed" after that (an arXiv holiday, or a fetch that failed all night). `none_expected`
    says why no batch comes tonight: "holiday" (missed) or "weekend" (Friday, Saturday ET).
    """
    expected = expected_announcement_date(now)
    if (latest or "") >= expected:
        state = "seen"
    elif next_attempt(now, seen=False) is not None:
        state = "waiting"
    else:
        state = "missed"
    nxt = next_fetch_time(now)
    none = ("holiday" if state == "missed"
            else "weekend" if not is_announcement_day(now.astimezone(ET).date()) else None)
    return {"date": expected, "announced_at": _iso(last_announcement(now)), "state": state,
            "next": {"date": announcement_date(nxt), "at": _iso(nxt), "none_expected": none}}


def snapshot(settings: Settings, store: Store, now: datetime) -> dict[str, Any]:
    """The whole status (see the module's docstring); `now` is the caller's clock."""
    last = papers.last_announcement_seen(store)
    evening: dict[str, Any] = {"date": None, "fetched": None, "scored": None, "enriched": None,
                               "first_digest": None, "last_digest": None}
    digests: dict[str, dict[str, int]] = {}
    if last is not None:
        day = outbox.day_summary(store, last["date"])
        digests = day["by_channel"]
        evening.update(date=last["date"], fetched=last["seen_at"],
                       **evening_times(store, last["date"]),
                       first_digest=day["first_sent_at"], last_digest=day["last_sent_at"])
        # How long after arXiv's 20:00 ET the batch reached us (the batch of D is D-1's).
        if last["seen_at"]:
            announced = last_announcement(datetime.fromisoformat(last["date"] + "T00:00")
                                          .replace(tzinfo=ET))
            lag = datetime.fromisoformat(last["seen_at"]) - announced
            last["lag_s"] = max(int(lag.total_seconds()), 0)
        else:
            last["lag_s"] = None
    since = last_announcement(now)
    llm = llm_since(store, _iso(since))
    queue = outbox.count_by_status(store)
    return {
        "schema": SCHEMA,
        "now": _iso(now),
        "last_announcement": last,
        "expected": expectation(now, last["date"] if last else None),
        "fetch": papers.fetch_times(store),
        "evening": evening,
        "digests": digests,
        "queue": {status: queue.get(status, 0) for status in QUEUED},
        "llm": {"since": _iso(since), **llm, "cost_usd": llm_cost(settings, llm)},
        "breakers": [dataclasses.asdict(b) for b in breakers(store) if b.state != "closed"],
        # arXiv's breaker apart: it opening is no incident by itself (see status.alerts).
        "arxiv": arxiv_status(store),
    }


def totals(store: Store) -> dict[str, Any]:
    """All-time counts for `/metrics` (counters only grow): papers, LLM calls and tokens,
    digests per channel and status."""
    return {"papers": papers.counts(store)["papers"], "llm": enrich_counts(store)["llm"],
            "digests": outbox.by_channel_and_status(store),
            "breakers": [dataclasses.asdict(b) for b in breakers(store)]}
