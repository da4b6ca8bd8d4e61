"""A reader's 👍/👎 on papers (issue 17): the only owner of the `feedback` table.

One row per reader and paper: a second tap replaces the first (the last vote counts), so a
button pressed twice, a link opened by a mail scanner and then by the reader, or a retried
callback all leave the same state. The votes are the reader's alone: the re-ranker reads them
for that reader only, `/forget` and removing the reader delete them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from digestbot.errors import UsageError
from digestbot.sources.papers import get_paper
from digestbot.store import Store, now_iso

UP, DOWN = 1, -1
VoteName = Literal["up", "down"]
VOTES: dict[str, int] = {"up": UP, "down": DOWN}
# The newest votes train the model; older ones are kept (and listed) but tastes drift.
TRAIN_LIMIT = 500
_ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}|[a-z][a-z.\-]*/\d{7}", re.I)


@dataclass(frozen=True)
class Vote:
    arxiv_id: str
    vote: int  # UP or DOWN
    at: str

    @property
    def name(self) -> VoteName:
        return "up" if self.vote == UP else "down"


def parse_vote(text: str) -> int:
    """`up`/`down` (also +1/-1, 👍/👎) → UP/DOWN; UsageError otherwise."""
    value = {"up": UP, "+1": UP, "1": UP, "👍": UP,
             "down": DOWN, "-1": DOWN, "👎": DOWN}.get(text.strip().lower())
    if value is None:
        raise UsageError(zh=f"投票只能是 up 或 down,不是 {text[:20]!r}。",
                         en=f"A vote is up or down, not {text[:20]!r}.")
    return value


def check_paper_id(store: Store, arxiv_id: str) -> str:
    """The id of a paper the store knows; UsageError for anything else."""
    arxiv_id = arxiv_id.strip()
    if not _ARXIV_ID.fullmatch(arxiv_id) or get_paper(store, arxiv_id) is None:
        raise UsageError(zh=f"没有这篇论文:{arxiv_id[:40]}", en=f"No such paper: {arxiv_id[:40]}")
    return arxiv_id


def record(store: Store, subscriber_id: int, arxiv_id: str, vote: int) -> bool:
    """Store the reader's vote on the paper (replacing any earlier one); whether it changed."""
    if vote not in (UP, DOWN):
        raise UsageError(zh="投票只能是 👍 或 👎。", en="A vote is 👍 or 👎.")
    arxiv_id = check_paper_id(store, arxiv_id)
    with store.db.atomic():
        if vote_of(store, subscriber_id, arxiv_id) == vote:
            return False
        at = now_iso()
        store.db.execute(
            "insert into feedback (subscriber_id, arxiv_id, vote, created_at, updated_at)"
            " values (?, ?, ?, ?, ?) on conflict (subscriber_id, arxiv_id)"
            " do update set vote = excluded.vote, updated_at = excluded.updated_at",
            [subscriber_id, arxiv_id, vote, at, at])
        # A changed ranking is a changed subscriber: the outbox forgets empty selections.
        store.db.execute("update subscribers set updated_at = ? where id = ?", [at, subscriber_id])
    return True


def vote_of(store: Store, subscriber_id: int, arxiv_id: str) -> int | None:
    rows = list(store.db.query(
        "select vote from feedback where subscriber_id = ? and arxiv_id = ?",
        [subscriber_id, arxiv_id]))
    return rows[0]["vote"] if rows else None


def votes_on(store: Store, subscriber_id: int, ids: list[str]) -> dict[str, int]:
    """The reader's votes on `ids` (the buttons of a digest show them)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return {r["arxiv_id"]: r["vote"] for r in store.db.query(
        f"select arxiv_id, vote from feedback where subscriber_id = ? and arxiv_id in ({marks})",
        [subscriber_id, *ids])}


def votes(store: Store, subscriber_id: int, limit: int | None = None) -> list[Vote]:
    """The reader's votes, newest first (at most `limit`)."""
    sql = ("select arxiv_id, vote, updated_at from feedback where subscriber_id = ?"
           " order by updated_at desc, rowid desc")
    params: list[object] = [subscriber_id]
    if limit is not None:
        sql += " limit ?"
        params.append(limit)
    return [Vote(r["arxiv_id"], r["vote"], r["updated_at"]) for r in store.db.query(sql, params)]


def voters(store: Store, at_least: int) -> set[int]:
    """Readers with `at_least` votes of both kinds: everyone else has nothing to learn from, so a
    batch of digests asks this once instead of reading each reader's votes."""
    return {r[0] for r in store.db.execute(
        "select subscriber_id from feedback group by subscriber_id"
        " having count(*) >= ? and min(vote) <> max(vote)", [at_least])}


def forget(store: Store, subscriber_id: int) -> int:
    """Delete the reader's votes (`/forget`): the re-ranker starts from nothing; how many."""
    with store.db.atomic():
        gone = store.db.execute(
            "delete from feedback where subscriber_id = ?", [subscriber_id]).rowcount
        if gone:
            store.db.execute("update subscribers set updated_at = ? where id = ?",
                             [now_iso(), subscriber_id])
    return gone


def delete_feedback(store: Store, subscriber_id: int) -> None:
    """A removed reader's votes go with them (inside the caller's transaction)."""
    store.db.execute("delete from feedback where subscriber_id = ?", [subscriber_id])
