"""A reader's Zotero library through the Zotero Web API v3, with pyzotero (issue 16).

Read-only: `/users/{id}/items?format=json`, 100 a page, following `Link: rel="next"` until the
library ends or `library_files.MAX_ITEMS` regular items are in hand. Notes and attachments are
skipped; a regular item gives its key, title and abstract, nothing else.

The key is a credential: it travels only in the `Authorization` header pyzotero sends, is
registered with the redaction filter before the first request, and never appears in an error
raised here. Zotero's `Backoff` and `Retry-After` are obeyed by pyzotero (it waits, then asks
again) while the wait is short; a longer one would hold a chat handler or a web request for
minutes, so it ends the fetch with a reply that says when to try again, and nothing changes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx2
from pyzotero import zotero, zotero_errors

from digestbot.errors import UsageError, ZoteroBusy, ZoteroError
from digestbot.store import add_secrets
from digestbot.subscribers.library_files import MAX_ITEMS, Item, finish, make_item

log = logging.getLogger(__name__)

PAGE = 100
# Waits up to this long are pyzotero's to make; longer ones end the fetch (see the docstring).
MAX_WAIT_S = 10.0
TIMEOUT_S = 30.0
_SKIP_TYPES = {"note", "attachment", "annotation"}
_USER_ID = re.compile(r"\d{1,12}")
_KEY = re.compile(r"[A-Za-z0-9]{10,64}")


def check_user_id(user_id: str) -> str:
    user_id = user_id.strip()
    if not _USER_ID.fullmatch(user_id):
        raise UsageError(zh="Zotero 用户 ID 是一串数字(见 zotero.org/settings/keys 上的 “Your userID”)。",
                         en="A Zotero user ID is a number (“Your userID” on zotero.org/settings/keys).")
    return user_id


def check_key(key: str) -> str:
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise UsageError(zh="Zotero API 密钥格式不对(应为字母和数字,在 zotero.org/settings/keys 创建只读密钥)。",
                         en="That is not a Zotero API key (letters and digits; create a read-only "
                            "one at zotero.org/settings/keys).")
    return key


def _guard(response: httpx2.Response) -> None:
    """Refuse a wait too long to sit through (pyzotero would sleep it out)."""
    raw = response.headers.get("backoff") or response.headers.get("retry-after")
    if raw is None:
        return
    try:
        wait = float(raw)
    except ValueError:
        wait = MAX_WAIT_S + 1  # an HTTP date: certainly not "now"
    if wait > MAX_WAIT_S:
        raise ZoteroBusy(wait)


def fetch_items(user_id: str, key: str, endpoint: str) -> list[Item]:
    """Every regular item of the user's library (at most MAX_ITEMS), as library items."""
    user_id, key = check_user_id(user_id), check_key(key)
    add_secrets(key)
    client = httpx2.Client(follow_redirects=False, timeout=TIMEOUT_S,
                           event_hooks={"response": [_guard]})
    zot = zotero.Zotero(user_id, "user", key, client=client)
    zot.endpoint = endpoint.rstrip("/")
    items: list[Item] = []
    try:
        page: Any = zot.items(limit=PAGE)
        while True:
            items.extend(_regular(page))
            if len(items) >= MAX_ITEMS or not (zot.links or {}).get("next"):
                break
            page = zot.follow()
    except ZoteroBusy as busy:
        raise UsageError(zh=f"Zotero 要求稍候(约 {busy.wait:.0f} 秒);请稍后再试,原有文库保持不变。",
                         en=f"Zotero asks us to wait (about {busy.wait:.0f} s); try again later. "
                            "Your current library is unchanged.") from None
    except zotero_errors.UserNotAuthorisedError:
        raise UsageError(zh="Zotero 拒绝了这个密钥(403):请确认用户 ID 与密钥匹配,且密钥可读取个人文库。",
                         en="Zotero refused the key (403): check that the user ID and key belong "
                            "together and that the key may read the personal library.") from None
    except zotero_errors.ResourceNotFoundError:
        raise UsageError(zh=f"Zotero 没有用户 {user_id}(404)。",
                         en=f"Zotero has no user {user_id} (404).") from None
    except (zotero_errors.TooManyRetriesError, zotero_errors.TooManyRequestsError):
        raise UsageError(zh="Zotero 仍在限流;请稍后再试,原有文库保持不变。",
                         en="Zotero is still rate-limiting; try again later. Your current "
                            "library is unchanged.") from None
    except (zotero_errors.PyZoteroError, httpx2.HTTPError, ValueError) as exc:
        # The message may quote the response; the key is masked by the filter anyway.
        log.warning("Zotero fetch for user %s failed: %s", user_id, type(exc).__name__)
        raise ZoteroError(zh=f"无法读取 Zotero 文库({type(exc).__name__});请稍后再试。",
                          en=f"Cannot read the Zotero library ({type(exc).__name__}); try again "
                             "later.") from None
    finally:
        client.close()
    return finish(items[:MAX_ITEMS])


def _regular(page: Any) -> list[Item]:
    out = []
    for entry in page if isinstance(page, list) else []:
        data = entry.get("data", entry) if isinstance(entry, dict) else {}
        if not isinstance(data, dict) or data.get("itemType") in _SKIP_TYPES:
            continue
        out.append(make_item("z:" + str(data.get("key") or entry.get("key") or ""),
                             data.get("title"), data.get("abstractNote")))
    return out
