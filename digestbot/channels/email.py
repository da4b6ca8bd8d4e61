"""Email delivery: the message itself, SMTP (aiosmtplib) and the `.eml` outbox folder.

Both senders write the same RFC 5322 message, the bytes the stdlib would give for it
(`mime.SmtpPolicy`: CRLF, RFC 2047 encoded Chinese subjects), built directly by
`mime.alternative_bytes`: multipart/alternative with a plain-text and an inlined HTML part,
and the List-* headers (RFC 2369, 2919, 8058) that give mail clients their one-click
unsubscribe button.

Duplicates after a crash (see `digestbot.outbox`): the outbox folder can tell — a file with
this delivery's Message-ID is already there — so it does not write twice. SMTP cannot ask a
server what it accepted, so a row found in `sending` is sent again with the same Message-ID,
which receiving clients use to fold the copies into one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import ssl
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import aiosmtplib

from digestbot import render, signing
from digestbot.breaker import breaker_for
from digestbot.channels.mime import (  # noqa: F401 - flatten and the policies re-exported
    FAST_BASE64,
    SMTP_POLICY,
    SMTP_UTF8_POLICY,
    alternative_bytes,
    flatten,
)
from digestbot.channels.smtp_wire import transmit
from digestbot.config import Settings
from digestbot.errors import ConfigError, PermanentError, ServiceDown, TransientError
from digestbot.models import Digest
from digestbot.outbox import DeliveryRow
from digestbot.render import controls
from digestbot.store import Store

SMTP_TIMEOUT = 30.0


def wire_address(address: str) -> tuple[str, bool]:
    """The address as SMTP and the To header carry it, and whether that needs SMTPUTF8.

    A non-ASCII domain goes out as its IDNA form (`bob@xn--exmple-cua.org`), which every
    server takes; only a non-ASCII local part needs the server's SMTPUTF8 (RFC 6531).
    Headers never put RFC 2047 encoded-words inside an address.
    """
    if address.isascii():
        return address, False
    local, _, domain = address.rpartition("@")
    ascii_domain = domain.encode("idna").decode("ascii")
    return f"{local}@{ascii_domain}", not local.isascii()


def _votes(feedback_link: str | None, lang: str) -> render.EntryControls | None:
    # One signed link a digest (the HMAC); each paper's two URLs are string joins on it.
    return controls.EmailVotes(feedback_link, lang) if feedback_link else None


def message_date() -> str:
    """The Date header's value: now."""
    return format_datetime(datetime.now(UTC), usegmt=True)


class _Sender:
    """What the From address gives a message (parsed once per address, not per message)."""

    def __init__(self, settings: Settings) -> None:
        self.address = settings.mail_address
        self.domain = settings.mail_domain
        self.envelope = wire_address(self.address)[0]
        # A mailto URI is ASCII: IDNA domain, any other non-ASCII percent-encoded (RFC 6068).
        self.mailbox = quote(self.envelope, safe="@")


_SENDERS: dict[str, _Sender] = {}


def _sender_of(settings: Settings) -> _Sender:
    """The From address taken apart, kept by its exact text (a process has one or two)."""
    try:
        return _SENDERS[settings.mail_from]
    except KeyError:
        if len(_SENDERS) >= 16:
            _SENDERS.clear()
        sender = _SENDERS[settings.mail_from] = _Sender(settings)
        return sender


