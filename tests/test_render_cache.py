"""The fast email path: cached, separately inlined entry rows must give the bytes the whole
page would, entries differing per reader must not share a row, and the budget cut is exact."""

from __future__ import annotations

import dataclasses
import random

import markupsafe
import pytest

from digestbot import render
from digestbot.channels.email import build_message, flatten
from digestbot.config import load_settings
from digestbot.models import TopicHit
from digestbot.outbox import DeliveryRow
from digestbot.render import email as email_render
from digestbot.render import fragments
from digestbot.render.fragments import slot
from tests.test_render import AGENTS, POST_TRAINING, make_digest, make_entry

HOSTILE = '<script>alert(1)</script> & "LaTeX" $\\Delta$ < 5'


def whole_page(digest, rows_for, more: int, **links) -> str:
    """The reference: every row rendered into one page, inlined in one go."""
    env = render.environment()
    lang = digest.subscriber.lang
    rows = "".join(env.get_template("email/_entry_row.html").render(
        entry=e, lang=lang, en_chars=en, zh_chars=zh) for e, (en, zh) in rows_for)
    context = render.email_context(digest, **links)
    return render._inliner().inline(env.get_template("email/digest.html").render(
        context, entry_rows=markupsafe.Markup(rows), more=more))


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
def test_spliced_rows_equal_inlining_the_whole_page(lang: str) -> None:
    entries = [make_entry(1, 90, title=HOSTILE), make_entry(2, 80, enriched=False),
               make_entry(3, 70, announce_type="replace", authors=25)]
    digest = make_digest(entries, lang=lang, more=4, topics=[POST_TRAINING, AGENTS])
    links = {"unsubscribe_url": "https://d.example/u?t=a&b=c", "preferences_url": "https://p"}
    html = render.render_email(digest, **links).html
    assert html == whole_page(digest, [(e, (None, None)) for e in entries], 4, **links)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_over_budget_keeps_as_many_entries_as_fit() -> None:
    long_en = "Reinforcement learning from human feedback aligns models. " * 40
    entries = [make_entry(i, 99 - i, abstract=long_en, authors=30) for i in range(150)]
    digest = make_digest(entries, more=2)
    html = render.render_email(digest).html
    kept = html.count('<td class="entry"')
    assert 1 < kept < 150
    assert len(html.encode()) <= render.HTML_BUDGET_BYTES
    assert f"另有 {2 + 150 - kept} 篇" in html
    # Exactly what the single-pass reference gives with abstracts left out...
    assert html == whole_page(digest, [(e, (0, 0)) for e in entries[:kept]], 2 + 150 - kept)
    # ...and one entry more would not have fitted.
    bigger = whole_page(digest, [(e, (0, 0)) for e in entries[:kept + 1]], 2 + 150 - kept - 1)
    assert len(bigger.encode()) > render.HTML_BUDGET_BYTES


def test_same_paper_for_two_readers_keeps_each_readers_hits() -> None:
    first = make_entry(1, 90)
    second = dataclasses.replace(first, hits=[TopicHit("agents", "智能体", 75, "理由：工具调用")])
    html_a = render.render_email(make_digest([first])).html
    html_b = render.render_email(make_digest([second], topics=[AGENTS])).html
    assert "GRPO 后训练" in html_a and "工具调用" not in html_a
    assert "工具调用" in html_b and "GRPO 后训练" not in html_b
    assert "智能体 75%" in render.render_email(make_digest([second], topics=[AGENTS])).text


def test_a_changed_paper_is_not_served_from_the_cache() -> None:
    entry = make_entry(5)
    render.render_email(make_digest([entry]))
    entry.paper.title = "A corrected title"
    email = render.render_email(make_digest([entry]))
    assert "A corrected title" in email.html and "A corrected title" in email.text


