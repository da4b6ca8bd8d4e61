"""Slack: channel digests in Block Kit through the outbox, and the `/arxiv` slash command.

Three parts, each usable alone:
- `render_slack(digest, mode)`: Block Kit messages within Slack's limits (≤ 50 blocks a
  message, section text ≤ 3000 characters, header ≤ 150, context ≤ 10 elements), each with a
  plain-text `text` fallback. Every dynamic string is mrkdwn-escaped (`&`, `<`, `>`), so a
  title such as `<!channel>` or `<http://evil|click>` shows as text and cannot ping or link.
  A digest of up to `ENTRIES_PER_MESSAGE` papers is one message; a longer one is a summary
  message and then parts, posted as thread replies (`slack_mode = "thread"`) or as messages
  of their own (`"sequential"`).
- `SlackSender`: the outbox's sender. A channel id is posted to with the bot token through
  slack-sdk's AsyncWebClient (`base_url` = `DIGESTBOT_SLACK_API_URL`); a subscriber with an
  incoming-webhook URL is posted to through AsyncWebhookClient instead (webhooks return no
  `ts`, so they cannot thread: their parts go one after another). Each message is recorded
  with `outbox.mark_part` (its `ts`; the summary's `ts` also as `deliveries.thread_ts`), so a
  restart goes on at the next unsent message, inside the same thread. At most one message a
  second per channel; a 429 waits out `Retry-After` (slack-sdk's retry handler) and then
  counts as transient. `channel_not_found`, `not_in_channel`, `is_archived`,
  `account_inactive`, `invalid_auth` (and their webhook equivalents) mark the subscriber
  blocked with the reason; other errors are transient and the batch goes on. slack-sdk's log
  lines go through `_RedactingLog`: a webhook URL is a credential and never reaches a log.
- `start_socket_mode(settings, store_path)`: with `SLACK_APP_TOKEN`, a Socket Mode
  connection (no public URL) taking `/arxiv <command> [args]` — subscribe, unsubscribe, list,
  threshold, time, tz, lang, topics, pause, resume, digest, help — for the channel it is
  typed in, through the channel-neutral `digestbot.commands` (`digest` posts at once through
  the outbox). Every request is acknowledged at once (Slack wants it within 3 s) and answered
  afterwards with an ephemeral message through the request's `response_url`
  (chat.postEphemeral when there is none). Buttons in a reply
  (topic catalogue, suggestions) are Block Kit buttons whose value is a command line.

Who may change a channel's settings: reading (`help`, `topics`, `list`) is open to anyone who
can type in the channel. Commands that change something require that the user is a full
member of the workspace — not a bot, not deactivated, not a single- or multi-channel guest
(`users.info`: `is_restricted`, `is_ultra_restricted`) — and a member of that channel
(`conversations.members`); in a direct message with the bot the user is the subscriber and
may change it. When Slack cannot answer (missing `users:read`/`channels:read`/`groups:read`
scope, network), the change is refused with a reply that says so, never allowed blindly.
Bot scopes needed: `chat:write`, `commands`, `users:read`, `channels:read`, `groups:read`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from digestbot import commands, outbox
from digestbot.commands import label
from digestbot.config import Settings
from digestbot.errors import DigestbotError, PermanentError, TransientError
from digestbot.models import Digest, DigestEntry
from digestbot.render import announce_label, clip, lead_topic, percent, shorten_authors, topic_name
from digestbot.store import Store

log = logging.getLogger(__name__)

# Slack's Block Kit limits (api.slack.com/reference/block-kit).
MAX_BLOCKS = 50
SECTION_CHARS = 3000
HEADER_CHARS = 150
CONTEXT_ELEMENTS = 10
BUTTON_CHARS = 75
ACTIONS_ELEMENTS = 25
# Three blocks a paper (section, context, divider): 15 papers plus header, intro and footer
# fill one message; a part of a long digest carries 16 plus its "papers 17–32" line.
ENTRIES_PER_MESSAGE = 15
ENTRIES_PER_PART = 16
# Titles of the summary message of a long digest.
SUMMARY_TITLES = 5
MODES = ("thread", "sequential")

# Errors after which posting to this channel will not work until a person acts.
BLOCKING_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "account_inactive", "invalid_auth",
    "token_revoked", "team_access_not_granted",
})
# What an incoming webhook answers (as a plain-text body) when it is gone for good.
WEBHOOK_BLOCKING_ERRORS = frozenset({
    "no_service", "no_active_hooks", "channel_not_found", "channel_is_archived",
    "action_prohibited", "invalid_token", "team_disabled", "posting_to_general_channel_denied",
})

# -- rendering ----------------------------------------------------------------------------------


@dataclass
class SlackMessage:
    """One chat.postMessage payload: `text` is the notification/accessibility fallback."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    # The papers whose entries it carries (the summary's title list does not count), for
    # `outbox.mark_part`.
    paper_ids: list[str] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """As Slack takes it (and as Block Kit Builder shows it)."""
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str | None) -> str:
    """Slack's mrkdwn escaping: only `&`, `<` and `>` (they start entities, links, mentions)."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(mrkdwn: str, limit: int) -> str:
    """Shorten already-escaped text to `limit` characters without cutting an `&amp;` in two."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    cut = mrkdwn[: limit - 1]
    amp = cut.rfind("&")
    if amp > cut.rfind(";"):
        cut = cut[:amp]
    return cut + "…"