def _message_parts(
    settings: Settings, delivery: DeliveryRow, digest: Digest
) -> tuple[EmailPolicy, list[tuple[str, str]], render.RenderedEmail]:
    """(policy, headers in order, the rendered text and html) of the digest email: what both
    routes below write, with the Message-ID the outbox row chose before the first attempt."""
    sub = digest.subscriber
    domain = _sender_of(settings).domain
    web_unsubscribe = signing.unsubscribe_url(settings, sub.token)
    rendered = render.render_email(
        digest, unsubscribe_url=web_unsubscribe,
        preferences_url=signing.preferences_url(settings, sub),
        pages_url=signing.pages_url(settings.public_url, digest.date),
        controls=_votes(signing.feedback_link(settings, sub), sub.lang),
    )
    to, utf8 = wire_address(sub.address)
    headers = [
        ("From", settings.mail_from),
        ("To", to),
        ("Subject", rendered.subject),
        ("Date", message_date()),
        ("Message-ID", delivery.message_id or make_msgid(domain=domain)),
        ("List-Id", f"arXiv daily digest <digest.{domain}>"),
    ]
    # The web link first: it is the one Gmail's and Yahoo's one-click unsubscribe uses.
    links = [f"<{web_unsubscribe}>"] if web_unsubscribe else []
    links.append(f"<mailto:{_sender_of(settings).mailbox}?subject=unsubscribe-{sub.token}>")
    headers.append(("List-Unsubscribe", ", ".join(links)))
    if web_unsubscribe and web_unsubscribe.startswith("https://"):
        # RFC 8058: only meaningful with an HTTPS link that takes the one-click POST.
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.append(("Auto-Submitted", "auto-generated"))
    return SMTP_UTF8_POLICY if utf8 else SMTP_POLICY, headers, rendered


def build_message(settings: Settings, delivery: DeliveryRow, digest: Digest) -> EmailMessage:
    """The digest email as the stdlib's object: the reference `message_bytes` must equal
    (tests compare them), and what tests read parts from."""
    policy, headers, rendered = _message_parts(settings, delivery, digest)
    msg = EmailMessage(policy=policy)
    for name, value in headers:
        msg[name] = value
    msg.set_content(rendered.text, content_manager=FAST_BASE64)
    # base64, not the quoted-printable the stdlib picks from the CSS lines: Chinese text in QP
    # triples in size (Gmail clips at ~102 KB) and costs more to encode.
    msg.add_alternative(rendered.html, subtype="html", cte="base64", content_manager=FAST_BASE64)
    return msg


def message_bytes(settings: Settings, delivery: DeliveryRow, digest: Digest) -> bytes:
    """`flatten(build_message(…))`'s bytes, written directly (`mime.alternative_bytes`) from
    the rendered UTF-8 (no str in between): what the senders send, at a fraction of the CPU."""
    policy, headers, rendered = _message_parts(settings, delivery, digest)
    return alternative_bytes(policy, headers, rendered.text_bytes, rendered.html_bytes)


# Bytes of an address kept in a file name: file systems allow 255 bytes a name, and an
# address may have 254 characters (UTF-8: several bytes each).
NAME_ADDRESS_BYTES = 80


def file_safe(address: str) -> str:
    """An address as part of a file name: `ada@example.org`, or a cut one with its hash."""
    safe = re.sub(r"[^\w.@+-]", "_", address)
    if len(safe.encode()) <= NAME_ADDRESS_BYTES:
        return safe
    digest = hashlib.sha256(address.encode()).hexdigest()[:12]
    cut = safe.encode()[:NAME_ADDRESS_BYTES - 13].decode(errors="ignore")
    return f"{cut}~{digest}"


def outbox_name(delivery: DeliveryRow, digest: Digest) -> str:
    """`2026-08-13_7_ada@example.org.eml`: sorted by day, findable by address, unique by id."""
    return f"{delivery.digest_date}_{delivery.subscriber_id}_{file_safe(digest.subscriber.address)}.eml"


class OutboxFolderSender:
    """Writes each email as an `.eml` file: the offline default, and a record a person can open."""

    channel = "email"

    def __init__(self, settings: Settings, folder: Path | None = None) -> None:
        self.settings = settings
        self.folder = Path(folder or settings.outbox)

    async def send(self, store: Store, delivery: DeliveryRow, digest: Digest) -> None:
        path = self.folder / outbox_name(delivery, digest)
        if delivery.message_id and _message_id_of(path) == delivery.message_id:
            return  # written before a crash: the file is the proof of delivery
        data = message_bytes(self.settings, delivery, digest)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Temp file + rename: a reader (or a crash) never sees half an email.
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise TransientError(f"cannot write {path}: {exc.strerror or exc}") from None


