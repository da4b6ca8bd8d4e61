"""👍/👎 from a signed link (issue 17): the email's per-paper links and the day pages' buttons.

    GET  /feedback?token=…&paper=ID&vote=up|down   a one-button confirm page only
    POST /feedback                                 records the vote (the last one counts)

A GET never records: mail scanners and link previews fetch every URL in an email, and a
scanner that "votes" 👎 on a whole digest would teach the reader's ranking nonsense. The token
is `signing.feedback_link`'s (purpose FEEDBACK, the reader and their link generation): it can
vote for that reader and do nothing else. After a vote the page links to the paper's day page
with the same token, where every paper carries the two buttons (`pages`).
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from digestbot import signing
from digestbot.enrich.topic_scores import subscribed_scores
from digestbot.errors import UsageError
from digestbot.models import Paper
from digestbot.sources.papers import get_paper, last_announcements
from digestbot.store import Store
from digestbot.subscribers import feedback
from digestbot.web import forms
from digestbot.web.common import STORE, notice, shown_address, write

log = logging.getLogger(__name__)


def _bad(text_en: str) -> web.Response:
    return notice("无法记录", "Cannot record this", "链接不完整或论文不存在。", text_en, status=400,
                  link="/", link_text="首页 / Home")


def _paper_and_vote(store: Store, paper_id: str, vote_name: str) -> tuple[Paper, int]:
    """(paper, UP/DOWN) of the link's fields; UsageError for anything else."""
    vote = feedback.VOTES.get(vote_name)
    if vote is None:
        raise UsageError("vote must be up or down")
    paper = get_paper(store, feedback.check_paper_id(store, paper_id))
    assert paper is not None  # check_paper_id found it
    return paper, vote


# A day page of one topic, the only place a vote form sends the reader back to (no open redirect).
_DAY_PAGE = re.compile(r"/d/\d{4}-\d{2}-\d{2}/[a-z0-9][a-z0-9\-]{0,80}")


def _day_page(store: Store, subscriber_id: int, paper_id: str, token: str) -> str | None:
    """The day page (with the token, so its papers carry buttons) of the paper's announcement,
    under the reader's topic that scored it best; None when it was never announced/scored."""
    announced = last_announcements(store, [paper_id], "9999-12-31").get(paper_id)
    if announced is None:
        return None
    rows = subscribed_scores(store, subscriber_id, [paper_id], announced.date)
    best = max(rows, key=lambda r: r["score"], default=None)
    return signing.link_path(f"/d/{announced.date}/{best['topic']}", token) if best else None


async def feedback_form(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    sub, problem = forms.token_subscriber(request, signing.FEEDBACK, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    store = request.app[STORE]
    try:
        paper, vote = _paper_and_vote(store, request.query.get("paper", ""),
                                      request.query.get("vote", ""))
    except UsageError as exc:
        return _bad(str(exc))
    return forms.form_page(request, "feedback.html", token=token, paper=paper,
                           vote="up" if vote == feedback.UP else "down",
                           current=feedback.vote_of(store, sub.id, paper.id),
                           address=shown_address(sub))


async def record_vote(request: web.Request) -> web.Response:
    checked = await forms.signed_form(request, signing.FEEDBACK)
    if isinstance(checked, web.Response):
        return checked
    form, sub, token = checked
    store = request.app[STORE]
    try:
        paper, vote = _paper_and_vote(store, form.get("paper", ""), form.get("vote", ""))
    except UsageError as exc:
        return _bad(str(exc))
    await write(request, feedback.record, sub.id, paper.id, vote)
    log.info("subscriber #%s voted %s on %s (web)", sub.id, vote, paper.id)
    if _DAY_PAGE.fullmatch(back := form.get("back", "")):
        # From a day page's buttons: back to it (POST → redirect → GET), the vote shown there.
        raise web.HTTPSeeOther(signing.link_path(back, token))
    back = _day_page(store, sub.id, paper.id, token)
    mark = "👍" if vote == feedback.UP else "👎"
    return notice(f"已记录 {mark}", f"Recorded {mark}",
                  f"《{paper.title}》:以后的摘要会参考你的 👍/👎 排序。",
                  f"“{paper.title}”: your next digests are ranked with your votes in mind.",
                  link=back, link_text="当天的全部论文 / All papers of that day" if back else "")
