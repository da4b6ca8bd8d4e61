"""The outbox: every digest is a row before it is sent, so nothing is lost and nothing goes twice.

A delivery is one row per (subscriber, digest date) in `deliveries`:

    pending ──► sending ──► sent
                   │
                   ├──► failed            (transient; retried after a backoff, bounded)
                   └──► failed_permanent  (the address is dead, or attempts ran out)
    pending/failed ──► cancelled          (the subscriber left before we got to it)

This package is the only owner of `deliveries`, `delivery_parts` and `delivered_papers`:
`rows` holds their SQL, `plan` writes a row (and its papers) before anything is sent,
`send` moves rows on through the `ChannelSender` the entry point passes in.

Any number of processes may deliver at once (`send`, `once`, `run`): a worker takes a row's
kernel lock (`claims`), then moves it to `sending` with a compare-and-set on the status and
attempts it read (`rows.claim`); a row whose lock is held is someone else's, a row whose
compare-and-set misses was moved on meanwhile. Either way the worker leaves it alone.

A crash between "accepted" and "marked sent" leaves a row in `sending` (and its lock free). The next run sends it
again *through the same sender with the same row*, and the sender uses what the protocol
offers to avoid a duplicate: the `.eml` outbox sees its file (with this Message-ID) already
there; chat senders skip the papers of the parts recorded with `mark_part`; SMTP cannot ask a
server what it accepted, so the email goes again with the *same* Message-ID, which mail
clients (Gmail, Thunderbird, Apple Mail) use to fold duplicates. Rows are never deleted, so
the digest itself is never lost — not even when its subscriber is removed.
"""

from digestbot.outbox.attempt import BACKOFF, MAX_ATTEMPTS, ChannelSender
from digestbot.outbox.plan import EMPTY_KEY, due_subscribers, is_due, plan, plan_for
from digestbot.outbox.rows import (
    DeliveryHistory,
    DeliveryReport,
    DeliveryRow,
    by_channel_and_status,
    count_by_status,
    create_row,
    day_row,
    day_summary,
    finished_since,
    get_row,
    last_sent,
    mark_part,
    papers_sent,
    part_external_id,
    parts_done,
    planned_for,
    ready_rows,
    set_parts_total,
    set_thread_ts,
)
from digestbot.outbox.send import (
    close_senders,
    deliver_and_close,
    deliver_pending,
    deliver_row,
    plan_due,
    run_send,
)

__all__ = [
    "BACKOFF", "EMPTY_KEY", "MAX_ATTEMPTS", "ChannelSender", "DeliveryHistory", "DeliveryReport",
    "DeliveryRow", "by_channel_and_status", "count_by_status", "create_row", "day_row",
    "close_senders", "day_summary", "deliver_and_close", "finished_since",
    "deliver_pending", "deliver_row", "due_subscribers", "get_row", "is_due", "last_sent",
    "mark_part", "papers_sent", "part_external_id", "parts_done", "plan", "plan_due", "plan_for",
    "planned_for", "ready_rows", "run_send", "set_parts_total", "set_thread_ts",
]
