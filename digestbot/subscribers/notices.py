"""One-line notices to readers who asked for them (`/notify on`, issue 18 item 4).

Off by default: a reader who never opted in hears nothing on a day without a digest. Each
notice sent is recorded (`notices_sent`, one row per reader, day and kind), so a restart or
a second attempt never sends it twice; `due` leaves out whoever already has it.
"""

from __future__ import annotations

from digestbot.store import Store, now_iso

# Notices go to chats only: an email saying "no email today" is the noise readers complain of.
CHANNELS = ("telegram", "slack")
HOLIDAY = "holiday"


def set_notify(store: Store, subscriber_id: int, on: bool) -> None:
    if on:
        store.db.execute("insert or ignore into notice_optins (subscriber_id, created_at) "
                         "values (?, ?)", [subscriber_id, now_iso()])
    else:
        store.db.execute("delete from notice_optins where subscriber_id = ?", [subscriber_id])


def wants_notices(store: Store, subscriber_id: int) -> bool:
    return bool(list(store.db.query(
        "select 1 from notice_optins where subscriber_id = ?", [subscriber_id])))


def due(store: Store, day: str, kind: str) -> list[int]:
    """The active, opted-in chat readers who have not had the `kind` notice for `day`."""
    marks = ", ".join("?" * len(CHANNELS))
    return [r["id"] for r in store.db.query(
        "select s.id from subscribers s join notice_optins o on o.subscriber_id = s.id "
        f"where s.status = 'active' and s.channel in ({marks}) and not exists ("
        "select 1 from notices_sent n where n.subscriber_id = s.id and n.day = ? and n.kind = ?)"
        " order by s.id", [*CHANNELS, day, kind])]


def record_sent(store: Store, subscriber_id: int, day: str, kind: str) -> None:
    store.db.execute("insert or ignore into notices_sent (subscriber_id, day, kind, sent_at) "
                     "values (?, ?, ?, ?)", [subscriber_id, day, kind, now_iso()])
