"""`/arxiv` in Slack: a Socket Mode connection (no public URL) taking commands for a channel.

With `SLACK_APP_TOKEN`, `start_socket_mode(settings, store_path)` takes `/arxiv <command>
[args]` — subscribe, unsubscribe, list, threshold, time, tz, lang, topics, pause, resume,
digest, help — for the channel it is typed in, through the channel-neutral
`digestbot.commands` (`digest` posts at once through the outbox with `channels.slack`'s
sender). Every request is acknowledged at once (Slack wants it within 3 s) and answered
afterwards with an ephemeral message through the request's `response_url`
(chat.postEphemeral when there is none). Buttons in a reply (topic catalogue, suggestions)
are Block Kit buttons whose value is a command line.

Who may change a channel's settings: reading (`help`, `topics`, `list`) is open to anyone who
can type in the channel. Commands that change something require that the user is a full
member of the workspace — not a bot, not deactivated, not a single- or multi-channel guest
(`users.info`: `is_restricted`, `is_ultra_restricted`) — and a member of that channel
(`conversations.members`); in a direct message with the bot the user is the subscriber and
may change it. When Slack cannot answer (missing `users:read`/`channels:read`/`groups:read`
scope, network), the change is refused with a reply that says so, never allowed blindly.
Bot scopes needed: `chat:write`, `commands`, `users:read`, `channels:read`, `groups:read`;
for library files also `files:read` and the `message.im`/`message.channels` events.

A BibTeX or RIS file shared with the bot becomes the channel's library (issue 16): in a
direct message any file, in a channel one whose message says `library`. The bot reads the
file's metadata with files.info, refuses one too large before downloading, then fetches
`url_private` with its token — only from a Slack host (or the configured API's), never
following a redirect, so the token goes nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from digestbot import commands, outbox
from digestbot.channels.slack import SlackSender, api_error, web_client, webhook_client
from digestbot.config import Settings
from digestbot.errors import DigestbotError, PermanentError, TransientError, UsageError
from digestbot.render import clip, controls
from digestbot.render.slack import ACTIONS_ELEMENTS, BUTTON_CHARS, MAX_BLOCKS, escape, fit, section
from digestbot.store import Store, StoreThread
from digestbot.subscribers import feedback

log = logging.getLogger(__name__)

# "/subscribe" in the shared replies becomes "/arxiv subscribe": Slack has one slash command.
_COMMAND_REF = re.compile(
    r"(?<![\w/])/(" + "|".join(sorted(
        (n for c in commands.COMMANDS for n in (c.name, *c.aliases)), key=len, reverse=True))
    + r")\b")


# What a channel message says when its file is meant as the channel's library.
_LIBRARY_WORDS = {"library", "文库", "zotero", "bib"}


def parse_command(text: str) -> tuple[str, str]:
    """`subscribe 后训练 80` → ("subscribe", "后训练 80"); empty text is `help`."""
    name, _, arg = (text or "").strip().partition(" ")
    return (name.lstrip("/").lower() or "help"), arg.strip()


def slack_text(text: str) -> str:
    """A shared reply as Slack mrkdwn: escaped, with its command references made `/arxiv …`."""
    return _COMMAND_REF.sub(r"/arxiv \1", escape(text))


def reply_payload(reply: commands.Reply) -> dict[str, Any]:
    """An ephemeral message: the text, and the reply's buttons as Block Kit buttons."""
    text = slack_text(reply.text)
    payload: dict[str, Any] = {"response_type": "ephemeral", "text": fit(text, 40_000)}
    buttons = [b for row in reply.buttons for b in row]
    if buttons:
        blocks: list[dict[str, Any]] = [section(text)]
        for start in range(0, len(buttons), ACTIONS_ELEMENTS):
            blocks.append({"type": "actions", "elements": [
                {"type": "button", "action_id": f"arxiv_{start + i}", "value": b.action,
                 "text": {"type": "plain_text", "text": clip(b.text, BUTTON_CHARS - 2)}}
                for i, b in enumerate(buttons[start : start + ACTIONS_ELEMENTS])]})
        payload["blocks"] = blocks[:MAX_BLOCKS]
    return payload


