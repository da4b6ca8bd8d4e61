"""One tap on every delivered paper (issue 17 item 1): the email's signed 👍/👎 links through the
real web app (GET only confirms, POST records), Telegram inline buttons through
python-telegram-bot and the fake Bot API, and Slack buttons through the Socket Mode handler."""

from __future__ import annotations

import re
from html import unescape

from digestbot import digest, signing, subscribers
from digestbot.channels.email import build_message
from digestbot.outbox import DeliveryHistory, DeliveryRow
from digestbot.subscribers import feedback
from tests.fakes.site import csrf_of, path_of, running_site
from tests.test_digest import add_paper, make_sub

DAY = "2026-08-13"


def _links(text: str, vote: str) -> list[str]:
    return re.findall(rf"https?://\S+/feedback\?token=\S+&paper=\S+&vote={vote}", text)


async def test_email_links_confirm_on_get_and_record_on_post() -> None:
    async with running_site() as site:
        store = site.store
        add_paper(store, "2608.00001", scores={"post-training": 90}, title="Speech at scale")
        add_paper(store, "2608.00002", scores={"post-training": 80}, title="Benchmarks again")
        sub = make_sub(store)
        d = digest.select(store, sub, DAY, history=DeliveryHistory(store))
        row = DeliveryRow(id=1, subscriber_id=sub.id, digest_date=DAY, status="pending",
                          paper_ids=[e.paper.id for e in d.entries])
        message = build_message(site.settings, row, d)
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        ups, downs = _links(text, "up"), _links(text, "down")
        assert [u.split("paper=")[1].split("&")[0] for u in ups] == ["2608.00001", "2608.00002"]
        assert len(downs) == 2
        # The same links in the HTML part, one signature for the whole digest.
        assert [unescape(u) for u in re.findall(r'href="([^"]+&amp;vote=up)"', html)] == ups
        assert len({u.split("token=")[1].split("&")[0] for u in ups + downs}) == 1

        # A mail scanner fetching every link votes for no one.
        for url in ups + downs:
            page = await site.client.get(path_of(url))
            assert page.status_code == 200
            assert "Speech at scale" in page.text or "Benchmarks again" in page.text
        assert feedback.votes(store, sub.id) == []

        page = await site.client.get(path_of(ups[0]))
        form = {"token": ups[0].split("token=")[1].split("&")[0], "csrf": csrf_of(page.text),
                "paper": "2608.00001", "vote": "up"}
        done = await site.client.post("/feedback", data=form)
        assert done.status_code == 200 and "已记录 👍" in done.text
        assert f"/d/{DAY}?token=" in done.text  # on to the day page, still signed
        again = await site.client.post("/feedback", data=form)  # a double click
        assert again.status_code == 200
        assert [(v.arxiv_id, v.name) for v in feedback.votes(store, sub.id)] == [("2608.00001", "up")]
        await site.client.post("/feedback", data={**form, "vote": "down"})  # changed mind
        assert [(v.arxiv_id, v.name) for v in feedback.votes(store, sub.id)] == [("2608.00001", "down")]

        # Without the CSRF field, with a forged token, or for an unknown paper: nothing.
        assert (await site.client.post("/feedback", data={**form, "csrf": "x"})).status_code == 403
        forged = {**form, "token": form["token"][:-2] + "AA", "paper": "2608.00002"}
        assert (await site.client.post("/feedback", data=forged)).status_code == 404
        assert (await site.client.post("/feedback", data={**form, "paper": "2608.99999"})
                ).status_code == 400
        assert (await site.client.get(path_of(ups[0]).replace("vote=up", "vote=maybe"))
                ).status_code == 400
        assert len(feedback.votes(store, sub.id)) == 1

        # A removed reader's links are dead, and their votes are gone.
        subscribers.remove(store, sub.id)
        assert (await site.client.get(path_of(ups[1]))).status_code == 410
        assert store.db["feedback"].count == 0


async def test_no_links_without_a_secret() -> None:
    async with running_site(secret=None) as site:
        add_paper(site.store, "2608.00001", scores={"post-training": 90})
        sub = make_sub(site.store)
        assert signing.feedback_link(site.settings, sub) is None
        d = digest.select(site.store, sub, DAY, history=DeliveryHistory(site.store))
        row = DeliveryRow(id=1, subscriber_id=sub.id, digest_date=DAY, status="pending",
                          paper_ids=["2608.00001"])
        text = build_message(site.settings, row, d).get_body(("plain",)).get_content()
        assert "/feedback" not in text

