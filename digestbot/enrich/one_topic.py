"""Scoring papers against one topic (`digestbot score`): from the store or a JSONL file of
`{"id","title","abstract"}` lines, with the LLM when it is configured, else offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

from digestbot.config import Settings
from digestbot.enrich.calls import Key, PipelineReport
from digestbot.enrich.llm import LLMClient
from digestbot.enrich.scoring import score_papers
from digestbot.errors import UsageError
from digestbot.models import Paper, Score, Topic
from digestbot.store import Store

_ID_RE = re.compile(r"^(?P<id>.+?)(?:v(?P<version>\d+))?$")


async def score_topic(settings: Settings, store: Store, papers: list[Paper], topic: Topic, *,
                      offline: bool = False, cache: bool = True) -> dict[Key, dict[str, Score]]:
    """Score `papers` against one topic (`digestbot score`): with the LLM when it is
    configured and `offline` is not asked for, else with the offline scorer. `cache=False`
    for papers that are not in the store (a JSONL file): their scores are not saved."""
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
