"""The preferences page's library section (issue 16): a BibTeX/RIS upload, a Zotero library,
its threshold, refresh and removal.

    POST /preferences/library   multipart/form-data: token, csrf, action, and per action
                                `file` (upload), `zotero_user` + `zotero_key` (zotero),
                                `library_threshold` (threshold); refresh, clear

The body is streamed part by part: a declared length over the limit is refused before a byte
is read, and a part that grows past its cap stops the read there (the app's 64 KB
`client_max_size` guards the other forms; this one reads files, so it counts itself). A file
is parsed and a Zotero library fetched off the loop; the store is written through `write`.
The Zotero key is never echoed back, logged or put in a page.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import BodyPartReader, web

from digestbot import signing
from digestbot.errors import FormError, UsageError
from digestbot.subscribers import library
from digestbot.subscribers.library_files import MAX_BYTES, parse_library, too_big
from digestbot.subscribers.zotero import check_key, check_user_id, fetch_items
from digestbot.web import forms, preferences
from digestbot.web.common import SETTINGS, STORE, notice, write

log = logging.getLogger(__name__)

# Every field but the file is short; the form's own overhead is well under this.
FIELD_CAPS = {"token": signing.MAX_TOKEN_LENGTH, "csrf": 64, "action": 16, "zotero_user": 16,
              "zotero_key": 64, "library_threshold": 4}
OVERHEAD = 16 * 1024
ACTIONS = ("upload", "zotero", "refresh", "clear", "threshold")


async def _read_part(part: BodyPartReader, cap: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(65536):
        data += chunk
        if len(data) > cap:
            raise FormError(f"字段过长 / field {part.name!r} is too long", status=413)
    return bytes(data)


async def _read(request: web.Request) -> tuple[dict[str, str], bytes | None, str]:
    """(text fields, the file's bytes or None, its name); FormError when over a cap."""
    if request.content_length is not None and request.content_length > MAX_BYTES + OVERHEAD:
        raise FormError(str(too_big(request.content_length)), status=413)
    if not request.content_type.startswith("multipart/"):
        raise FormError("表单应为 multipart/form-data / expected multipart/form-data")
    fields: dict[str, str] = {}
    data, name = None, ""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise FormError("不接受嵌套表单 / nested multipart is not accepted")
        if part.name == "file" and data is None:  # a browser sends an empty one unchosen
            try:
                data = await _read_part(part, MAX_BYTES)
            except FormError:
                raise FormError(str(too_big(MAX_BYTES + 1)), status=413) from None
            name = part.filename or "file"
        elif part.name in FIELD_CAPS and part.name not in fields:
            raw = await _read_part(part, FIELD_CAPS[part.name])
            fields[part.name] = raw.decode("utf-8", errors="replace")
        else:
            raise FormError(f"未知字段 / unknown form field {str(part.name)[:40]!r}")
    return fields, data, name


async def change_library(request: web.Request) -> web.Response:
    try:
        fields, data, name = await _read(request)
    except FormError as exc:
        return notice("无法处理", "Cannot process this form", "", str(exc), status=exc.status)
    token = fields.get("token", "")
    sub, problem = forms.token_subscriber(request, signing.PREFERENCES, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    if not forms.csrf_ok(request, fields):
        return forms.csrf_rejected()
    if sub.status in ("pending", "unsubscribed"):
        return preferences.show(request, sub, token, status=403,
                                error="请先恢复订阅 / resume your subscription first")
    action = fields.get("action", "")
    try:
        if action == "upload":
            if not data:
                raise UsageError("请选择一个 .bib 或 .ris 文件 / choose a .bib or .ris file")
            source, entries = await asyncio.to_thread(parse_library, data, name)
            await write(request, library.replace_library, sub.id, source, name, entries)
        elif action in ("zotero", "refresh"):
            if action == "zotero":
                user = check_user_id(fields.get("zotero_user", ""))
                key = check_key(fields.get("zotero_key", ""))
            else:
                kept = library.zotero_source(request.app[STORE], sub.id)
                if kept is None:
                    raise UsageError("只有 Zotero 文库可以刷新;文件请重新上传 / only a Zotero "
                                     "library can be refreshed; upload a file again")
                user, key = kept
            entries = await asyncio.to_thread(fetch_items, user, key,
                                              request.app[SETTINGS].zotero_api_url)
            await write(request, library.replace_library, sub.id, "zotero", f"Zotero {user}",
                        entries, zotero_user=user, zotero_key=key)
        elif action == "threshold":
            if not await write(request, library.set_threshold, sub.id,
                               fields.get("library_threshold", "")):
                raise UsageError("还没有文库 / no library yet")
        elif action == "clear":
            await write(request, library.delete_library, sub.id)
        else:
            raise UsageError(f"未知操作 / unknown action {action[:16]!r}")
    except UsageError as exc:
        return preferences.show(request, sub, token, status=400, error=str(exc))
    log.info("subscriber #%s library: %s", sub.id, action)
    raise web.HTTPSeeOther(signing.link_path("/preferences", token, done="library"))
