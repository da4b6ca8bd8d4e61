"""Chat commands (`/subscribe 后训练`, `/list`, `/tz Europe/Berlin`…) for every chat channel.

Telegram and Slack only adapt: they turn an incoming message into (name, argument text) and a
`CommandContext`, call `execute`, and show the `Reply` — plain text (the adapter escapes it
for its markup) plus optional buttons whose `action` is again a command line, so a tap runs
through the same code as typing. Nothing here knows a chat API.

Every command validates all of its input before the first write and writes in one
transaction, so a bad argument changes nothing. Replies follow the subscriber's language
(zh by default, en, or both); a validation message is shown in English alone to `en` readers
and as its "中文 / English" line to the others.

The package: `core` (the model: context, reply, buttons, language, shared lookups),
`subscriptions` (what a chat follows), `preferences` (how and whether its digests come),
`profile` (followed authors, keywords in and out), `library` (a paper library as a profile) and
`registry` (every command by name, /help, and the dispatch). Each imports only those before
it in that list; callers use the names re-exported here.
"""

from __future__ import annotations

from digestbot.commands import library
from digestbot.commands.core import (
    Button,
    Command,
    CommandContext,
    Reply,
    in_lang,
    reply_lang,
    say,
)
from digestbot.commands.profile import vote
from digestbot.commands.registry import (
    COMMANDS,
    MAX_ARG_CHARS,
    execute,
    menu,
    mutates,
    resolve,
)

__all__ = [
    "COMMANDS",
    "MAX_ARG_CHARS",
    "Button",
    "Command",
    "CommandContext",
    "Reply",
    "execute",
    "in_lang",
    "library",
    "menu",
    "vote",
    "mutates",
    "reply_lang",
    "resolve",
    "say",
]
