"""This stage's part of `digestbot stats`: scores, enrichments and the LLM's bill."""

from __future__ import annotations

from typing import Any

from digestbot.store import Store


def counts(store: Store) -> dict[str, Any]:
    db = store.db
    llm = next(iter(db.query(
        "select count(*) calls, coalesce(sum(outcome not in ('ok', 'retried')), 0) failures,"
        " coalesce(sum(prompt_tokens), 0) prompt_tokens,"
        " coalesce(sum(completion_tokens), 0) completion_tokens,"
        " coalesce(sum(cached_tokens), 0) cached_tokens from llm_calls"
    )))
    return {
        "scores": next(iter(db.query("select count(*) n from scores")))["n"],
        "enriched": next(iter(db.query(
            "select count(*) n from (select distinct arxiv_id, version from enrichments)")))["n"],
        "llm": dict(llm),
    }
