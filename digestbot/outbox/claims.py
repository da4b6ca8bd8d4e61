"""Who is sending a row right now: one kernel lock per row in flight, beside the database.

A row in 'sending' is either being sent this very moment or was left behind by a process
that died (kill -9, power loss, a cancelled task). The database alone cannot tell the two
apart without a lease that may expire under a slow but living sender, so the owner holds an
`flock` on `<db>.claims/<row id>.lock` from before it claims the row until after it wrote the
outcome. The kernel drops the lock the moment its process dies, so:

- whoever gets the lock may look at the row: its owner, if any, is gone;
- whoever cannot get it skips the row: its owner is alive and sending it.

The claim itself is still a compare-and-set in the database (`rows.claim`), so two processes
that read the same row as 'pending' never both send it, lock or no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from digestbot.store import Store


def claims_dir(store: Store) -> Path:
    """`<db>.claims/`; an in-memory database lives in one process, so any private folder does."""
    if store.path == ":memory:":
        return Path(tempfile.gettempdir()) / f"digestbot-claims-{os.getpid()}-{id(store)}"
    return Path(f"{store.path}.claims")


@contextlib.contextmanager
def row_lock(store: Store, row_id: int) -> Iterator[bool]:
    """Hold row `row_id`'s lock for the block (True), or yield False: another owner has it.

    Never waits: a row someone else is sending is simply not ours this round. The file is
    removed before the lock is let go, and a lock taken on a file that was removed meanwhile
    (another owner finished between our open and our flock) counts as not had.
    """
    path = os.path.join(claims_dir(store), f"{row_id}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # the folder's first lock (made once, not at every row)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        if not _same_file(fd, path):
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)  # closing drops the lock


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
