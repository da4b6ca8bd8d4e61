"""The 👍/👎 controls under every delivered paper, one function per channel (issue 17).

Kept apart from the entry renderings on purpose: an entry is rendered once per paper and
shared by every reader, while a control names the reader (the email's signed link) or shows
their vote (a chat keyboard after a tap). So the controls are stitched beside the cached
entries, never into them, and each costs a string join per entry:

- Telegram: an inline keyboard under each message, a row per paper it carries
  (`telegram_keyboard`); a tap comes back as callback data `vote up 2608.01234`.
- Slack: an actions block closing each entry in place of its divider (`slack_actions`, so
  the 50-block budget is unchanged); a click comes back as a block action `vote_up` whose
  value is the paper id.
- Email and web: two links per entry, `{feedback_link}&paper=…&vote=up|down`
  (`vote_url`; in the email `EmailVotes`, through `render_email`'s per-entry `controls`),
  leading to a confirm page (mail scanners follow links; only the page's POST records).
"""

from __future__ import annotations

import functools
import html
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from digestbot.models import DigestEntry
from digestbot.render.fragments import Columns, Stamp, html_attribute, slot
from digestbot.render.i18n import label
from digestbot.render.rows import inline_piece
from digestbot.subscribers.feedback import DOWN, UP

ACTION = "vote"  # Telegram callback data "vote up ID"; Slack action_id "vote_up" / "vote_down"
_DATA = re.compile(r"vote (up|down) (\S{1,40})")
_MARK = {UP: "👍", DOWN: "👎"}


def parse(data: str) -> tuple[int, str] | None:
    """(UP or DOWN, paper id) of a tap's callback data or a Slack action; None for others."""
    match = _DATA.fullmatch(data.strip())
    if match is None:
        return None
    return (UP if match[1] == "up" else DOWN), match[2]


def slack_action(action_id: str, value: str) -> str | None:
    """A Slack button's action as callback data (`vote up ID`), or None if it is no vote."""
    name = {f"{ACTION}_up": "up", f"{ACTION}_down": "down"}.get(action_id)
    return f"{ACTION} {name} {value}" if name else None


def _button_text(mark: str, pid: str, chosen: bool) -> str:
    # The chosen side carries a check, so the state reads without a new message.
    return f"{'✅' if chosen else ''}{mark} {pid}"


def telegram_keyboard(paper_ids: Sequence[str], votes: Mapping[str, int]
                      ) -> list[list[dict[str, str]]]:
    """Rows of Bot API InlineKeyboardButtons: 👍 / 👎 for each paper of a message, the reader's
    current vote checked. Callback data stays far under Telegram's 64 bytes."""
    return [[{"text": _button_text(_MARK[v], pid, votes.get(pid) == v),
              "callback_data": f"{ACTION} {'up' if v == UP else 'down'} {pid}"}
             for v in (UP, DOWN)] for pid in paper_ids]


def slack_actions(paper_id: str, lang: str, vote: int | None = None) -> dict[str, Any]:
    """The actions block under a Slack entry: 👍 and 👎 (the reader's vote styled primary)."""
    elements = []
    for v, zh, en in ((UP, "有用", "useful"), (DOWN, "不感兴趣", "not for me")):
        button: dict[str, Any] = {
            "type": "button", "action_id": f"{ACTION}_{'up' if v == UP else 'down'}",
            "value": paper_id,
            "text": {"type": "plain_text", "emoji": True,
                     "text": f"{'✅' if vote == v else ''}{_MARK[v]} {label(lang, zh, en)}"}}
        if vote == v:
            button["style"] = "primary"
        elements.append(button)
    return {"type": "actions", "block_id": f"{ACTION}:{paper_id}", "elements": elements}


def vote_url(feedback_link: str, paper_id: str, vote: int) -> str:
    """One entry's signed vote link: the digest's `signing.feedback_link` plus paper and vote."""
    return feedback_link + _suffixes(paper_id)[0 if vote == UP else 1]


@functools.lru_cache(maxsize=20_000)
def _suffixes(paper_id: str) -> tuple[str, str]:
    """What a paper adds to the reader's link for 👍 and 👎 (a day's papers, each quoted once
    for all its readers)."""
    pid = quote(paper_id, safe="")
    return f"&paper={pid}&vote=up", f"&paper={pid}&vote=down"


