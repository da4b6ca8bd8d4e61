"""A Telegram Bot API server on 127.0.0.1, enough for python-telegram-bot to run against.

Speaks the real wire format: `POST /bot<token>/<method>` with form-encoded or JSON bodies
(PTB sends form fields whose complex values are JSON strings), answers `{"ok": true,
"result": …}` or a non-2xx `{"ok": false, "error_code", "description", "parameters"}`.
Tests fill the update queue (`push_message`, `push_callback`), script failures
(`fail_next`) and read what the bot sent (`sent`, `wait_sent`). With `enforce_limits` it
returns 429 like Telegram when a bot exceeds 30 messages/s overall or 1/s per chat.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections import Counter, deque
from typing import Any

from tests.fakes.http import FakeServer, Request, Response

# The bot token the tests use, and FloodLimiter settings that never make a test wait.
TOKEN = "123456:TEST-token"
NO_LIMITS = {"overall_per_s": 0, "chat_interval": 0.0, "group_per_min": 0}

# Methods that post a message into a chat and so count against the flood limits.
SENDING = {"sendMessage"}
MESSAGE_LIMIT = 4096


class FakeTelegram:
    """`with FakeTelegram() as tg:` → point PTB at `tg.base_url` with token `tg.token`."""

    def __init__(self, token: str = "123456:TEST-token", username: str = "digest_test_bot",
                 *, enforce_limits: bool = False, overall_per_s: int = 30,
                 chat_interval: float = 1.0, max_poll: float = 0.3) -> None:
        self.token = token
        self.username = username
        self.enforce_limits = enforce_limits
        self.overall_per_s = overall_per_s
        self.chat_interval = chat_interval
        # getUpdates is held at most this long, so stopping the bot never waits on a poll.
        self.max_poll = max_poll
        self.updates: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []
        self.edited: list[dict[str, Any]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []  # the default menu
        self.commands_by_language: dict[str, list[dict[str, Any]]] = {}
        # (chat_id, user_id) → "creator" | "administrator" | "member" …; default "member".
        self.members: dict[tuple[int, int], str] = {}
        self.too_many_requests = 0
        self.refusals: Counter[str] = Counter()  # which limit a 429 enforced
        # chat → (fail once this many messages were delivered to it, the error)
        self._failures: dict[int, deque[tuple[int, Response]]] = {}
        # Chats whose messages fail with an error that echoes the whole request (URL with the
        # token, headers, body), as a careless proxy or a debugging server would.
        self.echo_errors: set[int] = set()
        # chat → how long its next messages are held up on their way in (a busy proxy or
        # connection pool) before they count as arrived; see `hold_next`.
        self._holds: dict[int, deque[float]] = {}
        self._cond = threading.Condition()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._recent: deque[float] = deque()
        self._last_in_chat: dict[int, float] = {}
        # Files the bot can fetch: file_id → (file_path, bytes); see push_document.
        self.files: dict[str, tuple[str, bytes]] = {}
        self.server = FakeServer(self.handle)

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FakeTelegram:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/bot"

    # -- what tests do ---------------------------------------------------------------------

    def push_message(self, chat_id: int, text: str, *, user_id: int | None = None,
                     chat_type: str = "private") -> int:
        """Queue a text message; a leading /command gets its bot_command entity, as Telegram does."""
        user_id = chat_id if user_id is None else user_id
        message: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()),
            "chat": _chat(chat_id, chat_type),
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
            ]
        return self._push({"message": message})

    def push_document(self, chat_id: int, data: bytes | None, file_name: str, *,
                      caption: str | None = None, size: int | None = None,
                      user_id: int | None = None, chat_type: str = "private") -> int:
        """Queue a message carrying a document. Its bytes are served by getFile and the file
        download path; `data` None stands for a file the bot must not fetch (only `size`)."""
        user_id = chat_id if user_id is None else user_id
        file_id = f"BQACAgIAAxkBAAI{len(self.files) + 1:04d}"
        if data is not None:
            self.files[file_id] = (f"documents/file_{len(self.files) + 1}", data)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()),
            "chat": _chat(chat_id, chat_type),
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            "document": {"file_id": file_id, "file_unique_id": f"AgAD{len(self.files):04d}",
                         "file_name": file_name, "mime_type": "application/octet-stream",
                         "file_size": len(data) if size is None and data is not None else size},
        }
        if caption is not None:
            message["caption"] = caption
            if caption.startswith("/"):
                message["caption_entities"] = [{"type": "bot_command", "offset": 0,
                                                "length": _utf16_len(caption.split()[0])}]
        return self._push({"message": message})

    def push_callback(self, chat_id: int, data: str, *, user_id: int | None = None,
                      chat_type: str = "private", message_id: int = 1) -> int:
        """Queue a tap on an inline button of the bot's message `message_id`."""
        user_id = chat_id if user_id is None else user_id
        # As Telegram does, the callback carries the message as it is now (text, keyboard).
        with self._cond:
            shown = next((m for m in self.sent if m["chat_id"] == chat_id
                          and m["message_id"] == message_id), None)
        message = {"message_id": message_id, "date": int(time.time()),
                   "chat": _chat(chat_id, chat_type), "text": shown["text"] if shown else "…",
                   "from": self._me()}
        if shown and shown.get("reply_markup"):
            message["reply_markup"] = shown["reply_markup"]
        return self._push({"callback_query": {
            "id": f"cb{next(self._update_ids)}", "chat_instance": str(chat_id),
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            "data": data, "message": message,
        }})

    def fail_next(self, chat_id: int, status: int, description: str, *, after: int = 0,
                  **parameters: Any) -> None:
        """A message to `chat_id` fails with this Bot API error, once `after` more went through."""
        with self._cond:
            self._failures.setdefault(chat_id, deque()).append(
                (len(self._sent_to(chat_id)) + after, _error(status, description, **parameters)))

    def hold_next(self, chat_id: int, seconds: float) -> None:
        """The next message to `chat_id` arrives `seconds` late: it is timed against the
        flood limits (and answered) only then, as when a request is held up on its way."""
        with self._cond:
            self._holds.setdefault(chat_id, deque()).append(seconds)

    def _sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["chat_id"] == chat_id]

    def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        with self._cond:
            return self._sent_to(chat_id)

    async def wait_sent(self, chat_id: int, n: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The first `n` messages sent to `chat_id`, waiting for them to arrive."""
        deadline = time.monotonic() + timeout
        while len(got := self.sent_to(chat_id)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} message(s) to {chat_id}, got {got}")
            await asyncio.sleep(0.01)
        return got[:n]

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Until the bot has fetched every queued update and a later poll came back."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                last = self.updates[-1]["update_id"] if self.updates else 0
                polled = [p for m, p in self.calls if m == "getUpdates"]
            if polled and int(polled[-1].get("offset") or 0) > last:
                return
            if time.monotonic() > deadline:
                raise AssertionError("the bot did not consume its updates")
            await asyncio.sleep(0.01)

    # -- the server ------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        files = f"/file/bot{self.token}/"
        if urllib.parse.unquote(req.path).startswith(files):  # a download: the bytes, as api.telegram.org serves them
            with self._cond:
                wanted = urllib.parse.unquote(req.path)[len(files):]
                self.calls.append(("download", {"file_path": wanted}))
            for path, data in self.files.values():
                if path == wanted:
                    return Response(200, data, {"Content-Type": "application/octet-stream"})
            return _error(404, "Not Found")
        prefix = f"/bot{self.token}/"
        if not req.path.startswith(prefix):
            return _error(401, "Unauthorized")
        method = req.path[len(prefix):]
        params = _params(req)
        with self._cond:
            self.calls.append((method, params))
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, f"Not Found: method {method} is not faked")
        if method in SENDING and int(params["chat_id"]) in self.echo_errors:
            return _error(400, f"Bad Request: cannot handle {req.echo()}")
        if method in SENDING:
            with self._cond:
                holds = self._holds.get(int(params["chat_id"]))
                held = holds.popleft() if holds else 0.0
            if held:
                time.sleep(held)  # this request's own server thread
            refused = self._refuse(int(params["chat_id"]))
            if refused is not None:
                return refused
        return handler(params)

    def _refuse(self, chat_id: int) -> Response | None:
        """A scripted failure, or a 429 when the flood limits are enforced and exceeded."""
        with self._cond:
            queue = self._failures.get(chat_id)
            if queue and len(self._sent_to(chat_id)) >= queue[0][0]:
                return queue.popleft()[1]
            if not self.enforce_limits:
                return None
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= 1.0:
                self._recent.popleft()
            last = self._last_in_chat.get(chat_id)
            overall = len(self._recent) >= self.overall_per_s
            if overall or (last is not None and now - last < self.chat_interval):
                self.too_many_requests += 1
                self.refusals["overall" if overall else "chat"] += 1
                return _error(429, "Too Many Requests: retry after 1", retry_after=1)
            self._recent.append(now)
            self._last_in_chat[chat_id] = now
            return None

    def _push(self, update: dict[str, Any]) -> int:
        with self._cond:
            update_id = next(self._update_ids)
            self.updates.append({"update_id": update_id, **update})
            self._cond.notify_all()
        return update_id

    def _me(self) -> dict[str, Any]:
        return {"id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "Digest",
                "username": self.username, "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False}

    def _m_getFile(self, params: dict[str, Any]) -> Response:
        found = self.files.get(params.get("file_id", ""))
        if found is None:
            return _error(400, "Bad Request: invalid file_id")
        path, data = found
        return _ok({"file_id": params["file_id"], "file_unique_id": "AgAD0001",
                    "file_size": len(data), "file_path": path})

    def _m_getMe(self, params: dict[str, Any]) -> Response:
        return _ok(self._me())

    def _m_deleteWebhook(self, params: dict[str, Any]) -> Response:
        return _ok(True)

    def _m_setMyCommands(self, params: dict[str, Any]) -> Response:
        menu = _json_field(params, "commands")
        if params.get("language_code"):
            self.commands_by_language[params["language_code"]] = menu
        else:
            self.commands = menu
        return _ok(True)

    def _m_getUpdates(self, params: dict[str, Any]) -> Response:
        offset = int(params.get("offset") or 0)
        wait = min(float(params.get("timeout") or 0), self.max_poll)
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                pending = [u for u in self.updates if u["update_id"] >= offset]
                remaining = deadline - time.monotonic()
                if pending or remaining <= 0:
                    return _ok(pending[: int(params.get("limit") or 100)])
                self._cond.wait(remaining)

    def _m_sendMessage(self, params: dict[str, Any]) -> Response:
        if (refused := _refuse_text(params) or _refuse_markup(
                _json_field(params, "reply_markup"))) is not None:
            return refused
        chat_id = int(params["chat_id"])
        message = {
            "message_id": next(self._message_ids), "date": int(time.time()),
            "chat": _chat(chat_id, "private" if chat_id > 0 else "supergroup"),
            "from": self._me(), "text": params["text"],
        }
        with self._cond:
            self.sent.append({
                "chat_id": chat_id, "message_id": message["message_id"], "text": params["text"],
                "at": time.monotonic(),
                "parse_mode": params.get("parse_mode"),
                "reply_markup": _json_field(params, "reply_markup"),
                "link_preview_options": _json_field(params, "link_preview_options"),
            })
        return _ok(message)

    def _m_editMessageText(self, params: dict[str, Any]) -> Response:
        if (refused := _refuse_text(params)) is not None:
            return refused
        chat_id = int(params["chat_id"])
        with self._cond:
            self.edited.append({"chat_id": chat_id, "message_id": int(params["message_id"]),
                                "text": params["text"],
                                "reply_markup": _json_field(params, "reply_markup")})
        return _ok({"message_id": int(params["message_id"]), "date": int(time.time()),
                    "chat": _chat(chat_id, "private"), "text": params["text"]})

    def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Response:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        markup = _json_field(params, "reply_markup")
        with self._cond:
            shown = next((m for m in self.sent if m["chat_id"] == chat_id
                          and m["message_id"] == message_id), None)
            if shown is None:
                return _error(400, "Bad Request: message to edit not found")
            if (refused := _refuse_markup(markup)) is not None:
                return refused
            if markup == shown.get("reply_markup"):
                return _error(400, "Bad Request: message is not modified: specified new message "
                                   "content and reply markup are exactly the same as a current "
                                   "content and reply markup of the message")
            shown["reply_markup"] = markup
            self.edited.append({"chat_id": chat_id, "message_id": message_id,
                                "text": None, "reply_markup": markup})
        return _ok({"message_id": message_id, "date": int(time.time()),
                    "chat": _chat(chat_id, "private"), "text": shown["text"],
                    **({"reply_markup": markup} if markup else {})})

    def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Response:
        with self._cond:
            self.callback_answers.append(params)
        return _ok(True)

    def _m_getChatMember(self, params: dict[str, Any]) -> Response:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        status = self.members.get((chat_id, user_id), "member")
        member: dict[str, Any] = {
            "status": status, "user": {"id": user_id, "is_bot": False, "first_name": "u"},
        }
        if status == "administrator":
            member.update({flag: True for flag in _ADMIN_FLAGS})
        elif status == "creator":
            member["is_anonymous"] = False
        return _ok(member)

    def _m_getChatAdministrators(self, params: dict[str, Any]) -> Response:
        chat_id = int(params["chat_id"])
        admins = [
            {"status": status, "user": {"id": user, "is_bot": False, "first_name": "u"},
             **({flag: True for flag in _ADMIN_FLAGS} if status == "administrator"
                else {"is_anonymous": False})}
            for (chat, user), status in self.members.items()
            if chat == chat_id and status in ("administrator", "creator")
        ]
        return _ok(admins)


_ADMIN_FLAGS = (
    "can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages",
    "can_manage_video_chats", "can_restrict_members", "can_promote_members", "can_change_info",
    "can_invite_users", "can_post_stories", "can_edit_stories", "can_delete_stories",
)


def _chat(chat_id: int, chat_type: str) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = f"user{chat_id}"
    else:
        chat["title"] = f"group {chat_id}"
    return chat


def _params(req: Request) -> dict[str, Any]:
    if not req.body:
        return {k: v[-1] for k, v in req.query.items()}
    if req.headers.get("content-type", "").startswith("application/json"):
        return dict(req.json())
    return req.form()


def _json_field(params: dict[str, Any], name: str) -> Any:
    """Form bodies carry objects as JSON strings, JSON bodies as objects: accept both."""
    value = params.get(name)
    return json.loads(value) if isinstance(value, str) else value


def _refuse_markup(markup: Any) -> Response | None:
    """Telegram's checks on an inline keyboard: 1–64 bytes of callback data a button."""
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= 64:
                return _error(400, "Bad Request: BUTTON_DATA_INVALID")
    return None


def _refuse_text(params: dict[str, Any]) -> Response | None:
    """Telegram's 400s for an empty text or one over 4096 characters once markup is parsed."""
    text = params.get("text") or ""
    if params.get("parse_mode") == "HTML":
        text = html.unescape(re.sub(r"<[^>]*>", "", text))
    if not text.strip():
        return _error(400, "Bad Request: message text is empty")
    if _utf16_len(text) > MESSAGE_LIMIT:
        return _error(400, "Bad Request: message is too long")
    return None


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _ok(result: Any) -> Response:
    return Response.json({"ok": True, "result": result})


def _error(status: int, description: str, **parameters: Any) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Response.json(body, status)
