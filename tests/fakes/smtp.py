"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it accepts and can be scripted.

`SmtpServer` wraps aiosmtpd's `Controller` (its own thread and loop), optionally with
STARTTLS or implicit TLS and AUTH. `server.script("bob@example.org", "451 4.3.0 try later")`
makes the next RCPT TO for that address get that reply (one scripted reply per attempt), so
tests can exercise greylisting and bounces over the wire. `self_signed_cert` makes a
certificate for 127.0.0.1 with `cryptography`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import random
import socket
import ssl
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.replies: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        with self.lock:
            queue = self.replies.get(address.lower())
            if queue:
                return queue.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 2.0.0 queued"


class FaultyHandler(RecordingHandler):
    """A RecordingHandler with the faults the fault suite needs.

    - `delay`: seconds before each DATA answer (two senders overlap; a kill lands mid-send);
    - `gate_at`: the n-th message is recorded, then its answer never comes until `release`:
      the client may be killed while it waits (`gated` is set once it is held there); every
      later DATA waits unrecorded behind it, so exactly one message is in flight at a kill;
    - `drop`: chance that a DATA drops the connection before recording (a flapping server).
    """

    def __init__(self, *, delay: float = 0.0, gate_at: int | None = None, drop: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__()
        self.delay, self.gate_at, self.drop = delay, gate_at, drop
        self.gated = threading.Event()
        self.released = threading.Event()
        self.random = random.Random(seed)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        while self.gated.is_set() and not self.released.is_set():
            await asyncio.sleep(0.02)  # behind the gated message: neither recorded nor answered
        if self.drop and self.random.random() < self.drop:
            server.transport.abort()  # the connection drops before the message was taken
            return "421 4.4.2 connection dropped"
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = await super().handle_DATA(server, session, envelope)
        if self.gate_at is not None and len(self.messages) == self.gate_at:
            self.gated.set()
            while not self.released.is_set():
                await asyncio.sleep(0.02)
        return answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """`with SmtpServer() as srv:` → `srv.url` for DIGESTBOT_SMTP_URL, `srv.messages`."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        login: tuple[str, str] | None = None,
        port: int | None = None,
        smtputf8: bool = False,
        handler: RecordingHandler | None = None,
    ) -> None:
        self.handler = handler or RecordingHandler()
        self.login = login
        self.port = port or free_port()
        self.implicit_tls = implicit_tls
        self.starttls = tls_context is not None and not implicit_tls
        kwargs: dict = {"enable_SMTPUTF8": smtputf8}
        if implicit_tls:
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if login is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.starttls)
        self._kwargs = kwargs
        self.controller = self._controller()

    def _controller(self) -> Controller:
        return Controller(self.handler, hostname="127.0.0.1", port=self.port, **self._kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.login is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self.login
        )
        return AuthResult(success=ok, handled=False)

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def script(self, address: str, *replies: str) -> None:
        self.handler.replies.setdefault(address.lower(), []).extend(replies)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        auth = f"{quote(self.login[0])}:{quote(self.login[1])}@" if self.login else ""
        query = "?starttls=true" if self.starttls else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}{query}"

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def restart(self) -> None:
        """Drop every connection and listen again on the same port (a Controller runs once)."""
        self.controller.stop()
        self.controller = self._controller()
        self.controller.start()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HungServer:
    """Accepts TCP connections and never says a word: a wedged relay (no greeting, ever)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.accepted = 0
        self._sock = socket.create_server(("127.0.0.1", self.port), backlog=64)
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            self._held.append(conn)
            self.accepted += 1

    def start(self) -> HungServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._sock.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> HungServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for 127.0.0.1 and localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "digestbot test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path
