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
from digestbot.sources.papers import latest_announcement_date
from digestbot.store import Store

_ID_RE = re.compile(r"^(?P<id>.+?)(?:v(?P<version>\d+))?$")


def cmd_enrich(settings: Settings, args: argparse.Namespace) -> int:
    """Score the day's papers against the subscribed topics and any --topic, and enrich
    those a subscriber will receive (all with --all, or on a fresh install where nobody has
    subscribed yet)."""
    with Store(settings.db) as store:
        nobody = store.db["subscribers"].count == 0
        report = run_pipeline(settings, store, date=args.date, topics=args.topic,
                              all_papers=args.all or nobody, limit=args.limit,
                              offline=args.offline)
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
    from_file = read_jsonl(Path(args.jsonl)) if args.jsonl else None
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
    except OSError as exc:
        raise UsageError(f"无法读取 / cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: 不是 UTF-8 文本 / not UTF-8 text") from None
    papers: list[Paper] = []
    lines: dict[tuple[str, int], int] = {}  # (id, version) → the line that gave it
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: 不是有效的 JSON / not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise UsageError(f'{where}: 每行应是一个对象 / expected an object '
                             f'{{"id","title","abstract"}}')
        for key in ("id", "title"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise UsageError(f"{where}: {key!r} 须为非空字符串 / must be a non-empty string")
        if not isinstance(item.get("abstract", ""), str):
            raise UsageError(f"{where}: 'abstract' 须为字符串 / must be a string")
        m = _ID_RE.match(item["id"].strip())
        # Scores are keyed by (id, version): a repeated one would print another line's score.
        ident = (m["id"], int(m["version"] or 1))
        if ident in lines:
            raise UsageError(f"{where}: id {item['id'].strip()!r} 与第 {lines[ident]} 行重复 / "
                             f"repeats line {lines[ident]}")
        lines[ident] = n
        papers.append(Paper(id=ident[0], version=ident[1],
                            title=item["title"], abstract=item.get("abstract", "")))
    if not papers:
        raise UsageError(f"{path}: 没有论文 / no papers (expected one JSON object per line)")
    return papers