@functools.lru_cache(maxsize=20_000)
def _pieces(paper_id: str) -> tuple[bytes, bytes, int, bytes, bytes]:
    """A paper's 👍 and 👎 suffixes as the HTML has them (attribute escaping is per character,
    so the link and a suffix escape apart), their size, and as the text has them: UTF-8, the
    pieces of `render_email`'s joins."""
    up, down = _suffixes(paper_id)
    html_up, html_down = html_attribute(up).encode("utf-8"), html_attribute(down).encode("utf-8")
    return html_up, html_down, len(html_up) + len(html_down), up.encode("utf-8"), down.encode("utf-8")


@functools.lru_cache(maxsize=20_000)
def _columns(paper_ids: tuple[str, ...]) -> tuple[tuple[Any, ...], ...]:
    """`_pieces` of each paper as columns (ups, downs, sizes, text ups, text downs): alike for
    every reader whose digest has these papers (a day has one lineup per set of subscriptions).
    A column per `itemgetter` map, not `zip(*…)`, whose iterator per paper (each an object
    the garbage collector tracks) set off most of a batch's collections."""
    pieces = list(map(_pieces, paper_ids))
    return tuple([tuple(map(part, pieces)) for part in _PARTS])


_PARTS = [operator.itemgetter(k) for k in range(5)]


@functools.cache
def _email_links(lang: str) -> Stamp:
    """The two links as inlined entry markup with the URLs as slots: rendered and inlined once
    per language, filled per reader and paper (a string join)."""
    style = "color:#57606a;text-decoration:none;margin-right:16px"
    links = "".join(
        f'<a href="{slot(name)}" style="{style}">{_MARK[v]} {html.escape(label(lang, zh, en))}</a>'
        for name, v, zh, en in (("up", UP, "有用", "useful"), ("down", DOWN, "不感兴趣", "not for me")))
    stamp = inline_piece(f'<p class="votes" style="margin:0 0 4px;font-size:13px">{links}</p>')
    if [(name, escape) for name, escape in stamp.slots] != [("up", html_attribute),
                                                           ("down", html_attribute)]:
        raise RuntimeError(f"css-inline moved the vote links' URLs: {stamp.literals!r}")
    return stamp


class EmailVotes:
    """One reader's 👍/👎 links for `render_email(controls=...)` (an `EntryControls`): the
    digest's one signed `feedback_link` plus each paper's id, in the HTML after the entry's
    links line and in the text after its PDF line (the same bytes as filling
    `_email_links`' stamp). `columns` gives them to `render_email` as pieces of its one join:
    the reader's three strings and each paper's two cached suffixes, no string per entry."""

    def __init__(self, feedback_link: str, lang: str) -> None:
        before, between, after = _email_links(lang).literals
        link = html_attribute(feedback_link)
        self._html = (before + link, between + link, after)
        self._text = (f"\n👍 {label(lang, '有用', 'useful')}: {feedback_link}",
                      f"\n👎 {label(lang, '不感兴趣', 'not for me')}: {feedback_link}")
        # The reader's pieces encoded once, for every entry of their digest.
        self._html_data = tuple(p.encode("utf-8") for p in self._html)
        self._html_size = sum(map(len, self._html_data))
        self._text_data = tuple(p.encode("utf-8") for p in self._text)

    def html(self, entry: DigestEntry) -> str:
        up, down = map(html_attribute, _suffixes(entry.paper.id))
        return f"{self._html[0]}{up}{self._html[1]}{down}{self._html[2]}"

    def text(self, entry: DigestEntry) -> str:
        up, down = _suffixes(entry.paper.id)
        return f"{self._text[0]}{up}{self._text[1]}{down}"

    def columns(self, paper_ids: Sequence[str]) -> Columns:
        if not paper_ids:
            return Columns([], [], [])
        n = len(paper_ids)
        ups, downs, sizes, text_ups, text_downs = _columns(tuple(paper_ids))
        before, between, after = self._html_data
        text_up, text_down = self._text_data
        return Columns(
            html=[[before] * n, ups, [between] * n, downs, [after] * n],
            sizes=list(map(self._html_size.__add__, sizes)),
            text=[[text_up] * n, text_ups, [text_down] * n, text_downs])
