"""Issue 13 over real arXiv data: tests/fixtures/arxiv_real (see PROVENANCE.md there) and
../shared/fixtures/arxiv (skipped when absent)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from bench.ingest import build_feed
from digestbot.cli import main
from digestbot.config import load_settings
from digestbot.enrich.pdf import FirstPages
from digestbot.errors import FeedError
from digestbot.models import Author, Paper
from digestbot.sources import detect, parsers
from digestbot.sources.api import merge_api
from digestbot.sources.arxiv import fetch
from digestbot.sources.authors import split_authors, tex_to_unicode
from digestbot.sources.listing import parse_listing
from digestbot.sources.papers import announcements_on, get_paper, save_batch
from digestbot.store import Store
from tests.conftest import SHARED_ARXIV, needs_shared
from tests.fakes.http import Response
from tests.test_pdf import pdfs  # noqa: F401 - the PDF host fixture
from tests.test_sources_network import NIGHT, arxiv_fake, point  # noqa: F401

REAL = Path(__file__).resolve().parent / "fixtures" / "arxiv_real"
MAILING = REAL / "astro-ph_new_mailing_2023-03-02_excerpt.txt"
LISTING = REAL / "astro-ph_list_new_2023-03-03.html"
RSS = REAL / "rss_astro-ph_2023-03-03_rendered.xml"
RSS_ERROR = REAL / "rss_error_cs.XX_rendered.xml"
ATOM_ERROR = REAL / "atom_error_cs.XX_rendered.xml"
API_ERROR = REAL / "api_error_start_2026-08-14.xml"


def mailing_authors() -> dict[str, str]:
    """arXiv id → the mailing's Authors line (continuation lines joined)."""
    text = MAILING.read_text()
    return {m[1]: " ".join(m[2].split()) for m in re.finditer(
        r"^arXiv:(\S+).*?^Authors: (.*?)\n(?=\S)", text, re.M | re.S)}


def names(authors: list[Author]) -> list[str]:
    return [a.name for a in authors]


def stored(store: Store) -> tuple[int, int]:
    return (next(iter(store.db.query("select count(*) n from papers")))["n"],
            next(iter(store.db.query("select count(*) n from announcements")))["n"])


# -- 1. one author-list rule ---------------------------------------------------------------


def test_mailing_author_lines_numbered_affiliations_and_collaborations():
    lines = mailing_authors()
    arz = split_authors(lines["2207.05189"])  # "(2,3)" markers and a "((1) IAS, …)" legend
    assert [(a.name, a.affiliations) for a in arz] == [
        ("Lev Arzamasskiy", ("IAS",)), ("Matthew W. Kunz", ("Princeton", "PPPL")),
        ("Jonathan Squire", ("Otago",)), ("Eliot Quataert", ("Princeton",)),
        ("Alexander A. Schekochihin", ("Oxford",))]
    kurihara = split_authors(lines["2303.00985"])  # "(1 and 2)", "… (5, on behalf of …) and …"
    assert len(kurihara) == 10 and kurihara[0].affiliations == ("University of Tokyo",
                                                                 "JAXA ISAS")
    assert names(kurihara)[-2:] == ["Yoh Takei", "Yoichi Kochibe"]
    cmb = split_authors(lines["2303.00916"])  # "…, Edward J. Wollack, and The CMB-S4 Collaboration"
    assert names(cmb)[-2:] == ["Edward J. Wollack", "The CMB-S4 Collaboration"]
    assert names(split_authors(lines["2303.00763"])) == ["Jingyao Zhu", "Mary E Putman"]
    assert names(split_authors(lines["2203.08478"])) == ["Alejandro Vigna-Gómez",
                                                         "Enrico Ramirez-Ruiz"]
    # No piece of an affiliation or a legend ever becomes an "author".
    every = [a.name for line in lines.values() for a in split_authors(line)]
    assert not [n for n in every if re.search(r"[()]|^\d|^(and|Jr\.?)$", n)]


