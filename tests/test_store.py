import sqlite3

import pytest

from digestbot.models import Announcement, Author, FeedBatch, Paper
from digestbot.sources.papers import counts as paper_counts
from digestbot.sources.papers import get_paper, save_batch
from digestbot.store import Store, migrations


def _batch(version: int = 1, source: str = "rss", **extra) -> FeedBatch:
    paper = Paper("2608.00001", version, "A title", "An abstract", [Author("Ada"), Author("Bo")],
                  ["cs.CL", "cs.AI"], "cs.CL", **extra)
    kind = "new" if version == 1 else "replace"
    ann = Announcement("2026-08-13" if version == 1 else "2026-08-20", paper.id, kind, version, source)
    return FeedBatch(source, ann.date, [paper], [ann])


def test_migrations_recorded_and_idempotent(tmp_path) -> None:
    path = tmp_path / "db.sqlite"
    Store(path).close()
    s = Store(path)
    applied = [m.name for m in migrations.applied(s.db)]
    assert applied == [m.name for m in migrations._migrations]
    assert s.db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_same_batch_twice_changes_nothing(store: Store) -> None:
    first = save_batch(store, _batch())
    assert first == {"papers_new": 1, "papers_updated": 0, "announcements_new": 1}
    before = list(store.db.query("select * from papers"))
    assert save_batch(store, _batch()) == {"papers_new": 0, "papers_updated": 0, "announcements_new": 0}
    assert list(store.db.query("select * from papers")) == before


def test_poorer_source_fills_gaps_but_never_blanks(store: Store) -> None:
    save_batch(store, _batch(comment="10 pages"))
    api = FeedBatch("api", None, [Paper("2608.00001", 1, "A title", "An abstract",
                                        [Author("Ada", ("MIT",)), Author("Bo")], ["cs.CL"], "cs.CL",
                                        doi="10.1/x")])
    save_batch(store, api)
    p = get_paper(store, "2608.00001")
    assert p.comment == "10 pages" and p.doi == "10.1/x"
    assert p.authors[0].affiliations == ("MIT",)


def test_replacement_adds_second_announcement_and_new_text(store: Store) -> None:
    save_batch(store, _batch())
    b = _batch(version=2)
    b.papers[0].title = "A better title"
    save_batch(store, b)
    p = get_paper(store, "2608.00001")
    assert p.version == 2 and p.title == "A better title"
    types = [r["announce_type"] for r in store.db.query("select * from announcements order by date")]
    assert types == ["new", "replace"]
    assert paper_counts(store)["announcements"] == {"new": 1, "replace": 1}


def test_failed_batch_leaves_nothing(store: Store) -> None:
    bad = _batch()
    bad.announcements.append(Announcement("2026-08-13", "9999.99999", "new", 1, "rss"))  # no paper: FK
    with pytest.raises(sqlite3.IntegrityError):
        save_batch(store, bad)
    assert paper_counts(store)["papers"] == 0