def test_flatten_gives_the_same_bytes_as_the_stdlib() -> None:
    settings = load_settings(smtp_url="smtp://127.0.0.1:25")
    digest = make_digest([make_entry(1, title=HOSTILE), make_entry(2)], lang="both")
    row = DeliveryRow(id=1, subscriber_id=7, digest_date="2026-08-13", status="pending",
                      paper_ids=[], message_id="<digest.1@example.org>")
    msg = build_message(settings, row, digest)
    assert flatten(msg) == bytes(msg)


ODD = ["a\r\nb\rc", "nul\0here", "nb\xa0sp", '<b>&amp; "q" \'s\'', "tab\tand\x0cff", "中文 & 标点"]


@pytest.mark.parametrize("odd", ODD)
def test_values_filled_in_per_reader_equal_inlining_them(odd: str) -> None:
    """The page and rows are inlined once with markers; the reader's values are escaped the
    way the inliner writes them (text, <title>, attributes) — including what its parser
    changes (CR, NUL, no-break space)."""
    topic = dataclasses.replace(POST_TRAINING, name_zh=f"主题{odd}", name_en=f"Topic{odd}")
    entry = dataclasses.replace(make_entry(1, 90), hits=[TopicHit("post-training", topic.name_zh,
                                                                   90, f"理由{odd}")])
    digest = make_digest([entry, make_entry(2, 80)], lang="both", more=1, topics=[topic])
    links = {"unsubscribe_url": f"https://d.example/u?t={odd}", "preferences_url": None,
             "pages_url": f"https://d.example/d?{odd}"}
    html = render.render_email(digest, **links).html
    assert html == whole_page(digest, [(e, (None, None)) for e in digest.entries], 1, **links)


def test_the_more_line_ends_before_the_footer_in_text() -> None:
    digest = make_digest([make_entry(1)], more=3)
    text = render.render_email(digest, pages_url="https://d.example/d/2026-08-13").text
    assert "在网页上查看: https://d.example/d/2026-08-13\n你收到这封邮件" in text
    assert "未在本期显示\n你收到这封邮件" in render.render_email(digest).text