def _esc(text: str | None, limit: int) -> str:
    """`text` as mrkdwn in at most `limit` characters.

    Escaping can make a string five times longer (`&` → `&amp;`), so the budget counts the
    escaped form; counting the raw text let a hostile title push a section past 3000 and
    lose its score, topic reason and summary to the final cut.
    """
    return fit(escape(clip(text, limit)), limit)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": fit(text, SECTION_CHARS)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(*texts: str) -> dict[str, Any]:
    elements = [_mrkdwn(t) for t in texts if t][:CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements}


def _count(total: int, lang: str) -> str:
    if lang == "en":
        return f"{total} paper{'' if total == 1 else 's'}"
    return f"{total} 篇" if lang == "zh" else f"{total} 篇 / papers"


def header_text(digest: Digest) -> str:
    """`arXiv 每日学术速递 · 2026-08-13 · 后训练 · 22 篇` (plain text, ≤ 150 characters)."""
    lang = digest.subscriber.lang
    title = label(lang, "arXiv 每日学术速递", "arXiv daily digest")
    topic = lead_topic(digest)
    if len(digest.topics) > 1:
        topic += " 等" if lang != "en" else " and more"
    text = f"{title} · {digest.date} · {topic} · {_count(digest.total, lang)}"
    return text if len(text) <= HEADER_CHARS else clip(text, HEADER_CHARS - 2)


def _entry_blocks(entry: DigestEntry, lang: str) -> list[dict[str, Any]]:
    """A paper: section (title, 中文标题, match, badge, 专题命中, AI总结), context, divider."""
    p, a, e = entry.paper, entry.announcement, entry.enrichment
    # Budgets (escaped characters) add up to under SECTION_CHARS with every field at its
    # longest, so the final cut in `_mrkdwn` never takes the score, a reason or the summary.
    lines = [f"*<{escape(p.abs_url)}|{_esc(p.title, 450)}>*"]
    if lang != "en" and e and e.title_zh:
        lines.append(_esc(e.title_zh, 300))
    lines.append(f"`{percent(entry.best_score)}` · {escape(announce_label(a.announce_type, lang))}"
                 f" · `{escape(p.id)}` · <{escape(p.pdf_url)}|PDF>")
    hit_label = label(lang, "专题命中", "Topic match")
    for hit in entry.hits[:3]:
        reason = f": {_esc(hit.reason, 250)}" if hit.reason else ""
        lines.append(f"*{hit_label}* {_esc(hit.topic_name, 60)} {percent(hit.score)}{reason}")
    if lang != "en" and e and e.summary_zh:
        lines.append(f"*AI总结* {_esc(e.summary_zh, 450)}")
    if lang != "zh" and e and e.summary_en:
        lines.append(f"*TL;DR* {_esc(e.summary_en, 450)}")
    institutions = ""
    if e and e.institutions:
        names = [i.name_zh if lang == "zh" and i.name_zh else i.name for i in e.institutions]
        institutions = "🏛 " + _esc(" · ".join(names), 500)
    context = _context(
        _esc(shorten_authors(p.authors), 500) if p.authors else "",
        institutions,
        escape(" ".join(p.categories)),
    )
    blocks = [_section("\n".join(lines))]
    if context["elements"]:
        blocks.append(context)
    return [*blocks, {"type": "divider"}]


