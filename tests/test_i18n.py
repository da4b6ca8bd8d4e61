"""The digest's header and footer say the same thing in every channel (render/i18n.py).

Email, Telegram and Slack used to write their header and footer separately and drifted apart:
"本期未显示" beside "未在本期显示", half-width commas in Chinese, "1 more matching papers",
and a Slack footer listing English topics with "、". These tests hold them together.
"""

from __future__ import annotations

import pytest

from digestbot import render
from digestbot.render import i18n
from digestbot.render.slack import header_text, render_slack
from digestbot.render.telegram import render_telegram
from tests.test_render import AGENTS, POST_TRAINING, make_digest, make_entry


def _footer_texts(digest) -> str:
    footer = render_slack(digest)[0].blocks[-1]
    return "\n".join(e["text"] for e in footer["elements"])


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
@pytest.mark.parametrize("more", [1, 3])
def test_every_channel_counts_the_papers_left_out_in_the_same_words(lang: str, more: int) -> None:
    digest = make_digest([make_entry(1)], lang=lang, more=more)
    line = i18n.more_not_shown(more, lang)
    assert line in render.render_email(digest).text
    assert line in render.render_email(digest).html
    assert line in render_telegram(digest)[0].split("\n")
    assert line in _footer_texts(digest).split("\n")


def test_english_counts_one_paper_in_the_singular() -> None:
    assert i18n.more_not_shown(1, "en") == "1 more matching paper not shown"
    assert i18n.more_not_shown(2, "en") == "2 more matching papers not shown"
    assert "，" in i18n.more_not_shown(2, "zh")  # Chinese punctuation in Chinese text


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
def test_email_and_slack_footers_list_the_same_topics_and_disclaimer(lang: str) -> None:
    digest = make_digest([make_entry(1)], lang=lang, topics=[POST_TRAINING, AGENTS])
    followed = i18n.followed_topics(digest, lang)
    assert followed == {"zh": "后训练 (≥ 60%)、智能体 (≥ 70%)",
                        "en": "Post-training (≥ 60%), Agents (≥ 70%)"}.get(
        lang, "后训练 (Post-training) (≥ 60%)、智能体 (Agents) (≥ 70%)")
    email, slack = render.render_email(digest).text, _footer_texts(digest)
    assert followed in email and followed in slack
    assert i18n.phrase("disclaimer", lang) in email
    assert slack.endswith(i18n.phrase("disclaimer", lang))


def test_every_header_opens_with_title_date_and_count() -> None:
    digest = make_digest([make_entry(1), make_entry(2)], topics=[POST_TRAINING, AGENTS])
    line = "arXiv 每日学术速递 · 2026-08-13 · 后训练、智能体 · 2 篇"
    assert render.render_email(digest).text.startswith(line + "\n")
    assert header_text(digest) == "arXiv 每日学术速递 · 2026-08-13 · 后训练 等 · 2 篇"
    assert render_telegram(digest)[0].startswith(
        "<b>arXiv 每日学术速递</b> · 2026-08-13\n后训练、智能体 · 2 篇\n")
