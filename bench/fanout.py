"""Fan-out benchmark: how long selecting and rendering every subscriber's digest takes, and
how fast the outbox pushes email through SMTP.

    .venv/bin/python bench/fanout.py [--subscribers 10000] [--papers 1500] [--topics 30]
                                     [--send 1000]

Builds a throwaway database (papers announced on one day, every paper scored for every topic,
as the scorer would have left it), subscribes each subscriber to 1–3 random topics at
thresholds 50–80, then

1. selects and renders (HTML with inlined CSS + text, each paper with its reader's signed
   👍/👎 links) every digest — target ≤ 1 ms CPU a digest (10,000 in ≤ 10 s);
2. plans and delivers `--send` of them to a local aiosmtpd sink through `EmailSender`
   (`SMTP_CONNECTIONS` connections, an outbox row per digest) — target ≥ 200 messages/s.

Not part of the test suite: it takes minutes and measures this machine. CPU time of this
process is printed beside wall time because other work on the machine inflates wall time
(the sink runs in its own process and is not counted in our CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digestbot import digest, render, signing, subscribers, topics  # noqa: E402
from digestbot.channels.email import SMTP_CONNECTIONS, SMTP_TIMEOUT, EmailSender  # noqa: E402
from digestbot.config import load_settings  # noqa: E402
from digestbot.models import Announcement, Author, FeedBatch, Paper  # noqa: E402
from digestbot.outbox import DeliveryHistory, deliver_pending, plan  # noqa: E402
from digestbot.render.controls import EmailVotes  # noqa: E402
from digestbot.sources.papers import save_batch  # noqa: E402
from digestbot.store import Store, now_iso  # noqa: E402

DAY = "2026-08-13"
# Signed links on, as in production: every email carries its reader's 👍/👎 links (one HMAC a
# digest). A bench-only key, not a secret of any deployment.
LINKS = {"public_url": "https://digest.example.org", "secret": "bench-only-signing-key-0123456789"}


def populate(store: Store, n_subs: int, n_papers: int, n_topics: int, rng: random.Random) -> None:
    slugs = list(topics.load_catalogue().topics)[:n_topics]
    papers = [
        Paper(id=f"2608.{i:05d}", version=1, title=f"Paper {i}: scaling preference optimization",
              abstract=("We study post-training of language models. " * 20).strip(),
              authors=[Author(f"Author {i}-{k}") for k in range(rng.randint(1, 14))],
              categories=["cs.CL", "cs.LG"], comment="12 pages")
        for i in range(n_papers)
    ]
    save_batch(store, FeedBatch(
        source="bench", date=DAY, papers=papers,
        announcements=[Announcement(DAY, p.id, "new", 1, "bench") for p in papers]))
    # Most papers are far from most topics: a long tail with a few strong hits per topic.
    stamp = now_iso()
    with store.db.atomic():
        store.db["scores"].insert_all(
            ({"arxiv_id": p.id, "version": 1, "topic": slug,
              "score": min(100, int(rng.expovariate(1 / 18))), "reason": "bench",
              "scorer": "bench", "created_at": stamp}
             for p in papers for slug in slugs),
            batch_size=2000,
        )
        for n in range(n_subs):
            subscribers.add_or_update(
                store, channel="email", address=f"reader{n}@example.org",
                topics=rng.sample(slugs, rng.randint(1, 3)), threshold=rng.choice((50, 60, 70, 80)))
        store.db.execute("update subscribers set created_at = '2026-08-01T00:00:00+00:00'")


def select_and_render(store: Store) -> tuple[float, float, int, int]:
    """Seconds (wall, CPU) for every subscriber, digests rendered, entries rendered.

    Selection shares one `Library` across subscribers, as `outbox.plan` does.
    """
    start, cpu = time.perf_counter(), time.process_time()
    rendered = entries = 0
    library, history = digest.Library(store), DeliveryHistory(store)
    settings = load_settings(db=store.path, **LINKS)
    for sub in subscribers.list_all(store):
        d = digest.select(store, sub, DAY, history=history, library=library)
        if d is None:
            continue
        link = signing.feedback_link(settings, sub)
        assert link is not None
        render.render_email(d, controls=EmailVotes(link, sub.lang))
        rendered += 1
        entries += len(d.entries)
    return time.perf_counter() - start, time.process_time() - cpu, rendered, entries


class _Sink:
    def __init__(self, count: Synchronized[int]) -> None:
        self.count = count

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.count.get_lock():
            self.count.value += 1
        return "250 OK"


def _serve_sink(port: int, count: Synchronized[int], ready: Event, stop: Event) -> None:
    controller = Controller(_Sink(count), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


@contextlib.contextmanager
def sink_server(in_process: bool) -> Iterator[tuple[int, Synchronized[int]]]:
    """A counting aiosmtpd sink on a free port; yields (port, messages accepted so far).

    In its own process by default, like any real mail server: in ours, its Python would
    share our GIL and the benchmark would measure the sink as much as the sender.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    count, ready, stop = ctx.Value("i", 0), ctx.Event(), ctx.Event()
    worker: threading.Thread | BaseProcess
    if in_process:
        worker = threading.Thread(target=_serve_sink, args=(port, count, ready, stop))
    else:
        worker = ctx.Process(target=_serve_sink, args=(port, count, ready, stop))
    worker.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the SMTP sink did not start")
        yield port, count
    finally:
        stop.set()
        worker.join()


