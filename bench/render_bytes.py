"""Byte check for selection + rendering: every digest of a varied day, written to a folder, so
two versions of the code can be compared byte for byte (an optimisation must not change them).

    .venv/bin/python bench/render_bytes.py OUT            # this checkout
    PYTHONPATH=/tmp/base .venv/bin/python bench/render_bytes.py REF   # another copy of the code
    diff -r REF OUT

A database of real arXiv papers (the shared fixtures: an API answer of 100 papers) plus hostile ones
(`<script>`, `&`, LaTeX, NUL, CR) announced over three days, some replaced by a v2, most
enriched (Chinese title and abstract, institutions); ~300 readers in every language, daily and
weekly, with followed authors, must/exclude keywords, a library, enough 👍/👎 to train the
re-ranker, caps from 1 to 200 (the budget overflows into "另有 K 篇"), earlier digests sent.
Each reader's digest is selected and rendered (email with signed vote links, Telegram, Slack)
in batches sharing a `Library` as planning does, then rebuilt from its ids as sending does;
then a paper is re-scored and re-enriched and the batch runs again (a cache serving the old
content would show here). Each output file names the batch, reader and kind.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from digestbot import digest, render, signing, subscribers  # noqa: E402
from digestbot.config import load_settings  # noqa: E402
from digestbot.enrich.stored import save_enrichment  # noqa: E402
from digestbot.models import Announcement, Author, Enrichment, FeedBatch, Institution, Paper  # noqa: E402
from digestbot.outbox import DeliveryHistory  # noqa: E402
from digestbot.render.controls import EmailVotes  # noqa: E402
from digestbot.render.slack import render_slack  # noqa: E402
from digestbot.render.telegram import render_telegram  # noqa: E402
from digestbot.sources.detect import parse_any  # noqa: E402
from digestbot.sources.papers import save_batch  # noqa: E402
from digestbot.store import Store  # noqa: E402
from digestbot.subscribers import feedback, profile  # noqa: E402
from digestbot.subscribers.library import Item, replace_library  # noqa: E402

# Real arXiv API answers (the shared fixtures: 100 papers on "testing").
FIXTURE = "/work/shared/fixtures/arxiv/api_query_search_all-testing_100entries_2026-04-12.xml"
DAYS = ["2026-08-11", "2026-08-12", "2026-08-13"]
TOPICS = ["post-training", "agents", "reasoning", "rl", "multimodal", "efficient-inference"]
LINKS = {"public_url": "https://digest.example.org", "secret": "bench-only-signing-key-0123456789"}
HOSTILE = ['<script>alert("x")</script> & friends', "$\\alpha < \\beta$ & $O(n^2)$ > 1",
           "Tab\there, CR\r\nLF, NUL\0 and nbsp\xa0— \"quotes\" 'single' {braces} %s",
           "中文标题 with emoji 🚀 and <b>bold</b>"]


def papers() -> list[Paper]:
    real = parse_any(Path(FIXTURE).read_bytes(), date=DAYS[0]).papers
    rng = random.Random(3)
    fake = [Paper(id=f"2608.{90000 + i}", version=1, title=HOSTILE[i % 4] + f" #{i}",
                  abstract=(HOSTILE[(i + 1) % 4] + " ") * rng.randint(1, 60),
                  authors=[Author(f"Grace Hopper{k}" if k else "Grace Hopper") for k in range(i % 15 + 1)],
                  categories=["cs.CL"], comment=HOSTILE[i % 4] if i % 3 else None)
            for i in range(40)]
    return real + fake


def populate(store: Store, rng: random.Random) -> None:
    everything = papers()
    for n, paper in enumerate(everything):
        day = DAYS[n % 3]
        save_batch(store, FeedBatch(source="bench", date=day, papers=[paper], announcements=[
            Announcement(day, paper.id, "new" if n % 5 else "cross", paper.version, "bench")]))
    # A few papers replaced by a v2 on the last day.
    for paper in everything[:12]:
        v2 = Paper(**{**vars(paper), "version": paper.version + 1, "title": paper.title + " (v2)"})
        save_batch(store, FeedBatch(source="bench", date=DAYS[2], papers=[v2], announcements=[
            Announcement(DAYS[2], v2.id, "replace", v2.version, "bench")]))
    rows = []
    for n, paper in enumerate(everything):
        for version in (1, 2):
            for slug in TOPICS:
                rows.append({"arxiv_id": paper.id, "version": version, "topic": slug,
                             "score": min(100, int(rng.expovariate(1 / 35))),
                             "reason": rng.choice(["", HOSTILE[n % 4], f"{slug} fits"]),
                             "scorer": "bench", "created_at": "2026-08-13T00:00:00+00:00"})
            if n % 4:
                save_enrichment(store, enrichment(paper, version, n))
    store.db["scores"].insert_all(rows, replace=True)


def enrichment(paper: Paper, version: int, n: int, extra: str = "") -> Enrichment:
    return Enrichment(arxiv_id=paper.id, version=version, title_zh=f"中文标题 {n}{extra} <i>",
                      summary_zh=f"一句话 {n} &", abstract_zh=("摘要内容 & <tag> " * (n % 50 + 1)) + extra,
                      institutions=[Institution("MIT & <Co>", "麻省理工")] * (n % 3),
                      model="bench", summary_en=f"One line {n} <x>")


def readers(store: Store, rng: random.Random) -> list[int]:
    pool = [p for p in papers()]
    ids = []
    for n in range(300):
        sub = subscribers.add_or_update(
            store, channel="email", address=f"r{n}@example.org",
            topics=rng.sample(TOPICS, rng.randint(1, 3)),
            threshold=rng.choice((0, 20, 40, 50, 60, 80)), lang=("zh", "en", "both")[n % 3],
            max_papers=rng.choice((1, 5, 50, 200)), cadence="weekly" if n % 7 == 0 else "daily")
        ids.append(sub.id)
        if n % 5 == 1:
            profile.follow(store, sub.id, rng.sample(["Grace Hopper", "grace hopper3",
                                                      pool[n % 100].authors[0].name], 2))
        if n % 6 == 2:
            profile.add_keywords(store, sub.id, "must", [rng.choice(["model", "摘要", "test"])])
        if n % 8 == 3:
            profile.add_keywords(store, sub.id, "exclude", [rng.choice(["alpha", "script", "中文"])])
        if n % 10 == 4:
            lib = [Item(f"k{i}", p.title, p.abstract) for i, p in enumerate(rng.sample(pool, 8))]
            replace_library(store, sub.id, "bibtex", "mine.bib", lib)
        if n % 9 == 5:
            for i, p in enumerate(rng.sample(pool, 12)):
                feedback.record(store, sub.id, p.id, feedback.UP if i % 3 else feedback.DOWN)
    store.db.execute("update subscribers set created_at = '2026-08-01T00:00:00+00:00'")
    # Some readers got the first day's digest already (never twice; catch-up from there).
    for sub_id in ids[::4]:
        row = store.db["deliveries"].insert(
            {"subscriber_id": sub_id, "digest_date": DAYS[0], "status": "sent", "attempts": 1,
             "created_at": "2026-08-11T08:00:00+00:00", "updated_at": "2026-08-11T08:00:00+00:00"}
        ).last_pk
        for p in pool[sub_id % 50:sub_id % 50 + 6]:
            store.db["delivered_papers"].insert(
                {"subscriber_id": sub_id, "arxiv_id": p.id, "version": 1, "delivery_id": row},
                replace=True)
    store.db.conn.commit()
    return ids


def batch(store: Store, out: Path, name: str) -> int:
    """Select, render and rebuild every reader's digest sharing one Library per pass."""
    settings = load_settings(db=store.path, **LINKS)
    library, history = digest.Library(store), DeliveryHistory(store)
    planned = []
    count = 0
    for sub in subscribers.list_all(store):
        for superset in (False, True):
            d = digest.select(store, sub, DAYS[2], history=history, library=library,
                              superset=superset)
            if d is None:
                continue
            write(out / f"{name}-{sub.id:03d}-{'superset' if superset else 'select'}", d, settings)
            count += 1
            if not superset:
                planned.append((sub, [e.paper.id for e in d.entries], d.more))
    sending = digest.Library(store)
    for sub, ids, more in planned:
        d = digest.rebuild(store, sub, DAYS[2], ids, more, library=sending)
        write(out / f"{name}-{sub.id:03d}-rebuild", d, settings)
        count += 1
    return count


