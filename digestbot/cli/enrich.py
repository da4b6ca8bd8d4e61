"""`digestbot enrich` and `digestbot score`: the day's pipeline, and one topic's scores as JSONL."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from digestbot import subscribers
from digestbot import topics as catalogue
from digestbot.config import Settings
from digestbot.enrich import one_topic
from digestbot.enrich.pipeline import day_papers, run_pipeline
from digestbot.errors import DigestbotError, UsageError
from digestbot.outbox.timeline import reading_order
from digestbot.sources.papers import latest_announcement_date
from digestbot.store import Store


def cmd_enrich(settings: Settings, args: argparse.Namespace) -> int:
    """Score the day's papers against the subscribed topics and any --topic, and enrich
    those a subscriber will receive (all with --all, or on a fresh install where nobody has
    subscribed yet)."""
    with Store(settings.db) as store:
        nobody = not subscribers.anyone_subscribed(store)
        report = asyncio.run(run_pipeline(settings, store, date=args.date, topics=args.topic,
                                          all_papers=args.all or nobody, limit=args.limit,
                                          offline=args.offline, priority=reading_order))
    if report.date is None:
        print("还没有公告 / no announcement in the database yet: run `digestbot fetch` first")
        return 0
    if report.papers == 0:
        print(f"{report.date} 没有论文 / no papers announced on {report.date}")
        return 0
    print(report.summary())
    return 0


def cmd_score(settings: Settings, args: argparse.Namespace) -> int:
    """Print `{"id","topic","score","reason"}` per paper for one topic."""
    # Bad input is refused before the store is opened, so a typo leaves no new database behind.
    from_file = one_topic.read_jsonl(Path(args.jsonl)) if args.jsonl else None
    if catalogue.lookup(args.topic) is None and not Path(settings.db).exists():
        raise UsageError(catalogue.unknown_topic_message(args.topic))
    with Store(settings.db) as store:
        topic = catalogue.lookup(args.topic, store)
        if topic is None:
            raise UsageError(catalogue.unknown_topic_message(args.topic))
        if from_file is not None:
            papers, cache = from_file, False
        else:
            day = args.date or latest_announcement_date(store)
            papers, cache = (day_papers(store, day) if day else []), True
            if not papers:
                raise DigestbotError(
                    f"没有可评分的论文 / no papers{' on ' + day if day else ''} in the database: "
                    "run `digestbot fetch` first or pass --jsonl FILE")
        scores = asyncio.run(one_topic.score_topic(settings, store, papers, topic,
                                                offline=args.offline, cache=cache))
    for paper in papers:
        s = scores[(paper.id, paper.version)][topic.slug]
        print(json.dumps({"id": paper.id, "topic": topic.slug, "score": s.score,
                          "reason": s.reason}, ensure_ascii=False))
    return 0