def send(store: Store, n_send: int, in_process: bool) -> tuple[float, float, int]:
    """Seconds (wall, CPU of this process) to deliver `n_send` digests over SMTP, and the
    messages the server accepted."""
    with sink_server(in_process) as (port, count):
        settings = load_settings(smtp_url=f"smtp://127.0.0.1:{port}?starttls=false", db=store.path,
                                 **LINKS)
        store.db.execute("update subscribers set status = 'paused' where id > ?", [n_send])
        store.db.conn.commit()
        now = datetime.now(UTC)
        plan(store, settings, DAY, now=now, force=True)
        start, cpu = time.perf_counter(), time.process_time()
        report = asyncio.run(deliver_pending(store, {"email": EmailSender(settings)}, now=now))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        accepted = count.value
    if report.failed or report.permanent:
        print(f"  warning: {report.summary()}")
    return elapsed, cpu, accepted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--papers", type=int, default=1_500)
    ap.add_argument("--topics", type=int, default=30)
    ap.add_argument("--send", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sink-in-process", action="store_true",
                    help="run the SMTP sink in a thread of this process (shares the GIL)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        t0 = time.perf_counter()
        populate(store, args.subscribers, args.papers, args.topics, random.Random(args.seed))
        print(f"setup: {args.subscribers} subscribers, {args.papers} papers × {args.topics} topics "
              f"in {time.perf_counter() - t0:.1f} s")
        seconds, cpu, rendered, entries = select_and_render(store)
        print(f"select + render: {seconds:.1f} s (CPU {cpu:.1f} s) for {args.subscribers} subscribers "
              f"({1000 * seconds / args.subscribers:.2f} ms each, CPU "
              f"{1000 * cpu / args.subscribers:.2f} ms; {rendered} digests, "
              f"{entries / max(rendered, 1):.1f} papers on average; 👍/👎 links on) — target ≤ 1 ms "
              "CPU each, the first batch of the day (every paper's rows rendered) included")
        # The same again in a new batch (a new Library, as the next planning pass or the
        # delivery run makes): papers' rendered rows are kept by content, so the difference
        # is what rendering each paper once costs a day.
        again, again_cpu, _, _ = select_and_render(store)
        print(f"  a second batch: {again:.1f} s (CPU {again_cpu:.1f} s, "
              f"{1000 * again_cpu / args.subscribers:.2f} ms each); the first minus this, the "
              f"per-day part of rendering {args.papers} papers once: CPU {cpu - again_cpu:.1f} s "
              "(a difference of two runs: on a busy machine it is within their noise)")
        seconds, cpu, accepted = send(store, args.send, args.sink_in_process)
        print(f"send: {accepted} messages over SMTP in {seconds:.1f} s (CPU {cpu:.1f} s, "
              f"{1000 * cpu / max(accepted, 1):.1f} ms a message) ({accepted / seconds:.0f} "
              f"messages/s; {SMTP_CONNECTIONS} connections, timeout {SMTP_TIMEOUT:.0f} s, sink "
              f"{'in this process' if args.sink_in_process else 'in its own process'})"
              " — target ≥ 200/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