def test_suffixes_from_arxiv_base_author_tests():
    # arxiv-base arxiv/util/tests/test_authors.py: a comma before Jr, and "Jr-Shin" a name.
    assert names(split_authors("John Von Neumann, Herbert Van de Sompel, Fred Bloggs, Jr, et al")) \
        == ["John Von Neumann", "Herbert Van de Sompel", "Fred Bloggs Jr"]
    assert names(split_authors("Anatoly Zlotnik and Jr-Shin Li")) == ["Anatoly Zlotnik",
                                                                      "Jr-Shin Li"]


def test_rss_affiliations_in_dc_creator(settings, store, capsys):
    batch = detect.parse_any(RSS.read_bytes())
    by_id = {p.id: p for p in batch.papers}
    kurihara = by_id["2303.00985"].authors
    # arXiv's serializer joins a person's affiliations with ", " inside the parentheses.
    assert kurihara[0] == Author("Miki Kurihara", ("University of Tokyo, JAXA ISAS",))
    assert len(kurihara) == 10 and kurihara[2] == Author("Megan E. Eckart", ("LLNL",))
    assert len(by_id["2303.01115"].authors) == 29
    assert by_id["2303.01115"].authors[0].affiliations == ("INAF-OaPD",)
    assert names(by_id["2303.00916"].authors)[-1] == "The CMB-S4 Collaboration"
    assert main(["fetch", "--feed", str(RSS), "--no-api"]) == 0
    row = get_paper(store, "2303.00985")
    assert row.authors == kurihara and "JAXA ISAS)" not in names(row.authors)


def test_listing_authors_with_affiliations_are_text_not_only_links():
    batch = parse_listing(LISTING.read_bytes(), categories=["astro-ph"])
    by_id = {p.id: p for p in batch.papers}
    assert by_id["2303.00985"].authors == split_authors(mailing_authors()["2303.00985"])
    assert by_id["2207.05189"].authors[1].affiliations == ("Princeton", "PPPL")


def test_feed_affiliations_count_as_known_institutions_no_pdf(settings, store, pdfs):  # noqa: F811
    fetch(settings, store, feeds=[str(RSS)])
    first_pages = FirstPages(load_settings(), store)
    try:
        text = asyncio.run(first_pages.get(get_paper(store, "2303.00985")))
        plain = asyncio.run(first_pages.get(get_paper(store, "2303.00763")))
    finally:
        first_pages.close()
    assert "Miki Kurihara: University of Tokyo, JAXA ISAS" in text
    assert "Yoichi Kochibe: Fujitsu Limited" in text
    # Only the paper without affiliations went to the PDF host (which has no such PDF).
    assert [r.path for r in pdfs.server.requests] == ["/pdf/2303.00763v1"] and plain == ""


# -- 2. TeX names ----------------------------------------------------------------------------


def test_tex_names_become_unicode():
    assert [tex_to_unicode(n) for n in ("Przemys{\\l}aw", "R\\'emy", 'G\\"unther')] == [
        "Przemysław", "Rémy", "Günther"]
    by_id = {p.id: p for p in detect.parse_any(RSS.read_bytes()).papers}
    assert names(by_id["2303.01322"].authors)[-1] == "Jörg Büchner"  # J\"org B\"uchner


def test_api_utf8_names_win_and_feed_affiliations_stay():
    feed = {p.id: p for p in detect.parse_any(RSS.read_bytes()).papers}["2303.00985"]
    api_names = [Author(a.name.upper()) for a in feed.authors]  # the API's own spelling
    api = dataclasses.replace(feed, authors=api_names, published="2023-03-01T19:00:02Z")
    merged = merge_api(feed, api)
    assert names(merged.authors) == names(api_names)
    assert merged.authors[0].affiliations == ("University of Tokyo, JAXA ISAS",)
    with_aff = [Author(a.name, ("API Affiliation",)) for a in api_names]
    assert merge_api(feed, dataclasses.replace(api, authors=with_aff)).authors == with_aff


