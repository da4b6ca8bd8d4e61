"""Readers of one batch share a paper's entry only when it shows them the same: a library's
reason (`与你的文库相近: <title>`) is the reader's own (issue 16 on the fan-out path)."""

from __future__ import annotations

from pathlib import Path

from digestbot import digest, render, subscribers
from digestbot.cli import main
from digestbot.outbox import DeliveryHistory
from digestbot.store import Store
from tests.conftest import needs_shared
from tests.test_digest import make_sub
from tests.test_library import DAY, KEPT, day  # noqa: F401  (the fixture)


@needs_shared
def test_a_batch_shares_an_entry_only_between_readers_with_the_same_reason(
        store: Store, day, tmp_path: Path) -> None:  # noqa: F811
    first, ris = day
    twin = make_sub(store, "twin@example.org")
    other = make_sub(store, "other@example.org")
    lines = ris.read_text(encoding="utf-8").split("\n\n")
    one = tmp_path / "one.ris"
    one.write_text(next(b for b in lines if KEPT[0] in b) + "\n\n", encoding="utf-8")
    for sub, path in ((first, ris), (twin, ris), (other, one)):
        assert main(["sub", "library", str(sub.id), "--file", str(path)]) == 0
    # A low threshold brings the near papers, explained by the one paper that library has.
    assert main(["sub", "library", str(other.id), "--threshold", "30"]) == 0
    batch = digest.Library(store)
    got = {sub.id: {e.paper.id: e for e in digest.select(
        store, subscribers.get(store, sub.id), DAY, history=DeliveryHistory(store),
        library=batch).entries} for sub in (first, twin, other)}
    # The same library gives the same reasons: one entry object for both readers.
    assert got[first.id].keys() == got[twin.id].keys()
    assert all(got[first.id][pid] is got[twin.id][pid] for pid in got[first.id])
    common = got[first.id].keys() & got[other.id].keys()
    differ = [pid for pid in common if got[first.id][pid].hits != got[other.id][pid].hits]
    assert differ, "the two libraries should explain some shared paper differently"
    for pid in differ:
        assert got[first.id][pid] is not got[other.id][pid]
    # Each reader's email shows their own reason for it.
    for sub in (first, other):
        entries = got[sub.id]
        d = digest.select(store, subscribers.get(store, sub.id), DAY,
                          history=DeliveryHistory(store), library=batch)
        email = render.render_email(d)
        for pid in differ:
            reason = entries[pid].hits[0].reason
            assert reason in email.text and reason in email.html
