"""`digestbot topics` and `digestbot sub add | list | rm`: the catalogue and who gets what."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from digestbot import subscribers, topics
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.models import CHANNELS, Subscriber, Subscription, Topic
from digestbot.store import Store


def catalogue_json(catalogue: topics.Catalogue, custom: Iterable[Topic] = ()) -> dict[str, Any]:
    def topic_json(t: Topic) -> dict[str, Any]:
        return {"slug": t.slug, "name_zh": t.name_zh, "name_en": t.name_en,
                "aliases": t.aliases, "description": t.description, "categories": t.categories}

    return {
        "areas": [
            {"name_zh": a.name_zh, "name_en": a.name_en, "groups": [
                {"name_zh": g.name_zh, "name_en": g.name_en, "description": g.description,
                 "categories": list(g.categories), "topics": [topic_json(t) for t in g.topics]}
                for g in a.groups
            ]}
            for a in catalogue.areas
        ],
        "custom": [{"slug": t.slug, "text": t.description} for t in custom],
    }


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    """Print the catalogue tree (and custom topics, if a database already exists)."""
    catalogue = topics.load_catalogue()
    custom: list[Topic] = []
    # Listing topics must not create a database as a side effect.
    if Path(settings.db).exists():
        with Store(settings.db) as store:
            custom = topics.custom_topics(store)
    if args.json:
        print(json.dumps(catalogue_json(catalogue, custom), ensure_ascii=False, indent=2))
        return 0
    for area in catalogue.areas:
        print(f"{area.name_zh} / {area.name_en}")
        for group in area.groups:
            print(f"  {group.name_zh} — {group.description}  [{', '.join(group.categories)}]")
            for t in group.topics:
                print(f"    {t.name_zh} · {t.name_en}  ({t.slug})")
        print()
    if custom:
        print(topics.CUSTOM_AREA)
        for t in custom:
            print(f"    {t.description}  ({t.slug})")
    print(f"共 {len(catalogue.topics)} 个主题 / {len(catalogue.topics)} topics;"
          "订阅时可用中文名、英文名、别名或 slug / subscribe by any name, alias or slug")
    return 0


def cmd_sub_add(settings: Settings, args: argparse.Namespace) -> int:
    channel, raw_address = next(
        (c, getattr(args, c)) for c in CHANNELS if getattr(args, c, None) is not None
    )
    # Everything is validated before the first write.
    address = subscribers.validate_address(channel, raw_address)
    threshold = subscribers.validate_threshold(args.threshold)
    tz = subscribers.validate_tz(args.tz) if args.tz is not None else None
    send_at = subscribers.validate_time(args.at) if args.at is not None else None
    lang = subscribers.validate_lang(args.lang) if args.lang is not None else None
    max_papers = subscribers.validate_max_papers(args.max) if args.max is not None else None
    webhook = args.slack_webhook
    if webhook is not None:
        if channel != "slack":
            raise UsageError("--slack-webhook 只能与 --slack 一起用 / --slack-webhook needs --slack")
        webhook = subscribers.validate_webhook_url(webhook)
    with Store(settings.db) as store:
        known = {name: topics.lookup(name, store) for name in args.topic}
        unknown = [name for name, topic in known.items() if topic is None]
        if unknown and not args.custom:
            raise UsageError(topics.unknown_topic_message(unknown[0]) + ";或加 --custom 作为自定义主题 / "
                             "or add --custom to make it a custom topic")
        existed = subscribers.by_address(store, channel, address) is not None
        with store.db.atomic():
            slugs = [
                (topic or topics.custom_topic(store, name)).slug for name, topic in known.items()
            ]
            sub = subscribers.add_or_update(
                store, channel=channel, address=address, topics=list(dict.fromkeys(slugs)),
                threshold=threshold, tz=tz, send_at=send_at, lang=lang, max_papers=max_papers,
                webhook_url=webhook, cadence=args.cadence,
            )
        subs = subscribers.subscriptions(store, sub.id)
    verb = "已更新 / updated" if existed else "已添加 / added"
    print(f"{verb} subscriber #{sub.id}: {sub.channel} {sub.address} — "
          f"{_topics_summary(subs)}; {sub.lang}, {_when(sub)}, max {sub.max_papers}")
    return 0


def _when(sub: Subscriber) -> str:
    """`08:30 Asia/Shanghai`, or `Mondays 08:30 Asia/Shanghai (weekly)` for a weekly reader."""
    if sub.cadence == "weekly":
        return f"Mondays {sub.send_at} {sub.tz} (weekly)"
    return f"{sub.send_at} {sub.tz}"


def _topics_summary(subs: list[Subscription]) -> str:
    return ", ".join(f"{s.topic} ≥{s.threshold}" for s in subs) or "-"


def subscriber_json(sub: Subscriber, subs: list[Subscription]) -> dict[str, Any]:
    """A subscriber for `sub list --json`; the token and webhook URL are secrets and left out."""
    return {
        "id": sub.id, "channel": sub.channel, "address": sub.address, "status": sub.status,
        "status_reason": sub.status_reason, "lang": sub.lang, "tz": sub.tz,
        "send_at": sub.send_at, "cadence": sub.cadence, "max_papers": sub.max_papers,
        "webhook": bool(sub.webhook_url), "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "topics": [{"topic": s.topic, "threshold": s.threshold} for s in subs],
    }


def cmd_sub_list(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        rows = [(s, subscribers.subscriptions(store, s.id)) for s in subscribers.list_all(store)]
    if args.json:
        print(json.dumps([subscriber_json(s, subs) for s, subs in rows], ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("还没有订阅者 / no subscribers yet: add one with `digestbot sub add --email ADDR --topic 后训练`")
        return 0
    table = [("id", "channel", "address", "status", "lang", "send at", "max", "topics")]
    table += [
        (str(s.id), s.channel, s.address, s.status, s.lang, _when(s),
         str(s.max_papers), _topics_summary(subs))
        for s, subs in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def cmd_sub_rm(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        if not subscribers.remove(store, args.id):
            raise UsageError(f"没有编号为 {args.id} 的订阅者 / no subscriber #{args.id} (see `digestbot sub list`)")
    print(f"已删除 / removed subscriber #{args.id}")
    return 0
