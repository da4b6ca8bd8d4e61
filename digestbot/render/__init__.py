"""Turn a `Digest` into what people read: the email (HTML + plain text) and shared filters.

Telegram's messages are in `render.telegram`, Slack's blocks in `render.slack`, and every
phrase they share in `render.i18n`; the jinja2 environment and filters every format shares
are in `render.base`, the email in `render.email` (assembled from `render.fragments` and
each paper's rows, `render.rows`).
"""

from digestbot.render.base import (
    HTML_BUDGET_BYTES,
    RenderedEmail,
    badge,
    clip,
    environment,
    hit_text,
    lead_topic,
    percent,
    shorten_authors,
    subject,
    template_dir,
    topic_name,
)
from digestbot.render.email import (
    EntryControls,
    email_context,
    html_reasons,
    render_email,
    text_reasons,
)
from digestbot.render.rows import _inliner, inline_piece

__all__ = [
    "HTML_BUDGET_BYTES", "EntryControls", "RenderedEmail", "_inliner", "badge", "clip",
    "email_context", "environment", "hit_text", "html_reasons", "inline_piece", "lead_topic",
    "percent", "render_email", "shorten_authors", "subject", "template_dir", "text_reasons",
    "topic_name",
]
