"""`digestbot stats`: each stage counts its own tables; this entry point adds them up and prints.
`digestbot status`: what `/status` shows (`digestbot.status`), printed."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from digestbot import outbox, status, subscribers
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
    llm["cost_usd"] = status.llm_cost(settings, llm)
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


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        snap = status.snapshot(settings, store, datetime.now(UTC))
    if args.json:
        print(json.dumps(snap, ensure_ascii=False, indent=2))
        return 0
    for line in status_lines(snap):
        print(line)
    return 0


def status_lines(s: dict[str, Any]) -> list[str]:
    last, e, ev, llm = s["last_announcement"], s["expected"], s["evening"], s["llm"]
    lines = []
    if last:
        lag = f", {last['lag_s'] // 60} min after 20:00 ET" if last["lag_s"] is not None else ""
        lines.append(f"last announcement  {last['date']}: {last['total']} papers "
                     f"({_pairs(last['papers'])}), fetched {last['seen_at'] or '?'} "
                     f"from {last['source']}{lag}")
    else:
        lines.append("last announcement  none yet / 尚无公告")
    state = {"seen": "seen / 已收到", "waiting": "waiting / 等待中",
             "missed": "none (holiday?) / 无公告（假日？）"}[e["state"]]
    lines.append(f"expected           {e['date']}: {state}")
    none = {"weekend": "  (weekend: none expected tonight / 周末：今晚无公告)",
            "holiday": "  (holiday: none expected / 假日：无公告)"}.get(e["next"]["none_expected"] or "", "")
    lines.append(f"next               {e['next']['date']} at {e['next']['at']}{none}")
    if s["fetch"]["failing_since"]:
        lines.append(f"fetch              failing since {s['fetch']['failing_since']} / 抓取失败")
    lines.append("evening            " + ", ".join(
        f"{k} {ev[k] or '-'}" for k in ("fetched", "scored", "enriched", "first_digest",
                                       "last_digest")))
    lines.append("digests            " + ("; ".join(
        f"{ch}: {_pairs(c)}" for ch, c in s["digests"].items()) or "none"))
    lines.append(f"queue              pending {s['queue']['pending']}, failed {s['queue']['failed']}")
    lines.append(f"llm                {llm['calls']} calls, {llm['failures']} failures, "
                 f"{llm['prompt_tokens']} + {llm['completion_tokens']} tokens "
                 f"≈ ${llm['cost_usd']} since {llm['since']}")
    lines.append("breakers           " + ("; ".join(
        f"{b['name']} {b['state']} since {b['since'] or '?'}" for b in s["breakers"])
        or "all closed / 全部正常"))
    return lines
