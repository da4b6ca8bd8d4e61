"""One message over an open aiosmtplib connection, without aiosmtplib's passes over its bytes.

`EmailSender` (channels.email) builds each digest's bytes CRLF-clean (`mime`) and sends them
here on a connection it holds alone for the message.
"""

from __future__ import annotations

import contextlib
import re

import aiosmtplib

from digestbot.channels.mime import dot_stuffed


async def transmit(smtp: aiosmtplib.SMTP, sender: str, rcpt: str, message: bytes, *,
                   utf8: bool, timeout: float) -> None:
    """MAIL, RCPT and DATA for one message, on a connection this task holds alone.

    What `SMTP.sendmail` does, minus its three regex passes over the whole message (for
    SIZE, for line endings, for dot-stuffing: ~5 ms of CPU a 240 KB digest, a sixth of what a
    message cost us): our bytes end every line in CRLF by construction (`mime`), so SIZE is
    their length and dot-stuffing one `bytes.replace`. The commands go through aiosmtplib's
    public calls; only the message itself is written to the protocol and its reply read
    there, as `execute_data_command` does, with nothing between the write and the read for
    a stray reply to slip into (asyncio runs no other callback without an await). Errors
    are aiosmtplib's own, raised as `sendmail` raises them, so `EmailSender` classifies them
    as before; a refusal resets the envelope (RSET) as `sendmail` does.
    """
    if smtp.is_ehlo_or_helo_needed:
        await greet(smtp)
    if utf8 and not smtp.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    options = ["SMTPUTF8"] if utf8 else []
    if smtp.supports_extension("size"):
        options.insert(0, f"size={len(message)}")  # RFC 1870: octets before dot-stuffing
    encoding = "utf-8" if utf8 else "ascii"
    try:
        await _envelope(smtp, sender, rcpt, options, encoding)
        start = await smtp.execute_command(b"DATA")
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            # A memoryview: what the socket does not take at once, asyncio's transport keeps
            # as `data[n:]` — a copy of the rest of a bytes object (~150 KB of a digest), of a
            # memoryview none — and then copies into its buffer anyway.
            protocol.write(memoryview(dot_stuffed(message)))
            protocol.write(b".\r\n")
            reply = await protocol.read_response(timeout=timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            smtp.close()  # as `SMTP.data` does: a reply given up on must not pair with the next
            raise
        if reply.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    except aiosmtplib.SMTPResponseException:
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await smtp.rset()
        raise


# An address parseaddr would give back unchanged: no display name, comment, quote or route.
_BARE = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


async def _envelope(smtp: aiosmtplib.SMTP, sender: str, rcpt: str, options: list[str],
                    encoding: str) -> None:
    """MAIL FROM and RCPT TO as `smtp.mail` and `smtp.rcpt` send them, raising what they
    raise; for the bare addresses we send they skip `email.utils.parseaddr` (a tenth of the
    client's CPU a message), anything else goes through them."""
    if not (_BARE.fullmatch(sender) and _BARE.fullmatch(rcpt)):
        await smtp.mail(sender, options=options, encoding=encoding)
        await smtp.rcpt(rcpt, encoding=encoding)
        return
    reply = await smtp.execute_command(
        b"MAIL", b"FROM:<" + sender.encode(encoding) + b">",
        *(option.encode("ascii") for option in options))
    if reply.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    reply = await smtp.execute_command(b"RCPT", b"TO:<" + rcpt.encode(encoding) + b">")
    if reply.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, rcpt)


async def greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server that knows no EHLO (as aiosmtplib does before a MAIL)."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()
