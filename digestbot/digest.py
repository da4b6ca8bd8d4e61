"""What each subscriber gets: the papers of a day (plus any missed) that hit their topics.

Selection reads the announcements and the cached per-topic scores through their owners
(`sources.papers`, `enrich.topic_scores`) once per batch into a `Library` (a day's passing
scores are a few thousand rows), and what the subscriber already received through the
`History` the outbox passes in, so it costs a few indexed queries per subscriber and never
an LLM call. Enrichment is looked up, not made: a paper without one
is shown in English only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date as Date
from datetime import timedelta
from typing import Any, Protocol

from digestbot import rerank
from digestbot.digest_batch import Library, announcement
from digestbot.digest_context import ReaderContext
from digestbot.enrich.topic_scores import subscribed_scores
from digestbot.models import Announcement, AuthorHit, Digest, DigestEntry, Subscriber, TopicHit
from digestbot.sources.papers import last_announcements
from digestbot.store import Store

# How far back a digest catches up after a pause or downtime. Older papers are stale news,
# and an unbounded window would flood someone returning after months.
CATCH_UP_DAYS = 14
# A weekly digest covers the week before its Monday and shows at most this many papers per
# topic (each paper counted under its best topic); the rest are counted in "另有 K 篇".
WEEK_DAYS = 7
WEEKLY_PER_TOPIC = 5


class History(Protocol):
    """What a reader already got. The outbox owns that record (`outbox.DeliveryHistory`) and
    passes it in: selection sits below the outbox and never reads its tables itself."""

    def last_sent(self, subscriber_id: int, before: str) -> str | None:
        """The latest digest date before `before` that went out to the subscriber."""
        ...

    def delivered(self, subscriber_id: int, arxiv_ids: Sequence[str]) -> set[str]:
        """Those of `arxiv_ids` the subscriber has been sent (or has planned) already."""
        ...


def select(
    store: Store, subscriber: Subscriber, date: str, *, history: History,
    library: Library | None = None, superset: bool = False,
) -> Digest | None:
    """The digest of `date` for `subscriber`, or None when nothing passes (no empty mail).

    Papers announced on `date`, and on earlier days not yet covered by a sent digest (at
    most `CATCH_UP_DAYS` back, and for a subscriber who never got one, not before they
    subscribed), that score at least the threshold on any subscribed topic and that the
    subscriber has never received — so a replaced version comes only to those who missed
    the paper. A paper by an author the reader follows comes whatever its scores (first, so
    the cap never cuts it); the reader's `must` and `exclude` keywords sift the others.
    Best score first, ties by id — or, once the reader has voted enough, in the order their
    👍/👎 model (`rerank`) gives, with up to `rerank.MAY_LIKE` papers under the thresholds;
    beyond `max_papers` only counted. Pass one `library` for a batch of subscribers to read
    each paper once.

    `superset`: every paper that can still be in it once the enrichments are in — for a
    reader with `must`/`exclude` keywords, unsifted and uncapped (a Chinese keyword can only
    match a translation that is not made yet); the same digest for anyone else.
    """
    context = ReaderContext(store, subscriber, library)
    window = _window(context.library, history, subscriber, date)
    if (context.shelf is None and not context.profile.follows and subscriber.cadence == "daily"
            and not context.library.may_learn(subscriber.id)):
        return _select_topics(context, history, date, window, superset)
    # The reader's library scores like one more topic (subscribers.library).
    found = _latest_per_paper([*context.library.passing(context.subscriptions, window),
                               *context.library_rows(window=window)], context.shelf is not None,
                              single=len(context.subscriptions) == 1)
    followed = context.followed_in(window)
    # The reader's 👍/👎 model (None until they voted enough) and what it may suggest.
    learned = (rerank.learn(store, subscriber.id, list(context.topics))
               if context.library.may_learn(subscriber.id) else None)
    pool = _latest_per_paper(rerank.pool_rows(store, subscriber.id, window, date,
                                              [*found, *followed])) if learned else {}
    candidates = list(dict.fromkeys([*followed, *found, *pool]))
    # Never twice: a paper the reader got (in any version) is not offered again.
    for pid in history.delivered(subscriber.id, candidates) if candidates else ():
        found.pop(pid, None)
        followed.pop(pid, None)
        pool.pop(pid, None)
    # Keywords sift what the topics brought; a followed author's paper comes regardless.
    sifts = bool(context.profile.must or context.profile.exclude)
    unsifted = superset and sifts
    sift = [pid for pid in [*found, *pool] if pid not in followed] if sifts and not unsifted else []
    for pid in context.filtered_out(sift) if sift else ():
        found.pop(pid, None)
        pool.pop(pid, None)
    if not found and not followed:
        return None
    # Followed authors first, so the cap never cuts them; then best score first, ties by id.
    best = [-rows[0]["score"] if len(rows) == 1 else -max(r["score"] for r in rows)
            for rows in found.values()]
    if followed:
        scores = dict(zip(found, best, strict=True))
        ranked = [pid for *_, pid in sorted(
            (pid not in followed, scores.get(pid, 0), pid) for pid in {*found, *followed})]
    else:
        ranked = [pid for _, pid in sorted(zip(best, found, strict=True))]
    suggested: dict[str, TopicHit] = {}
    if learned:
        ranked, suggested = learned.rank(store, ranked, followed, pool, found, context.lang)
        found.update({pid: pool[pid] for pid in suggested})
    kept = (_weekly_cut(ranked, found, {**followed, **suggested})
            if subscriber.cadence == "weekly" else ranked)
    kept = ranked if unsifted else kept[:subscriber.max_papers]
    picks = context.held_all([found[pid] for pid in kept]) if not (followed or suggested) else [
             context.held(found[pid]) if pid in found and pid not in suggested
             and pid not in followed else
             (announcement(found[pid][0]) if pid in found else followed[pid][0],
              [suggested[pid]] if pid in suggested else context.hits(found.get(pid, [])),
              followed.get(pid, (None, []))[1])
             for pid in kept]
    return context.digest(date, context.entries(picks), more=len(ranked) - len(kept))


def _select_topics(context: ReaderContext, history: History, date: str, window: list[str],
                   superset: bool) -> Digest | None:
    """`select` for a daily reader whose topics alone bring their papers (most readers: no
    library, followed author or 👍/👎 model): ranked once per batch for all readers alike
    (the same subscriptions and window), then only what they had and their keywords taken
    out, the cap applied and the entries looked up."""
    library, subscriber = context.library, context.subscriber
    key = (tuple(window), library.subscription_key(subscriber.id))
    # Paper ids best first, kept for the batch (only the ids: a list of rows a paper kept
    # for the batch would make every garbage collection pass longer).
    ranking = library.memo(("ranked", *key))
    if not ranking:
        ranking["ids"] = library.ranked(context.subscriptions, window)
    ranked: tuple[str, ...] = ranking["ids"]
    ids: Sequence[str] = ranked
    # Never twice: a paper the reader got (in any version) is not offered again.
    gone = history.delivered(subscriber.id, ids) if ids else ()
    if gone:
        ids = [pid for pid in ids if pid not in gone]
    # Keywords sift what the topics brought (all of it for a `superset`).
    sifts = bool(context.profile.must or context.profile.exclude)
    out = set(context.filtered_out(ids)) if sifts and not superset and ids else ()
    if out:
        ids = [pid for pid in ids if pid not in out]
    if not ids:
        return None
    kept = ids if superset and sifts else ids[:subscriber.max_papers]
    # Nothing taken out: every reader of these subscriptions gets the same entries, made once.
    alike = library.memo(("lineup", *key, context.lang, len(kept))) if ids is ranked else {}
    if not alike:
        known = library.memo(("entries", *key, context.lang))
        if not all(map(known.__contains__, kept)):
            missing = [pid for pid in kept if pid not in known]
            rows = library.passing_rows(missing, context.subscriptions, window)
            known.update(zip(missing, context.held_all(rows), strict=True))
        entries = context.entries(list(map(known.__getitem__, kept)))
        if ids is not ranked:
            return context.digest(date, entries, more=len(ids) - len(kept))
        alike.update(entries=entries, key=library.lineup(entries))
    return context.digest(date, list(alike["entries"]), more=len(ids) - len(kept),
                          key=alike["key"])


def _weekly_cut(ranked: list[str], found: dict[str, list[dict[str, Any]]],
                followed: dict[str, Any]) -> list[str]:
    """The week's best per topic: at most `WEEKLY_PER_TOPIC` papers under each paper's best
    topic, in `ranked` order; a followed author's paper is always kept."""
    per_topic: dict[str, int] = {}
    kept = []
    for pid in ranked:
        if pid in followed:
            kept.append(pid)
            continue
        best = max(found[pid], key=lambda r: (r["score"], r["topic"]))["topic"]
        if per_topic.get(best, 0) < WEEKLY_PER_TOPIC:
            per_topic[best] = per_topic.get(best, 0) + 1
            kept.append(pid)
    return kept


