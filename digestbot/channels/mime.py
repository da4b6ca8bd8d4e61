"""The digest email's bytes: the stdlib's MIME, and the same bytes built directly.

`flatten` and `FAST_BASE64` are the stdlib's route (an `EmailMessage`, then its generator)
with its two slow loops done in one go. `alternative_bytes` skips the object model: it
writes the headers as the policy folds them and each part, taken as the UTF-8 bytes the
renderer made, encoded in a few C calls (pybase64, numpy), the very bytes the stdlib route
gives (tests compare them across languages, header shapes and body encodings). CPU per
message is what limits how many messages a second one process sends: the stdlib route costs
~10 ms a 330 KB digest (every header parsed into an object, the whole body searched for the
boundary by a regex), this one ~0.2 ms a 216 KB digest (bench/fanout's), mostly copies.
"""

from __future__ import annotations

import functools
import io
import random
import re
import sys
from collections.abc import Sequence
from email import quoprimime
from email.contentmanager import ContentManager, raw_data_manager
from email.generator import BytesGenerator
from email.header import Header
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any

import numpy as np
import pybase64


class _Generator(BytesGenerator):
    """`BytesGenerator`, writing a body's lines in one go instead of two writes per line.

    A 100 KB digest is some 2,500 encoded lines, and the per-line writes were a quarter of the
    time it takes to send one. The bytes are the same: every line ending becomes the policy's.
    """

    def _write_lines(self, lines: str) -> None:
        # What the stdlib's NLCRE split does (CRLF, then lone CR, then LF), as plain replaces.
        lines = lines.replace("\r\n", "\n").replace("\r", "\n")
        self.write(lines.replace("\n", self._NL))


def flatten(msg: EmailMessage) -> bytes:
    """The message's bytes on the wire, as `bytes(msg)` gives them, only faster."""
    out = io.BytesIO()
    _Generator(out, mangle_from_=False, policy=msg.policy).flatten(msg)
    return out.getvalue()


def _base64_text(msg: EmailMessage, text: str, subtype: str = "plain", cte: str | None = None,
                 **params: Any) -> None:
    """`set_content` for a str, with base64 encoded in one go rather than the stdlib's Python
    loop over 57-byte chunks (a third of our CPU per message); the same headers and bytes."""
    if cte is None and _stdlib_picks_base64(msg.policy, text):
        cte = "base64"
    if cte != "base64":
        raw_data_manager.set_content(msg, text, subtype, cte=cte, **params)
        return
    raw_data_manager.set_content(msg, "", subtype, cte=cte, **params)  # the headers
    linesep = msg.policy.linesep.encode("ascii")
    body = pybase64.b64encode(linesep.join(text.encode("utf-8").splitlines()) + linesep
                              ).decode("ascii")
    width = msg.policy.max_line_length // 4 * 4  # 57 bytes a line, as the stdlib cuts them
    msg.set_payload("".join(f"{body[i:i + width]}\n" for i in range(0, len(body), width)))


def _stdlib_picks_base64(policy: Any, text: str) -> bool:
    """Whether `set_content` left to choose would take base64, by its own rule
    (`email.contentmanager._encode_text`): lines too long for 7/8bit, and the first ten
    shorter in base64 than in quoted-printable. Otherwise the stdlib chooses itself."""
    lines = text.encode("utf-8").splitlines()
    if max(map(len, lines), default=0) <= policy.max_line_length:
        return False
    return _base64_is_shorter(policy, lines)


# Bytes quoted-printable may write as themselves (blanks only inside a line, and line ends
# become its own); every other byte takes three characters (`=XX`).
_QP_LITERAL = bytes(c for c in range(33, 127) if c != ord("=")) + b" \t\r\n"