def write(path: Path, d: digest.Digest, settings) -> None:
    link = signing.feedback_link(settings, d.subscriber, now=1_786_000_000.0)
    email = render.render_email(d, controls=EmailVotes(link, d.subscriber.lang) if link else None,
                                unsubscribe_url="https://x.example/u?t=<&>", pages_url="https://x.example/p")
    plain = render.render_email(d)
    chats = {"telegram": render_telegram(d), "slack": render_slack(d)}
    path.write_text("\n\0\n".join([email.subject, email.text, email.html, plain.text, plain.html,
                                   json.dumps(chats, ensure_ascii=False, default=repr)]))


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "b.db") as store:
        populate(store, rng)
        readers(store, rng)
        count = batch(store, out, "a")
        count += batch(store, out, "b")  # a second batch: caches across Library generations
        # Re-scored and re-enriched papers must show their new content in the next batch.
        everything = papers()
        for n, paper in enumerate(everything[::7]):
            store.db.execute("update scores set score = min(100, score + 30), reason = ?"
                             " where arxiv_id = ?", [f"rescored {n} <&>", paper.id])
            for version in (1, 2):
                save_enrichment(store, enrichment(paper, version, n, extra=" 更新"))
        store.db.conn.commit()
        count += batch(store, out, "c")
    print(f"{count} digests written to {out} (3 batches × select, superset, rebuild; email "
          "with and without vote links, Telegram, Slack)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
