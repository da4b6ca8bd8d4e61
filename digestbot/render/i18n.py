"""Every reader-facing phrase the renderings share, in zh, en or both (Chinese first).

Labels, topic names, announce-type labels and the digest's header and footer phrases live
here once; the email templates, Telegram and Slack only arrange and escape them.
"""

from __future__ import annotations

from typing import Any

import jinja2

from digestbot.models import ANNOUNCE_LABELS_EN, ANNOUNCE_LABELS_ZH, Topic


def label(lang: str, zh: str, en: str) -> str:
    """A short phrase in the reader's language; both side by side on one line."""
    return zh if lang == "zh" else en if lang == "en" else f"{zh} / {en}"


@jinja2.pass_context
def template_label(context: Any, zh: str, en: str) -> str:
    """`label` for templates: the language is the template's `lang` (zh by default)."""
    return label(context.get("lang", "zh"), zh, en)


def topic_name(topic: Topic, lang: str = "zh") -> str:
    if lang == "both" and topic.name_en and topic.name_en != topic.name_zh:
        return f"{topic.name_zh} ({topic.name_en})"
    return topic.display(lang)


def announce_label(announce_type: str, lang: str = "zh") -> str:
    zh = ANNOUNCE_LABELS_ZH.get(announce_type, announce_type)
    en = ANNOUNCE_LABELS_EN.get(announce_type, announce_type)
    return {"zh": zh, "en": en}.get(lang, f"{zh} / {en}")
