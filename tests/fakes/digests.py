"""Delivery test helpers: announced, scored papers and subscribers (via the real API), crashes."""

from __future__ import annotations

from digestbot import subscribers
from digestbot.models import Announcement, Author, FeedBatch, Paper, Subscriber
from digestbot.sources.papers import save_batch
from digestbot.store import Store, now_iso

DAY = "2026-08-13"
NEXT_DAY = "2026-08-14"
TOPIC = "post-training"


def add_paper(store: Store, pid: str, score: int, *, date: str = DAY, title: str | None = None,
              topic: str = TOPIC) -> None:
    """A paper announced on `date`, scored `score` for `topic`."""
    paper = Paper(id=pid, version=1, title=title or f"Paper {pid} on preference optimization",
                  abstract=f"We study {pid}.", authors=[Author("Ada Lovelace")],
                  categories=["cs.CL"])
    save_batch(store, FeedBatch(source="test", date=date, papers=[paper],
                               announcements=[Announcement(date, pid, "new", 1, "test")]))
    store.db["scores"].insert(
        {"arxiv_id": pid, "version": 1, "topic": topic, "score": score,
         "reason": f"reason for {pid}", "scorer": "test", "created_at": now_iso()},
        replace=True,
    )


def add_enrichment(store: Store, pid: str, summary_zh: str) -> None:
    """A Chinese title and summary for `pid`: a `zh` rendering is much longer than an `en` one."""
    store.db["enrichments"].insert({
        "arxiv_id": pid, "version": 1, "prompt_version": "test", "model": "test-model",
        "title_zh": f"{pid} 的中文标题", "summary_zh": summary_zh, "summary_en": "TL;DR.",
        "abstract_zh": "中文摘要。", "institutions": "[]", "created_at": now_iso()})


def add_subscriber(store: Store, address: str, *, threshold: int = 60, **settings) -> Subscriber:
    """An active email subscriber to TOPIC who joined before DAY (so DAY is in their window)."""
    sub = subscribers.add_or_update(store, channel="email", address=address, topics=[TOPIC],
                                    threshold=threshold, **settings)
    store.db["subscribers"].update(sub.id, {"created_at": "2026-08-01T00:00:00+00:00"})
    return subscribers.get(store, sub.id)


class Crash(BaseException):
    """The process dies (kill -9) at this point: nothing after it runs, no except clause helps."""


class CrashAt:
    """Wraps a sender and dies on call `n`: before handing it on, or right after it was accepted."""

    channel = "email"

    def __init__(self, inner, n: int, *, after_send: bool = False) -> None:
        self.inner, self.n, self.after_send, self.calls = inner, n, after_send, 0

    async def send(self, store, row, digest) -> None:
        self.calls += 1
        if self.calls == self.n and not self.after_send:
            raise Crash
        await self.inner.send(store, row, digest)
        if self.calls == self.n:
            raise Crash