def test_api_names_replace_feed_names_already_stored(settings, store):
    fetch(settings, store, feeds=[str(RSS)])  # the feed's names first (API failed, say)
    feed = get_paper(store, "2303.00985")
    api = dataclasses.replace(feed, authors=[Author(a.name.upper()) for a in feed.authors],
                              published="2023-03-01T19:00:02+00:00")
    save_batch(store, dataclasses.replace(detect.parse_any(RSS.read_bytes()), papers=[api],
                                         announcements=[]))
    row = get_paper(store, "2303.00985")
    assert names(row.authors) == names(api.authors) and row.published


# -- 3. error feeds --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [RSS_ERROR, ATOM_ERROR])
def test_error_feed_is_an_error_naming_the_category(settings, store, capsys, path):
    assert main(["fetch", "--feed", str(path)]) == 1
    err = capsys.readouterr().err
    assert "arXiv feed error for cs.XX: Bad subject class 'XX'" in err
    assert "holiday" not in err and stored(store) == (0, 0)


def test_api_error_entry_is_an_error(settings, store, capsys):
    assert main(["fetch", "--feed", str(API_ERROR)]) == 1
    assert "arXiv API error: start must be an integer" in capsys.readouterr().err
    assert stored(store) == (0, 0)


@needs_shared
def test_api_error_400_recorded(settings, store, capsys):
    path = SHARED_ARXIV / "api_query_error_400_incorrect_id_2026-04-12.xml"
    assert main(["fetch", "--feed", str(path)]) == 1
    assert "incorrect id format for abc" in capsys.readouterr().err and stored(store) == (0, 0)


def test_live_http_400_error_feed_says_why(settings, store, arxiv_fake):  # noqa: F811
    fake, server = arxiv_fake
    fake.script["/rss/"] = [Response(400, RSS_ERROR.read_bytes(),
                                     {"Content-Type": "application/rss+xml"})]
    with pytest.raises(FeedError, match="arXiv feed error for cs.XX: Bad subject class"):
        fetch(point(settings, server.url, sources=["rss"]), store, no_api=True, now=NIGHT)
    assert stored(store) == (0, 0)


# -- 4. whole archives -----------------------------------------------------------------------


def test_astro_ph_day_replacements_are_not_all_cross_lists():
    batch = parse_listing(LISTING.read_bytes(), categories=["astro-ph"])
    assert Counter(a.announce_type for a in batch.announcements) == {
        "new": 5, "cross": 4, "replace": 29, "replace-cross": 11}
    kinds = {a.arxiv_id: a.announce_type for a in batch.announcements}
    assert kinds["2104.03145"] == "replace"  # astro-ph.CO primary
    assert parsers.in_categories("astro-ph.CO", ["astro-ph"])
    assert not parsers.in_categories("math-ph", ["math"])


@needs_shared
def test_api_batch_for_the_cs_archive():
    path = SHARED_ARXIV / "api_query_cat_cs.LG_OR_cs.AI_20entries_2026-04-30.xml"
    batch = detect.parse_any(path.read_bytes(), date="2026-04-30", categories=["cs"])
    primary = {p.id: p.primary_category for p in batch.papers}
    for a in batch.announcements:
        assert a.announce_type == ("new" if primary[a.arxiv_id].startswith("cs.") else "cross")
    assert Counter(a.announce_type for a in batch.announcements) == {"new": 17, "cross": 3}


# -- 5. versions -----------------------------------------------------------------------------


