"""What one delivery run shares among its rows: the day's papers and readers, read once, and
the writer that makes claims and sent marks durable.

A claim and a sent mark are each a write that must be on disk before the run goes on (the
message must not go out unclaimed; a row must not look unsent once the server took it).
A synchronous commit costs about as much CPU as building half a message (bench/fanout.py:
~1 ms of the ~5 ms a message costs, two commits a message), so a run that sends many rows
in parallel (`claim_ahead`) claims them a few at a time, one commit each, and the sent
marks of the rows finished meanwhile ride along in the same commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from digestbot import digest as digests
from digestbot import subscribers
from digestbot.outbox.rows import DeliveryRow, claim, iso, update
from digestbot.store import Store, StoreThread

# `late:<announcement date>` in meta: that day's digests come late because of an incident
# (written by `status.alerts` when the evening's fetch incident opens).
LATE_KEY = "late:"

# Rows claimed in one commit (`Batch.claim_rows`). Sent marks ride along with a claim's
# commit, or get one of their own once MARKS_WAITING wait or the first has waited
# MARK_DELAY_S: a process killed meanwhile leaves those rows 'sending', and the next run
# sends them again with the same Message-ID (as after a kill between the server's 250 and
# the commit of its mark), so at most a few more messages than those in flight.
CLAIM_AHEAD = 8
MARKS_WAITING = 3
MARK_DELAY_S = 0.05

T = TypeVar("T")



def sent(now: datetime) -> dict[str, Any]:
    """A row's columns once the far side accepted it at `now`."""
    return {"status": "sent", "sent_at": iso(now), "last_error": None, "next_attempt_at": None}


class Batch:
    """What a delivery run reads once for all its rows: the day's papers and scores (the
    digests share them), the active readers, and each day's late note. A reader who leaves
    meanwhile gets nothing all the same: the claim checks they are still active."""

    def __init__(self, store: Store, others: set[int]) -> None:
        self.store = store
        self.others = others  # rows of other shares: taken only while still as read
        self.library = digests.Library(store)
        self.readers = {s.id: s for s in subscribers.list_all(store, ("active",))}
        self._late: dict[str, str] = {}
        # Writes wait for the disk (synchronous FULL): in a thread of their own, the loop
        # builds the next message meanwhile. An in-memory database has no second
        # connection: written here.
        self._writer = StoreThread(store.path) if store.path != ":memory:" else None
        # Sent marks not yet committed: (row id, when), and the row locks to let go of once
        # they are (a lock let go of earlier would let another process take the row over).
        self._marks: list[tuple[int, datetime]] = []
        self._held: list[contextlib.ExitStack] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None  # a timer's commit that failed

    @property
    def claim_ahead(self) -> bool:
        """Whether claims and sent marks may be grouped (a writer thread to group them on)."""
        return self._writer is not None

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(store, *args, **kwargs)`, a write, on the batch's writer thread. Shielded: a
        cancelled send still waits for nothing, and a write begun lands (`close` waits)."""
        if self._writer is None:
            return fn(self.store, *args, **kwargs)
        return await asyncio.shield(self._writer.run(fn, *args, **kwargs))

    async def claim_rows(self, rows: Sequence[DeliveryRow], now: datetime) -> set[int]:
        """Claim `rows` ('sending', one attempt more, reader still active) in one commit with
        the sent marks waiting for one; the ids of the rows won (`rows.claim` for each)."""
        marks, held = self._take_marks()
        return await self._commit(rows, now, marks, held)

    def mark_sent(self, row_id: int, now: datetime, lock: contextlib.ExitStack) -> None:
        """Row `row_id` was accepted: marked sent with the next commit (a claim's, else one
        within MARK_DELAY_S); its lock is let go of once that commit is done."""
        self._marks.append((row_id, now))
        self._held.append(lock)
        if len(self._marks) >= MARKS_WAITING:
            self._flush_soon()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(MARK_DELAY_S, self._flush_soon)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        task = asyncio.ensure_future(self._commit_marks())
        self._flushing.add(task)  # held: a task nobody refers to may be collected mid-way
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failure = self._failure or task.exception()

    async def flush(self) -> None:
        """Commit the sent marks waiting, and wait for those begun before (the timer's)."""
        await self._commit_marks()
        await asyncio.gather(*self._flushing, return_exceptions=True)
        if self._failure is not None:
            raise self._failure  # those rows stay 'sending': the next run takes them over

    async def _commit_marks(self) -> None:
        """Commit the sent marks waiting, if any, and let go of their locks."""
        marks, held = self._take_marks()
        if marks:
            await self._commit((), marks[0][1], marks, held)

    async def _commit(self, rows: Sequence[DeliveryRow], now: datetime,
                      marks: list[tuple[int, datetime]], held: list[contextlib.ExitStack],
                      ) -> set[int]:
        """Claims and marks in one commit on the writer; the marked rows' locks are let go
        of once it is done, even if our caller is cancelled meanwhile (never before: another
        process would take a row still 'sending' on disk over, and send it again)."""
        if self._writer is None:
            try:
                return _claim_and_mark(self.store, rows, now, marks)
            finally:
                _let_go(held)
        done = asyncio.ensure_future(self._writer.run(_claim_and_mark, rows, now, marks))
        done.add_done_callback(lambda _: _let_go(held))
        return await asyncio.shield(done)

    def _take_marks(self) -> tuple[list[tuple[int, datetime]], list[contextlib.ExitStack]]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        marks, self._marks = self._marks, []
        held, self._held = self._held, []
        return marks, held

    async def aclose(self) -> None:
        """Commit the sent marks waiting (a cancelled run's too: the commits are shielded,
        and awaited here), let go of their locks, stop the writer."""
        try:
            await self._commit_marks()
            await asyncio.gather(*self._flushing, return_exceptions=True)
        finally:
            self.close()

    def close(self) -> None:
        """`aclose` where nothing can be awaited any more: what is still waiting is
        committed on the writer thread, waited for here."""
        marks, held = self._take_marks()
        try:
            if marks:
                if self._writer is None:
                    _claim_and_mark(self.store, (), marks[0][1], marks)
                else:
                    self._writer.call(_claim_and_mark, (), marks[0][1], marks)
        finally:
            _let_go(held)
            if self._writer is not None:
                self._writer.close()

    def late(self, date: str) -> str:
        if date not in self._late:
            self._late[date] = self.store.get_meta(LATE_KEY + date) or ""
        return self._late[date]


def _claim_and_mark(store: Store, rows: Sequence[DeliveryRow], now: datetime,
                    marks: Sequence[tuple[int, datetime]]) -> set[int]:
    with store.db.atomic():
        for row_id, when in marks:
            update(store, row_id, when, **sent(when))
        return {row.id for row in rows if claim_to_send(store, row, now)}


def claim_to_send(store: Store, row: DeliveryRow, now: datetime) -> bool:
    """`rows.claim` of `row` for a send: 'sending', only while its reader is active, with one
    attempt more — counted before the attempt, so a row that crashes the process every time
    still runs out of attempts instead of looping forever."""
    return claim(store, row, now, status="sending", attempts=row.attempts + 1,
                 reader_active=True)


def _let_go(held: list[contextlib.ExitStack]) -> None:
    for lock in held:
        lock.close()