def _footer(digest: Digest, lang: str, more: bool) -> dict[str, Any]:
    topics = "、".join(
        f"{escape(topic_name(t, lang))}"
        + (f" ≥{digest.thresholds[t.slug]}%" if t.slug in digest.thresholds else "")
        for t in digest.topics)
    texts = [label(lang, f"本频道订阅了:{topics}。用 `/arxiv list` 查看,`/arxiv help` 查看命令。",
                   f"This channel follows: {topics}. `/arxiv list` shows settings, "
                   "`/arxiv help` the commands.")]
    if more and digest.more:
        texts.insert(0, label(lang, f"另有 {digest.more} 篇达到阈值,未在本期显示。",
                              f"{digest.more} more matching papers not shown."))
    texts.append(label(lang, "元数据来自 arXiv (CC0),AI 内容由模型生成,可能有误。",
                       "Metadata from arXiv (CC0); AI-written text may contain mistakes."))
    return _context(*texts)


def _fallback(head: str, entries: Iterable[DigestEntry], start: int = 1) -> str:
    lines = [escape(head)]
    lines += [f"{i}. {_esc(e.paper.title, 150)} ({percent(e.best_score)})"
              for i, e in enumerate(entries, start)]
    return fit("\n".join(lines), SECTION_CHARS)


def render_slack(digest: Digest, mode: str = "thread") -> list[SlackMessage]:
    """The digest as Slack messages: one when it fits, else a summary and parts.

    `mode` only changes the wording of the summary ("in the thread" or "below"); the poster
    decides where the parts go. Entries are never split across messages.
    """
    if mode not in MODES:
        raise ValueError(f"slack mode must be one of {', '.join(MODES)}, not {mode!r}")
    lang = digest.subscriber.lang
    head = header_text(digest)
    header = {"type": "header", "text": {"type": "plain_text", "text": head}}
    entries = digest.entries
    if len(entries) <= ENTRIES_PER_MESSAGE:
        blocks = [header]
        for entry in entries:
            blocks += _entry_blocks(entry, lang)
        blocks.append(_footer(digest, lang, more=True))
        return [SlackMessage(_fallback(head, entries), blocks, [e.paper.id for e in entries])]
    where = label(lang, "完整列表见本消息的讨论串(thread)回复。", "The full list is in this thread.")
    if mode == "sequential":
        where = label(lang, "完整列表见下方消息。", "The full list follows below.")
    top = "\n".join(
        f"{i}. `{percent(e.best_score)}` <{escape(e.paper.abs_url)}|{_esc(e.paper.title, 200)}>"
        for i, e in enumerate(entries[:SUMMARY_TITLES], 1))
    intro = label(lang, f"共 {len(entries)} 篇,按匹配度排序。最高匹配:",
                  f"{len(entries)} papers by match score. Top matches:")
    summary = SlackMessage(_fallback(head, entries[:SUMMARY_TITLES]), [
        header, _section(f"{intro}\n{top}\n\n{where}"), _footer(digest, lang, more=True)])
    messages = [summary]
    for start in range(0, len(entries), ENTRIES_PER_PART):
        chunk = entries[start : start + ENTRIES_PER_PART]
        span = f"{start + 1}–{start + len(chunk)} / {len(entries)}"
        blocks: list[dict[str, Any]] = [_context(f"*{escape(head)}* · {span}")]
        for entry in chunk:
            blocks += _entry_blocks(entry, lang)
        messages.append(SlackMessage(_fallback(f"{head} · {span}", chunk, start + 1), blocks,
                                     [e.paper.id for e in chunk]))
    return messages


# -- sending ------------------------------------------------------------------------------------


class _Pacer:
    """At most one message per `interval` seconds per channel (Slack's ~1/s guidance)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, key: str) -> None:
        async with self._locks.setdefault(key, asyncio.Lock()):
            delay = self._last.get(key, float("-inf")) + self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._last[key] = time.monotonic()


# Credentials slack-sdk writes into its log lines: a Socket Mode payload's `response_url` and
# legacy verification `token`, the one-time `ticket` of the WebSocket URL, Slack's hook paths.
_CREDENTIAL = re.compile(
    r"""((?<![\w])["']?(?:token|response_url)["']?\s*[:=]\s*["']?|ticket=|hooks\.slack\.com[\\/]+)"""
    r"""[^\s"'&,]+""")