def suggestions(digest: Digest) -> dict[str, TopicHit]:
    """The digest's "you may like" papers (`rerank`) and their reasons, by paper id: what
    `rebuild` needs beside the ids, since the model that chose them keeps learning."""
    return {e.paper.id: e.hits[0] for e in digest.entries
            if len(e.hits) == 1 and e.hits[0].topic == rerank.SUGGESTED}


def rebuild(
    store: Store, subscriber: Subscriber, date: str, paper_ids: list[str], more: int,
    *, library: Library | None = None, suggested: dict[str, TopicHit] | None = None,
) -> Digest:
    """The digest an outbox row planned, from its paper ids, in their order.

    Used at sending (and after a restart) so what is sent is what was planned, even if
    scores, thresholds or deliveries changed meanwhile: every listed paper is kept (if a
    threshold was raised since, the entry still names its subscribed topics' scores as the
    reason), and a paper planned as a suggestion keeps its reason from `suggested`.
    """
    ids = list(dict.fromkeys(paper_ids))
    context = ReaderContext(store, subscriber, library)
    picks = _held_picks(context, date, ids, suggested or {})
    return context.digest(date, context.entries(
        picks if picks is not None else _read_picks(context, date, ids, suggested or {})),
        more=more)


Pick = DigestEntry | tuple[Announcement, list[TopicHit], list[AuthorHit]]


