"""Garbage collection while a batch fans out: raised for planning and sending, put back after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from digestbot import digest
from digestbot.collecting import BATCH_GEN0, fewer_collections
from digestbot.config import Settings
from digestbot.outbox import deliver_pending, plan
from digestbot.store import Store
from tests.fakes.digests import DAY, add_paper, add_subscriber
from tests.test_delivery import NOW, Scripted


@pytest.fixture(autouse=True)
def default_threshold() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_raised_inside_and_put_back_after_even_on_an_error() -> None:
    with fewer_collections():
        assert gc.get_threshold() == (BATCH_GEN0, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    with pytest.raises(ZeroDivisionError), fewer_collections():
        1 / 0  # noqa: B018
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_or_collection_off_is_left_as_it_is() -> None:
    gc.set_threshold(50_000, 5, 5)
    with fewer_collections():
        assert gc.get_threshold() == (50_000, 5, 5)
    gc.set_threshold(0, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)


def test_overlapping_batches_put_it_back_when_the_last_ends() -> None:
    """Planning in one thread while another sends: the first to end must not lower it under
    the other, and the last to end puts back the process's own."""
    entered, first_done, second_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def second() -> None:
        with fewer_collections():
            entered.set()
            first_done.wait(5)
            seen.append(gc.get_threshold())
        second_done.set()

    with fewer_collections():
        worker = threading.Thread(target=second)
        worker.start()
        assert entered.wait(5)
    first_done.set()
    assert second_done.wait(5)
    worker.join(5)
    assert seen == [(BATCH_GEN0, 10, 10)]
    assert gc.get_threshold() == (700, 10, 10)


async def test_planning_and_sending_run_with_fewer_collections(
        settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    during: list[tuple[str, int]] = []
    select = digest.select

    def watched_select(*args, **kwargs):
        during.append(("select", gc.get_threshold()[0]))
        return select(*args, **kwargs)

    monkeypatch.setattr(digest, "select", watched_select)
    assert plan(store, settings, DAY, now=NOW)

    class Watched(Scripted):
        async def send(self, store, row, digest_) -> None:
            during.append(("send", gc.get_threshold()[0]))
            await super().send(store, row, digest_)

    sender = Watched()
    report = await deliver_pending(store, {"email": sender}, now=NOW)
    assert report.sent == 1 and sender.sent
    assert during == [("select", BATCH_GEN0), ("send", BATCH_GEN0)]
    assert gc.get_threshold() == (700, 10, 10)
