"""A reader's library through the chat channels and the preferences page (issue 16 item 3):
a document sent to the Telegram bot (getFile + download from the fake Bot API), a file shared
with the Slack bot (files.info + url_private), an upload or a Zotero library on the
preferences page, /library, and refusals that change nothing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from digestbot import signing, subscribers
from digestbot.bots.slack import start_socket_mode
from digestbot.subscribers import library
from tests import test_slack_commands
from tests.conftest import FIXTURES
from tests.fakes.site import csrf_of, running_site
from tests.fakes.slack import BOT_TOKEN
from tests.fakes.zotero import KEY, USER_ID, FakeZotero, item
from tests.test_slack_commands import CHANNEL

# The Slack fakes and handler of tests/test_slack_commands.py, as fixtures here too.
slack, slack_settings, handler, socket = (
    test_slack_commands.slack, test_slack_commands.slack_settings,
    test_slack_commands.handler, test_slack_commands.socket)

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
LIB = FIXTURES / "library"


async def said(tg, chat: int, n: int) -> str:
    return (await tg.wait_sent(chat, n))[-1]["text"]


def stored(store, chat: int) -> list[str]:
    sub = subscribers.by_address(store, "telegram", str(chat))
    return [i.title for i in library.items(store, sub.id)] if sub else []


async def test_a_document_sent_to_the_bot_becomes_the_library(tg, bot):
    store = bot.store
    tg.push_document(42, (LIB / "zotero_arxiv_excerpt.bib").read_bytes(), "My Library.bib")
    reply = await said(tg, 42, 1)
    assert "我的文库:2 篇(来自 My Library.bib" in reply and "与你的文库相近" in reply
    assert stored(store, 42)[1] == "Random Disks of Constant Curvature: The Lattice Story"
    # The bot asked for the file and fetched it from the file path the Bot API gave.
    assert [m for m, _ in tg.calls if m in ("getFile", "download")] == ["getFile", "download"]
    assert dict(tg.calls)["download"] == {"file_path": "documents/file_1"}
    listed = (tg.push_message(42, "/list"), await said(tg, 42, 2))[1]
    assert "我的文库:2 篇" in listed and "阈值 ≥ 60%" in listed
    tg.push_message(42, "/library 75")
    assert "阈值 ≥ 75%" in await said(tg, 42, 3)
    assert library.get_library(store, subscribers.by_address(store, "telegram", "42").id
                               ).threshold == 75

    # Refusals: each one line in both languages, and the library stays as it was.
    tg.push_document(42, b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n\x00", "paper.pdf")
    assert "不是 BibTeX" in await said(tg, 42, 4)
    tg.push_document(42, None, "huge.bib", size=50 * 1024 * 1024)
    assert "文件太大" in await said(tg, 42, 5)
    tg.push_document(42, b"@misc{k, author = {Ada}}\n", "empty.bib")
    assert "文库是空的" in await said(tg, 42, 6)
    assert [m for m, _ in tg.calls if m == "getFile"] == ["getFile"] * 3  # never the 50 MB one
    assert stored(store, 42)[1] == "Random Disks of Constant Curvature: The Lattice Story"
    tg.push_message(42, "/library clear")
    assert "文库已删除" in await said(tg, 42, 7)
    assert stored(store, 42) == []


async def test_in_a_group_only_a_captioned_file_from_an_admin_counts(tg, bot):
    data = (LIB / "rispy_example_full.ris").read_bytes()
    tg.push_document(-100, data, "shared.ris", user_id=7, chat_type="supergroup")
    tg.push_document(-100, data, "lib.ris", caption="/library", user_id=7, chat_type="supergroup")
    assert "只有群管理员" in await said(tg, -100, 1)
    tg.members[(-100, 8)] = "administrator"
    tg.push_document(-100, data, "lib.ris", caption="/library", user_id=8, chat_type="supergroup")
    assert "我的文库:2 篇" in await said(tg, -100, 2)
    assert len(tg.sent_to(-100)) == 2  # the uncaptioned file got no answer
    assert stored(bot.store, -100) == ["Title of reference", "The title of the reference"]


# -- Slack: a file shared with the bot --------------------------------------------------------


def shared(slack, file_id: str, name: str, data: bytes | None, *, channel: str = CHANNEL,
           user: str = "U0MEMBER", text: str = "library", size: int | None = None) -> dict:
    """The `events_api` payload of a `message` event of subtype `file_share`."""
    entry = slack.add_file(file_id, name, data, size=size)
    return {"token": "verification-secret", "team_id": "T0TEST", "type": "event_callback",
            "event": {"type": "message", "subtype": "file_share", "channel": channel,
                      "user": user, "text": text, "ts": "1700000000.000100", "files": [entry],
                      "channel_type": "im" if channel.startswith("D") else "channel"},
            "event_id": f"Ev{file_id}", "event_time": 1700000000}


def slack_titles(store, channel: str = CHANNEL) -> list[str]:
    sub = subscribers.by_address(store, "slack", channel)
    return [i.title for i in library.items(store, sub.id)] if sub else []


async def test_slack_file_share_fetches_files_info_then_url_private_with_the_bot_token(
        slack, slack_settings, store, socket, caplog):
    caplog.set_level(logging.DEBUG)
    slack.ws_url = socket.url
    handle = await start_socket_mode(slack_settings, slack_settings.db, ping_interval=1)
    try:
        envelope = await socket.push("events_api", shared(
            slack, "F0LIB1", "papers.bib", (LIB / "better_bibtex_excerpt.bib").read_bytes()))
        assert await socket.wait_ack(envelope) == {"envelope_id": envelope}
        for _ in range(200):
            if slack.ephemeral:
                break
            await asyncio.sleep(0.02)
    finally:
        await handle.stop()
    assert "我的文库:5 篇(来自 papers.bib" in slack.ephemeral[-1]["text"]
    assert slack.ephemeral[-1]["channel"] == CHANNEL and slack.ephemeral[-1]["user"] == "U0MEMBER"
    assert [c[1] for c in slack.calls if c[0] == "files.info"] == [{"file": "F0LIB1"}]
    assert slack.downloads == [{"path": "/files-pri/T0TEST-F0LIB1/papers.bib",
                                "authorization": f"Bearer {BOT_TOKEN}"}]
    assert slack_titles(store)[0].startswith("Between the City and the Rural")
    assert BOT_TOKEN not in caplog.text


async def test_slack_refusals_change_nothing(slack, handler, store):
    ris = (LIB / "dblp_corr.ris").read_bytes()
    await handler.on_event(shared(slack, "F1", "a.ris", ris))
    assert slack_titles(store) == ["Semi-parametric Topological Memory for Navigation."]
    # A file shared in the channel for its members is none of the bot's business.
    assert await handler.on_event(shared(slack, "F2", "b.bib", b"@misc{x, title={X}}",
                                         text="slides from today")) is None
    # Too large: refused from files.info alone, never downloaded.
    reply = await handler.on_event(shared(slack, "F3", "huge.bib", None, size=50 * 1024 * 1024))
    assert "文件太大" in reply.text
    reply = await handler.on_event(shared(slack, "F4", "talk.pdf", b"%PDF-1.4\x00\x01"))
    assert "不是 BibTeX" in reply.text
    reply = await handler.on_event(shared(slack, "F5", "a.ris", ris, user="U0GUEST"))
    assert "非访客" in reply.text
    assert [d["path"].split("/")[2] for d in slack.downloads] == ["T0TEST-F1", "T0TEST-F4"]
    assert slack_titles(store) == ["Semi-parametric Topological Memory for Navigation."]
    # In a direct message with the bot any file is meant for it.
    reply = await handler.on_event(shared(slack, "F6", "mine.ris",
                                          (LIB / "rispy_example_full.ris").read_bytes(),
                                          channel="D0DM", text=""))
    assert "我的文库:2 篇" in reply.text


# -- the preferences page ---------------------------------------------------------------------


async def test_preferences_page_uploads_a_file_and_reads_zotero(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeZotero([item("AB12CD34", "Direct preference optimization",
                          "Language models aligned with preferences.")]) as zot:
        async with running_site(zotero_api_url=zot.url) as site:
            sub = subscribers.add_or_update(site.store, channel="email", address="ada@example.org",
                                            topics=["post-training"])
            subscribers.set_status(site.store, sub.id, "active")
            url = signing.preferences_path(site.settings, sub, now=site.clock())
            token = url.split("token=")[1]
            page = await site.client.get(url)
            assert 'action="/preferences/library"' in page.text and "还没有文库" in page.text
            form = {"token": token, "csrf": csrf_of(page.text)}

            async def post(action: str, files=None, **more):
                return await site.client.post("/preferences/library",
                                              data={**form, "action": action, **more},
                                              files=files or {"file": ("", b"")})

            bib = (LIB / "zotero_arxiv_excerpt.bib").read_bytes()
            r = await post("upload", {"file": ("mine.bib", bib, "application/x-bibtex")})
            assert r.status_code == 303, r.text
            shown = (await site.client.get(r.headers["location"])).text
            assert "文库已更新" in shown and "2 篇,来自 mine.bib" in shown
            r = await post("threshold", library_threshold="80")
            assert r.status_code == 303, r.text
            assert library.get_library(site.store, sub.id).threshold == 80

            # Refusals: the page says why, the library stays.
            bad = await post("upload", {"file": ("notes.txt", b"just some notes", "text/plain")})
            assert bad.status_code == 400 and "不是 BibTeX" in bad.text
            big = b"@misc{k, title={T}}\n" + b"%" * (9 * 1024 * 1024)
            bad = await post("upload", {"file": ("big.bib", big, "application/x-bibtex")})
            assert bad.status_code == 413 and "文件太大" in bad.text

            async def chunks():  # no Content-Length: the streamed read stops at the cap
                head = (f'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n{token}\r\n'
                        '--b\r\nContent-Disposition: form-data; name="file"; '
                        'filename="big.bib"\r\n\r\n').encode()
                yield head
                for _ in range(10):
                    yield b"%" * (1024 * 1024)
                yield b"\r\n--b--\r\n"
            bad = await site.client.post("/preferences/library", content=chunks(),
                                         headers={"Content-Type": "multipart/form-data; boundary=b"})
            assert bad.status_code == 413 and "文件太大" in bad.text
            bad = await post("zotero", zotero_user=USER_ID, zotero_key="WrongKey0123456789abcdef")
            assert bad.status_code == 400 and "403" in bad.text and "WrongKey" not in bad.text
            assert library.get_library(site.store, sub.id).name == "mine.bib"

            r = await post("zotero", zotero_user=USER_ID, zotero_key=KEY)
            assert r.status_code == 303, r.text
            shown = (await site.client.get(r.headers["location"])).text
            assert "1 篇,来自 Zotero 475425" in shown and "从 Zotero 刷新" in shown
            assert KEY not in shown
            zot.items.append(item("EF56GH78", "Reward models", "Learned rewards."))
            assert (await post("refresh")).status_code == 303
            assert library.get_library(site.store, sub.id).size == 2
            assert (await post("clear")).status_code == 303
            assert library.get_library(site.store, sub.id) is None
    assert KEY not in caplog.text