def _base64_is_shorter(policy: Any, lines: list[bytes]) -> bool:
    """The stdlib's sniff: its first ten lines in base64 shorter than in quoted-printable.

    The QP encoder is Python, a few ms on a digest's long lines; a lower bound of its length
    (each byte it must escape takes three characters, line ends none) already settles it for
    any text that is mostly not ASCII (Chinese), so the encoder runs only when that is close.
    """
    linesep = policy.linesep.encode("ascii")
    sniff = linesep.join(lines[:10]) + linesep
    base64_length = 4 * -(-len(sniff) // 3) + 1  # len(binascii.b2a_base64(sniff)): its newline
    at_least = len(sniff) - 2 * sniff.count(b"\r\n") + 2 * len(sniff.translate(None, _QP_LITERAL))
    if at_least > base64_length:
        return True
    qp = quoprimime.body_encode(sniff.decode("latin-1"), policy.max_line_length)
    return len(qp) > base64_length


FAST_BASE64 = ContentManager()
FAST_BASE64.add_set_handler(str, _base64_text)


class SmtpPolicy(EmailPolicy):
    """`policy.SMTP`, except for two headers the modern folder gets wrong on the wire.

    - A non-ASCII Subject is folded by `email.header.Header`: the modern folder drops the
      space at a fold between two encoded-words (CPython issue 144156 and friends), so
      "后训练 等 22 篇" arrived as "后训练等 22 篇"; the legacy encoder keeps them.
    - List-Unsubscribe is written as it is, `<https://…>,<CRLF> <mailto:…>`, folded only
      between its URLs: a URL longer than a line made the modern folder emit RFC 2047
      encoded-words (`=?utf-8?q?=3Chttps…`), which Gmail and Yahoo cannot read as a one-click
      unsubscribe. RFC 5322 allows 998 characters a line; our URLs are far shorter.
    """

    def own_fold(self, name: str, value: str) -> str | None:
        """The header line as we write it, or None: the modern folder's."""
        if name.lower() == "list-unsubscribe":
            urls = [part.strip() for part in str(value).split(",")]
            return f"{name}: {(',' + self.linesep + ' ').join(urls)}{self.linesep}"
        if name.lower() != "subject" or str(value).isascii():
            return None
        folded = Header(str(value), "utf-8", header_name=name).encode(linesep=self.linesep)
        return f"{name}: {folded}{self.linesep}"

    def fold(self, name: str, value: str) -> str:
        return self.own_fold(name, value) or super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        own = self.own_fold(name, value)
        return own.encode("ascii") if own else super().fold_binary(name, value)


SMTP_POLICY = SmtpPolicy(linesep="\r\n")
# For a recipient whose local part is not ASCII: raw UTF-8 headers, sent with SMTPUTF8.
SMTP_UTF8_POLICY = SMTP_POLICY.clone(utf8=True)


# Header values the policy writes back exactly as given when they fit on one line: plain
# ASCII without runs of blanks for unstructured headers, a dot-atom address for To and a
# simple <id@domain> for Message-ID. Anything else goes through the policy's own folding.
_SIMPLE_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE = {
    "subject": _SIMPLE_TEXT,
    "to": re.compile(f"{_ATOM}@{_DOMAIN}"),
    "message-id": re.compile(f"<{_ATOM}@{_DOMAIN}>"),
}


def header_line(policy: EmailPolicy, name: str, value: str) -> bytes:
    """`Name: value` folded as `BytesGenerator` writes a header `msg[name] = value` set."""
    own = (None if not isinstance(policy, SmtpPolicy) else _subject_line(policy, name, value)
           if name == "Subject" else policy.own_fold(name, value))
    if own is not None:
        return own.encode("ascii")  # what fold_binary would write, without parsing first
    simple = _SIMPLE.get(name.lower())
    if (simple is not None and len(name) + 2 + len(value) <= policy.max_line_length
            and simple.fullmatch(value)):
        return f"{name}: {value}{policy.linesep}".encode("ascii")
    if name.lower() in _SIMPLE:
        return _policy_line(policy, name, value)  # per reader: caching would only fill memory
    return _cached_line(policy, name, value)


# A Subject ("后训练 等 22 篇 · 2026-08-13") is the same for many readers, and its
# `email.header` encoding costs ~50 µs: kept by its exact text, room for a day's (bench/fanout:
# 10,000 readers of 30 topics got ~2,500 distinct subjects; 1,024 missed half of them).
@functools.lru_cache(maxsize=8192)
def _subject_line(policy: SmtpPolicy, name: str, value: str) -> str | None:
    return policy.own_fold(name, value)


def _policy_line(policy: EmailPolicy, name: str, value: str) -> bytes:
    return policy.fold_binary(*policy.header_store_parse(name, value))


# From, List-Id and the like are the same for every reader; Date changes once a second.
_cached_line = functools.lru_cache(maxsize=64)(_policy_line)


def _boundary(bodies: Sequence[bytes]) -> str:
    """What `Generator._make_boundary` picks: a random token, suffixed while a body has a
    line that equals it (base64 never can: none of its lines starts with '--')."""
    boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
    candidate, counter = boundary, 0
    while any(_has_line(body, candidate) for body in bodies):
        candidate, counter = f"{boundary}.{counter}", counter + 1
    return candidate


def _has_line(body: bytes, boundary: str) -> bool:
    # The stdlib's `^--b(--)?$` misses such a line when it ends in CRLF, as ours all do; a
    # match here is a chance of 1 in 10^19 a message, so being stricter changes no bytes.
    marker = b"--" + boundary.encode("ascii")
    return marker in body and re.search(
        b"^" + re.escape(marker) + b"(--)?\r?$", body, re.MULTILINE) is not None


def _text_body(policy: EmailPolicy, data: bytes, cte: str | None) -> tuple[str, bytes | bytearray]:
    """(Content-Transfer-Encoding, encoded body ending in the policy's linesep) of UTF-8
    `data`, chosen and encoded as `set_content` does for its str
    (`email.contentmanager._encode_text`)."""
    linesep = policy.linesep.encode("ascii")
    if cte is None:
        cte = _text_cte(policy, data)
    if cte == "base64":
        # pybase64: the same RFC 4648 bytes as binascii, ~30x faster (SIMD).
        return cte, _cut(pybase64.b64encode(_lines_ended(data, linesep)),
                         policy.max_line_length // 4 * 4, linesep)
    if cte == "quoted-printable":
        # The stdlib's own encoder (Python, slow): the English text part of a digest whose
        # lines run long; for ≤ 10 lines `set_content` encodes them joined by linesep.
        lines = data.splitlines()
        eol = linesep if len(lines) <= 10 else b"\n"
        source = eol.join(lines) + eol
        encoded = quoprimime.body_encode(source.decode("latin-1"), policy.max_line_length)
        return cte, _crlf(encoded.encode("ascii"), linesep)
    if cte not in ("7bit", "8bit"):
        raise ValueError(f"unknown Content-Transfer-Encoding {cte!r}")
    return cte, _lines_ended(data, linesep)


def _text_cte(policy: EmailPolicy, data: bytes) -> str:
    """What `set_content` left to choose picks: 7bit (ASCII) or 8bit (if the policy allows it)
    when no line is longer than the policy's limit, else base64 or quoted-printable by the
    first ten lines — decided without splitting the whole text into lines."""
    if _lines_fit(data, policy.max_line_length):
        if data.isascii():
            return "7bit"
        if policy.cte_type == "8bit":
            return "8bit"
    return "base64" if _base64_is_shorter(policy, _first_lines(data, 10)) else "quoted-printable"


def _lines_fit(data: bytes, limit: int) -> bool:
    """`max(map(len, data.splitlines()), default=0) <= limit`, for the usual LF-only text
    without splitting it: a digest's text has a long line near its start (the header, an
    abstract), found by a regex over the first KB (~2 µs; a regex over all of a text of short
    lines would take ~1 ms), else the gaps between its LFs measured in numpy (~50 µs)."""
    if len(data) <= limit:
        return True
    if b"\r" in data:
        return max(map(len, data.splitlines())) <= limit
    if _long_line(limit).search(data, 0, _PREFIX) is not None:
        return False
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    if not ends.size:
        return False  # one line, longer than the limit
    # The first line, those between two LFs (their gap less one), and the last (if any).
    return bool(ends[0] <= limit and len(data) - 1 - ends[-1] <= limit
                and (ends.size == 1 or np.diff(ends).max() <= limit + 1))


# How much of a text the regex looks at for a long line (at worst ~12 µs of its scan).
_PREFIX = 1024


@functools.lru_cache(maxsize=8)
def _long_line(limit: int) -> re.Pattern[bytes]:
    """A line (LF-ended; the caller has ruled out CR) longer than `limit`: anchored at line
    starts, so the scan tries each line once instead of every position in it."""
    return re.compile(b"^[^\n]{%d}" % (limit + 1), re.MULTILINE)


def _first_lines(data: bytes, count: int) -> list[bytes]:
    """`data.splitlines()[:count]`, splitting only as far as those lines go."""
    if b"\r" in data:
        return data.splitlines()[:count]
    end = -1
    for _ in range(count):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return data.splitlines()
    # Up to and with the count-th LF: exactly `count` lines, an empty last one included.
    return data[:end + 1].splitlines()


def _lines_ended(data: bytes, linesep: bytes) -> bytes:
    """`linesep.join(data.splitlines()) + linesep` (every line ending, CRLF, CR or LF, made
    linesep, the last line ended too), in two C passes when the only line ending is LF."""
    if b"\r" in data:
        return linesep.join(data.splitlines()) + linesep
    return data.replace(b"\n", linesep) + (b"" if data.endswith(b"\n") else linesep)


def _cut(body: bytes, width: int, linesep: bytes) -> bytearray:
    """`body` in lines of `width` (76: 57 bytes a line, as the stdlib cuts base64), each
    ended by linesep: one numpy copy into the result's buffer, seen as a (lines × width+2)
    array, instead of some 3,000 slices and a join for a 200 KB part. Faster than
    `pybase64.encodebytes` and a replace of its LFs (~55 vs ~95 µs a 100 KB part); the
    bytearray is returned as it is (the message's join takes it), saving a copy."""
    full = len(body) // width
    row = width + len(linesep)
    tail = body[full * width:]
    out = bytearray(full * row + (len(tail) + len(linesep) if tail else 0))
    rows = np.frombuffer(out, np.uint8, full * row).reshape(full, row)
    rows[:, :width] = np.frombuffer(body, np.uint8, full * width).reshape(full, width)
    rows[:, width:] = np.frombuffer(linesep, np.uint8)
    if tail:
        out[full * row:] = tail + linesep
    return out


def _crlf(data: bytes, linesep: bytes) -> bytes:
    """Every line ending as the generator writes it (CRLF, lone CR, LF → linesep)."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", linesep)


def alternative_bytes(policy: EmailPolicy, headers: Sequence[tuple[str, str]],
                      text: str | bytes, html: str | bytes) -> bytes:
    """The bytes `flatten` gives for an EmailMessage with `headers` set in order, then
    `set_content(text, content_manager=FAST_BASE64)` and
    `add_alternative(html, subtype="html", cte="base64", content_manager=FAST_BASE64)`;
    `text` and `html` as str or as their UTF-8 bytes (as `render_email` gives them)."""
    nl = policy.linesep
    text_cte, text_body = _text_body(policy, _utf8(text), None)
    _, html_body = _text_body(policy, _utf8(html), "base64")
    # A base64 body has no "-": no line of it can be the boundary.
    boundary = _boundary((text_body,) if text_cte != "base64" else ())
    head = b"".join(header_line(policy, name, value) for name, value in headers)
    return b"".join((
        head,
        f"MIME-Version: 1.0{nl}Content-Type: multipart/alternative;{nl}"
        f' boundary="{boundary}"{nl}{nl}--{boundary}{nl}'
        f'Content-Type: text/plain; charset="utf-8"{nl}'
        f"Content-Transfer-Encoding: {text_cte}{nl}{nl}".encode("ascii"),
        text_body,
        # The stdlib gives the added part a MIME-Version header of its own.
        f'{nl}--{boundary}{nl}Content-Type: text/html; charset="utf-8"{nl}'
        f"Content-Transfer-Encoding: base64{nl}MIME-Version: 1.0{nl}{nl}".encode("ascii"),
        html_body,
        f"{nl}--{boundary}--{nl}".encode("ascii"),
    ))


def _utf8(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


def dot_stuffed(message: bytes) -> bytes:
    """The message as SMTP's DATA carries it (RFC 5321 4.5.2): a line that starts with '.'
    gets another. Our bytes already end every line in CRLF, so this is all DATA needs."""
    # Base64 lines never start with a dot: most messages have none to stuff.
    stuffed = message.replace(b"\r\n.", b"\r\n..") if _dot_line(message) else message
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _dot_line(message: bytes) -> bool:
    """`b"\r\n." in message`, by hops from dot to dot (memchr): base64 has no dot, so a
    digest's few dots are in its headers, where this ends in ~1 µs; the plain search, which
    tries every position (~180 µs a 216 KB message), only for a text part full of dots."""
    at = message.find(b".", 2)
    for _ in range(64):
        if at < 0:
            return False
        if message[at - 2:at] == b"\r\n":
            return True
        at = message.find(b".", at + 1)
    return at >= 0 and message.find(b"\r\n.", at - 2) >= 0
