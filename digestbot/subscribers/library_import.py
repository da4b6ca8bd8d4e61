"""Filling a reader's library (issue 16): from a BibTeX/RIS file's bytes, or from Zotero.

Parsing and fetching come first and touch nothing; the store is written once, at the end, in
`library.replace_library`'s one transaction, so a refusal changes nothing.
"""

from __future__ import annotations

from digestbot.errors import UsageError
from digestbot.store import Store
from digestbot.subscribers.library import LibraryInfo, replace_library, zotero_source
from digestbot.subscribers.library_files import parse_library
from digestbot.subscribers.zotero import check_user_id, fetch_items


def import_file(store: Store, subscriber_id: int, data: bytes, name: str) -> LibraryInfo:
    """Replace the reader's library with a BibTeX or RIS file's entries (UsageError: nothing
    changed)."""
    source, entries = parse_library(data, name)
    return replace_library(store, subscriber_id, source, name, entries)


def import_zotero(store: Store, subscriber_id: int, user_id: str, key: str,
                  endpoint: str) -> LibraryInfo:
    """Replace the reader's library with their Zotero library's items; the key is kept (for
    refreshing) and masked everywhere. Network first, then one short transaction."""
    user_id = check_user_id(user_id)
    entries = fetch_items(user_id, key, endpoint)
    return replace_library(store, subscriber_id, "zotero", f"Zotero {user_id}", entries,
                           zotero_user=user_id, zotero_key=key.strip())


def refresh(store: Store, subscriber_id: int, endpoint: str) -> LibraryInfo:
    """Fetch a Zotero library again; a file library is refreshed by sending the file again."""
    source = zotero_source(store, subscriber_id)
    if source is None:
        raise UsageError(zh="只有 Zotero 文库可以直接刷新;文件导入的文库请重新上传文件。",
                         en="Only a Zotero library can be refreshed; for a file library, send "
                            "the file again.")
    return import_zotero(store, subscriber_id, source[0], source[1], endpoint)
