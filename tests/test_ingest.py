"""Parsing and storing saved files: our small fixtures, the bundled sample, arXiv's real files."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from lxml import etree

from digestbot.cli import main
from digestbot.errors import FeedError
from digestbot.sources import detect, listing, parsers
from digestbot.sources.arxiv import SAMPLE_FEED, fetch
from digestbot.sources.authors import tex_to_unicode
from digestbot.sources.papers import announcements_on, get_paper, get_papers
from tests.conftest import SHARED_ARXIV, needs_shared
from tests.fakes.arxiv import fixture

RSS_CL = SHARED_ARXIV / "rss_new_cs.CL_2026-08-13.xml"


def table_counts(store) -> dict[str, int]:
    return {t: store.db[t].count for t in ("papers", "announcements")}


def snapshot(store) -> tuple[list, list]:
    return (list(store.db.query("select * from papers order by id")),
            list(store.db.query("select * from announcements order by arxiv_id")))


# -- the bundled sample -------------------------------------------------------------------


def test_sample_feed_ingests_offline(settings, store):
    result = fetch(settings, store, feeds=[str(SAMPLE_FEED)])
    assert (result.status, result.date, result.source) == ("ok", "2026-11-17", "rss")
    assert result.counts == {"new": 10, "cross": 2, "replace": 1, "replace-cross": 1}
    assert result.new_announcements == 14
    assert get_paper(store, "2611.90008").title.startswith("$\\Delta$-Attention")
    assert "&" in get_paper(store, "2611.90006").title
    assert "<and>" in get_paper(store, "2611.90012").title
    replaced = get_paper(store, "2609.98765")
    assert replaced.version == 3 and replaced.journal_ref.startswith("Proceedings of EMNLP")


def test_reingest_is_a_no_op(settings, store):
    fetch(settings, store, feeds=[str(SAMPLE_FEED)])
    before = snapshot(store)
    again = fetch(settings, store, feeds=[str(SAMPLE_FEED)])
    assert again.new_announcements == 0 and "already stored" in again.message
    assert snapshot(store) == before


# -- our small fixtures, one per format ---------------------------------------------------


def test_listing_page_types_versions_and_fields():
    batch = detect.parse_any(fixture("listing_cs.CL_new.html"), categories=["cs.CL"])
    assert batch.date == "2026-11-18"
    kinds = {a.arxiv_id: (a.announce_type, a.version) for a in batch.announcements}
    assert kinds == {"2611.91001": ("new", 1), "2611.91002": ("new", 1),
                     # No HTML link, no version: unknown until RSS/API says (issue 13.5).
                     "2611.91003": ("cross", None), "2609.98765": ("replace", None),
                     "2608.97531": ("replace-cross", 2)}
    paper = {p.id: p for p in batch.papers}["2611.91001"]
    assert paper.title == "Verifier-Guided GRPO for $k$-Step Reasoning"
    assert [a.name for a in paper.authors] == ["Mei Lin", "Sebastian Müller"]
    assert paper.categories == ["cs.CL", "cs.LG"] and paper.comment == "12 pages, 4 figures"
    assert "step verifiers & show" in paper.abstract
    assert {p.id: p for p in batch.papers}["2611.91002"].journal_ref == "Findings of ACL 2026"


def test_listing_count_mismatch_is_a_parse_failure():
    page = fixture("listing_cs.CL_new.html").replace(
        b"New submissions (showing 2 of 2 entries)", b"New submissions (showing 3 of 3 entries)")
    with pytest.raises(FeedError, match="showing 3 of 3 entries but 2 were parsed"):
        listing.parse_listing(page)
    partial = fixture("listing_cs.CL_new.html").replace(b"showing 2 of 2", b"showing 2 of 40")
    with pytest.raises(FeedError, match="2 of 40"):
        listing.parse_listing(partial)


def arxiv_browse_headings(page: bytes) -> bytes:
    """The page as arxiv-browse's template writes it: "New submissions for <date> (showing …
    entries )", and no separate "Showing new listings" heading."""
    page = page.replace(b"<h3>Showing new listings for Wednesday, 18 November 2026</h3>", b"")
    for kind in (b"New", b"Cross", b"Replacement"):
        page = page.replace(kind + b" submissions (showing",
                            kind + b" submissions for Wednesday, 18 November 2026 (showing")
    return page.replace(b"entries)</h3>", b"entries )</h3>")