class SlackCommands:
    """Runs `/arxiv …` and button clicks for a channel through `digestbot.commands`.

    Commands, votes and uploads write, and a write may wait for another process's
    transaction: they run on `writer`'s thread, so the loop (shared with the web app and the
    delivery ticks under `digestbot run`) never waits on SQLite. Reads stay on the loop.
    """

    def __init__(self, settings: Settings, store: Store, client: AsyncWebClient) -> None:
        self.settings = settings
        self.store = store
        self.writer = StoreThread(store.path, "digestbot-slack-store")
        self.client = client
        # `/arxiv digest` posts through the outbox at once, as the scheduler's sender would.
        self.sender = SlackSender(client, mode=settings.slack_mode, public_url=settings.public_url)

    async def on_request(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        """Socket Mode listener: acknowledge first (Slack's 3 s), then work and answer."""
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        try:
            if req.type == "slash_commands":
                await self.on_slash(req.payload)
            elif req.type == "interactive" and req.payload.get("type") == "block_actions":
                await self.on_action(req.payload)
            elif req.type == "events_api":
                await self.on_event(req.payload)
        except Exception:
            log.exception("slack: %s request failed", req.type)

    async def on_event(self, payload: dict[str, Any]) -> commands.Reply | None:
        """A file shared with the bot (a `message` event of subtype `file_share`)."""
        event = payload.get("event") or {}
        files = event.get("files") or []
        if event.get("type") != "message" or event.get("subtype") != "file_share" or not files:
            return None
        channel, user = event.get("channel") or "", event.get("user") or ""
        said = (event.get("text") or "").strip().lower().lstrip("/").removeprefix("arxiv ")
        if not channel.startswith("D") and said not in _LIBRARY_WORDS:
            return None  # a file shared in a channel for its members, not for the bot
        reply = await self.import_file(channel, user, str(files[0].get("id") or ""))
        await self.client.chat_postEphemeral(channel=channel, user=user,
                                             text=slack_text(reply.text))
        return reply

    async def import_file(self, channel: str, user: str, file_id: str) -> commands.Reply:
        refusal = await self.refusal(channel, user)
        if refusal is not None:
            return commands.Reply(refusal)
        ctx = commands.CommandContext(channel="slack", address=channel)
        try:
            info = (await self.client.files_info(file=file_id))["file"]
            size = int(info.get("size") or 0)
            if size > commands.library.MAX_UPLOAD_BYTES:
                return commands.library.refuse_size(self.store, ctx, size)
            data = await self._download(info.get("url_private_download")
                                        or info.get("url_private") or "")
        except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError, DigestbotError) as exc:
            log.warning("slack: file %s not fetched: %s", file_id, type(exc).__name__)
            return commands.library.failed_download(self.store, ctx, exc)
        name = str(info.get("name") or "file")
        parsed = await asyncio.to_thread(commands.library.parse, data, name)
        return await self.writer.run(commands.library.upload, ctx, parsed, name)

    async def _download(self, url: str) -> bytes:
        """A private file's bytes (at most one more than the limit: the parser refuses it)."""
        host = urlsplit(url).hostname or ""
        if not (host.endswith(".slack.com") or host == urlsplit(self.settings.slack_api_url).hostname):
            raise DigestbotError("not a Slack file URL")
        limit = commands.library.MAX_UPLOAD_BYTES + 1
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                url, headers={"Authorization": f"Bearer {self.client.token}"},
                allow_redirects=False) as resp:
            # Without files:read Slack answers its sign-in page, not the file.
            if resp.status != 200 or resp.content_type == "text/html":
                raise DigestbotError(f"HTTP {resp.status} {resp.content_type}")
            data = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                data += chunk
                if len(data) >= limit:
                    break
            return bytes(data[:limit])

    async def on_slash(self, payload: dict[str, Any]) -> commands.Reply:
        return await self._handle(payload, payload.get("text", ""))

    async def on_action(self, payload: dict[str, Any]) -> commands.Reply:
        action = (payload.get("actions") or [{}])[0]
        line = controls.slack_action(action.get("action_id", ""), str(action.get("value", "")))
        tapped = controls.parse(line) if line else None
        if tapped is not None:
            return await self.on_vote(payload, *tapped)
        return await self._handle(payload, action.get("value", ""))

    async def on_vote(self, payload: dict[str, Any], value: int, paper_id: str) -> commands.Reply:
        """👍/👎 under a digest entry: record it for the channel's subscription and show it on
        the message's buttons (chat.update of that message; no new message). Any member's
        click is the channel's vote, as its digest is the channel's."""
        channel, _ = _asker(payload)
        ctx = commands.CommandContext(channel="slack", address=channel)
        lang = commands.reply_lang(self.store, "slack", channel)
        try:
            sub_id = await self.writer.run(commands.vote, ctx, value, paper_id)
        except UsageError as exc:
            reply = commands.Reply(commands.in_lang(exc, lang))
            await self.respond(payload, reply)
            return reply
        message = payload.get("message") or {}
        ts = message.get("ts") or (payload.get("container") or {}).get("message_ts")
        blocks = message.get("blocks")
        if ts and isinstance(blocks, list):
            prefix = f"{controls.ACTION}:"
            ids = {str(b.get("block_id", "")): str(b.get("block_id", ""))[len(prefix):]
                   for b in blocks if isinstance(b, dict)
                   and str(b.get("block_id", "")).startswith(prefix)}
            votes = feedback.votes_on(self.store, sub_id, list(ids.values()))
            # The message as it is, every entry's buttons showing the channel's vote now.
            fresh = [controls.slack_actions(ids[b["block_id"]], lang, votes.get(ids[b["block_id"]]))
                     if isinstance(b, dict) and b.get("block_id") in ids else b for b in blocks]
            try:
                await self.client.chat_update(channel=channel, ts=ts, blocks=fresh,
                                              text=message.get("text") or "")
            except SlackApiError as exc:
                # Recorded all the same; only the buttons do not show it.
                log.warning("slack: cannot update the buttons in %s: %s", channel,
                            api_error(exc))
        return commands.Reply("")

    async def _handle(self, payload: dict[str, Any], line: str) -> commands.Reply:
        """A typed command and a button's are the same command line: run, answer, deliver."""
        name, arg = parse_command(line)
        reply = await self.run(*_asker(payload), name, arg)
        await self.respond(payload, reply)
        await self.deliver(payload, reply)
        return reply

    async def deliver(self, payload: dict[str, Any], reply: commands.Reply) -> None:
        """`/arxiv digest`: the outbox row now, or the last digest again; say so if it fails."""
        if reply.delivery_id is not None:
            report = await outbox.deliver_row(self.store, self.sender, reply.delivery_id)
            if report.sent:
                return
            row = outbox.get_row(self.store, reply.delivery_id)
            error = (row.last_error if row else None) or ""
        elif reply.digest is not None:
            try:
                await self.sender.post_again(reply.digest)
                return
            except (TransientError, PermanentError) as exc:
                error = str(exc)
        else:
            return
        channel, _ = _asker(payload)
        await self.respond(payload, commands.Reply(commands.say(
            commands.reply_lang(self.store, "slack", channel),
            f"发送失败({error})。如果是 not_in_channel,请先用 /invite 把机器人加入本频道,"
            "再用 /resume 恢复推送。",
            f"Sending failed ({error}). If it says not_in_channel, /invite the bot to this "
            "channel, then /resume.")))

    async def run(self, channel: str, user: str, name: str, arg: str) -> commands.Reply:
        if not channel or not user:
            return commands.Reply("无法识别频道或用户 / cannot tell the channel or the user")
        if commands.mutates(name):
            refusal = await self.refusal(channel, user)
            if refusal is not None:
                return commands.Reply(refusal)
        ctx = commands.CommandContext(channel="slack", address=channel)
        return await self.writer.run(commands.execute, self.settings, ctx, name, arg)

    def close(self) -> None:
        """Stop the store thread (the loop's own store is the caller's)."""
        self.writer.close()

    async def refusal(self, channel: str, user: str) -> str | None:
        """Why `user` may not change `channel`'s subscription, or None when they may."""
        lang = commands.reply_lang(self.store, "slack", channel)
        try:
            info = (await self.client.users_info(user=user))["user"]
            if info.get("is_bot") or info.get("deleted") or info.get(
                    "is_restricted") or info.get("is_ultra_restricted"):
                return commands.say(
                    lang, "只有工作区正式成员(非访客)可以修改频道订阅;任何人都可以 /list 查看。",
                    "Only full workspace members (not guests) can change this channel's "
                    "subscription; anyone can read it with /list.")
            if channel.startswith("D") or await self._is_member(channel, user):
                return None
            return commands.say(
                lang, "只有本频道的成员可以修改它的订阅;任何人都可以 /list 查看。",
                "Only members of this channel can change its subscription; anyone can read it "
                "with /list.")
        except (SlackApiError, OSError, TimeoutError) as exc:
            error = api_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
            log.warning("slack: cannot check %s in %s: %s", user, channel, error)
            return commands.say(
                lang, f"暂时无法确认你是否为本频道成员({error}),未做修改。请稍后再试,或请管理员"
                      "为应用添加 users:read、channels:read、groups:read 权限。",
                f"Could not check that you are a member of this channel ({error}); nothing "
                "changed. Try again later, or ask an admin to grant the app users:read, "
                "channels:read and groups:read.")

    async def _is_member(self, channel: str, user: str) -> bool:
        cursor = None
        while True:
            page = await self.client.conversations_members(channel=channel, cursor=cursor,
                                                           limit=1000)
            if user in page.get("members", []):
                return True
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return False

    async def respond(self, payload: dict[str, Any], reply: commands.Reply) -> None:
        """Ephemeral: through the request's response_url, else chat.postEphemeral."""
        message = reply_payload(reply)
        url = payload.get("response_url")
        if url:
            if reply.edit and payload.get("type") == "block_actions":
                message["replace_original"] = True
            response = await webhook_client(url, timeout=10).send_dict(message)
            if response.status_code == 200:
                return
            log.warning("slack: response_url answered HTTP %s", response.status_code)
        channel, user = _asker(payload)
        await self.client.chat_postEphemeral(channel=channel, user=user, text=message["text"],
                                             blocks=message.get("blocks"))


