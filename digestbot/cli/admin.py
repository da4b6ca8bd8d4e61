"""`digestbot init` and `digestbot stats`: the operator's setup and the database's counts."""

from __future__ import annotations

import argparse
import json
import os
import secrets
from pathlib import Path

from digestbot.config import Settings, render_config
from digestbot.store import Store


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    """Write a commented config (with a fresh signing secret) and create the database."""
    secret = settings.secret.get() if settings.secret else secrets.token_urlsafe(32)
    text = render_config(secret)
    if args.print:
        print(text)
        return 0
    path = Path(args.config) if args.config else (settings.config_path or Path("digestbot.toml"))
    if path.exists() and not args.force:
        print(f"{path} exists; kept it (use --force to overwrite)")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        # It holds the signing secret: created 0600 (and an old file made 0600 before the
        # secret goes in), never readable by others even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with open(fd, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {path}")
    with Store(settings.db):
        pass
    print(f"database ready: {settings.db}")
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        stats = store.stats()
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