def test_listing_with_arxiv_browse_template_headings():
    page = arxiv_browse_headings(fixture("listing_cs.CL_new.html"))
    assert b"Showing new listings" not in page and b"submissions for Wednesday" in page
    batch = listing.parse_listing(page, categories=["cs.CL"])
    assert batch.date == "2026-11-18"
    assert Counter(a.announce_type for a in batch.announcements) == {
        "new": 2, "cross": 1, "replace": 1, "replace-cross": 1}
    # The template's form of a page cut short is still a parse failure, not fewer papers.
    cut = page.replace(b"(showing 2 of 2 entries )", b"(continued, showing last 2 of 9 entries )", 1)
    with pytest.raises(FeedError, match="showing 2 of 9 entries"):
        listing.parse_listing(cut)


def test_truncated_listing_is_a_parse_failure():
    page = fixture("listing_cs.CL_new.html")
    # Cut inside the last abstract: the counts still match, only the missing end tells.
    with pytest.raises(FeedError, match="cut off before </html>"):
        listing.parse_listing(page[: page.rindex(b"scientific figures")])
    # Cut (and closed again) after the first section: the index still lists the others.
    first = page[: page.index(b"</dl>") + 5] + b"</body></html>"
    with pytest.raises(FeedError, match="index lists cross, replace but the page has no such"):
        listing.parse_listing(first)


def test_listing_without_updates_is_empty():
    page = (b"<html><body><h3>Showing new listings for Friday, 20 November 2026</h3>"
            b"<p>No updates today.</p></body></html>")
    batch = listing.parse_listing(page)
    assert batch.empty and batch.date == "2026-11-20"


def test_atom_feed_and_old_rdf():
    atom = detect.parse_any(fixture("atom_feed.xml"))
    assert (atom.source, atom.date) == ("atom", "2026-11-18")
    assert [(a.announce_type, a.version) for a in atom.announcements] == [
        ("new", 1), ("replace-cross", 2)]
    rdf = detect.parse_any(fixture("rdf_old.xml"))
    # Stamped Tue 2 Nov 2021 20:30 ET: arXiv's mailing of Wednesday 3 November.
    assert (rdf.source, rdf.date) == ("rdf", "2021-11-03")
    assert [a.announce_type for a in rdf.announcements] == ["new", "replace", "cross"]
    first = rdf.papers[0]
    assert [a.name for a in first.authors] == ["Jane Doe", "Richard Roe"]
    assert first.abstract == "We parse things."


def test_api_answer_metadata_and_date(settings, store):
    batch = detect.parse_any(fixture("api_answer.xml"))
    assert batch.date is None and not batch.announcements
    p = {p.id: p for p in batch.papers}
    assert p["2611.91001"].authors[1].affiliations == ("ETH Zürich",)
    assert p["2611.91002"].doi == "10.18653/v1/2026.findings-acl.1234"
    dated = detect.parse_any(fixture("api_answer.xml"), date="2026-11-18", categories=["cs.CL"])
    assert Counter(a.announce_type for a in dated.announcements) == {
        "new": 2, "cross": 1, "replace": 1, "replace-cross": 1}


def test_empty_channel_is_no_announcement(settings, store, tmp_path):
    path = tmp_path / "empty.xml"
    path.write_bytes(fixture("rss_empty.xml"))
    result = fetch(settings, store, feeds=[str(path)])
    assert result.status == "empty" and "no announcement" in result.message
    assert table_counts(store) == {"papers": 0, "announcements": 0}