def test_listing_versions_unknown_until_rss_says(settings, store):
    batch = parse_listing(LISTING.read_bytes(), categories=["astro-ph"])
    versions = {a.arxiv_id: (a.announce_type, a.version) for a in batch.announcements}
    assert versions["2303.00763"] == ("new", 1)
    assert versions["2303.00812"] == ("cross", None) and versions["2104.03145"][1] is None
    fetch(settings, store, feeds=[str(LISTING)])
    paper = get_paper(store, "2303.00812")
    assert paper.version is None and paper.pdf_url == "https://arxiv.org/pdf/2303.00812"
    fetch(settings, store, feeds=[str(RSS)])  # the same evening's RSS: the cross is v1
    assert get_paper(store, "2303.00812").version == 1
    assert {a.arxiv_id: a.version for a in announcements_on(store, "2023-03-03")}[
        "2303.00812"] == 1


# -- 6. truncation ---------------------------------------------------------------------------


def test_a_feed_at_the_2000_item_cap_is_flagged_and_logged(settings, store, tmp_path, caplog):
    feed = tmp_path / "capped.xml"
    feed.write_bytes(build_feed(RSS, parsers.FEED_CAP))
    with caplog.at_level(logging.WARNING, logger="digestbot.sources.arxiv"):
        result = fetch(settings, store, feeds=[str(feed)])
    assert result.status == "ok" and "capped.xml has 2000 items, arXiv's cap" in caplog.text
    assert not detect.parse_any(RSS.read_bytes()).truncated


# -- 7. listing abstracts --------------------------------------------------------------------


def test_listing_abstracts_are_one_line_like_the_api():
    paper = {p.id: p for p in parse_listing(LISTING.read_bytes()).papers}["2303.00763"]
    text = MAILING.read_text()
    start = text.index("  We present a search for gas-containing dwarf galaxies")
    wrapped = text[start:text.index("\\\\ ( https://arxiv.org/abs/2303.00763")]
    assert "\n" in wrapped and paper.abstract == " ".join(wrapped.split())


# -- 8. hostile input ------------------------------------------------------------------------


def test_hostile_version_is_one_line_and_stores_nothing(settings, store, tmp_path, capsys):
    feed = tmp_path / "hostile.xml"
    feed.write_bytes(RSS.read_bytes().replace(b"oai:arXiv.org:2303.00763v1",
                                              b"oai:arXiv.org:2303.00763v99999999999999999999"))
    assert main(["fetch", "--feed", str(feed)]) == 1
    err = capsys.readouterr().err
    assert "implausible version v999999999999" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and stored(store) == (0, 0)


@pytest.mark.parametrize("doctype", [b"", b'<!DOCTYPE rss [<!ENTITY x "boom">]>\n'])
def test_utf16_without_bom_is_refused(doctype):
    body = RSS.read_bytes().split(b"?>\n", 1)[1]
    data = (b"<?xml version='1.0' encoding='UTF-16'?>\n" + doctype + body).decode().encode(
        "utf-16-le")  # no BOM
    with pytest.raises(FeedError, match="not UTF-8"):
        detect.parse_any(data)


def test_duplicate_id_keeps_the_higher_version_with_its_own_type(settings, store, tmp_path):
    data = RSS.read_text()
    item = re.search(r"    <item>\n.*?2303\.00763.*?</item>\n", data, re.S)[0]
    again = item.replace("2303.00763v1 Announce Type: new", "2303.00763v2 Announce Type: replace") \
        .replace("2303.00763v1</guid>", "2303.00763v2</guid>") \
        .replace(">new</arxiv:announce_type>", ">replace</arxiv:announce_type>")
    feed = tmp_path / "dup.xml"
    feed.write_text(data.replace(item, item + again))
    fetch(settings, store, feeds=[str(feed)])
    ann = {a.arxiv_id: a for a in announcements_on(store, "2023-03-03")}["2303.00763"]
    assert (ann.announce_type, ann.version) == ("replace", 2)
    assert get_paper(store, "2303.00763").version == 2


def test_unknown_version_paper_shows_no_made_up_one():
    paper = Paper(id="2104.03145", version=None, title="t", abstract="a")
    assert paper.versioned_id == "2104.03145" and "None" not in paper.pdf_url