class Votes:
    """A per-reader-per-paper piece, as the 👍/👎 links will be: filled from one stamp."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.stamp = render.inline_piece(
            '<p class="links"><a href="' + slot("up") + '">👍</a></p>\n')

    def html(self, entry) -> str:
        return self.stamp.fill({"up": f"https://d.example/v?r={self.reader}&p={entry.paper.id}"})

    def text(self, entry) -> str:
        return f"👍 https://d.example/v?r={self.reader}&p={entry.paper.id}\n"


def test_controls_are_stitched_into_each_entry_per_reader() -> None:
    entries = [make_entry(1, 90), make_entry(2, 80)]
    a = render.render_email(make_digest(entries), controls=Votes("a"))
    b = render.render_email(make_digest(entries), controls=Votes("b"))
    for email, reader in ((a, "a"), (b, "b")):
        for e in entries:
            link = f"https://d.example/v?r={reader}&amp;p={e.paper.id}"
            # Right after the entry's own links line, inside its row.
            assert f'PDF</a></p>\n<p class="links" style="margin:0 0 6px"><a href="{link}" ' in email.html
            assert f"PDF: {e.paper.pdf_url}\n👍 https://d.example/v?r={reader}&p={e.paper.id}\n" in email.text
    assert "r=b" not in a.html and "r=a" not in b.html
    assert a.html.count('<td class="entry"') == 2


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_message_parts_are_encoded_as_the_stdlib_encodes_them(lang: str) -> None:
    """The parts' base64 is made in one go; headers and bytes must be the stdlib's own."""
    from email.message import EmailMessage

    settings = load_settings(smtp_url="smtp://127.0.0.1:25")
    long_en = "Reinforcement learning from human feedback aligns models. " * 10
    digest = make_digest([make_entry(1, abstract=long_en), make_entry(2)], lang=lang)
    row = DeliveryRow(id=1, subscriber_id=7, digest_date="2026-08-13", status="pending",
                      paper_ids=[], message_id="<digest.1@example.org>")
    text, html = build_message(settings, row, digest).iter_parts()
    for part, kwargs in ((text, {}), (html, {"subtype": "html", "cte": "base64"})):
        reference = EmailMessage(policy=part.policy)
        reference.set_content(part.get_content(), **kwargs)
        assert part.get_payload() == reference.get_payload()
        for header in ("Content-Type", "Content-Transfer-Encoding"):
            assert part[header] == reference[header]


def test_markers_are_split_as_the_pattern_splits_them() -> None:
    """`fragments.split` finds markers with `str.find` before matching: the very parts the
    pattern's own split gives, stray and broken markers included."""
    rng = random.Random(4)
    atoms = ["a", "<", "<!--", "<!--digestbot:", "<!--digestbot:x-->", "<!--digestbot:-->",
             "\ue000", "\ue001", "\ue000n\ue001", "\ue000bad name\ue001", "\ue000a-b\ue001",
             "-->", "中文", "\ue000\ue000k\ue001", HOSTILE]
    for _ in range(5_000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        assert fragments.split(text) == fragments._MARKERS.split(text), text


def test_readers_of_one_lineup_get_their_own_header_subject_and_footer() -> None:
    """Digests of the same entries share a lineup, and its headline (subject, header, late
    line, followed topics) per what they show: each email is the one its digest alone gives,
    whatever digest of those entries came before."""
    entries = [make_entry(1, 90), make_entry(2, 80)]
    renamed = dataclasses.replace(POST_TRAINING, name_zh="后训练（新名）")
    base = make_digest(entries, topics=[POST_TRAINING, AGENTS])
    sub = base.subscriber
    variants = [
        base,
        dataclasses.replace(base, thresholds={"post-training": 75, "agents": 70}),
        dataclasses.replace(base, topics=[renamed, AGENTS]),
        dataclasses.replace(base, topics=[AGENTS, POST_TRAINING]),
        dataclasses.replace(base, more=3),
        dataclasses.replace(base, date="2026-08-14"),
        dataclasses.replace(base, late="fetch"),
        dataclasses.replace(base, subscriber=dataclasses.replace(sub, cadence="weekly")),
        dataclasses.replace(base, subscriber=dataclasses.replace(sub, lang="en")),
    ]
    named = [dataclasses.replace(d, key="one lineup") for d in variants]
    together = [render.render_email(d) for d in named]
    assert len({(r.subject, r.html) for r in together}) == len(variants)
    for d, got in zip(variants, together, strict=True):
        email_render._LINEUPS.items.clear()
        alone = render.render_email(d)
        assert (got.subject, got.html, got.text) == (alone.subject, alone.html, alone.text)


def test_a_stamp_filled_in_part_keeps_its_other_slots_and_takes_no_value_for_a_marker() -> None:
    """`Stamp.partial` (a paper's abstract cut in its row): the other slots are the ones a
    stamp of the filled text has, and fill alike; a value that looks like a marker stays text."""
    text = ('<p title="\ue000t\ue001">\ue000a\ue001 <b>\ue000m\ue001</b></p>'
            '<!--digestbot:reasons--><title>\ue000s\ue001</title>')
    stamp = fragments.Stamp(text)
    for values in ({"a": HOSTILE}, {"a": "x", "t": 'q"<y'}, {"s": "<t>", "m": "&"}, {}):
        part = stamp.partial(values)
        rest = {"t": 'a"b&', "a": "<1>", "m": "m&m", "s": "x</title>", "reasons": "<i>r</i>"}
        assert part.fill(rest) == stamp.fill({**rest, **values})
        assert [n for n, _ in part.slots] == [n for n, _ in stamp.slots if n not in values]
    marker = stamp.partial({"a": fragments.slot("m"), "t": str(fragments.block("reasons"))})
    assert [n for n, _ in marker.slots] == ["m", "reasons", "s"]
    assert fragments.slot("m") in marker.fill({"m": "x"})
