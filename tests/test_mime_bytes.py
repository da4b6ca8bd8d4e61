"""The email's bytes built directly (`mime.alternative_bytes`, `email.message_bytes`) are the
bytes the stdlib's EmailMessage route gives, whatever the digest: languages, header shapes
(non-ASCII names, long subjects that fold, SMTPUTF8 addresses, List-Unsubscribe) and each
body encoding the stdlib can pick (7bit, 8bit, quoted-printable, base64)."""

from __future__ import annotations

import dataclasses
import random
import types
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from digestbot import signing
from digestbot.channels import email, mime
from digestbot.config import load_settings
from digestbot.outbox import DeliveryRow
from tests.test_render import POST_TRAINING, make_digest, make_entry

DATE = "Thu, 13 Aug 2026 01:00:00 GMT"
ROW = DeliveryRow(id=1, subscriber_id=7, digest_date="2026-08-13", status="pending",
                  paper_ids=[], message_id="<digest.2026-08-13.7.0a1b2c3d4e5f@example.org>")
LONG_EN = "Reinforcement learning from human feedback aligns language models. " * 12
LONG_ZH = "我们研究语言模型的后训练与偏好优化。" * 30
LONG_TOPIC = dataclasses.replace(
    POST_TRAINING, name_zh="后训练与偏好优化以及奖励模型的各种可扩展监督方法",
    name_en="Post-training, preference optimization and scalable oversight of reward models")


def stdlib_route(pol, headers, text: str, html: str) -> bytes:
    msg = EmailMessage(policy=pol)
    for name, value in headers:
        msg[name] = value
    msg.set_content(text, content_manager=mime.FAST_BASE64)
    msg.add_alternative(html, subtype="html", cte="base64", content_manager=mime.FAST_BASE64)
    return mime.flatten(msg)


def both_routes(pol, headers, text: str, html: str) -> tuple[bytes, bytes]:
    random.seed(11)  # the boundary is random: the same draw for both
    reference = stdlib_route(pol, headers, text, html)
    random.seed(11)
    return reference, mime.alternative_bytes(pol, headers, text, html)


TEXTS = {
    "7bit": "short ASCII lines\n.a line starting with a dot\n\nend",
    "8bit": "短行\n中文 and English\n.点开头的行",
    "quoted-printable": "\n".join([LONG_EN] * 3 + ["x = y", "tail  ", "été"] * 5),
    "quoted-printable, ten lines or fewer": f"{LONG_EN}\n=equals= and été\n",
    "base64": "\n".join([LONG_ZH] * 4 + [".dot"]),
    "empty": "",
    "CR and CRLF": "one\r\ntwo\rthree\nfour",
}


@pytest.mark.parametrize("kind", list(TEXTS))
def test_each_body_encoding_equals_the_stdlib(kind: str) -> None:
    headers = [("From", "digestbot@example.org"), ("To", "ada@example.org"),
               ("Subject", "hello")]
    reference, fast = both_routes(email.SMTP_POLICY, headers, TEXTS[kind], "<p>" + LONG_ZH)
    assert fast == reference
    part = message_from_bytes(fast, policy=policy.default).get_body(("plain",))
    if kind not in ("empty", "CR and CRLF"):
        assert part["Content-Transfer-Encoding"] == kind.split(",")[0]