def _asker(payload: dict[str, Any]) -> tuple[str, str]:
    """(channel, user) of a request: slash commands carry flat ids, button clicks objects."""
    channel = (payload.get("channel_id") or (payload.get("channel") or {}).get("id")
               or (payload.get("container") or {}).get("channel_id") or "")
    user = payload.get("user_id") or (payload.get("user") or {}).get("id") or ""
    return channel, user


class SocketModeHandle:
    """What `digestbot run` keeps: `await handle.stop()` closes the connection and the store."""

    def __init__(self, client: SocketModeClient, store: Store, handler: SlackCommands) -> None:
        self.client = client
        self.store = store
        self.handler = handler

    async def stop(self) -> None:
        try:
            await self.client.close()
        finally:
            self.handler.close()
            self.store.close()


async def start_socket_mode(settings: Settings, store_path: str, *,
                            ping_interval: float = 10.0) -> SocketModeHandle:
    """Connect to Slack over Socket Mode in the running loop and take `/arxiv` commands.

    Fails at once (DigestbotError) when a token is missing or refused, instead of the SDK's
    endless reconnect loop, so `digestbot run` can say so and go on without Slack.
    """
    if not settings.slack_app_token or not settings.slack_bot_token:
        raise DigestbotError("Slack commands need SLACK_APP_TOKEN (xapp-…, connections:write) "
                             "and SLACK_BOT_TOKEN (xoxb-…)")
    web = web_client(settings)
    client = SocketModeClient(app_token=settings.slack_app_token.get(), web_client=web,
                              ping_interval=ping_interval, logger=log)
    store = Store(store_path)
    handler = SlackCommands(settings, store, web)
    client.socket_mode_request_listeners.append(handler.on_request)
    try:
        await web.auth_test()
        client.wss_uri = await client.issue_new_wss_url()
        await client.connect()
    except (SlackApiError, OSError, TimeoutError) as exc:
        await SocketModeHandle(client, store, handler).stop()
        error = api_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
        raise DigestbotError(f"Slack Socket Mode did not connect: {error} (check SLACK_APP_TOKEN "
                             "and SLACK_BOT_TOKEN, DIGESTBOT_SLACK_API_URL)") from None
    log.info("Slack Socket Mode connected; /arxiv commands on")
    return SocketModeHandle(client, store, handler)