def _held_picks(context: ReaderContext, date: str, ids: list[str], suggested: dict[str, TopicHit]
                ) -> list[Pick] | None:
    """`rebuild`'s entries from the batch's held score rows, shared by every reader alike:
    when every paper was announced on `date` and still scores on one of the reader's topics,
    and the reader's library does not score them; else None.

    A paper's entry depends only on the reader's subscriptions (topics, thresholds, order) and
    language, unless they follow an author on it: made once per batch for all readers alike,
    so most of a row's papers are a dict lookup each."""
    library = context.library
    if context.shelf is not None or not library.announced_on(date, ids):
        return None
    if context.profile.follows:  # their followed authors make each entry their own
        picks = []
        by_paper = library.held_scores(date)
        for pid in ids:
            rows = _scored(library.subscription_key(context.subscriber.id), by_paper.get(pid))
            if not rows:
                return None  # read where it is (`_read_picks`)
            authors = context.authors_of(pid)
            picks.append((announcement(rows[0]), [suggested[pid]], authors) if pid in suggested
                         else _held_pick(context, rows, authors))
        return picks
    subscriptions = library.subscription_key(context.subscriber.id)
    known = library.memo(("held picks", date, context.lang, subscriptions))
    if not all(map(known.__contains__, ids)):
        missing = [pid for pid in ids if pid not in known]
        # The rows passing the reader's thresholds, as planning read them (a few per cent of
        # a day's scores, their papers read with them in a few queries); every score on their
        # topics only for a paper with none passing now (a threshold raised since).
        passing = (library.passing_day(date, min(t for _, t in subscriptions)).by_paper
                   if subscriptions else {})
        for pid in missing:  # `rebuild` made the ids unique
            rows = (_scored(subscriptions, passing.get(pid), passing_only=True)
                    or _scored(subscriptions, library.held_scores(date).get(pid)))
            if not rows:
                return None
            known[pid] = _held_pick(context, rows, [])
    picks = list(map(known.__getitem__, ids))
    for pid in suggested.keys() & set(ids) if suggested else ():  # planned as "you may like"
        rows = _scored(subscriptions, library.held_scores(date)[pid])
        picks[ids.index(pid)] = (announcement(rows[0]), [suggested[pid]], [])
    return picks