@pytest.mark.parametrize("body, why", [
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
     b"<rss><channel><title>&lol2;</title></channel></rss>", "DTD"),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b"<rss><channel><title>&x;</title></channel></rss>", "DTD"),
    # An external DTD after a long comment: no entity declared, still refused.
    (b'<?xml version="1.0"?><!--' + b"x" * 5000 + b'--><!DOCTYPE rss SYSTEM "http://127.0.0.1:9/d">'
     b"<rss><channel><title>t</title></channel></rss>", "DTD"),
    (b"<html><body><h1>503 Service Unavailable</h1></body></html>", "no New/Cross"),
    (b"Rate exceeded.", "not XML or HTML"),
    (b"", "empty"),
    (b"<rss><channel><item><title>cut", "not well-formed"),
    (b"<catalog/>", "unknown XML format"),
])
def test_bad_input_is_refused_and_nothing_stored(settings, store, tmp_path, body, why):
    path = tmp_path / "bad.xml"
    path.write_bytes(body)
    with pytest.raises(FeedError, match=why):
        fetch(settings, store, feeds=[str(path)])
    assert table_counts(store) == {"papers": 0, "announcements": 0}


def test_a_non_feed_file_is_refused_without_quoting_it(settings, store, tmp_path):
    # `fetch --feed /etc/shadow` (run as root): the error names the problem, not the bytes.
    path = tmp_path / "shadow"
    path.write_bytes(b"root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")
    with pytest.raises(FeedError, match="not XML or HTML") as caught:
        fetch(settings, store, feeds=[str(path)])
    assert "root" not in str(caught.value) and "$6$" not in str(caught.value)


def test_a_bad_item_leaves_nothing_half_written(settings, store, tmp_path):
    broken = SAMPLE_FEED.read_bytes().replace(b"Announce Type: cross", b"Announce Type: weird", 1)
    broken = broken.replace(b"<arxiv:announce_type>cross<", b"<arxiv:announce_type>weird<", 1)
    path = tmp_path / "broken.xml"
    path.write_bytes(broken)
    with pytest.raises(FeedError, match="unknown announce type 'weird'"):
        fetch(settings, store, feeds=[str(path)])
    assert table_counts(store) == {"papers": 0, "announcements": 0}


def test_one_bad_file_of_several_stores_none(settings, store, tmp_path):
    bad = tmp_path / "cut.xml"
    bad.write_bytes(SAMPLE_FEED.read_bytes()[:5000])
    with pytest.raises(FeedError, match="cut.xml: .*not well-formed"):
        fetch(settings, store, feeds=[str(SAMPLE_FEED), str(bad)])
    assert table_counts(store) == {"papers": 0, "announcements": 0}


def test_safe_parser_does_not_expand_entities():
    # Even without the DOCTYPE check, lxml is set to neither resolve entities nor load DTDs.
    root = etree.fromstring(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
                            parsers._parser())
    assert "root:" not in etree.tostring(root).decode()


# -- CLI ------------------------------------------------------------------------------------