def _message_id_of(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            found = BytesParser(policy=policy.default).parse(fh, headersonly=True)["Message-ID"]
    except FileNotFoundError:
        return None
    return str(found).strip() if found else None


class SmtpConfig:
    """DIGESTBOT_SMTP_URL taken apart: smtp://user:pass@host:port, smtps://…, ?starttls=true."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.implicit_tls = parts.scheme == "smtps"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        flag = (parse_qs(parts.query).get("starttls") or [""])[-1].lower()
        if flag not in ("", "true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"DIGESTBOT_SMTP_URL: starttls must be true or false, got {flag!r}")
        # Unset: upgrade when the server offers STARTTLS (aiosmtplib's None), so a password
        # is not sent in the clear by default; true insists, false never tries.
        self.starttls: bool | None = None if not flag else flag in ("true", "1", "yes")
        if self.implicit_tls:
            self.starttls = False
        self.port = parts.port or (465 if self.implicit_tls else 587 if self.starttls else 25)

    def __repr__(self) -> str:
        return f"SmtpConfig({'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port})"


# Connections an EmailSender keeps open: while the server takes in one message, the next is
# built, so neither side waits for the other. Relays cap connections per client, so stay
# small: one process is CPU-bound (bench/fanout.py, postfix's smtp-sink, ~216 KB messages:
# 3 and 6 connections within each other's noise), more processes add CPU
# (`deliver_pending(shard=…)`, `bench/fanout.py --processes`).
SMTP_CONNECTIONS = 3


class SmtpUnreachable(ServiceDown):
    """The server did not answer (refused, dropped, timed out): what the breaker counts, and
    no attempt counted against the reader (see `ServiceDown`)."""


class EmailSender:
    """SMTP through aiosmtplib: a few connections kept open for the whole batch, reconnected
    if dropped (`concurrency` tells the outbox how many digests may be in flight).

    Recipient refused with 5xx → `PermanentError('bounced')`; 4xx, connection trouble, a
    rejected sender or message → `TransientError` (the outbox retries with backoff). Errors
    name the host and the server's answer, never the URL or the password. A server that
    stops answering trips the process's breaker for it (`digestbot.breaker`): the rest of the
    batch fails at once with `ServiceDown` instead of waiting out a timeout per reader.
    """

    channel = "email"
    # Digests in flight: twice the connections, so while the server takes in one message
    # the next ones are claimed and built, and a connection never waits for our CPU.
    concurrency = 2 * SMTP_CONNECTIONS
    parallel = True  # several processes may send a batch's email (outbox `shard`)

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> None:
        if settings.smtp_url is None:
            raise ConfigError("EmailSender needs DIGESTBOT_SMTP_URL")
        self.settings = settings
        self.config = SmtpConfig(settings.smtp_url.get())
        self.tls_context = tls_context
        self._idle: list[aiosmtplib.SMTP] = []  # open and not in use, last used at the end
        self.breaker = breaker_for(f"SMTP {self.config.host}:{self.config.port}")
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    def _connection_slots(self) -> asyncio.Semaphore:
        """At most SMTP_CONNECTIONS messages on the wire at once (one a connection); made per
        event loop, as a semaphore is bound to the loop it first waited in."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Semaphore(SMTP_CONNECTIONS), loop
        return self._slots

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self.config
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, username=cfg.username, password=cfg.password,
            use_tls=cfg.implicit_tls, start_tls=cfg.starttls, tls_context=self.tls_context,
            timeout=SMTP_TIMEOUT,
        )
        await smtp.connect()
        return smtp

    def _checkout(self) -> aiosmtplib.SMTP | None:
        """An idle open connection (the most recently used), or None: connect a new one."""
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp
        return None

    def _checkin(self, smtp: aiosmtplib.SMTP) -> None:
        if smtp.is_connected:
            self._idle.append(smtp)

    async def send(self, store: Store, delivery: DeliveryRow, digest: Digest) -> None:
        self.breaker.check()  # a server known dead: no message built for it
        message = message_bytes(self.settings, delivery, digest)
        envelope_from = _sender_of(self.settings).envelope
        rcpt, utf8 = wire_address(digest.subscriber.address)
        # The breaker admits a message once it has a connection: messages built while the
        # first ones time out are not all let through to time out too.
        async with self._connection_slots(), self.breaker.guard(SmtpUnreachable):
            await self._transmit(message, envelope_from, rcpt, utf8)

    async def _transmit(self, message: bytes, envelope_from: str, rcpt: str, utf8: bool) -> None:
        where = f"{self.config.host}:{self.config.port}"
        smtp = self._checkout()
        # A reused connection the server has since closed gets one fresh retry.
        for retry in (smtp is not None, False):
            try:
                smtp = smtp or await self._connect()
                await transmit(smtp, envelope_from, rcpt, message, utf8=utf8, timeout=SMTP_TIMEOUT)
                self._checkin(smtp)
                return
            except aiosmtplib.SMTPNotSupported as exc:
                # Only SMTPUTF8 is asked for: this relay cannot deliver to this address.
                self._checkin(smtp)
                raise PermanentError(f"{where} cannot send to {rcpt}: {exc}", "bounced") from None
            except aiosmtplib.SMTPRecipientRefused as exc:
                self._checkin(smtp)
                answer = f"{where} refused {exc.recipient}: {exc.code} {exc.message}"
                if 500 <= exc.code < 600:
                    raise PermanentError(answer, "bounced") from None
                raise TransientError(answer) from None
            except aiosmtplib.SMTPAuthenticationError as exc:
                await _quit(smtp)
                raise TransientError(
                    f"{where} rejected the login ({exc.code}); check user and password in "
                    "DIGESTBOT_SMTP_URL") from None
            except aiosmtplib.SMTPResponseException as exc:
                # Sender or message refused: our side's problem, never the subscriber's.
                self._checkin(smtp)
                raise TransientError(f"{where}: {exc.code} {exc.message}") from None
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError,
                    aiosmtplib.SMTPTimeoutError, OSError) as exc:
                if smtp is not None:
                    smtp.close()  # a reply we gave up on must not pair with the next command
                smtp = None
                if not retry:
                    raise SmtpUnreachable(f"{where}: {type(exc).__name__}: {exc}",
                                          self.breaker.cooldown, tried=True) from None
            except aiosmtplib.SMTPException as exc:
                # STARTTLS or SMTPUTF8 not offered, and the like: the setup, not the recipient.
                await _quit(smtp)
                raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            await _quit(smtp)