def _scored(subscriptions: tuple[tuple[str, int], ...], on: dict[str, dict[str, Any]] | None,
            *, passing_only: bool = False) -> list[dict[str, Any]]:
    """A paper's held rows (`on`: topic → row) on the reader's topics (`subscription_key`), in
    the order they subscribed: those that pass their threshold, else (unless `passing_only`)
    all of them (a threshold raised since)."""
    passing: list[dict[str, Any]] = []
    scored: list[dict[str, Any]] = []
    for topic, threshold in subscriptions if on else ():
        row = on.get(topic)  # type: ignore[union-attr]
        if row is not None:
            scored.append(row)
            if row["score"] >= threshold:
                passing.append(row)
    return passing if passing_only else passing or scored


def _held_pick(context: ReaderContext, rows: list[dict[str, Any]], authors: list[AuthorHit]
               ) -> Pick:
    """The entry of a paper from its held rows (`_scored`): the batch's shared one."""
    rows = context.library.hold(context._in_order(rows))
    entry = None if authors else context.library.held_entry(rows, context.lang)
    return entry or (announcement(rows[0]), context.hits(rows), authors)


def _read_picks(context: ReaderContext, date: str, ids: list[str], suggested: dict[str, TopicHit]
                ) -> list[tuple[Announcement, list[TopicHit], list[AuthorHit]]]:
    """`rebuild`'s entries from the scores and announcements as read for this reader."""
    store, subscriber = context.store, context.subscriber
    topic_rows = context.library.scored_on(date, context.subscriptions, ids)
    if topic_rows is None:  # a paper announced before `date`: read where it was
        topic_rows = subscribed_scores(store, subscriber.id, ids, date)
    # Only a paper that no longer scores on the reader's topics needs its announcement read,
    # unless the reader's library scores them all.
    on_topics = {r["arxiv_id"] for r in topic_rows}
    announced = last_announcements(
        store, ids if context.shelf else [pid for pid in ids if pid not in on_topics], date)
    scored = _latest_per_paper([*topic_rows, *context.library_rows(announced.values(),
                                                                  passing_only=False)])
    picks = []
    for pid in ids:
        rows = scored.get(pid, [])
        passing = [r for r in rows if r["score"] >= r["threshold"]]
        ann = announcement(rows[0]) if rows else announced.get(pid)
        if ann is not None:
            hits = [suggested[pid]] if pid in suggested else context.hits(passing or rows)
            picks.append((ann, hits, context.authors_of(pid)))
    return picks


def _window(library: Library, history: History, subscriber: Subscriber, date: str) -> list[str]:
    """Announcement dates this digest covers: `date` and the uncovered days before it (for a
    weekly reader, the week before `date` at most)."""
    last_sent = history.last_sent(subscriber.id, date)
    # The same for every reader who got their last digest (or subscribed) the same day.
    key = ("window", date, subscriber.cadence, last_sent,
           None if last_sent else (subscriber.created_at or "")[:10])
    known = library.memo(key)
    if not known:
        days = WEEK_DAYS if subscriber.cadence == "weekly" else CATCH_UP_DAYS
        floor = (Date.fromisoformat(date) - timedelta(days=days)).isoformat()
        if last_sent:
            after = max(last_sent, floor)
        elif subscriber.created_at:
            # Never sent anything: catch up from the day they subscribed, no earlier.
            joined = Date.fromisoformat(subscriber.created_at[:10]) - timedelta(days=1)
            after = max(joined.isoformat(), floor)
        else:
            after = date
        # The date asked for is always covered, even for someone who subscribed after it.
        known["days"] = [*library.dates(after=after, before=date), date]
    return list(known["days"])


def _latest_per_paper(rows: Iterable[dict[str, Any]], mixed: bool = True, *,
                      single: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Score rows grouped by paper, keeping only those of the paper's latest announcement.
    Rows of `Library.passing` alone (not `mixed`) have only those already, and for a `single`
    subscription, one row a paper."""
    if not mixed and single:
        return {row["arxiv_id"]: [row] for row in rows}
    out: dict[str, list[dict[str, Any]]] = {}
    if not mixed:
        for row in rows:
            kept = out.get(row["arxiv_id"])
            if kept is None:
                out[row["arxiv_id"]] = [row]
            else:
                kept.append(row)
        return out
    for row in rows:
        kept = out.setdefault(row["arxiv_id"], [])
        if kept and kept[0]["date"] > row["date"]:
            continue
        if kept and kept[0]["date"] < row["date"]:
            kept.clear()
        kept.append(row)
    return out
