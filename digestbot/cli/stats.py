"""`digestbot stats`: each stage counts its own tables; this entry point adds them up and prints."""

from __future__ import annotations

import argparse
import json

from digestbot import outbox, subscribers
from digestbot.config import Settings
from digestbot.enrich.counts import counts as enrich_counts
from digestbot.sources import papers
from digestbot.store import Store


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        stats = {**papers.counts(store), **enrich_counts(store),
                 "subscribers": subscribers.count_by_status(store),
                 "deliveries": outbox.count_by_status(store)}
    llm = stats["llm"]
    uncached = max(llm["prompt_tokens"] - llm["cached_tokens"], 0)
    stats["llm"]["cost_usd"] = round(
        (uncached * settings.llm_price_input + llm["cached_tokens"] * settings.llm_price_cached
         + llm["completion_tokens"] * settings.llm_price_output) / 1_000_000, 4)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
        return 0
    print(f"papers        {stats['papers']}  ({stats['announcement_dates']} announcement days)")
    print("announcements " + _pairs(stats["announcements"]))
    print(f"scores        {stats['scores']}")
    print(f"enriched      {stats['enriched']}")
    print(f"llm           {llm['calls']} calls, {llm['failures']} failures, "
          f"{llm['prompt_tokens']} prompt ({llm['cached_tokens']} cached) + "
          f"{llm['completion_tokens']} completion tokens ≈ ${llm['cost_usd']}")
    print("subscribers   " + _pairs(stats["subscribers"]))
    print("deliveries    " + _pairs(stats["deliveries"]))
    return 0


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
