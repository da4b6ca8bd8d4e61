"""The schema: every table of the one SQLite file, as sqlite-utils migrations in order.

`store.Store` applies them when it opens the file. Each table's rows are read and written
only by the stage that owns it (tests/test_house.py); this module only creates them.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("digestbot")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["papers"].create(
        {
            "id": str, "version": int, "title": str, "abstract": str, "authors": str,
            "categories": str, "primary_category": str, "comment": str, "journal_ref": str,
            "doi": str, "license": str, "published": str, "updated": str, "fetched_at": str,
        },
        pk="id",
    )
    db["announcements"].create(
        {"date": str, "arxiv_id": str, "announce_type": str, "version": int, "source": str},
        pk=("date", "arxiv_id"),
        foreign_keys=[("arxiv_id", "papers", "id")],
    )
    db["announcements"].create_index(["arxiv_id"])
    db["fetch_log"].create(
        {"id": int, "at": str, "source": str, "date": str, "status": str, "items": int,
         "detail": str},
        pk="id",
    )
    db["custom_topics"].create(
        {"slug": str, "text": str, "text_key": str, "created_at": str}, pk="slug"
    )
    db["custom_topics"].create_index(["text_key"], unique=True)
    db["scores"].create(
        {"arxiv_id": str, "version": int, "topic": str, "score": int, "reason": str,
         "scorer": str, "created_at": str},
        pk=("arxiv_id", "version", "topic"),
    )
    db["scores"].create_index(["topic", "score"])
    db["first_pages"].create(
        {"arxiv_id": str, "version": int, "text": str, "source": str, "fetched_at": str},
        pk=("arxiv_id", "version"),
    )
    db["enrichments"].create(
        {"arxiv_id": str, "version": int, "prompt_version": str, "model": str,
         "title_zh": str, "summary_zh": str, "summary_en": str, "abstract_zh": str,
         "institutions": str, "created_at": str},
        pk=("arxiv_id", "version", "prompt_version", "model"),
    )
    db["llm_calls"].create(
        {"id": int, "kind": str, "arxiv_id": str, "version": int, "model": str,
         "prompt_tokens": int, "completion_tokens": int, "cached_tokens": int,
         "latency_ms": int, "outcome": str, "error": str, "created_at": str},
        pk="id",
    )
    db["subscribers"].create(
        {"id": int, "channel": str, "address": str, "lang": str, "tz": str, "send_at": str,
         "max_papers": int, "status": str, "status_reason": str, "token": str,
         "webhook_url": str, "created_at": str, "updated_at": str},
        pk="id",
        not_null={"channel", "address", "status", "token"},
    )
    db["subscribers"].create_index(["channel", "address"], unique=True)
    db["subscribers"].create_index(["token"], unique=True)
    db["subscriptions"].create(
        {"subscriber_id": int, "topic": str, "threshold": int, "created_at": str},
        pk=("subscriber_id", "topic"),
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )
    db["deliveries"].create(
        {"id": int, "subscriber_id": int, "digest_date": str, "status": str, "attempts": int,
         "last_error": str, "message_id": str, "paper_ids": str, "parts_total": int,
         "parts_sent": int, "thread_ts": str, "next_attempt_at": str, "created_at": str,
         "updated_at": str, "sent_at": str},
        pk="id",
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )
    db["deliveries"].create_index(["subscriber_id", "digest_date"], unique=True)
    db["deliveries"].create_index(["status"])
    db["delivery_parts"].create(
        {"delivery_id": int, "seq": int, "status": str, "external_id": str, "sent_at": str},
        pk=("delivery_id", "seq"),
        foreign_keys=[("delivery_id", "deliveries", "id")],
    )
    db["delivered_papers"].create(
        {"subscriber_id": int, "arxiv_id": str, "version": int, "delivery_id": int},
        pk=("subscriber_id", "arxiv_id"),
    )
    db["meta"].create({"key": str, "value": str}, pk="key")


@migrations()
def m002_deliveries_more(db: sqlite_utils.Database) -> None:
    """How many matching papers a digest left out ("另有 K 篇"), so a retry rebuilds it exactly."""
    db["deliveries"].add_column("more", int, not_null_default=0)


@migrations()
def m003_delivery_parts_papers(db: sqlite_utils.Database) -> None:
    """The paper ids each sent chat message carried (JSON), so a resumed send skips papers,
    not message indexes: a /lang change between crash and restart moves the split points."""
    db["delivery_parts"].add_column("paper_ids", str)


@migrations()
def m004_subscriber_link_gen(db: sqlite_utils.Database) -> None:
    """The generation signed links are bound to (`Subscriber.link_gen`): 0 for everyone, as
    links mailed before it existed carry none and stay valid until the reader leaves."""
    db["subscribers"].add_column("link_gen", int, not_null_default=0)


@migrations()
def m005_reader_profile(db: sqlite_utils.Database) -> None:
    """A reader's followed authors and keywords in and out (issue 16), owned by `subscribers`.

    `key` is the folded form two spellings share ("Bengio, Yoshua" = "yoshua bengio"), so the
    same name or word is stored once; `name` and `word` keep what the reader typed.
    """
    db["followed_authors"].create(
        {"subscriber_id": int, "key": str, "name": str, "created_at": str},
        pk=("subscriber_id", "key"),
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )
    db["keyword_filters"].create(
        {"subscriber_id": int, "kind": str, "key": str, "word": str, "created_at": str},
        pk=("subscriber_id", "kind", "key"),
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )


@migrations()
def m006_reader_notices(db: sqlite_utils.Database) -> None:
    """`/notify on` (issue 18): who wants one-line notices, and each notice sent, so a restart
    never sends one twice. Owned by `subscribers` (`subscribers.notices`)."""
    fk = [("subscriber_id", "subscribers", "id")]
    db["notice_optins"].create({"subscriber_id": int, "created_at": str}, pk="subscriber_id",
                               foreign_keys=fk)
    db["notices_sent"].create({"subscriber_id": int, "day": str, "kind": str, "sent_at": str},
                              pk=("subscriber_id", "day", "kind"), foreign_keys=fk)


@migrations()
def m007_subscriber_cadence(db: sqlite_utils.Database) -> None:
    """A reader's cadence, daily or weekly (issue 16), owned by `subscribers`; independent of
    m006 so the two can land in either order."""
    db["subscribers"].add_column("cadence", str, not_null_default="daily")


@migrations()
def m008_llm_call_request(db: sqlite_utils.Database) -> None:
    """Several papers per scoring request (issue 15): the llm_calls rows of one request share
    its id, so `stats` counts requests, not rows. Older rows keep NULL (one row, one request)."""
    db["llm_calls"].add_column("request", str)


@migrations()
def m009_feedback(db: sqlite_utils.Database) -> None:
    """A reader's 👍/👎 on delivered papers (issue 17), owned by `subscribers.feedback`: one
    row per reader and paper (the last vote counts), removed with the reader."""
    db["feedback"].create(
        {"subscriber_id": int, "arxiv_id": str, "vote": int, "created_at": str,
         "updated_at": str},
        pk=("subscriber_id", "arxiv_id"),
        foreign_keys=[("subscriber_id", "subscribers", "id")],
    )


@migrations()
def m010_first_page_state(db: sqlite_utils.Database) -> None:
    """Each first page's state (issue 15), owned by `enrich` (`enrich.pdf`): `fetched`, `no_text`
    (arXiv has no PDF, or none with text: final) or `given_up` (arXiv was away: try again
    later and fill the institutions in). Rows before it were all fetched."""
    db["first_pages"].add_column("state", str, not_null_default="fetched")


@migrations()
def m011_reader_library(db: sqlite_utils.Database) -> None:
    """A reader's paper library as a profile (issue 16), owned by `subscribers.library`: where
    it came from, its threshold, and per entry only the source key, the title and the abstract
    cut for embedding. The Zotero key is kept for refreshing (masked in every log and error)."""
    fk = [("subscriber_id", "subscribers", "id")]
    db["libraries"].create(
        {"subscriber_id": int, "source": str, "name": str, "zotero_user": str,
         "zotero_key": str, "threshold": int, "size": int, "created_at": str,
         "updated_at": str},
        pk="subscriber_id", foreign_keys=fk)
    db["library_items"].create(
        {"subscriber_id": int, "key": str, "title": str, "abstract": str, "pos": int},
        pk=("subscriber_id", "key"), foreign_keys=fk)


@migrations()
def m012_delivery_suggestions(db: sqlite_utils.Database) -> None:
    """The "you may like" reasons a planned digest shows (issue 17), by paper: the 👍/👎 model
    that chose them is retrained as votes come, so sending rebuilds them from the row."""
    db["deliveries"].add_column("suggested", str)


@migrations()
def m013_delivered_papers_by_paper(db: sqlite_utils.Database) -> None:
    """`delivered_papers` by paper: "never twice" asks once per batch which of the papers in
    play anyone has got (`outbox.DeliveryHistory`), so a reader's own record is read only
    for those."""
    db["delivered_papers"].create_index(["arxiv_id"], if_not_exists=True)
