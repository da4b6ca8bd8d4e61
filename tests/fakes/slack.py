"""A Slack Web API, incoming webhooks and a Socket Mode WebSocket on 127.0.0.1.

Speaks the real wire format closely enough for slack-sdk's AsyncWebClient, AsyncWebhookClient
and Socket Mode client: `POST|GET /api/<method>` with JSON, form or query arguments and
`Authorization: Bearer <token>`; answers HTTP 200 `{"ok": true, …}` or `{"ok": false,
"error": …}`, and HTTP 429 with `Retry-After` when told to. Incoming webhooks are
`POST /hooks/<name>` answering `ok` or an error word with 4xx, as Slack's do; `response_url`s
are `POST /respond/<name>`. `FakeSocketMode` is an aiohttp WebSocket server that pushes
envelopes and collects acknowledgements; `apps.connections.open` hands out its URL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from typing import Any
from urllib.parse import parse_qs

from aiohttp import WSMsgType, web

from tests.fakes.http import FakeServer, Request, Response

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"


class FakeSlack:
    """`with FakeSlack() as slack:` → point slack-sdk at `slack.api_url`."""

    def __init__(self, bot_token: str = BOT_TOKEN, app_token: str = APP_TOKEN) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.ws_url: str | None = None
        # (method, arguments, time.monotonic() on arrival)
        self.calls: list[tuple[str, dict[str, Any], float]] = []
        # Accepted chat.postMessage / chat.postEphemeral calls, with the ts given.
        self.posted: list[dict[str, Any]] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.updated: list[dict[str, Any]] = []  # accepted chat.update calls
        self.hooks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.responses: list[dict[str, Any]] = []
        # Scripted: channel → error word for every post to it; method → queued responses.
        self.channel_errors: dict[str, str] = {}
        self.hook_errors: dict[str, tuple[int, str]] = {}
        # Webhooks and channels whose posts fail with an error that echoes the whole request
        # (the webhook URL, the Authorization header), as a debugging server would.
        self.echo_hooks: set[str] = set()
        self.echo_channels: set[str] = set()
        # Arrival times of every post to a webhook, accepted or not.
        self.hook_times: dict[str, list[float]] = defaultdict(list)
        self._next: dict[str, deque[Response]] = defaultdict(deque)
        # users.info and conversations.members answers.
        self.users: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self.too_many_requests = 0
        # method → seconds to wait before answering (a slow Slack).
        self.slow: dict[str, float] = {}
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        # Uploaded files: id → (name, bytes or None for one too large to exist here, size).
        self.files: dict[str, tuple[str, bytes | None, int]] = {}
        self.downloads: list[dict[str, str]] = []  # GETs of url_private: path and auth header
        self.server = FakeServer(self.handle)

    def __enter__(self) -> FakeSlack:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def api_url(self) -> str:
        return f"{self.server.url}/api/"

    def hook_url(self, name: str) -> str:
        return f"{self.server.url}/hooks/{name}"

    def response_url(self, name: str) -> str:
        return f"{self.server.url}/respond/{name}"

    # -- scripting ------------------------------------------------------------------------

    def fail_next(self, method: str, error: str | None = None, *, status: int = 200,
                  retry_after: int | None = None) -> None:
        """The next call of `method` fails: `{"ok": false, "error": error}` or a bare 429."""
        if status == 429:
            headers = {"Retry-After": str(retry_after or 1)}
            resp = Response.json({"ok": False, "error": "ratelimited"}, 429, **headers)
        else:
            resp = Response.json({"ok": False, "error": error}, status)
        self._next[method].append(resp)

    def fail_next_hook(self, name: str, status: int = 429, word: str = "rate_limited", *,
                       retry_after: int | None = 1) -> None:
        """The next post to webhook `name` answers `status` with `word` (and `Retry-After`)."""
        headers = {"Content-Type": "text/plain"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self._next["hook:" + name].append(Response(status, word, headers))

    def add_user(self, user_id: str, *, guest: bool = False, bot: bool = False,
                 channels: tuple[str, ...] = ()) -> None:
        self.users[user_id] = {"id": user_id, "name": user_id.lower(), "is_bot": bot,
                               "deleted": False, "is_restricted": guest,
                               "is_ultra_restricted": False}
        for channel in channels:
            self.members.setdefault(channel, []).append(user_id)

    def add_file(self, file_id: str, name: str, data: bytes | None, *, size: int | None = None
                 ) -> dict[str, Any]:
        """A file a user shared; returns the `files` entry of its `file_share` message event."""
        self.files[file_id] = (name, data, len(data) if size is None and data else size or 0)
        return {"id": file_id, "name": name, "mode": "hosted", "filetype": "text"}

    # -- the server -----------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/hooks/"):
            return self._hook(req, req.path.removeprefix("/hooks/"))
        if req.path.startswith("/respond/"):
            with self._lock:
                self.responses.append({"name": req.path.removeprefix("/respond/"), **req.json()})
            return Response(200, "ok", {"Content-Type": "text/plain"})
        if req.path.startswith("/files-pri/"):
            return self._file(req)
        if not req.path.startswith("/api/"):
            return Response(404, "not found")
        method = req.path.removeprefix("/api/")
        args = _arguments(req)
        token = req.headers.get("authorization", "").removeprefix("Bearer ") or args.pop("token", "")
        with self._lock:
            self.calls.append((method, args, time.monotonic()))
            scripted = self._next[method].popleft() if self._next[method] else None
            if scripted is not None and scripted.status == 429:
                self.too_many_requests += 1
        if scripted is not None:
            return scripted
        if method == "chat.postMessage" and args.get("channel") in self.echo_channels:
            return Response.json({"ok": False, "error": "invalid_arguments",
                                  "request": req.echo()})
        want = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != want:
            return _error("invalid_auth" if token else "not_authed")
        answer = getattr(self, "api_" + method.replace(".", "_"), None)
        if answer is None:
            return _error("unknown_method")
        response = answer(args)
        response.delay = self.slow.get(method, 0.0)
        return response

    def _hook(self, req: Request, name: str) -> Response:
        with self._lock:
            self.hook_times[name].append(time.monotonic())
            scripted = self._next["hook:" + name].popleft() if self._next["hook:" + name] else None
        if scripted is not None:
            return scripted
        if name in self.echo_hooks:
            return Response(400, f"invalid_payload: {req.echo()}", {"Content-Type": "text/plain"})
        if name in self.hook_errors:
            status, word = self.hook_errors[name]
            return Response(status, word, {"Content-Type": "text/plain"})
        body = req.json()
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return Response(400, "invalid_payload", {"Content-Type": "text/plain"})
        with self._lock:
            self.hooks[name].append(body)
        return Response(200, "ok", {"Content-Type": "text/plain"})

    def _file(self, req: Request) -> Response:
        """url_private: the bytes with the bot's token; without it Slack's sign-in page."""
        with self._lock:
            self.downloads.append({"path": req.path,
                                   "authorization": req.headers.get("authorization", "")})
        file_id = req.path.split("/")[2].split("-")[-1]
        found = self.files.get(file_id)
        if req.headers.get("authorization") != f"Bearer {self.bot_token}" or not found:
            return Response(200, "<html><body>Sign in to Slack</body></html>",
                            {"Content-Type": "text/html; charset=utf-8"})
        return Response(200, found[1] or b"", {"Content-Type": "application/octet-stream"})

    def api_files_info(self, args: dict[str, Any]) -> Response:
        found = self.files.get(str(args.get("file", "")))
        if found is None:
            return _error("file_not_found")
        name, _, size = found
        url = f"{self.server.url}/files-pri/T0TEST-{args['file']}/{name}"
        return _ok(file={"id": args["file"], "name": name, "title": name, "size": size,
                         "mimetype": "text/plain", "filetype": "text", "mode": "hosted",
                         "url_private": url, "url_private_download": url + "?download=1"},
                   comments=[], response_metadata={"next_cursor": ""})

    def api_auth_test(self, args: dict[str, Any]) -> Response:
        return _ok(url="https://test.slack.com/", team="Test", user="arxiv-digest",
                   team_id="T0TEST", user_id="U0BOT", bot_id="B0BOT")

    def api_apps_connections_open(self, args: dict[str, Any]) -> Response:
        if self.ws_url is None:
            return _error("socket_mode_not_enabled")
        return _ok(url=self.ws_url)

    def api_chat_postMessage(self, args: dict[str, Any]) -> Response:
        channel = str(args.get("channel", ""))
        if channel in self.channel_errors:
            return _error(self.channel_errors[channel])
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        blocks = _json_arg(args.get("blocks"))
        if blocks is not None and len(blocks) > 50:
            return _error("invalid_blocks")
        ts = f"{1_700_000_000 + next(self._ts)}.000100"
        with self._lock:
            self.posted.append({**args, "blocks": blocks, "ts": ts})
        return _ok(channel=channel, ts=ts, message={"text": args.get("text"), "ts": ts})

    def api_chat_update(self, args: dict[str, Any]) -> Response:
        """Replace a posted message's text and blocks (Slack keeps its ts)."""
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        blocks = _json_arg(args.get("blocks"))
        if blocks is not None and len(blocks) > 50:
            return _error("invalid_blocks")
        with self._lock:
            shown = next((p for p in self.posted if p["channel"] == channel and p["ts"] == ts),
                         None)
            if shown is None:
                return _error("message_not_found")
            shown.update({"text": args.get("text", shown.get("text")), "blocks": blocks})
            self.updated.append({"channel": channel, "ts": ts, "blocks": blocks})
        return _ok(channel=channel, ts=ts, text=args.get("text"))

    def api_chat_postEphemeral(self, args: dict[str, Any]) -> Response:
        with self._lock:
            self.ephemeral.append({**args, "blocks": _json_arg(args.get("blocks"))})
        return _ok(message_ts=f"{1_700_000_000 + next(self._ts)}.000200")

    def api_conversations_info(self, args: dict[str, Any]) -> Response:
        channel = str(args.get("channel", ""))
        if self.channel_errors.get(channel) == "channel_not_found":
            return _error("channel_not_found")
        return _ok(channel={"id": channel, "name": channel.lower(), "is_channel": True,
                            "is_archived": self.channel_errors.get(channel) == "is_archived"})

    def api_conversations_members(self, args: dict[str, Any]) -> Response:
        channel = str(args.get("channel", ""))
        if channel not in self.members:
            return _error("channel_not_found")
        # Pages of two, so the client's cursor handling is exercised.
        start = int(args.get("cursor") or 0)
        page = self.members[channel][start : start + 2]
        nxt = str(start + 2) if start + 2 < len(self.members[channel]) else ""
        return _ok(members=page, response_metadata={"next_cursor": nxt})

    def api_users_info(self, args: dict[str, Any]) -> Response:
        user = self.users.get(str(args.get("user", "")))
        return _ok(user=user) if user else _error("user_not_found")


