"""Email over a real SMTP server (aiosmtpd on 127.0.0.1): the wire, TLS, auth, 4xx/5xx, crashes."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from digestbot import subscribers
from digestbot.channels.email import EmailSender, SmtpConfig
from digestbot.config import Settings, load_settings
from digestbot.errors import ConfigError
from digestbot.store import Store
from tests.fakes.digests import DAY, Crash, CrashAt, add_paper, add_subscriber
from tests.fakes.outbox import send
from tests.fakes.smtp import SmtpServer, self_signed_cert

NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script> Tom & Jerry: $\\Delta$-tuning"


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def smtp_settings(server: SmtpServer, **extra) -> Settings:
    return load_settings(smtp_url=server.url, **extra)


def deliveries(store: Store) -> list[dict]:
    return list(store.db.query("select * from deliveries order by id"))


def test_digest_email_on_the_wire(smtp: SmtpServer, store: Store) -> None:
    settings = smtp_settings(smtp, mail_from="速递 <digest@example.org>",
                             public_url="https://digest.example.org/")
    add_paper(store, "2608.00001", 72)
    add_paper(store, "2608.00002", 95, title=HOSTILE)
    add_paper(store, "2608.00003", 59)  # under the threshold
    ada = add_subscriber(store, "ada@example.org")
    report = send(settings, store, now=NOW)
    assert (report.sent, report.failed) == (1, 0)
    [got] = smtp.messages
    assert got.mail_from == "digest@example.org" and got.rcpt_tos == ["ada@example.org"]
    raw_headers = got.data.split(b"\r\n\r\n", 1)[0].decode("ascii")  # 7-bit clean on the wire
    msg = got.message
    unfolded = raw_headers.replace("\r\n ", " ")
    raw_subject = next(line for line in unfolded.split("\r\n") if line.startswith("Subject: "))
    assert "=?utf-8?" in raw_subject  # RFC 2047
    subject = str(make_header(decode_header(raw_subject.removeprefix("Subject: "))))
    assert subject == f"arXiv 每日速递 {DAY} · 后训练 等 2 篇"
    assert str(msg["Subject"]) == subject
    assert msg["From"] == "速递 <digest@example.org>" and msg["To"] == "ada@example.org"
    assert msg["Message-ID"] == deliveries(store)[0]["message_id"]
    assert msg["Date"] and msg["List-Id"] == "arXiv daily digest <digest.example.org>"
    web_link = f"https://digest.example.org/unsubscribe?token={ada.token}"
    mailto = f"mailto:digest@example.org?subject=unsubscribe-{ada.token}"
    # On the wire as Gmail and Yahoo read it: the https link first, folded only between the
    # URLs, never RFC 2047 encoded-words (the raw bytes, not our parser's reading of them).
    assert f"\r\nList-Unsubscribe: <{web_link}>,\r\n <{mailto}>\r\n" in raw_headers
    assert msg["List-Unsubscribe"] == f"<{web_link}>, <{mailto}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    # Chinese HTML as quoted-printable triples in size; base64 keeps it under Gmail's clip.
    assert list(msg.iter_parts())[1]["Content-Transfer-Encoding"] == "base64"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for body in (text, html):
        assert body.index("2608.00002") < body.index("2608.00001")  # score order
        assert "2608.00003" not in body
        assert web_link in body
    assert HOSTILE in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry" in html
    assert "<script>" not in html


def test_without_public_url_only_mailto_and_no_one_click(smtp: SmtpServer, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    send(smtp_settings(smtp), store, now=NOW)
    msg = smtp.messages[0].message
    assert msg["List-Unsubscribe"] == f"<mailto:digestbot@localhost?subject=unsubscribe-{ada.token}>"
    assert msg["List-Unsubscribe-Post"] is None  # RFC 8058 needs an HTTPS link
    assert b"=?" not in smtp.messages[0].data.split(b"List-Unsubscribe:")[1].split(b"\r\n")[0]


def test_plain_http_public_url_gets_no_one_click_header(smtp: SmtpServer, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    send(smtp_settings(smtp, public_url="http://digest.example.org/"), store, now=NOW)
    raw = smtp.messages[0].data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nList-Unsubscribe: <http://digest.example.org/unsubscribe?token=" in raw
    assert b"List-Unsubscribe-Post" not in raw  # RFC 8058: one-click only over https


def test_one_connection_for_a_batch_and_reconnect_after_a_drop(
    smtp: SmtpServer, store: Store
) -> None:
    add_paper(store, "2608.00001", 90)
    for name in ("ada", "bob", "cyd"):
        add_subscriber(store, f"{name}@example.org")
    settings = smtp_settings(smtp)
    sender = EmailSender(settings)

    class DropAfterFirst:
        """Restarts the server after the first message: the reused connection is dead."""

        channel = "email"
        calls = 0

        async def send(self, store, row, digest) -> None:
            await sender.send(store, row, digest)
            self.calls += 1
            if self.calls == 1:
                smtp.restart()
            # One row at a time, so the connection just checked in is the one it used.
            await_peer.append(sender._idle[-1].transport.get_extra_info("sockname"))

    await_peer: list = []
    report = send(settings, store, now=NOW, senders={"email": DropAfterFirst()})
    assert report.sent == 3
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == [
        "ada@example.org", "bob@example.org", "cyd@example.org"]
    # The second message needed a new connection; the third reused it.
    assert await_peer[1] != await_peer[0] and await_peer[2] == await_peer[1]


def test_451_then_success_on_the_next_send(smtp: SmtpServer, store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    smtp.script("ada@example.org", "451 4.7.1 greylisted, try again later")
    settings = smtp_settings(smtp)
    report = send(settings, store, now=NOW)
    [row] = deliveries(store)
    assert (report.failed, row["status"], row["attempts"]) == (1, "failed", 1)
    assert "451" in row["last_error"] and "greylisted" in row["last_error"]
    assert send(settings, store, now=NOW + timedelta(minutes=1)).sent == 0  # backing off
    assert send(settings, store, now=NOW + timedelta(minutes=6)).sent == 1
    assert [m.rcpt_tos for m in smtp.messages] == [["ada@example.org"]]
    assert deliveries(store)[0]["status"] == "sent"
    assert subscribers.get(store, ada.id).status == "active"


def test_550_marks_the_subscriber_bounced_and_others_still_get_theirs(
    smtp: SmtpServer, store: Store
) -> None:
    add_paper(store, "2608.00001", 90)
    gone = add_subscriber(store, "gone@example.org")
    add_subscriber(store, "ada@example.org")
    smtp.script("gone@example.org", "550 5.1.1 no such user")
    report = send(smtp_settings(smtp), store, now=NOW)
    assert (report.sent, report.permanent) == (1, 1)
    assert [m.rcpt_tos for m in smtp.messages] == [["ada@example.org"]]
    bounced = subscribers.get(store, gone.id)
    assert bounced.status == "bounced" and "550 5.1.1 no such user" in bounced.status_reason
    statuses = {r["subscriber_id"]: r["status"] for r in deliveries(store)}
    assert statuses[gone.id] == "failed_permanent"


def test_crash_after_three_of_ten_then_restart_sends_the_other_seven_once(
    smtp: SmtpServer, settings: Settings
) -> None:
    settings = smtp_settings(smtp)
    with Store(settings.db) as store:
        add_paper(store, "2608.00001", 90)
        for i in range(10):
            add_subscriber(store, f"reader{i}@example.org")
        with pytest.raises(Crash):
            send(settings, store, now=NOW, senders={"email": CrashAt(EmailSender(settings), 4)})
    assert len(smtp.messages) == 3
    with Store(settings.db) as store:  # a new process
        report = send(settings, store, now=NOW + timedelta(minutes=1))
        assert (report.planned, report.sent) == (0, 7)
    received = sorted(m.rcpt_tos[0] for m in smtp.messages)
    assert received == sorted(f"reader{i}@example.org" for i in range(10))  # each exactly once


def test_crash_after_the_server_accepted_resends_with_the_same_message_id(
    smtp: SmtpServer, settings: Settings
) -> None:
    settings = smtp_settings(smtp)
    with Store(settings.db) as store:
        add_paper(store, "2608.00001", 90)
        add_subscriber(store, "ada@example.org")
        with pytest.raises(Crash):
            send(settings, store, now=NOW,
                     senders={"email": CrashAt(EmailSender(settings), 1, after_send=True)})
    with Store(settings.db) as store:
        assert send(settings, store, now=NOW).sent == 1
        message_id = deliveries(store)[0]["message_id"]
    # SMTP cannot tell what the server kept: the copy carries the same Message-ID.
    assert [m.message["Message-ID"] for m in smtp.messages] == [message_id, message_id]


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) from a throwaway self-signed certificate."""
    pytest.importorskip("cryptography", reason="cryptography makes the test certificate")
    cert, key = self_signed_cert(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


# aiosmtpd cannot tell that an implicit-TLS session is encrypted, so it warns about AUTH.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
def test_tls_and_login(tls, implicit: bool, store: Store) -> None:
    server_ctx, client_ctx = tls
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    with SmtpServer(tls_context=server_ctx, implicit_tls=implicit, login=("bot", "p@ss w0rd")) as srv:
        settings = load_settings(smtp_url=srv.url)
        assert srv.url.startswith("smtps://" if implicit else "smtp://")
        sender = EmailSender(settings, tls_context=client_ctx)
        assert send(settings, store, now=NOW, senders={"email": sender}).sent == 1
    assert [m.rcpt_tos for m in srv.messages] == [["ada@example.org"]]


def test_wrong_password_is_transient_and_never_shown(tls, store: Store) -> None:
    server_ctx, client_ctx = tls
    add_paper(store, "2608.00001", 90)
    ada = add_subscriber(store, "ada@example.org")
    with SmtpServer(tls_context=server_ctx, login=("bot", "right")) as srv:
        settings = load_settings(smtp_url=srv.url.replace("bot:right", "bot:Wr0ngS3cret"))
        report = send(settings, store, now=NOW,
                          senders={"email": EmailSender(settings, tls_context=client_ctx)})
    [row] = deliveries(store)
    assert report.failed == 1 and row["status"] == "failed"
    assert "rejected the login" in row["last_error"] and "Wr0ngS3cret" not in row["last_error"]
    assert subscribers.get(store, ada.id).status == "active"
    assert srv.messages == []


def test_unreachable_server_is_transient_without_the_password(store: Store, caplog) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "ada@example.org")
    closed = SmtpServer()  # never started: nothing listens on its port
    settings = load_settings(smtp_url=f"smtp://bot:T0pS3cret@127.0.0.1:{closed.port}")
    assert send(settings, store, now=NOW).failed == 1
    [row] = deliveries(store)
    assert f"127.0.0.1:{closed.port}" in row["last_error"]
    assert "T0pS3cret" not in row["last_error"] and "T0pS3cret" not in caplog.text
    assert "T0pS3cret" not in repr(settings) and "T0pS3cret" not in repr(EmailSender(settings).config)


def test_smtp_url_forms() -> None:
    def cfg(url: str) -> SmtpConfig:
        return SmtpConfig(url)

    plain = cfg("smtp://mail.example.org")
    assert (plain.port, plain.implicit_tls, plain.starttls, plain.username) == (25, False, None, None)
    sub = cfg("smtp://u%40x:p%2Fw@mail.example.org?starttls=true")
    assert (sub.port, sub.starttls, sub.username, sub.password) == (587, True, "u@x", "p/w")
    assert (cfg("smtps://mail.example.org").port, cfg("smtps://h").starttls) == (465, False)
    assert cfg("smtp://h:2525?starttls=false").starttls is False
    with pytest.raises(ConfigError, match="starttls must be true or false"):
        cfg("smtp://h?starttls=maybe")
