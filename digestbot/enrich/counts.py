"""This stage's part of `digestbot stats`: scores, enrichments and the LLM's bill."""

from __future__ import annotations

from typing import Any

from digestbot.store import Store

# `calls` are requests (a scoring request has a row per paper; a row without a request id is a
# request of its own); `failures` are requests some paper of which got no usable answer.
_LLM = """
select count(distinct coalesce(request, 'row' || id)) calls,
       count(distinct case when outcome not in ('ok', 'retried')
                      then coalesce(request, 'row' || id) end) failures,
       coalesce(sum(prompt_tokens), 0) prompt_tokens,
       coalesce(sum(completion_tokens), 0) completion_tokens,
       coalesce(sum(cached_tokens), 0) cached_tokens
from llm_calls
"""


def counts(store: Store) -> dict[str, Any]:
    db = store.db
    llm = next(iter(db.query(_LLM)))
    return {
        "scores": next(iter(db.query("select count(*) n from scores")))["n"],
        "enriched": next(iter(db.query(
            "select count(*) n from (select distinct arxiv_id, version from enrichments)")))["n"],
        "llm": dict(llm),
    }


def evening_times(store: Store, date: str) -> dict[str, str | None]:
    """When the papers announced on `date` were last scored and last enriched (ISO, UTC)."""
    db = store.db
    times = {}
    for stage, table in (("scored", "scores"), ("enriched", "enrichments")):
        times[stage] = next(iter(db.query(
            f"select max(t.created_at) at from {table} t join announcements a"
            " on a.arxiv_id = t.arxiv_id where a.date = ?", [date])))["at"]
    return times


def llm_since(store: Store, since: str) -> dict[str, int]:
    """The LLM's calls, failures and tokens since `since` (ISO, UTC)."""
    return dict(next(iter(store.db.query(_LLM + " where created_at >= ?", [since]))))
