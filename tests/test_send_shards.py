"""`deliver_pending(shard=(k, n))`: n processes split a batch, each row in exactly one share,
and the shares together are the whole batch, each digest accepted once by the server."""

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


def test_shards_split_a_batch_without_overlap_or_gap(store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    readers = [f"reader{i}@example.org" for i in range(7)]
    for address in readers:
        add_subscriber(store, address)
    with SmtpServer() as server:
        settings = load_settings(smtp_url=server.url)
        row_ids = plan(store, settings, DAY, now=NOW)

        async def both():
            return await asyncio.gather(*(
                deliver_pending(store, {"email": EmailSender(settings)}, now=NOW, shard=(k, 3))
                for k in range(3)))

        reports = asyncio.run(both())
        received = Counter(m.rcpt_tos[0] for m in server.messages)
    assert [r.sent for r in reports] == [sum(1 for i in row_ids if i % 3 == k) for k in range(3)]
    assert received == Counter(readers)  # every reader once
    statuses = Counter(r["status"] for r in store.db.query("select status from deliveries"))
    assert statuses == {"sent": 7}
