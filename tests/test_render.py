"""Email rendering: the seed's fields, languages, escaping, inlined CSS and the size budget."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from digestbot import render
from digestbot.models import (
    Announcement,
    Author,
    Digest,
    DigestEntry,
    Enrichment,
    Institution,
    Paper,
    Subscriber,
    Topic,
    TopicHit,
)

POST_TRAINING = Topic("post-training", "后训练", "Post-training", "RLHF, DPO, GRPO …")
AGENTS = Topic("agents", "智能体", "Agents", "LLM agents")


def make_entry(
    n: int,
    score: int = 85,
    *,
    title: str | None = None,
    abstract: str = "We study reward models. They help.",
    announce_type: str = "new",
    enriched: bool = True,
    authors: int = 3,
) -> DigestEntry:
    pid = f"2608.{10000 + n}"
    paper = Paper(
        id=pid, version=2, title=title or f"Paper number {n} on preference optimization",
        abstract=abstract, authors=[Author(f"Author {i}") for i in range(authors)],
        categories=["cs.CL", "cs.LG"], comment="15 pages, 6 figures",
    )
    ann = Announcement("2026-08-13", pid, announce_type, 2, "rss")
    enrichment = Enrichment(
        pid, 2, title_zh=f"第 {n} 篇：偏好优化", summary_zh=f"AI总结内容 {n}",
        abstract_zh="中文摘要内容。" * 10, summary_en=f"English one-liner {n}.",
        institutions=[Institution("Tsinghua University", "清华大学"), Institution("OpenBMB")],
    ) if enriched else None
    hit = TopicHit("post-training", "后训练", score, f"理由 {n}: GRPO 后训练")
    return DigestEntry(paper=paper, announcement=ann, hits=[hit], enrichment=enrichment)


def make_digest(entries: list[DigestEntry], *, lang: str = "zh", more: int = 0,
                topics: list[Topic] | None = None) -> Digest:
    sub = Subscriber(id=7, channel="email", address="alice@example.org", lang=lang)
    return Digest(
        subscriber=sub, date="2026-08-13", topics=topics or [POST_TRAINING], entries=entries,
        more=more, thresholds={"post-training": 60, "agents": 70},
    )


def visible_text(html: str) -> str:
    """The text a reader sees (entities decoded), tags dropped, style/title skipped."""

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag in ("style", "script", "title"):
                self.skip += 1

        def handle_endtag(self, tag: str) -> None:
            if tag in ("style", "script", "title"):
                self.skip -= 1

        def handle_data(self, data: str) -> None:
            if not self.skip:
                self.parts.append(data)

    parser = Collect()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_subject_zh_and_en() -> None:
    entries = [make_entry(i) for i in range(20)]
    assert render.render_email(make_digest(entries, more=2)).subject == (
        "arXiv 每日速递 2026-08-13 · 后训练 等 22 篇"
    )
    en = render.render_email(make_digest(entries, more=2, lang="en",
                                         topics=[POST_TRAINING, AGENTS]))
    assert en.subject == "arXiv daily digest 2026-08-13 · Post-training and more · 22 papers"


def test_subject_names_the_topic_with_most_hits() -> None:
    entries = [make_entry(i) for i in range(3)]
    for e in entries[:2]:
        e.hits = [TopicHit("agents", "智能体", 90, "agent")]
    email = render.render_email(make_digest(entries, topics=[POST_TRAINING, AGENTS]))
    assert email.subject == "arXiv 每日速递 2026-08-13 · 智能体 等 3 篇"


def test_every_seed_field_in_html_and_text() -> None:
    entry = make_entry(1, 95, announce_type="replace", authors=14)
    email = render.render_email(make_digest([entry, make_entry(2, 70)], more=3),
                                unsubscribe_url="https://digest.example/unsubscribe?token=t0k",
                                preferences_url="https://digest.example/prefs?token=t0k")
    html = visible_text(email.html)
    for text in (html, email.text):
        assert "arXiv 每日学术速递 · 2026-08-13 · 后训练 · 5 篇" in text
        for needle in (
            "2608.10001", "2026-08-13", "cs.CL cs.LG", "版本更新", "新提交", "95%",
            "Paper number 1 on preference optimization", "第 1 篇：偏好优化",
            "Author 0, Author 1", "… et al. (+6)", "发表机构", "Tsinghua University(清华大学)",
            "OpenBMB", "专题命中", "后训练", "理由 1: GRPO 后训练", "AI总结", "AI总结内容 1",
            "Comments", "15 pages, 6 figures", "AI中文摘要", "中文摘要内容。", "英文摘要",
            "We study reward models.", "另有 3 篇", "订阅了", "后训练 (≥ 60%)", "退订",
            "管理订阅",
        ):
            assert needle in text, needle
        assert "Author 13" not in text
    assert 'href="https://arxiv.org/abs/2608.10001"' in email.html
    assert 'href="https://arxiv.org/pdf/2608.10001v2"' in email.html
    assert "https://digest.example/unsubscribe?token=t0k" in email.html
    assert "https://digest.example/unsubscribe?token=t0k" in email.text
    assert "https://arxiv.org/pdf/2608.10001v2" in email.text
    # Sorted as given (selection sorts), numbered in the text version.
    assert email.text.index("2608.10001") < email.text.index("2608.10002")


def test_english_variant_has_no_chinese_fields() -> None:
    email = render.render_email(make_digest([make_entry(1)], lang="en"))
    for text in (visible_text(email.html), email.text):
        assert "arXiv daily digest · 2026-08-13 · Post-training · 1 paper" in text
        assert "Institutions" in text and "Topic match" in text and "Abstract" in text
        assert "English one-liner 1." in text and "Unsubscribe" not in text  # no URL given
        for zh in ("第 1 篇", "AI总结", "中文摘要内容", "清华大学", "发表机构", "新提交"):
            assert zh not in text, zh
        assert "New" in text


def test_both_variant_has_both() -> None:
    email = render.render_email(make_digest([make_entry(1)], lang="both"))
    text = visible_text(email.html)
    for needle in ("第 1 篇：偏好优化", "AI总结内容 1", "English one-liner 1.",
                   "发表机构 / Institutions", "新提交 / New", "后训练 (Post-training)"):
        assert needle in text, needle


def test_without_enrichment_english_only_no_garbage() -> None:
    email = render.render_email(make_digest([make_entry(1, enriched=False)]))
    for text in (visible_text(email.html), email.text):
        assert "Paper number 1" in text and "We study reward models." in text
        assert "AI总结" not in text and "发表机构" not in text
        assert "None" not in text and "Undefined" not in text


def test_hostile_text_is_escaped_in_html_and_plain_in_text() -> None:
    title = 'Robust <script>alert("x")</script> & <b>bold</b> $\\Delta$-tuning'
    entry = make_entry(1, title=title, abstract="We show a < b & c > d with $\\Delta$.")
    email = render.render_email(make_digest([entry]))
    assert "<script>" not in email.html and "<b>bold" not in email.html
    assert "&lt;script&gt;" in email.html
    assert title in visible_text(email.html)
    assert "We show a < b & c > d with $\\Delta$." in visible_text(email.html)
    assert title in email.text and "&amp;" not in email.text and "&lt;" not in email.text


def test_css_is_inlined_and_email_safe() -> None:
    html = render.render_email(make_digest([make_entry(1)])).html
    cell = re.search(r'<td class="entry"[^>]*>', html)
    assert cell and "style=" in cell.group() and "padding" in cell.group()
    assert re.search(r'<td class="hd" style="[^"]*background-color: ?#', html)
    assert '<meta name="color-scheme" content="light dark">' in html
    assert re.search(r"max-width: ?680px", html)
    # Only @media rules remain in <style>: everything else lives on the elements.
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert styles and all(s.strip().startswith("@media") for s in styles)
    assert "<link" not in html and "<script" not in html
    assert html.count("<!--[if mso]>") == 2  # Outlook gets a fixed-width column


def test_fifty_long_papers_stay_under_the_budget_with_footer() -> None:
    long_en = ("Reinforcement learning from human feedback aligns models. " * 40).strip()
    entries = [make_entry(i, 99 - i, abstract=long_en, authors=30) for i in range(50)]
    for e in entries:
        e.enrichment.abstract_zh = "这是一个很长的中文摘要，用于测试邮件大小预算。" * 40
    digest = make_digest(entries)
    email = render.render_email(digest, unsubscribe_url="https://digest.example/u?token=t")
    assert len(email.html.encode()) <= render.HTML_BUDGET_BYTES
    assert email.html.rstrip().endswith("</html>")
    assert "https://digest.example/u?token=t" in email.html
    # Abstracts were cut before any paper was: all 50 titles are still there.
    assert all(f"Paper number {i} on" in email.html for i in range(50))
    assert "摘要已缩短" in email.html
    # The plain text keeps everything.
    assert email.text.count(long_en) == 50


def test_small_digest_keeps_full_abstracts() -> None:
    entry = make_entry(1, abstract="A" * 1500 + " end.")
    html = render.render_email(make_digest([entry])).html
    assert "A" * 1500 + " end." in html and "摘要已缩短" not in html


@pytest.mark.parametrize(("n", "expected"), [
    (3, "A0, A1, A2"),
    (10, ", ".join(f"A{i}" for i in range(10))),
    (20, ", ".join(f"A{i}" for i in range(8)) + " … et al. (+12)"),
])
def test_shorten_authors(n: int, expected: str) -> None:
    assert render.shorten_authors([Author(f"A{i}") for i in range(n)]) == expected


def test_template_dir_prefers_the_installed_copy(tmp_path, monkeypatch) -> None:
    assert (render.template_dir() / "email" / "_entry.html").is_file()
    pkg = tmp_path / "digestbot"
    (pkg / "templates" / "email").mkdir(parents=True)
    (pkg / "templates" / "email" / "digest.html").write_text("x")
    monkeypatch.setattr(render.base, "__file__", str(pkg / "render" / "base.py"))
    assert render.template_dir() == pkg / "templates"
