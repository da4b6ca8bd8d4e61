"""A reader's library through the chat channels and the preferences page (issue 16 item 3):
a document sent to the Telegram bot (getFile + download from the fake Bot API), /library,
and refusals that change nothing."""

from __future__ import annotations

import pytest

from digestbot import subscribers
from digestbot.subscribers import library
from tests.conftest import FIXTURES

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
