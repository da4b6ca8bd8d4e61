"""What a batch of digests reads once and keeps (issue 15 item 4) must never be stale: a
paper's rendered rows are kept by content across batches, the day's score rows serve
`rebuild` at send time, and only readers with votes of both kinds train a model."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime

from digestbot import digest, render, subscribers
from digestbot.config import load_settings
from digestbot.enrich.stored import save_enrichment
from digestbot.enrich.topic_scores import subscribed_scores
from digestbot.models import Enrichment
from digestbot.outbox import DeliveryHistory, plan
from digestbot.outbox.rows import create_row
from digestbot.render import email as email_render
from digestbot.store import Store
from digestbot.subscribers import feedback, profile
from tests.test_digest import DAY, add_paper, make_sub, sent, set_score

PID = "2608.00001"
NOW = datetime(2026, 8, 13, 9, 0, tzinfo=UTC)


def email_of(store: Store, sub) -> render.RenderedEmail:
    """The reader's email as a new batch (a new Library) selects and renders it."""
    d = digest.select(store, sub, DAY, history=DeliveryHistory(store),
                      library=digest.Library(store))
    assert d is not None
    return render.render_email(d)


def test_the_next_batch_shows_a_re_enriched_and_re_scored_paper_anew(store: Store,
                                                                     monkeypatch) -> None:
    add_paper(store, PID, scores={"post-training": 90})
    sub = make_sub(store, lang="zh")
    save_enrichment(store, Enrichment(PID, 1, title_zh="旧的标题", abstract_zh="旧的摘要"))
    renders = []
    real = email_render._Rows._render
    monkeypatch.setattr(email_render._Rows, "_render",
                        lambda self, shape: renders.append(shape) or real(self, shape))
    first = email_of(store, sub)
    assert "旧的标题" in first.html and "旧的摘要" in first.html and "90%" in first.html
    made = len(renders)
    assert made >= 1
    # The same content in a new batch: served from the rows kept by content.
    assert email_of(store, sub).html == first.html
    assert len(renders) == made
    # Re-enriched and re-scored since: the next batch shows the new text and score.
    save_enrichment(store, Enrichment(PID, 1, title_zh="新的标题", abstract_zh="新的摘要"))
    set_score(store, PID, 1, "post-training", 97)
    after = email_of(store, sub)
    assert "新的标题" in after.html and "新的摘要" in after.html and "97%" in after.html
    assert "旧的" not in after.html and "旧的" not in after.text and "新的标题" in after.text
    assert len(renders) > made


def test_the_batch_rows_rebuild_reads_equal_the_query(store: Store) -> None:
    add_paper(store, "2608.00001", scores={"post-training": 90, "agents": 40})
    add_paper(store, "2608.00002", scores={"post-training": 10})  # under every threshold now
    add_paper(store, "2608.00003", scores={"agents": 75, "reasoning": 99})
    # A v2 announced today, scored only at v1: the v1 score stands for it.
    add_paper(store, "2608.00004", "2026-08-12", scores={"post-training": 66})
    add_paper(store, "2608.00004", kind="replace", version=2)
    sub = make_sub(store, topics={"post-training": 60, "agents": 70})
    ids = ["2608.00001", "2608.00002", "2608.00003", "2608.00004"]
    library = digest.Library(store)
    got = library.scored_on(DAY, library.subscriptions(sub.id), ids)
    want = subscribed_scores(store, sub.id, ids, DAY)
    fields = ("arxiv_id", "date", "announce_type", "version", "source", "topic", "score",
              "reason", "threshold")
    # The query gives each paper's rows of every announcement; rebuild keeps the latest.
    assert sorted(tuple(r[f] for f in fields) for r in got) == sorted(
        tuple(r[f] for f in fields) for r in want if r["date"] == DAY)
    assert {r["topic"] for r in got} == {"post-training", "agents"}
    # A paper announced before the day is read where it was: no rows from the batch.
    add_paper(store, "2608.00005", "2026-08-12", scores={"agents": 80})
    assert digest.Library(store).scored_on(DAY, library.subscriptions(sub.id),
                                           [*ids, "2608.00005"]) is None
    rebuilt = digest.rebuild(store, sub, DAY, [*ids, "2608.00005"], 0, library=library)
    assert [e.paper.id for e in rebuilt.entries] == [*ids, "2608.00005"]
    assert [h.score for h in rebuilt.entries[1].hits] == [10]  # kept, with its topic's score