def test_cli_fetch_exit_codes(capsys, tmp_path):
    assert main(["fetch", "--feed", str(SAMPLE_FEED)]) == 0
    assert capsys.readouterr().out.startswith("2026-11-17: 14 papers — 新提交 10, 交叉列表 2, 版本更新 2 (rss)")
    assert main(["fetch", "--feed", str(tmp_path / "missing.xml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["fetch", "--date", "13/08/2026", "--feed", str(SAMPLE_FEED)]) == 2
    assert "expected a date YYYY-MM-DD" in capsys.readouterr().err
    bad = tmp_path / "bad.xml"
    bad.write_text("<rss><channel>")
    assert main(["fetch", "--feed", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("digestbot: error: bad.xml: ") and "\n" not in err


# -- arXiv's real files -------------------------------------------------------------------


@needs_shared
def test_real_rss_every_item_stored(settings, store, capsys):
    assert main(["fetch", "--feed", str(RSS_CL), "--no-api"]) == 0
    assert "139 papers — 新提交 56, 交叉列表 36, 版本更新 47 (rss)" in capsys.readouterr().out
    anns = announcements_on(store, "2026-08-13")
    assert Counter(a.announce_type for a in anns) == {
        "new": 56, "cross": 36, "replace": 32, "replace-cross": 15}
    root = etree.parse(str(RSS_CL)).getroot()
    by_id = {a.arxiv_id: a for a in anns}
    papers = get_papers(store, by_id)
    assert len(papers) == 139
    ns = parsers.NS
    for item in root.iter("item"):
        arxiv_id, version = parsers.split_id(item.findtext("guid"))
        paper, ann = papers[arxiv_id], by_id[arxiv_id]
        assert ann.announce_type == item.findtext("arxiv:announce_type", namespaces=ns)
        assert ann.version == paper.version == version
        # This day's feed has no affiliations, so a plain comma split is the truth; its TeX
        # names (`O\u{g}uz`, `T\"ufekcio\u{g}lu`) are stored as Unicode (issue 13.2).
        assert [a.name for a in paper.authors] == [tex_to_unicode(n.strip()) for n in item.findtext(
            "dc:creator", namespaces=ns).split(",")]
        assert paper.categories == [c.text for c in item.iter("category")]
        assert paper.doi == item.findtext("arxiv:DOI", namespaces=ns)
        assert paper.journal_ref == item.findtext("arxiv:journal_reference", namespaces=ns)
        assert paper.license == item.findtext("dc:rights", namespaces=ns)
        assert paper.title == " ".join(item.findtext("title").split())
    assert papers["2608.11232"].abstract.startswith("Evaluating LLM coding agents")
    tex_names = [a.name for p in papers.values() for a in p.authors]
    assert "Oğuz Akif Tüfekcioğlu" in tex_names and "Tuğçe Kızıltepe" in tex_names
    assert not [n for n in tex_names if "\\" in n or "{" in n]
    assert any("$\\Delta$" in p.title for p in papers.values())
    # This feed is pure ASCII: arXiv keeps TeX escapes as the authors wrote them.
    assert "accuracy rates all above 80\\%" in papers["2408.06849"].abstract
    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["papers"] == 139 and stats["announcements"]["replace-cross"] == 15


@needs_shared
def test_real_rss_reingest_and_rdf(settings, store):
    fetch(settings, store, feeds=[str(RSS_CL)])
    before = snapshot(store)
    assert fetch(settings, store, feeds=[str(RSS_CL)]).new_announcements == 0
    assert snapshot(store) == before
    rdf = fetch(settings, store, feeds=[str(SHARED_ARXIV / "rss_old_rdf_cs_2021-11-02.xml")])
    assert rdf.date == "2021-11-03" and sum(rdf.counts.values()) == 444


@needs_shared
@pytest.mark.parametrize("name, why", [
    ("rss_atom_cs.AI_2025-08-20_TRUNCATED.xml", "not well-formed XML"),
    ("api_query_error_400_incorrect_id_2026-04-12.xml", "arXiv API error: incorrect id format for abc"),
    ("html_list_cs.CL_recent_2026-08-13.html", "/recent listing"),
    ("oai_arxivraw_getrecord_1706.03762_2026-08-12.xml", "OAI-PMH is not supported"),
])
def test_real_bad_files_fail_cleanly(settings, store, name, why):
    with pytest.raises(FeedError, match=why):
        fetch(settings, store, feeds=[str(SHARED_ARXIV / name)])
    assert table_counts(store) == {"papers": 0, "announcements": 0}


@needs_shared
def test_real_api_answers_fill_comments_and_affiliations(settings, store):
    fetch(settings, store, feeds=[str(SHARED_ARXIV / "api_query_search_all-testing_100entries_2026-04-12.xml")])
    fetch(settings, store, feeds=[str(SHARED_ARXIV / "api_query_legacy_idlist_astro-ph_9812133_affiliations_2019-01-04.xml")])
    papers = get_papers(store, [r["id"] for r in store.db["papers"].rows])
    assert len(papers) == 101
    assert sum(1 for p in papers.values() if p.comment) == 97 + 1
    perlmutter = papers["astro-ph/9812133"]
    assert len(perlmutter.authors) == 32 and all(a.affiliations for a in perlmutter.authors)
    assert perlmutter.journal_ref == "Astrophys.J.517:565-586,1999" and perlmutter.published
    empty = fetch(settings, store, feeds=[str(SHARED_ARXIV / "api_query_empty_0results_2026-04-12.xml")])
    assert empty.status == "empty"
