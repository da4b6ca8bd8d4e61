"""`digestbot inbound < message`: the mailto unsubscribe that every digest advertises.

Each digest's List-Unsubscribe carries `<mailto:FROM?subject=unsubscribe-TOKEN>` beside the
web link; mail clients (and Gmail's and Yahoo's unsubscribe buttons when there is no https
link) send that mail. A mail server hands it to this command on standard input — Postfix
through an alias pipe, see the README — and the reader is unsubscribed like the web page
does it. The token is the credential, as in the web link; nothing else in the mail counts.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

from digestbot import subscribers
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.store import Store

log = logging.getLogger(__name__)

# `secrets.token_urlsafe(32)` is 43 characters of the URL-safe alphabet.
_TOKEN = re.compile(r"\bunsubscribe-([A-Za-z0-9_-]{20,})")
# A mail larger than this is not an unsubscribe request; read no further.
MAX_BYTES = 1_000_000


def _request_token(raw: bytes) -> str:
    msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    match = _TOKEN.search(str(msg.get("Subject", "")))
    if match is None:
        raise UsageError("这封邮件不是退订请求 / not an unsubscribe request: the subject has "
                         "no unsubscribe-<token>")
    return match.group(1)


def cmd_inbound(settings: Settings, args: argparse.Namespace) -> int:
    raw = (Path(args.file).read_bytes() if args.file else sys.stdin.buffer.read(MAX_BYTES + 1))
    if len(raw) > MAX_BYTES:
        raise UsageError("邮件过大 / message over 1 MB: not an unsubscribe request")
    token = _request_token(raw)
    with Store(settings.db) as store:
        sub = subscribers.by_token(store, token)
        if sub is None:
            # Exit 0: the mail server must not bounce a stale or forged request back.
            print("没有对应的订阅者（可能已删除）/ no subscriber holds that token (removed?)")
            return 0
        if sub.status != "unsubscribed":
            subscribers.set_status(store, sub.id, "unsubscribed", reason="mailto unsubscribe")
            log.info("subscriber #%s unsubscribed via mailto", sub.id)
    print(f"已退订 / unsubscribed subscriber #{sub.id}")
    return 0
