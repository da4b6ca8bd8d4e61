"""EmailSender keeps a few SMTP connections busy at once: each digest still goes exactly once,
a refusal stays with its own row, and the connections are reused across the batch."""

from __future__ import annotations

from collections import Counter

from digestbot.channels import email
from digestbot.store import Store
from tests.fakes.digests import add_paper, add_subscriber
from tests.fakes.outbox import send
from tests.fakes.smtp import SmtpServer
from tests.test_email import NOW, deliveries, smtp, smtp_settings  # noqa: F401 - fixture


def test_a_batch_over_several_connections_sends_each_digest_once(
    smtp: SmtpServer, store: Store, monkeypatch  # noqa: F811
) -> None:
    add_paper(store, "2608.00001", 90)
    readers = [f"reader{i}@example.org" for i in range(9)]
    for address in readers:
        add_subscriber(store, address)
    smtp.script("reader4@example.org", "451 4.7.1 greylisted, try again later")
    connects = 0
    connect = email.EmailSender._connect

    async def counting_connect(self):
        nonlocal connects
        connects += 1
        return await connect(self)

    monkeypatch.setattr(email.EmailSender, "_connect", counting_connect)
    report = send(smtp_settings(smtp), store, now=NOW)
    assert (report.sent, report.failed) == (8, 1)
    received = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert received == Counter(a for a in readers if a != "reader4@example.org")
    statuses = Counter(r["status"] for r in deliveries(store))
    assert statuses == {"sent": 8, "failed": 1}
    assert 1 < connects <= email.SMTP_CONNECTIONS  # in flight together, then reused