class _RedactingLog(logging.LoggerAdapter):
    """A logger for slack-sdk that leaves credentials out.

    slack-sdk redacts the Authorization header, but logs an incoming webhook's URL (the
    credential itself) at INFO on every 429 retry and at DEBUG on every post, and whole Socket
    Mode payloads at DEBUG. It formats its messages itself (f-strings), so `msg` is the line.
    """

    def __init__(self, logger: logging.Logger, *secrets: str) -> None:
        super().__init__(logger, {})
        self.secrets = [s for s in secrets if s]

    @property
    def level(self) -> int:
        # slack-sdk decides whether to build its debug lines from `logger.level`.
        return self.logger.level

    def process(self, msg: Any, kwargs: Any) -> tuple[str, Any]:
        text = str(msg)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _CREDENTIAL.sub(r"\1***", text), kwargs


def _sdk_log(name: str, *secrets: str) -> Any:
    """slack-sdk's own logger `name`, redacted; its `logger=` parameters take an adapter fine."""
    return _RedactingLog(logging.getLogger(name), *secrets)


def web_client(settings: Settings, token: str | None = None) -> AsyncWebClient:
    """The bot's Web API client against `slack_api_url`, waiting out 429s (Retry-After)."""
    if token is None and settings.slack_bot_token:
        token = settings.slack_bot_token.get()
    return AsyncWebClient(
        token=token, base_url=settings.slack_api_url, timeout=30,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
        logger=_sdk_log("slack_sdk.web.async_base_client", token or ""),
    )


def webhook_client(url: str, timeout: float = 30) -> AsyncWebhookClient:
    """An incoming webhook or `response_url` client that waits out 429s and never logs the URL."""
    return AsyncWebhookClient(
        url, timeout=timeout, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
        logger=_sdk_log("slack_sdk.webhook.async_client", url))


def _api_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")