def _arguments(req: Request) -> dict[str, Any]:
    args: dict[str, Any] = {k: v[-1] for k, v in req.query.items()}
    kind = req.headers.get("content-type", "")
    if req.body and "json" in kind:
        args.update(req.json())
    elif req.body:
        args.update({k: v[-1] for k, v in parse_qs(req.body.decode()).items()})
    return args


def _json_arg(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _ok(**fields: Any) -> Response:
    return Response.json({"ok": True, **fields})


def _error(word: str) -> Response:
    return Response.json({"ok": False, "error": word})


class FakeSocketMode:
    """A Socket Mode endpoint: `await start()`, then `push()` envelopes and `wait_ack()`."""

    def __init__(self) -> None:
        self.acks: dict[str, dict[str, Any]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self._acked = asyncio.Condition()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/link", self._socket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/link"
        return self.url

    async def stop(self) -> None:
        for ws in self._sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "debug_info": {"host": "fake"}, "connection_info": {"app_id": "A0"}})
        self._connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                async with self._acked:
                    self.acks[data["envelope_id"]] = data
                    self._acked.notify_all()
        return ws

    async def push(self, kind: str, payload: dict[str, Any], timeout: float = 5.0) -> str:
        """Send an envelope (`slash_commands`, `interactive`) to the connected client."""
        await asyncio.wait_for(self._connected.wait(), timeout)
        envelope_id = f"env-{next(self._ids)}"
        await self._sockets[-1].send_json({"envelope_id": envelope_id, "type": kind,
                                           "payload": payload, "accepts_response_payload": True})
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 3.0) -> dict[str, Any]:
        async with self._acked:
            await asyncio.wait_for(
                self._acked.wait_for(lambda: envelope_id in self.acks), timeout)
            return self.acks[envelope_id]