HEADERS = {
    "ascii": [("From", "digestbot@example.org"), ("To", "ada@example.org")],
    "non-ASCII display name": [("From", "速递 Digest <digest@example.org>"),
                               ("To", "bob.o'neil+tag@xn--exmple-cua.org")],
    "quoted name, long address": [("From", '"Daily, Digest" <digest@example.org>'),
                                  ("To", "a" * 70 + "@example.org")],
    "long ASCII subject folds": [("Subject", "arXiv daily digest 2026-08-13 · " + "word " * 20)],
    "long Chinese subject folds": [("Subject", "arXiv 每日速递 2026-08-13 · " + "后训练 " * 12)],
    "blanks in a subject": [("Subject", "two  blanks and a trailing one ")],
    "unusual Message-ID": [("Message-ID", "<a b@example.org>")],
    "List-Unsubscribe": [("List-Unsubscribe", "<https://d.example.org/unsubscribe?token="
                          + "t" * 90 + ">, <mailto:d@example.org?subject=unsubscribe-x>"),
                         ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")],
}


@pytest.mark.parametrize("kind", list(HEADERS))
def test_each_header_shape_equals_the_stdlib(kind: str) -> None:
    headers = [*HEADERS[kind], ("Date", DATE), ("Auto-Submitted", "auto-generated")]
    if not any(name == "Message-ID" for name, _ in headers):
        headers.append(("Message-ID", ROW.message_id))
    reference, fast = both_routes(email.SMTP_POLICY, headers, "text", "<p>html</p>")
    assert fast == reference


def test_smtputf8_headers_equal_the_stdlib() -> None:
    headers = [("From", "速递 <digest@example.org>"), ("To", "bób@xn--exmple-cua.org"),
               ("Subject", "arXiv 每日速递 · 后训练 等 2 篇")]
    reference, fast = both_routes(email.SMTP_UTF8_POLICY, headers, TEXTS["8bit"], "<p>")
    assert fast == reference and "To: bób@xn--exmple-cua.org\r\n".encode() in fast


SETTINGS = {
    "https, non-ASCII From": {"mail_from": "速递 <digest@example.org>",
                              "public_url": "https://digest.example.org/"},
    "http": {"public_url": "http://digest.example.org/"},
    "no public url": {},
}


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
@pytest.mark.parametrize("links", list(SETTINGS))
@pytest.mark.parametrize("address", ["alice@example.org", "bób@exämple.org"])
def test_digest_email_equals_the_stdlib_route(lang: str, links: str, address: str,
                                              monkeypatch) -> None:
    monkeypatch.setattr(email, "message_date", lambda: DATE)
    # The vote links' signatures expire a fixed time after now: both routes must sign in the
    # same second (under load they straddled one, and the bytes differed by the expiry).
    monkeypatch.setattr(signing, "time", types.SimpleNamespace(time=lambda: 1_786_000_000.0))
    settings = load_settings(smtp_url="smtp://127.0.0.1:25", secret="s" * 32, **SETTINGS[links])
    entries = [make_entry(1, 95, title="Tom & Jerry <b> $\\Delta$", abstract=LONG_EN),
               make_entry(2, 80), make_entry(3, 70, announce_type="replace", authors=25)]
    digest = make_digest(entries, lang=lang, more=3, topics=[LONG_TOPIC])
    digest = dataclasses.replace(
        digest, subscriber=dataclasses.replace(digest.subscriber, address=address))
    random.seed(5)
    reference = email.flatten(email.build_message(settings, ROW, digest))
    random.seed(5)
    assert email.message_bytes(settings, ROW, digest) == reference


def test_dot_stuffing_doubles_a_leading_dot_on_every_line() -> None:
    assert mime.dot_stuffed(b"a\r\n.b\r\n..c\r\n.\r\n") == b"a\r\n..b\r\n...c\r\n..\r\n"
    assert mime.dot_stuffed(b".x\r\n") == b"..x\r\n"
    assert mime.dot_stuffed(b"no dots\r\n") == b"no dots\r\n"


@pytest.mark.parametrize("dots_before", [0, 1, 63, 64, 65, 200])
def test_dot_stuffing_finds_a_line_dot_after_any_number_of_other_dots(dots_before: int) -> None:
    """The search hops from dot to dot, then falls back to a plain search: every count of
    dots inside lines before the one that starts a line, and none at all, give the bytes a
    replace of every CRLF dot gives."""
    head = b"a.b\r\n" * dots_before
    for tail in (b"\r\n.x\r\n", b"\r\nx.\r\n", b"\r\n", b"\r\n.", b".\r\n"):
        message = b"." * (dots_before % 2) + head + tail
        expected = message.replace(b"\r\n.", b"\r\n..")
        expected = b"." + expected if expected.startswith(b".") else expected
        assert mime.dot_stuffed(message) == expected



# Texts at the edges of the shortcuts `_text_body` takes instead of splitting a whole text
# into lines: a line of exactly the limit (78) or one more, first, in the middle or last;
# one long line; ten lines or eleven before a long one (the sniff's ten); an empty tenth
# line; CR line ends (the slow route); non-ASCII under an 8bit and a 7bit policy.
EDGES = {
    "lines of exactly 78": "\n".join(["x" * 78] * 5),
    "79 first": "y" * 79 + "\nshort\nshort",
    "79 in the middle": "short\n" + "y" * 79 + "\nshort\n",
    "79 last, no final LF": "short\nshort\n" + "y" * 79,
    "79 last, final LF": "short\n" + "y" * 79 + "\n",
    "one long line": "z" * 300,
    "78 then LF": "x" * 78 + "\n",
    "ten short lines then a long one": "\n".join(["ab = cd"] * 10 + ["e" * 200]),
    "eleven short lines then a long one": "\n".join(["ab = cd"] * 11 + ["e" * 200]),
    "empty tenth line": "\n".join(["ab"] * 9 + ["", "f" * 100, "ab"]),
    "empty lines only": "\n\n\n",
    "Chinese, short lines": "中文短行\n" * 20,
    "Chinese, one 27-character line (81 bytes)": "后训练" * 9 + "\n短\n",
    "Chinese long lines after ten short": "短\n" * 10 + LONG_ZH,
    "CR ends and a long line": "one\r\n" + "w" * 90 + "\rthree\n",
    # Past the first KB, where only the measure of every line finds a long one.
    "a long line after 2 KB of short ones": "short line\n" * 200 + "v" * 79 + "\nend\n",
    "short lines past 2 KB": "short line\n" * 200,
}
SEVEN_BIT = email.SMTP_POLICY.clone(cte_type="7bit")


@pytest.mark.parametrize("pol", [email.SMTP_POLICY, SEVEN_BIT], ids=["8bit", "7bit"])
@pytest.mark.parametrize("kind", list(EDGES))
def test_body_encoding_shortcuts_equal_the_stdlib(kind: str, pol) -> None:
    headers = [("From", "digestbot@example.org"), ("Subject", "edges")]
    reference, fast = both_routes(pol, headers, EDGES[kind], "<p>" + EDGES[kind])
    assert fast == reference
    random.seed(11)  # and from the UTF-8 bytes `render_email` gives, as from str
    assert mime.alternative_bytes(pol, headers, EDGES[kind].encode(), ("<p>" + EDGES[kind]).encode()) == fast


def test_line_measures_agree_with_splitlines() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        lines = [rng.choice(["", "a" * rng.randint(1, 100), "短" * rng.randint(1, 40)])
                 for _ in range(rng.randint(0, 15))]
        text = rng.choice(["\n", "\r\n", "\r"]).join(lines) + rng.choice(["", "\n", "\r"])
        data, limit = text.encode(), rng.choice([10, 78, 120])
        assert mime._lines_fit(data, limit) == (max(map(len, data.splitlines()), default=0) <= limit)
        assert mime._first_lines(data, 10) == data.splitlines()[:10]
