"""Scoring and enrichment: the offline scorer, the LLM client, and the day's pipeline.

`digestbot enrich` runs the pipeline (score → select → enrich) for one announcement day;
`digestbot score` scores papers against one topic and prints JSONL, for tuning topics and
thresholds. Both use the LLM when OPENAI_API_KEY is set and the offline scorer otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path

from digestbot import topics as catalogue
from digestbot.config import Settings
from digestbot.enrich.llm import LLMClient
from digestbot.enrich.pipeline import PipelineReport, day_papers, run_pipeline, score_papers
from digestbot.errors import DigestbotError, UsageError
from digestbot.models import Paper, Topic
from digestbot.store import Store

_ID_RE = re.compile(r"^(?P<id>.+?)(?:v(?P<version>\d+))?$")


def cmd_enrich(settings: Settings, args: argparse.Namespace) -> int:
    """Score the day's papers and enrich those a subscriber will receive (all with --all,
    or on a fresh install where nobody has subscribed yet)."""
    with Store(settings.db) as store:
        nobody = store.db["subscribers"].count == 0
        report = run_pipeline(settings, store, date=args.date, all_papers=args.all or nobody,
                              limit=args.limit, offline=args.offline)
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
    with Store(settings.db) as store:
        topic = catalogue.lookup(args.topic, store)
        if topic is None:
            raise UsageError(catalogue.unknown_topic_message(args.topic))
        if args.jsonl:
            papers, cache = read_jsonl(Path(args.jsonl)), False
        else:
            day = args.date or store.latest_announcement_date()
            papers, cache = (day_papers(store, day) if day else []), True
            if not papers:
                raise DigestbotError(
                    f"没有可评分的论文 / no papers{' on ' + day if day else ''} in the database: "
                    "run `digestbot fetch` first or pass --jsonl FILE")
        scores = asyncio.run(_score(settings, store, papers, topic, args.offline, cache))
    for paper in papers:
        s = scores[(paper.id, paper.version)][topic.slug]
        print(json.dumps({"id": paper.id, "topic": topic.slug, "score": s.score,
                          "reason": s.reason}, ensure_ascii=False))
    return 0


async def _score(settings: Settings, store: Store, papers: list[Paper], topic: Topic,
                 offline: bool, cache: bool):
    report = PipelineReport()
    if offline or not settings.llm_enabled:
        return await score_papers(store, papers, [topic], None, report, cache=cache)
    async with LLMClient(settings) as llm:
        return await score_papers(store, papers, [topic], llm, report, cache=cache)


def read_jsonl(path: Path) -> list[Paper]:
    """Papers from `{"id","title","abstract"}` lines; a bad line is a UsageError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    papers: list[Paper] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise UsageError(f'{where}: expected an object {{"id","title","abstract"}}')
        for key in ("id", "title"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise UsageError(f"{where}: {key!r} must be a non-empty string")
        if not isinstance(item.get("abstract", ""), str):
            raise UsageError(f"{where}: 'abstract' must be a string")
        m = _ID_RE.match(item["id"].strip())
        papers.append(Paper(id=m["id"], version=int(m["version"] or 1),
                            title=item["title"], abstract=item.get("abstract", "")))
    if not papers:
        raise UsageError(f"{path}: no papers (expected one JSON object per line)")
    return papers
