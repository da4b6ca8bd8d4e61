"""`deliver_pending(shard=(k, n))`: n processes split a batch, each taking its own share first
and then helping with the others' rows still waiting; together they send the whole batch,
each digest accepted once by the server."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from digestbot.channels.email import EmailSender
from digestbot.config import load_settings
from digestbot.outbox import deliver_pending, plan
from digestbot.store import Store
from tests.fakes.digests import DAY, add_paper, add_subscriber
from tests.fakes.smtp import SmtpServer

NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)


def readers_of_one_paper(store: Store, n: int) -> list[str]:
    add_paper(store, "2608.00001", 90)
    readers = [f"reader{i}@example.org" for i in range(n)]
    for address in readers:
        add_subscriber(store, address)
    return readers


def test_shards_split_a_batch_without_overlap_or_gap(store: Store) -> None:
    readers = readers_of_one_paper(store, 7)
    with SmtpServer() as server:
        settings = load_settings(smtp_url=server.url)
        row_ids = plan(store, settings, DAY, now=NOW)

        async def both():
            return await asyncio.gather(*(
                deliver_pending(store, {"email": EmailSender(settings)}, now=NOW, shard=(k, 3))
                for k in range(3)))

        reports = asyncio.run(both())
        received = Counter(m.rcpt_tos[0] for m in server.messages)
    assert sum(r.sent for r in reports) == len(row_ids) == 7
    assert received == Counter(readers)  # every reader once
    statuses = Counter(r["status"] for r in store.db.query("select status from deliveries"))
    assert statuses == {"sent": 7}


def test_a_share_whose_peers_never_come_sends_their_rows_too(store: Store) -> None:
    """A worker that is slow to start (or never does) leaves its share to the others: the
    batch is not held up by its slowest process."""
    readers = readers_of_one_paper(store, 6)
    with SmtpServer() as server:
        settings = load_settings(smtp_url=server.url)
        row_ids = plan(store, settings, DAY, now=NOW)
        first = asyncio.run(deliver_pending(store, {"email": EmailSender(settings)}, now=NOW,
                                            shard=(0, 2)))
        # The peer comes late: nothing is left for it, and it sends nothing twice.
        late = asyncio.run(deliver_pending(store, {"email": EmailSender(settings)}, now=NOW,
                                           shard=(1, 2)))
        received = Counter(m.rcpt_tos[0] for m in server.messages)
    assert (first.sent, late.sent) == (len(row_ids), 0)
    assert received == Counter(readers)