def test_only_readers_with_votes_of_both_kinds_may_learn(store: Store) -> None:
    for n in range(1, 8):
        add_paper(store, f"2608.{n:05d}")
    both, ups, few = (make_sub(store, f"{name}@example.org") for name in ("both", "ups", "few"))
    for n in range(1, 7):
        feedback.record(store, both.id, f"2608.{n:05d}", feedback.UP if n % 2 else feedback.DOWN)
        feedback.record(store, ups.id, f"2608.{n:05d}", feedback.UP)
    for n in range(1, 3):
        feedback.record(store, few.id, f"2608.{n:05d}", feedback.UP if n % 2 else feedback.DOWN)
    library = digest.Library(store)
    assert [library.may_learn(s.id) for s in (both, ups, few)] == [True, False, False]


def test_one_history_sees_every_delivery_written_since_it_was_made(store: Store) -> None:
    """`DeliveryHistory` reads once per paper whether anyone had it: a paper planned for a
    reader later in the same pass (or by another planner) must still count for them alone."""
    add_paper(store, "2608.00001", scores={"post-training": 90})
    add_paper(store, "2608.00002", scores={"post-training": 80})
    # Delivered before the pass: the v1 of a paper announced again today as a v2.
    add_paper(store, "2608.00003", "2026-08-12", scores={"post-training": 85})
    add_paper(store, "2608.00003", kind="replace", version=2)
    a, b = make_sub(store, "a@example.org"), make_sub(store, "b@example.org")
    settings = load_settings()
    library = digest.Library(store)
    early = digest.select(store, a, "2026-08-12", history=DeliveryHistory(store), library=library)
    assert early is not None and create_row(store, settings, early, NOW)
    history = DeliveryHistory(store)
    ids = ["2608.00001", "2608.00002", "2608.00003"]

    def chosen(sub) -> list[str]:
        d = digest.select(store, sub, DAY, history=history, library=digest.Library(store))
        return [e.paper.id for e in d.entries] if d else []

    assert history.delivered(b.id, ids) == set()
    # A batch's ranking comes as one tuple for every reader alike: answered from what the
    # history knew, until a delivery written since names one of its papers.
    ranking = ("2608.00001", "2608.00002")
    assert history.delivered(a.id, ranking) == history.delivered(b.id, ranking) == set()
    assert chosen(a) == ["2608.00001", "2608.00002"]
    assert chosen(b) == ["2608.00001", "2608.00003", "2608.00002"]
    # b's digest planned in this pass: the same history now knows b has them, a still not.
    d = digest.select(store, b, DAY, history=history, library=library)
    assert d is not None and create_row(store, settings, d, NOW)
    assert history.delivered(b.id, ids) == set(ids)
    assert history.delivered(b.id, ranking) == set(ranking)
    assert history.delivered(a.id, ranking) == set()
    assert chosen(b) == []
    assert history.delivered(a.id, ids) == {"2608.00003"}
    assert chosen(a) == ["2608.00001", "2608.00002"]
    # Written by another connection (another process planning): seen as well.
    with Store(store.path) as other:
        d = digest.select(other, a, DAY, history=DeliveryHistory(other),
                          library=digest.Library(other))
        assert d is not None and create_row(other, settings, d, NOW)
    assert chosen(a) == []


