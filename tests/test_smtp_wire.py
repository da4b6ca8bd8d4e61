"""DATA as `smtp_wire.transmit` sends it (our own bytes, not aiosmtplib's sendmail), asserted on
what a real aiosmtpd server received: dot-stuffing, SIZE, exact bytes, and the server's
refusals at the end of DATA classified as before."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import aiosmtplib
import pytest

from digestbot import signing, subscribers
from digestbot.channels import email
from digestbot.channels.smtp_wire import transmit
from digestbot.config import load_settings
from digestbot.outbox import deliver_row, get_row
from digestbot.store import Store
from tests.fakes.digests import add_paper, add_subscriber
from tests.fakes.outbox import send
from tests.fakes.smtp import RecordingHandler, SmtpServer
from tests.test_email import NOW, deliveries

SECOND = b"Subject: 2\r\n\r\nsecond\r\n"
DOTS = (b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n...three\r\nmid.dle\r\n.\r\n"
        b"last line\r\n")


class SizeAndDataReplies(RecordingHandler):
    """Records MAIL's options; answers DATA's end with a scripted reply per recipient."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_options: list[list[str]] = []
        self.data_replies: dict[str, str] = {}

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        self.mail_options.append(list(mail_options))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        reply = self.data_replies.get(envelope.rcpt_tos[0])
        return reply or await super().handle_DATA(server, session, envelope)


async def _send_raw(port: int, messages: list[bytes]) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
    await smtp.connect()
    for message in messages:
        await transmit(smtp, "digest@example.org", "ada@example.org", message, utf8=False,
                       timeout=10)
    await smtp.quit()


def test_lines_starting_with_a_dot_arrive_as_written_and_size_is_announced() -> None:
    handler = SizeAndDataReplies()
    with SmtpServer(handler=handler) as server:
        # A line of one dot would end DATA early without stuffing; two messages on one
        # connection show the first one ended where it should.
        asyncio.run(_send_raw(server.port, [DOTS, SECOND]))
    assert [m.data for m in server.messages] == [DOTS, SECOND]
    assert handler.mail_options == [[f"SIZE={len(DOTS)}"], [f"SIZE={len(SECOND)}"]]


def test_messages_larger_than_the_socket_takes_at_once_arrive_whole() -> None:
    """Several MB in a row on one connection: the socket takes part of each, asyncio's
    transport keeps the rest (from the memoryview we hand it) and sends it as the server
    reads; every byte arrives, in order, the dot-stuffed lines unstuffed."""
    rng = random.Random(3)
    lines = [bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/.")
                   for _ in range(76)) for _ in range(64)] + [b".", b"..dots"]
    messages = [b"Subject: big %d\r\n\r\n" % n
                + b"".join(rng.choice(lines) + b"\r\n" for _ in range(40_000)) for n in range(3)]
    assert all(len(m) > 3_000_000 and b"\r\n." in m for m in messages)
    with SmtpServer() as server:
        asyncio.run(_send_raw(server.port, messages))
    assert [m.data for m in server.messages] == messages


@pytest.mark.parametrize("reply", ["451 4.3.0 try again later", "550 5.7.1 message refused"])
def test_a_refusal_at_the_end_of_data_is_ours_to_retry_and_the_connection_goes_on(
        store: Store, reply: str) -> None:
    """4xx or 5xx after the message: the sender or the message was refused, never the
    reader's address (not bounced); the envelope is reset and the next reader still gets
    theirs."""
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    add_subscriber(store, "bob@example.org")
    handler = SizeAndDataReplies()
    handler.data_replies["ada@example.org"] = reply
    with SmtpServer(handler=handler) as server:
        report = send(load_settings(smtp_url=server.url), store, now=NOW)
    assert (report.sent, report.failed, report.permanent) == (1, 1, 0)
    assert [m.rcpt_tos for m in server.messages] == [["bob@example.org"]]
    rows = {r["subscriber_id"]: r for r in deliveries(store)}
    assert rows[ada.id]["status"] == "failed" and reply in rows[ada.id]["last_error"]
    assert rows[ada.id]["next_attempt_at"]  # retried later
    assert subscribers.get(store, ada.id).status == "active"


def test_the_server_receives_exactly_the_bytes_we_built(store: Store, monkeypatch) -> None:
    """The whole route, EmailSender through the outbox: the digest's bytes arrive unchanged."""
    add_paper(store, "2608.00001", 90, title=".NET agents: a study")
    ada = add_subscriber(store, "ada@example.org", lang="en")
    monkeypatch.setattr(email, "message_date", lambda: "Thu, 13 Aug 2026 01:00:00 GMT")
    # The signed links' expiry counts from now: sending and rebuilding below must not see
    # different seconds.
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: 1_786_000_000.0))
    with SmtpServer() as server:
        settings = load_settings(smtp_url=server.url, public_url="https://d.example.org/",
                                 secret="k" * 32)
        random.seed(3)  # the MIME boundary: the same draw below
        assert send(settings, store, now=NOW).sent == 1
    [got] = server.messages
    assert got.rcpt_tos == [ada.address]
    row = get_row(store, deliveries(store)[0]["id"])
    seen = []

    class Capture:
        """The digest the outbox rebuilds for this row, as the sender was given it."""

        channel = "email"

        async def send(self, store, delivery, digest) -> None:
            seen.append(digest)

    asyncio.run(deliver_row(store, Capture(), row.id, now=NOW))
    random.seed(3)
    assert got.data == email.message_bytes(settings, row, seen[0])


class RefusesSender(RecordingHandler):
    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        return "553 5.7.1 sender not allowed"


def test_a_refused_sender_is_ours_to_retry_never_the_readers_bounce(store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    with SmtpServer(handler=RefusesSender()) as server:
        report = send(load_settings(smtp_url=server.url), store, now=NOW)
    assert (report.sent, report.failed, report.permanent) == (0, 1, 0)
    assert server.messages == []
    [row] = deliveries(store)
    assert row["status"] == "failed" and "553 5.7.1 sender not allowed" in row["last_error"]
    assert subscribers.get(store, ada.id).status == "active"
