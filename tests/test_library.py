"""A reader's library as a profile (issue 16 item 3): real BibTeX/RIS exports and a Zotero
library (through pyzotero, against a local server speaking Web API v3) become a profile that
brings each day's papers close to it, with the nearest library paper as the reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from digestbot import digest, render, subscribers
from digestbot.cli import main
from digestbot.commands import CommandContext, execute
from digestbot.config import load_settings
from digestbot.models import Subscriber
from digestbot.outbox import DeliveryHistory
from digestbot.render.slack import render_slack
from digestbot.render.telegram import render_telegram
from digestbot.sources.papers import save_batch
from digestbot.sources.parsers import parse_rss, parse_xml
from digestbot.store import Store
from digestbot.subscribers import library
from tests.conftest import FIXTURES, SHARED_ARXIV, needs_shared
from tests.fakes.zotero import KEY, USER_ID, FakeZotero, item
from tests.test_digest import make_sub

LIB = FIXTURES / "library"
FEED = SHARED_ARXIV / "rss_new_cs.CL_2026-08-13.xml"
DAY = "2026-08-13"


def rows(store: Store, sid: int) -> list[dict]:
    return list(store.db.query("select key, title, abstract from library_items"
                               " where subscriber_id = ? order by pos", [sid]))


def test_real_exports_keep_only_key_title_and_abstract(store: Store, capsys) -> None:
    sub = make_sub(store)
    assert main(["sub", "library", str(sub.id), "--file", str(LIB / "better_bibtex_excerpt.bib")]) == 0
    out = capsys.readouterr().out
    assert "我的文库:5 篇" in out and "My library: 5 papers" in out and "≥ 60%" in out
    stored = rows(store, sub.id)
    assert stored[2] == {"key": "KobenhavnskSkybrud", "abstract": "",
                         "title": "Københavnsk skybrud dissekeret i populære artikler: DMI"}
    dump = repr(list(store.db.query("select * from library_items"))) + repr(
        list(store.db.query("select * from libraries")))
    # Authors, DOIs, URLs and keywords of the export are not the bot's to keep.
    for absent in ("Helene", "10.1080", "sagepub", "actor-network", "Murdoch, Jonathan"):
        assert absent not in dump

    assert main(["sub", "library", str(sub.id), "--file", str(LIB / "zotero_arxiv_excerpt.bib")]) == 0
    stored = rows(store, sub.id)
    assert [r["key"] for r in stored] == ["ferrariJackiwTeitelboimGravityRandom2025",
                                          "ferrariRandomDisksConstant2024"]
    assert stored[1]["title"] == "Random Disks of Constant Curvature: The Lattice Story"
    assert stored[1]["abstract"].startswith("We lay the groundwork for a UV-complete")

    assert main(["sub", "library", str(sub.id), "--file", str(LIB / "rispy_example_full.ris")]) == 0
    stored = rows(store, sub.id)
    assert [(r["key"], r["title"]) for r in stored] == [
        ("12345", "Title of reference"), ("12346", "The title of the reference")]
    assert stored[0]["abstract"].startswith("BACKGROUND: Lorem ipsum")  # N2 is RIS's abstract
    assert main(["sub", "library", str(sub.id), "--file", str(LIB / "dblp_corr.ris")]) == 0
    assert rows(store, sub.id)[0]["title"] == "Semi-parametric Topological Memory for Navigation."
    assert library.get_library(store, sub.id).source == "ris"


@pytest.mark.parametrize("content, name, said", [
    (None, "huge.bib", "文件太大"),
    (b"%PDF-1.7\n\x00\x01binary", "paper.pdf", "不是 BibTeX"),
    (b"Dear reader,\nthese are my favourite papers: attention, DPO.\n", "notes.txt",
     "不是 BibTeX"),
    (b"@comment{nothing here}\n@misc{k1, author = {Ada Lovelace}, year = {1843}}\n",
     "empty.bib", "文库是空的"),
    (b"TY  - JOUR\nAU  - Lovelace, Ada\nER  - \n", "empty.ris", "文库是空的"),
])
def test_a_bad_file_gets_one_bilingual_line_and_changes_nothing(
        store: Store, tmp_path: Path, capsys, content: bytes | None, name: str, said: str) -> None:
    sub = make_sub(store)
    assert main(["sub", "library", str(sub.id), "--file", str(LIB / "dblp_corr.ris")]) == 0
    before = (rows(store, sub.id), library.get_library(store, sub.id))
    capsys.readouterr()
    path = tmp_path / name
    if content is None:
        with path.open("wb") as f:  # 50 MB, sparse: refused by its size, never read
            f.truncate(50 * 1024 * 1024)
    else:
        path.write_bytes(content)
    assert main(["sub", "library", str(sub.id), "--file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and " / " in err and "\n" not in err
    assert (rows(store, sub.id), library.get_library(store, sub.id)) == before


def test_the_zotero_key_never_comes_from_argv(store: Store, capsys) -> None:
    sub = make_sub(store)
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID]) == 2
    assert "DIGESTBOT_ZOTERO_KEY" in capsys.readouterr().err
    # A key pasted where its file goes is not echoed back.
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID, "--key-file", KEY]) == 2
    err = capsys.readouterr().err
    assert "--key-file" in err and KEY not in err
    assert library.get_library(store, sub.id) is None


# -- Zotero Web API v3 --------------------------------------------------------------------


def zotero_library(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append(item(f"ITEM{i:04d}", f"Paper number {i} on preference optimization",
                        "We align language models with human preferences." if i % 2 else ""))
        if i % 50 == 0:  # a note and a PDF under some items: not library papers
            out.append(item(f"NOTE{i:04d}", "", item_type="note", note="<p>read again</p>"))
            out.append(item(f"FILE{i:04d}", "", item_type="attachment", filename="p.pdf"))
    return out


@pytest.fixture
def zotero(monkeypatch):
    with FakeZotero(zotero_library(230)) as fake:
        monkeypatch.setenv("DIGESTBOT_ZOTERO_API_URL", fake.url)
        monkeypatch.setenv("DIGESTBOT_ZOTERO_KEY", KEY)
        yield fake


def test_zotero_library_is_read_page_by_page_with_the_key_in_a_header_only(
        store: Store, zotero: FakeZotero, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sub = make_sub(store)
    zotero.backoff_on_page[0] = 1  # obeyed by pyzotero: page 2 comes after a second
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID]) == 0
    assert "我的文库:230 篇(来自 Zotero 475425" in capsys.readouterr().out
    stored = rows(store, sub.id)
    assert len(stored) == 230 and stored[0]["key"] == "z:ITEM0000"
    assert not [r for r in stored if r["key"].startswith(("z:NOTE", "z:FILE"))]
    gets = zotero.requests
    assert [r.path for r in gets] == [f"/users/{USER_ID}/items"] * 3
    assert [(r.query["format"], r.query["limit"], r.query.get("start")) for r in gets] == [
        (["json"], ["100"], None), (["json"], ["100"], ["100"]), (["json"], ["100"], ["200"])]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in gets)
    assert all(KEY not in r.path and KEY not in repr(r.query) for r in gets)
    assert KEY not in caplog.text
    # Kept for refreshing (and masked): the library can be fetched again without the key.
    zotero.items = zotero_library(3)
    assert main(["sub", "library", str(sub.id), "--refresh"]) == 0
    assert len(rows(store, sub.id)) == 3


def test_zotero_refusals_change_nothing(store: Store, zotero: FakeZotero, capsys,
                                       monkeypatch) -> None:
    sub = make_sub(store)
    assert main(["sub", "library", str(sub.id), "--file", str(LIB / "dblp_corr.ris")]) == 0
    before = rows(store, sub.id)
    capsys.readouterr()
    monkeypatch.setenv("DIGESTBOT_ZOTERO_KEY", "WrongKey0123456789abcdef")
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID]) == 2
    err = capsys.readouterr().err
    assert "403" in err and "Zotero 拒绝了这个密钥" in err and "WrongKey" not in err
    monkeypatch.setenv("DIGESTBOT_ZOTERO_KEY", KEY)
    zotero.limit_next(1, retry_after=3600)
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID]) == 2
    err = capsys.readouterr().err
    assert "Zotero 要求稍候(约 3600 秒)" in err and "try again later" in err
    zotero.backoff_on_page[0] = 900  # a page that comes with "and then wait 15 minutes"
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID]) == 2
    assert "Zotero 要求稍候(约 900 秒)" in capsys.readouterr().err
    zotero.backoff_on_page.clear()
    zotero.items = []
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID]) == 2
    assert "文库是空的" in capsys.readouterr().err
    assert rows(store, sub.id) == before and library.get_library(store, sub.id).source == "ris"
    assert main(["sub", "library", str(sub.id), "--refresh"]) == 2  # a file: send it again
    assert "重新上传" in capsys.readouterr().err


def test_a_short_retry_after_is_waited_out_by_pyzotero(store: Store, zotero: FakeZotero) -> None:
    sub = make_sub(store)
    zotero.limit_next(1, retry_after=1)
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID]) == 0
    assert len(rows(store, sub.id)) == 230
    assert len(zotero.requests) == 4  # the 429, then the three pages


# -- scoring and selection ------------------------------------------------------------------

# Two agent papers of the day are what the reader keeps, and v1 of a third.
KEPT = ("2608.11338", "2608.11350", "2608.11233")


@pytest.fixture
def day(store: Store, tmp_path: Path) -> tuple[Subscriber, Path]:
    batch = parse_rss(parse_xml(FEED.read_bytes(), "rss"))
    assert batch.date == DAY
    save_batch(store, batch)
    papers = {p.id: p for p in batch.papers}
    ris = tmp_path / "mine.ris"
    ris.write_text("".join(
        f"TY  - JOUR\nID  - arXiv:{pid}\nTI  - {papers[pid].title}\nAB  - {papers[pid].abstract}\n"
        "ER  - \n\n" for pid in KEPT), encoding="utf-8")
    # The reader's topic brings nothing today (no scores): whatever comes, the library brought.
    return make_sub(store), ris


def select(store: Store, sub: Subscriber):
    return digest.select(store, subscribers.get(store, sub.id), DAY,
                         history=DeliveryHistory(store))


@needs_shared
def test_a_paper_close_to_the_library_comes_with_the_nearest_title(store: Store, day) -> None:
    sub, ris = day
    assert select(store, sub) is None
    assert main(["sub", "library", str(sub.id), "--file", str(ris)]) == 0
    d = select(store, sub)
    got = {e.paper.id: e for e in d.entries}
    # The reader's own v1 (score 100), and a paper on self-improving agent harnesses that is
    # in no library: close to "Self-Evolving Embodied Agents via Skill-Harness Evolution".
    assert got["2608.11233"].hits[0].score == 100
    harness = got["2606.09498"]
    assert harness.paper.title.startswith("Self-Harness")
    [hit] = harness.hits
    assert hit.topic == library.TOPIC and hit.topic_name == "我的文库" and hit.score >= 60
    assert hit.reason.startswith("与你的文库相近:")
    assert hit.reason.removeprefix("与你的文库相近:") in {
        "Better, Faster, Stronger: Programmatic Skill Learning Best Reduces Agent Cost",
        "Self-Evolving Embodied Agents via Skill-Harness Evolution"}
    assert "2608.11352" not in got  # sign language translation: far from it
    assert all(e.hits[0].score >= 60 for e in d.entries) and len(d.entries) < 10
    assert d.thresholds[library.TOPIC] == 60
    assert [e.paper.id for e in d.entries] == sorted(
        got, key=lambda pid: (-got[pid].hits[0].score, pid))
    # In every rendering, the reason shows; a restart's rebuild keeps it.
    email = render.render_email(d)
    assert "与你的文库相近" in email.text and "与你的文库相近" in email.html
    assert "与你的文库相近" in "".join(render_telegram(d))
    assert "与你的文库相近" in str([m.blocks for m in render_slack(d)])
    again = digest.rebuild(store, subscribers.get(store, sub.id), DAY,
                           [e.paper.id for e in d.entries], 0)
    assert [e.hits for e in again.entries] == [e.hits for e in d.entries]
    # A higher threshold is a narrower digest; the library's line in /list says so.
    assert main(["sub", "library", str(sub.id), "--threshold", "95"]) == 0
    assert {e.paper.id for e in select(store, sub).entries} == set(KEPT)
    reply = execute(store, load_settings(), CommandContext("email", sub.address), "list", "")
    assert "我的文库:3 篇(来自 mine.ris" in reply.text and "阈值 ≥ 95%" in reply.text


@needs_shared
def test_english_readers_get_the_reason_in_english(store: Store, day) -> None:
    sub, ris = day
    subscribers.update_settings(store, sub.id, lang="en")
    assert main(["sub", "library", str(sub.id), "--file", str(ris)]) == 0
    d = select(store, sub)
    assert d.entries[0].hits[0].reason.startswith("close to your library: ")
    assert d.entries[0].hits[0].topic_name == "My library"


@needs_shared
def test_removing_the_reader_removes_the_library(store: Store, day, zotero) -> None:
    sub, ris = day
    assert main(["sub", "library", str(sub.id), "--zotero", USER_ID]) == 0
    assert rows(store, sub.id)
    assert subscribers.remove(store, sub.id)
    assert rows(store, sub.id) == []
    assert list(store.db.query("select * from libraries")) == []  # the key went with it
    assert main(["sub", "library", str(sub.id), "--file", str(ris)]) == 2


@needs_shared
def test_a_new_library_in_the_same_second_is_not_served_from_the_cache(store: Store, day,
                                                                         tmp_path: Path) -> None:
    sub, ris = day
    assert main(["sub", "library", str(sub.id), "--file", str(ris)]) == 0
    assert "2608.11233" in {e.paper.id for e in select(store, sub).entries}
    other = tmp_path / "other.ris"
    # As many entries as before (same size), within the same second: only the import differs.
    other.write_text("".join(
        f"TY  - JOUR\nID  - x{i}\nTI  - Dark matter halos of dwarf galaxies, part {i}\n"
        "AB  - We measure rotation curves of dwarf galaxies.\nER  - \n\n" for i in range(3)))
    assert main(["sub", "library", str(sub.id), "--file", str(other)]) == 0
    d = select(store, sub)
    assert d is None or "2608.11233" not in {e.paper.id for e in d.entries}
