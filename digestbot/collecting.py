"""Fewer garbage collections while a batch fans out (`fewer_collections`).

Planning and sending a day's digests make containers by the hundred thousand a second (rows,
entries, lists of pieces), nearly all freed by reference counting the moment a digest is done.
At CPython's default threshold a young collection runs every 700 of them; one in ten reaches
the middle generation and some reach the oldest, where the day's held rows and rendered
pieces are, each pass walking them all and pushing them out of the CPU's caches. Measured with
`gc.callbacks` on `bench/fanout.py`'s first batch, that is 0.09–0.13 ms of a digest's ~1 ms; at
`BATCH_GEN0` it is 0.04–0.06 ms, with the same peak memory (the few objects in reference
cycles wait a little longer to be freed).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

# Young objects allowed between collections while a batch runs (CPython's default is 700).
BATCH_GEN0 = 10_000


class _Raised:
    """The process's threshold, raised while any batch runs: batches may overlap (planning
    in one thread while another sends), so the first to start raises it and the last to end
    puts back what was there before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._before: tuple[int, int, int] | None = None

    def enter(self) -> None:
        with self._lock:
            if self._running == 0:
                self._before = gc.get_threshold()
                first, *older = self._before
                if first:  # 0: collection is off, leave it off
                    gc.set_threshold(max(first, BATCH_GEN0), *older)
            self._running += 1

    def leave(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0 and self._before is not None:
                gc.set_threshold(*self._before)
                self._before = None


_RAISED = _Raised()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the block with the young generation's threshold at `BATCH_GEN0` (never lowered),
    restoring the process's own when the last overlapping block ends, even on an error."""
    _RAISED.enter()
    try:
        yield
    finally:
        _RAISED.leave()