async def _quit(smtp: aiosmtplib.SMTP | None) -> None:
    """Say goodbye if the server still listens; just drop the connection if not."""
    if smtp is not None and smtp.is_connected:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


def make_sender(settings: Settings) -> EmailSender | OutboxFolderSender:
    """SMTP when DIGESTBOT_SMTP_URL is set, else `.eml` files in DIGESTBOT_OUTBOX."""
    return EmailSender(settings) if settings.smtp_url else OutboxFolderSender(settings)


async def send_notice(settings: Settings, *, to: str, subject: str, text: str, html: str) -> None:
    """A one-off transactional email (the signup confirmation), outside the digest outbox.

    Same path as the digests: SMTP when DIGESTBOT_SMTP_URL is set, else an `.eml` file in
    DIGESTBOT_OUTBOX. No retry: the reader is waiting on the page, which tells them to try
    again; any failure is a `TransientError` naming the host, never the URL or password.
    """
    from_addr = wire_address(settings.mail_address)[0]
    to, utf8 = wire_address(to)
    msg = EmailMessage(policy=SMTP_UTF8_POLICY if utf8 else SMTP_POLICY)
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC), usegmt=True)
    msg["Message-ID"] = make_msgid(idstring="notice", domain=settings.mail_domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    data = bytes(msg)
    if settings.smtp_url is None:
        folder = Path(settings.outbox)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = folder / f"notice_{stamp}_{file_safe(to)}.eml"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise TransientError(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    sender = EmailSender(settings)
    where = f"{sender.config.host}:{sender.config.port}"
    smtp = None
    try:
        smtp = await sender._connect()
        await smtp.sendmail(from_addr, [to], data, mail_options=["SMTPUTF8"] if utf8 else [])
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        await _quit(smtp)