def test_readers_alike_share_the_batch_s_work_yet_each_gets_their_own_digest(
        store: Store) -> None:
    """A batch ranks the papers and makes the entries once for readers with the same
    subscriptions (`select`, `rebuild`): what each reader had, their cap, language and
    keywords still make their digest theirs, as if each were selected alone."""
    add_paper(store, "2608.00001", scores={"post-training": 90, "agents": 75})
    add_paper(store, "2608.00002", scores={"post-training": 80, "agents": 95})
    add_paper(store, "2608.00003", scores={"post-training": 61}, title="alpha attention")
    add_paper(store, "2608.00004", scores={"agents": 70, "post-training": 65})
    add_paper(store, "2608.00005", scores={"agents": 69, "post-training": 10})
    add_paper(store, "2608.00006", "2026-08-12", scores={"post-training": 99})
    add_paper(store, "2608.00007", scores={"post-training": 77, "agents": 77})  # a tie
    alike = {"post-training": 60, "agents": 70}
    readers = [make_sub(store, f"r{n}@example.org", topics=alike, **settings)
               for n, settings in enumerate([{}, {}, {"max_papers": 2}, {"lang": "en"}, {}])]
    readers.append(make_sub(store, "r5@example.org",
                            topics={"agents": 70, "post-training": 60}))  # another order
    readers.append(make_sub(store, "r6@example.org", topics={"post-training": 60, "agents": 50}))
    sent(store, readers[1], "2026-08-12", ["2608.00002", "2608.00006"])
    profile.add_keywords(store, readers[4].id, "exclude", ["alpha"])
    readers = [subscribers.get(store, r.id) for r in readers]

    def shown(d: digest.Digest | None) -> list[tuple[str, list[tuple[str, str, int]], int]]:
        assert d is not None
        return [(e.paper.id, [(h.topic, h.topic_name, h.score) for h in e.hits], d.more)
                for e in d.entries]

    shared, history = digest.Library(store), DeliveryHistory(store)
    together = [shown(digest.select(store, r, DAY, history=history, library=shared))
                for r in readers]
    alone = [shown(digest.select(store, r, DAY, history=DeliveryHistory(store),
                                 library=digest.Library(store))) for r in readers]
    assert together == alone
    first, had, capped, english, sifted, reordered, lower = together
    assert [pid for pid, *_ in first] == ["2608.00006", "2608.00002", "2608.00001",
                                          "2608.00007", "2608.00004", "2608.00003"]
    assert [pid for pid, *_ in had] == ["2608.00001", "2608.00007", "2608.00004", "2608.00003"]
    assert [pid for pid, *_ in capped] == ["2608.00006", "2608.00002"] and capped[0][2] == 4
    assert english[1][1] != first[1][1] and [e[0] for e in english] == [e[0] for e in first]
    assert "2608.00003" not in [pid for pid, *_ in sifted]
    # Equal scores are listed in the order the reader subscribed.
    assert [h[0] for h in first[3][1]] == ["post-training", "agents"]
    assert [h[0] for h in reordered[3][1]] == ["agents", "post-training"]
    assert "2608.00005" in [pid for pid, *_ in lower]
    # Sending: the rows rebuilt in one batch are those rebuilt each alone (the day's papers
    # are the batch's held rows; an earlier day's are read for the reader).
    sending = digest.Library(store)
    ids = [[pid for pid, *_ in d if pid != "2608.00006"] for d in together]
    assert [shown(digest.rebuild(store, r, DAY, i, 0, library=sending))
            for r, i in zip(readers, ids, strict=True)] == [
        shown(digest.rebuild(store, r, DAY, i, 0, library=digest.Library(store)))
        for r, i in zip(readers, ids, strict=True)]


