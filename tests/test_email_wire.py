"""Addresses real mail systems take: IDNA domains, SMTPUTF8 local parts, long addresses.

Asserted on what the SMTP server received (envelope and raw DATA), not on our own reading.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digestbot import subscribers
from digestbot.channels.email import NAME_ADDRESS_BYTES, file_safe
from digestbot.config import load_settings
from digestbot.store import Store
from tests.fakes.digests import add_paper, add_subscriber
from tests.fakes.outbox import send as run_send
from tests.fakes.smtp import SmtpServer

NOW = datetime(2026, 8, 13, 1, 0, tzinfo=UTC)


def headers(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def test_international_domain_goes_out_as_idna_with_no_encoded_words(store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "bob@exämple.org")
    with SmtpServer() as smtp:  # no SMTPUTF8: an IDNA domain needs none
        report = run_send(load_settings(smtp_url=smtp.url), store, now=NOW)
        assert (report.sent, report.failed) == (1, 0)
        [got] = smtp.messages
    assert got.rcpt_tos == ["bob@xn--exmple-cua.org"]
    raw = headers(got.data)
    assert b"\r\nTo: bob@xn--exmple-cua.org\r\n" in raw
    assert raw.isascii() and b"=?utf-8?" not in raw.split(b"\r\nSubject:")[0]


def test_unicode_local_part_uses_smtputf8_when_the_server_offers_it(store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, "bób@exämple.org")
    with SmtpServer(smtputf8=True) as smtp:
        report = run_send(load_settings(smtp_url=smtp.url), store, now=NOW)
        assert (report.sent, report.failed) == (1, 0)
        [got] = smtp.messages
    assert got.rcpt_tos == ["bób@xn--exmple-cua.org"]
    assert "\r\nTo: bób@xn--exmple-cua.org\r\n".encode() in headers(got.data)


def test_unicode_local_part_without_smtputf8_bounces_once_instead_of_retrying(
        store: Store) -> None:
    add_paper(store, "2608.00001", 90)
    sub = add_subscriber(store, "bób@example.org")
    with SmtpServer() as smtp:
        report = run_send(load_settings(smtp_url=smtp.url), store, now=NOW)
        assert smtp.messages == []
    assert report.permanent == 1
    assert subscribers.get(store, sub.id).status == "bounced"


def test_a_254_character_address_fits_the_outbox_folder(store: Store, tmp_path) -> None:
    local = "a" * 64
    long_address = f"{local}@{'b' * 60}.{'c' * 60}.{'d' * 60}.{'e' * 2}.org"
    assert len(long_address) == 254
    add_paper(store, "2608.00001", 90)
    add_subscriber(store, long_address)
    report = run_send(load_settings(outbox=str(tmp_path)), store, now=NOW)
    assert report.sent == 1
    [written] = list(tmp_path.glob("*.eml"))
    assert len(written.name.encode()) <= 255 and written.name.startswith("2026-08-13_")


@pytest.mark.parametrize("address", ["ada@example.org", "x" * 200 + "@example.org",
                                     "中文" * 60 + "@例子.中国"])
def test_file_safe_names_are_bounded_and_distinct(address: str) -> None:
    name = file_safe(address)
    assert len(name.encode()) <= NAME_ADDRESS_BYTES and "/" not in name
    assert name != file_safe(address[:-5] + "zz.org")
    if len(address.encode()) <= NAME_ADDRESS_BYTES:
        assert name == address