class SlackSender:
    """Posts digests to Slack channels (bot token) or incoming webhooks, part by part."""

    channel = "slack"

    def __init__(self, client: AsyncWebClient | None, *, mode: str = "thread",
                 interval: float = 1.0) -> None:
        if mode not in MODES:
            raise ValueError(f"slack mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.client = client
        self.mode = mode
        self.pacer = _Pacer(interval)

    async def send(self, store: Store, delivery_row: outbox.DeliveryRow, digest: Digest) -> None:
        row_id = delivery_row.id
        messages = render_slack(digest, self._mode(digest))
        outbox.set_parts_total(store, row_id, len(messages))

        def record(seq: int, ts: str | None) -> None:
            if seq == 0 and ts:
                outbox.set_thread_ts(store, row_id, ts)
            # Split points depend only on the entry count, fixed by the row's paper_ids, so
            # resuming by index is safe here; the ids keep the outbox uniform with Telegram.
            outbox.mark_part(store, row_id, seq, ts, paper_ids=messages[seq].paper_ids)

        await self._post_all(digest, messages, record, outbox.parts_done(store, row_id),
                             delivery_row.thread_ts or outbox.part_external_id(store, row_id, 0))

    async def post_again(self, digest: Digest) -> None:
        """A digest asked for again (`/arxiv digest again`): posted as `send` would, unrecorded."""
        await self._post_all(digest, render_slack(digest, self._mode(digest)), None, set(), None)

    def _mode(self, digest: Digest) -> str:
        # Webhooks answer "ok", not a ts: their parts can only follow one another.
        return "sequential" if digest.subscriber.webhook_url else self.mode

    async def _post_all(self, digest: Digest, messages: list[SlackMessage],
                        record: Callable[[int, str | None], None] | None, done: set[int],
                        thread_ts: str | None) -> None:
        """Post the messages not in `done`, the parts under the first one's ts in thread mode."""
        sub = digest.subscriber
        webhook = sub.webhook_url
        threaded = self._mode(digest) == "thread"
        for seq, message in enumerate(messages):
            if seq in done:
                continue
            await self.pacer.wait(webhook or sub.address)
            ts = None
            if webhook:
                await self._post_webhook(webhook, message)
            else:
                ts = await self._post(sub.address, message,
                                      thread_ts if threaded and seq > 0 else None)
                if seq == 0:
                    thread_ts = ts
            if record is not None:
                record(seq, ts)

    async def _post(self, channel: str, message: SlackMessage, thread_ts: str | None) -> str:
        if self.client is None:
            raise TransientError(
                "SLACK_BOT_TOKEN is not set and this subscriber has no webhook; set the token "
                "or `digestbot sub add --slack CHANNEL --slack-webhook URL`")
        try:
            response = await self.client.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks, thread_ts=thread_ts,
                unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:
            error = _api_error(exc)
            if error in BLOCKING_ERRORS:
                raise PermanentError(f"slack: {error}", status="blocked") from None
            raise TransientError(f"slack: {error}") from None
        except (TimeoutError, OSError) as exc:
            raise TransientError(f"slack: {type(exc).__name__}: {exc}") from None
        return str(response["ts"])

    async def _post_webhook(self, url: str, message: SlackMessage) -> None:
        try:
            response = await webhook_client(url).send(
                text=message.text, blocks=message.blocks, unfurl_links=False, unfurl_media=False)
        except (TimeoutError, OSError) as exc:
            # The URL is a credential: name the failure, never the address.
            raise TransientError(f"slack webhook: {type(exc).__name__}") from None
        if response.status_code == 200:
            return
        error = (response.body or "").strip()[:100] or f"HTTP {response.status_code}"
        if error in WEBHOOK_BLOCKING_ERRORS:
            raise PermanentError(f"slack webhook: {error}", status="blocked")
        raise TransientError(f"slack webhook: HTTP {response.status_code} {error}")


def make_sender(settings: Settings) -> SlackSender | None:
    """A sender when a bot token is set or some Slack subscriber has a webhook; else None."""
    if settings.slack_bot_token:
        return SlackSender(web_client(settings), mode=settings.slack_mode)
    with Store(settings.db) as store:
        hooked = list(store.db.query(
            "select 1 from subscribers where channel = 'slack' and webhook_url is not null"
            " and webhook_url != '' limit 1"))
    return SlackSender(None, mode=settings.slack_mode) if hooked else None


# -- /arxiv commands ----------------------------------------------------------------------------

# "/subscribe" in the shared replies becomes "/arxiv subscribe": Slack has one slash command.
_COMMAND_REF = re.compile(
    r"(?<![\w/])/(" + "|".join(sorted(
        (n for c in commands.COMMANDS for n in (c.name, *c.aliases)), key=len, reverse=True))
    + r")\b")


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
        blocks: list[dict[str, Any]] = [_section(text)]
        for start in range(0, len(buttons), ACTIONS_ELEMENTS):
            blocks.append({"type": "actions", "elements": [
                {"type": "button", "action_id": f"arxiv_{start + i}", "value": b.action,
                 "text": {"type": "plain_text", "text": clip(b.text, BUTTON_CHARS - 2)}}
                for i, b in enumerate(buttons[start : start + ACTIONS_ELEMENTS])]})
        payload["blocks"] = blocks[:MAX_BLOCKS]
    return payload


class SlackCommands:
    """Runs `/arxiv …` and button clicks for a channel through `digestbot.commands`."""

    def __init__(self, settings: Settings, store: Store, client: AsyncWebClient) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        # `/arxiv digest` posts through the outbox at once, as the scheduler's sender would.
        self.sender = SlackSender(client, mode=settings.slack_mode)

    async def on_request(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        """Socket Mode listener: acknowledge first (Slack's 3 s), then work and answer."""
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        try:
            if req.type == "slash_commands":
                await self.on_slash(req.payload)
            elif req.type == "interactive" and req.payload.get("type") == "block_actions":
                await self.on_action(req.payload)
        except Exception:
            log.exception("slack: %s request failed", req.type)

    async def on_slash(self, payload: dict[str, Any]) -> commands.Reply:
        return await self._handle(payload, payload.get("text", ""))

    async def on_action(self, payload: dict[str, Any]) -> commands.Reply:
        action = (payload.get("actions") or [{}])[0]
        return await self._handle(payload, action.get("value", ""))

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
        return commands.execute(self.store, self.settings, ctx, name, arg)

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
            error = _api_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
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

    def __init__(self, client: SocketModeClient, store: Store) -> None:
        self.client = client
        self.store = store

    async def stop(self) -> None:
        try:
            await self.client.close()
        finally:
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
                              ping_interval=ping_interval, logger=_sdk_log(log.name))
    store = Store(store_path)
    handler = SlackCommands(settings, store, web)
    client.socket_mode_request_listeners.append(handler.on_request)
    try:
        await web.auth_test()
        client.wss_uri = await client.issue_new_wss_url()
        await client.connect()
    except (SlackApiError, OSError, TimeoutError) as exc:
        await SocketModeHandle(client, store).stop()
        error = _api_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
        raise DigestbotError(f"Slack Socket Mode did not connect: {error} (check SLACK_APP_TOKEN "
                             "and SLACK_BOT_TOKEN, DIGESTBOT_SLACK_API_URL)") from None
    log.info("Slack Socket Mode connected; /arxiv commands on")
    return SocketModeHandle(client, store)