def test_a_day_s_readers_share_rankings_and_lineups_as_if_each_were_selected_alone(
        store: Store) -> None:
    """For a window of one day, a set of subscriptions is ranked from the held day's columns
    (`digest_day.HeldDay`) and readers to whom nothing else applies share its entries as one
    lineup (`Digest.key`): each digest is what the scores say (best score first, ties by id,
    hits best first then in subscription order), the same as each reader selected alone, a
    key names only the same entries, and an email rendered under a key is the one its
    entries give by content."""
    rng = random.Random(15)
    slugs = ["post-training", "agents", "reasoning", "long-context"]
    scores: dict[str, dict[str, int]] = {}
    for n in range(60):
        pid = f"2608.{n:05d}"
        # Coarse scores, so ties between papers and between a paper's topics are common.
        scores[pid] = {t: 5 * rng.randint(6, 20) for t in rng.sample(slugs, rng.randint(1, 4))}
        add_paper(store, pid, scores=scores[pid], title="alpha attention" if n % 7 == 0 else None)
    # A handful of subscription sets (threshold, order) shared by several readers each.
    sets = [{"post-training": 60}, {"agents": 80}, {"post-training": 70, "agents": 60},
            {"agents": 60, "post-training": 70}, {"reasoning": 50, "long-context": 75,
                                                 "agents": 90}]
    readers = [make_sub(store, f"r{n}@example.org", topics=sets[n % len(sets)],
                        max_papers=(50, 50, 4)[n % 3], lang="en" if n % 4 == 1 else "zh")
               for n in range(60)]
    readers = [subscribers.get(store, r.id) for r in readers]

    def expected(sub, had: set[str], sifted: bool) -> list[tuple[str, list[str]]]:
        subscribed = dict(sets[readers.index(sub) % len(sets)])
        order = list(subscribed)
        passing = {pid: [t for t in order if on.get(t, -1) >= subscribed[t]]
                   for pid, on in scores.items()}
        ranked = sorted((pid for pid, hit in passing.items() if hit and pid not in had
                         and not (sifted and int(pid[-5:]) % 7 == 0)),
                        key=lambda pid: (-max(scores[pid][t] for t in passing[pid]), pid))
        return [(pid, sorted(passing[pid], key=lambda t: (-scores[pid][t], order.index(t))))
                for pid in ranked[:sub.max_papers]]

    # Two readers with a twin before them (the same subscriptions, cap and language), whose
    # full digests would be the twin's: one had its first two papers, one excludes a word
    # one of its papers has. Their digests are as long as the twin's.
    def twinned(n: int) -> bool:
        r = readers[n]
        return r.max_papers == 4 and any(
            (t.max_papers, t.lang, n % len(sets)) == (4, r.lang, m % len(sets))
            for m, t in enumerate(readers[:n]))
    sifter = next(n for n in range(len(readers)) if twinned(n) and any(
        int(pid[-5:]) % 7 == 0 for pid, _ in expected(readers[n], set(), False)))
    haver = next(n for n in range(len(readers)) if twinned(n) and n != sifter)
    had = {pid for pid, _ in expected(readers[haver], set(), False)[:2]}
    sent(store, readers[haver], "2026-08-12", sorted(had))
    profile.add_keywords(store, readers[sifter].id, "exclude", ["alpha"])
    shared, history = digest.Library(store), DeliveryHistory(store)
    together = [digest.select(store, r, DAY, history=history, library=shared) for r in readers]
    alone = [digest.select(store, r, DAY, history=DeliveryHistory(store),
                           library=digest.Library(store)) for r in readers]
    by_key: dict[object, list] = {}
    for n, (r, d, single) in enumerate(zip(readers, together, alone, strict=True)):
        assert d is not None and single is not None
        shown = [(e.paper.id, [h.topic for h in e.hits]) for e in d.entries]
        assert shown == expected(r, had if n == haver else set(), n == sifter)
        assert [(e.paper.id, e.hits) for e in d.entries] == [
            (e.paper.id, e.hits) for e in single.entries] and d.more == single.more
        if n in (haver, sifter):  # what they had or sifted out makes their entries their own
            assert shown != expected(r, set(), False) and len(shown) == 4 and d.key is None
        else:
            assert d.key is not None
            by_key.setdefault((d.key, r.lang), []).append(d)
    # Readers alike (subscriptions, cap, language) share one lineup; no key names two.
    assert max(map(len, by_key.values())) >= 2
    for alike in by_key.values():
        assert {tuple(id(e) for e in d.entries) for d in alike} == {
            tuple(id(e) for e in alike[0].entries)}
    assert len({tuple(id(e) for e in d[0].entries) for d in by_key.values()}) == len(by_key)
    for d in together:
        named, by_content = render.render_email(d), render.render_email(
            dataclasses.replace(d, key=None))
        assert (named.html, named.text, named.subject) == (
            by_content.html, by_content.text, by_content.subject)


