"""The enrichments table: what `enrichment` made of each paper version, saved and read back.

Kept apart from the enrichment itself (the LLM client, first pages, prompts' answers) so
that selecting and rendering a digest, which only read what is stored, import none of that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from digestbot.enrich import prompts
from digestbot.models import Enrichment, Institution
from digestbot.store import Store, chunks, now_iso

OFFLINE_MODEL = "offline"


def save_enrichment(store: Store, e: Enrichment) -> None:
    store.db["enrichments"].upsert({
        "arxiv_id": e.arxiv_id, "version": e.version, "prompt_version": e.prompt_version,
        "model": e.model, "title_zh": e.title_zh, "summary_zh": e.summary_zh,
        "summary_en": e.summary_en, "abstract_zh": e.abstract_zh,
        "institutions": _institutions_json(e.institutions), "created_at": now_iso(),
    }, pk=("arxiv_id", "version", "prompt_version", "model"))


def _institutions_json(items: Sequence[Institution]) -> str:
    return json.dumps([{"name": i.name, "name_zh": i.name_zh} for i in items], ensure_ascii=False)


def get_enrichment(store: Store, arxiv_id: str, version: int) -> Enrichment | None:
    """The enrichment to show for that version: a model's before offline, then the current
    prompt's, then the newest."""
    rows = list(store.db.query(
        f"select * from enrichments where arxiv_id = ? and version = ? {_PREFERRED} limit 1",
        [arxiv_id, version, OFFLINE_MODEL, prompts.PROMPT_VERSION]))
    return _from_row(rows[0]) if rows else None


# Which of a version's enrichments is shown: a model's before offline, then the current
# prompt's, then the newest.
_PREFERRED = "order by model = ? asc, prompt_version = ? desc, created_at desc, rowid desc"


def get_enrichments(store: Store, keys: Sequence[tuple[str, int]]
                    ) -> dict[tuple[str, int], Enrichment]:
    """`get_enrichment` for many versions at once (a batch of digests reads the day's papers
    in a few queries, not one each); versions without one are absent."""
    wanted, out = set(keys), {}
    for chunk in chunks(sorted({pid for pid, _ in wanted}), 500):
        marks = ",".join("?" * len(chunk))
        for row in store.db.query(
                f"select * from enrichments where arxiv_id in ({marks})"
                f" {_PREFERRED.replace('order by', 'order by arxiv_id, version,')}",
                [*chunk, OFFLINE_MODEL, prompts.PROMPT_VERSION]):
            key = (row["arxiv_id"], row["version"])
            if key in wanted and key not in out:
                out[key] = _from_row(row)
    return out


def _from_row(row: dict[str, Any]) -> Enrichment:
    return Enrichment(
        arxiv_id=row["arxiv_id"], version=row["version"], title_zh=row["title_zh"] or "",
        summary_zh=row["summary_zh"] or "", abstract_zh=row["abstract_zh"] or "",
        institutions=[Institution(i["name"], i.get("name_zh", ""))
                      for i in json.loads(row["institutions"] or "[]")],
        model=row["model"], prompt_version=row["prompt_version"] or "",
        summary_en=row["summary_en"] or "",
    )