def test_planning_goes_through_readers_alike_together_and_plans_each_their_own(
        store: Store) -> None:
    """`plan` selects for readers of the same subscriptions and language one after another
    (their ranking and lineup still in the CPU's caches), each with the digest they get
    selected alone, and every due reader in the same pass."""
    add_paper(store, "2608.00001", scores={"post-training": 90, "agents": 75})
    add_paper(store, "2608.00002", scores={"post-training": 65, "agents": 95})
    sets = [({"agents": 70}, "zh"), ({"post-training": 60}, "zh"), ({"agents": 70}, "en"),
            ({"post-training": 60, "agents": 70}, "zh"), ({"agents": 70}, "zh"),
            ({"post-training": 60}, "zh"), ({"agents": 70}, "en")]
    readers = [make_sub(store, f"r{n}@example.org", topics=topics, lang=lang)
               for n, (topics, lang) in enumerate(sets)]
    alone = {r.id: [e.paper.id for e in digest.select(
        store, r, DAY, history=DeliveryHistory(store), library=digest.Library(store)).entries]
        for r in readers}
    created = plan(store, load_settings(db=store.path), DAY, now=NOW, force=True)
    planned = [(row["subscriber_id"], json.loads(row["paper_ids"])) for row in store.db.query(
        "select subscriber_id, paper_ids from deliveries order by id")]
    assert len(created) == len(readers) == len(planned)
    assert dict(planned) == alone
    key_of = {r.id: (tuple(topics.items()), lang) for r, (topics, lang) in zip(readers, sets,
                                                                              strict=True)}
    keys = [key_of[sid] for sid, _ in planned]
    # Each set and language in one run, its readers in the order they joined.
    runs = [key for n, key in enumerate(keys) if n == 0 or keys[n - 1] != key]
    assert len(runs) == len(set(keys)) == 4
    for key in runs:
        ids = [sid for sid, _ in planned if key_of[sid] == key]
        assert ids == sorted(ids)


def test_rebuilding_a_row_reads_its_papers_in_one_query(store: Store) -> None:
    """Sending rebuilds each row from its ids in a batch that has read nothing yet: the row's
    papers (and their enrichments) come in one query each, not one a paper."""
    ids = [f"2608.{n:05d}" for n in range(1, 13)]
    for n, pid in enumerate(ids):
        add_paper(store, pid, scores={"post-training": 90 - n})
    sub = make_sub(store)
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        d = digest.rebuild(store, sub, DAY, ids, 0, library=digest.Library(store))
    finally:
        store.db.conn.set_trace_callback(None)
    assert [e.paper.id for e in d.entries] == ids
    assert sum(" from papers " in f" {s} " for s in statements) == 1
    assert sum(" from enrichments " in f" {s} " for s in statements) == 1


def test_rebuilding_reads_every_score_only_for_a_paper_passing_no_longer(
        store: Store, monkeypatch) -> None:
    """Sending rebuilds rows from the day's passing rows (a few per cent of its scores); a
    paper that passes none of the reader's thresholds now (one raised since planning) still
    names every score on their topics, read then."""
    add_paper(store, "2608.00001", scores={"post-training": 90, "agents": 75})
    add_paper(store, "2608.00002", scores={"post-training": 80, "agents": 40})
    add_paper(store, "2608.00003", scores={"post-training": 20, "agents": 10})
    sub = make_sub(store, topics={"post-training": 60, "agents": 70})
    planned = digest.select(store, sub, DAY, history=DeliveryHistory(store))
    ids = [e.paper.id for e in planned.entries]
    assert ids == ["2608.00001", "2608.00002"]
    reads = []
    real = digest.Library.held_scores
    monkeypatch.setattr(digest.Library, "held_scores",
                        lambda self, day: reads.append(day) or real(self, day))

    def hits(d: digest.Digest) -> list[list[tuple[str, int]]]:
        return [[(h.topic, h.score) for h in e.hits] for e in d.entries]

    again = digest.rebuild(store, sub, DAY, ids, 0, library=digest.Library(store))
    assert hits(again) == hits(planned) == [[("post-training", 90), ("agents", 75)],
                                            [("post-training", 80)]]
    assert reads == []
    subscribers.set_subscription(store, sub.id, "post-training", 95)
    sub = subscribers.get(store, sub.id)
    raised = digest.rebuild(store, sub, DAY, ids, 0, library=digest.Library(store))
    assert hits(raised) == [[("agents", 75)], [("post-training", 80), ("agents", 40)]]
    assert reads == [DAY]
