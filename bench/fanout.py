"""Fan-out benchmark: how long selecting and rendering every subscriber's digest takes, and
how fast the outbox pushes email through SMTP.

    .venv/bin/python bench/fanout.py [--subscribers 10000] [--papers 1500] [--topics 30]
                                     [--send 1000] [--processes 1] [--connections 3]
                                     [--sink auto|postfix|aiosmtpd] [--smtp-sink PATH]
                                     [--profile N]

Builds a throwaway database (papers announced on one day, every paper scored for every topic,
as the scorer would have left it), subscribes each subscriber to 1–3 random topics at
thresholds 50–80, then

1. selects and renders (HTML with inlined CSS + text, each paper with its reader's signed
   👍/👎 links) every digest — target ≤ 1 ms CPU a digest (10,000 in ≤ 10 s);
2. plans and delivers `--send` of them to a local SMTP sink through `EmailSender`
   (`SMTP_CONNECTIONS` connections, an outbox row per digest; `--processes N`: the
   production route of `DIGESTBOT_SEND_WORKERS=N` / `send --workers N`, this process and
   N - 1 spawned ones each sending its share, the workers' start-up counted in the wall
   time) — target ≥ 200 messages/s.

The sink always runs in its own process. It is Postfix's `smtp-sink` (C, written to measure
SMTP clients) when found: `--smtp-sink PATH`, else `$BENCH_SMTP_SINK` (not DIGESTBOT_…: the
app warns of such variables it does not know), else `smtp-sink` on PATH. Without installing
Postfix, take it out of the Debian package:

    mkdir -p /tmp/pf && cd /tmp/pf && apt-get download postfix && dpkg-deb -x postfix_*.deb x
    BENCH_SMTP_SINK=/tmp/pf/x/usr/sbin/smtp-sink .venv/bin/python bench/fanout.py

(its shared libraries, `<root>/usr/lib/postfix`, are put on LD_LIBRARY_PATH for it). The
messages counted are the sender's 250 replies, checked against smtp-sink's own counter (`-c`).
Otherwise the fallback is an aiosmtpd sink (Python, parses DATA line by line): on a 2-core
machine it takes only ~55 messages/s of ~240 KB even from a sender that costs nothing, so it
caps the figure; the bench says which sink it used.

Not part of the test suite: it takes minutes and measures this machine. CPU time of this
process is printed beside wall time because other work on the machine inflates wall time
(the sink runs in its own process and is not counted in our CPU). `--profile N` prints the
N most expensive functions (cProfile, cumulative) of the delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import logging
import multiprocessing
import os
import pstats
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

from aiosmtpd.controller import Controller

# The repo root instead of bench/ itself: bench/telegram.py would shadow the `telegram` package
# (here and in the sending workers, which are spawned with this sys.path).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from digestbot import digest, render, signing, subscribers, topics  # noqa: E402
from digestbot.channels import email as email_channel  # noqa: E402
from digestbot.channels.email import SMTP_CONNECTIONS, SMTP_TIMEOUT, EmailSender  # noqa: E402
from digestbot.channels.workers import deliver_in_workers  # noqa: E402
from digestbot.collecting import BATCH_GEN0, fewer_collections  # noqa: E402
from digestbot.config import Settings, load_settings  # noqa: E402
from digestbot.models import Announcement, Author, FeedBatch, Paper  # noqa: E402
from digestbot.outbox import DeliveryHistory, DeliveryReport, deliver_pending, plan  # noqa: E402
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

    Selection shares one `Library` across subscribers, goes through them in its order
    (`alike_together`) and collects garbage as planning and sending do (`fewer_collections`);
    sending renders in the order planning wrote the rows.
    """
    start, cpu = time.perf_counter(), time.process_time()
    rendered = entries = 0
    library, history = digest.Library(store), DeliveryHistory(store)
    settings = load_settings(db=store.path, **LINKS)
    with fewer_collections():
        for sub in library.alike_together(subscribers.list_all(store)):
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
    # aiosmtpd logs every connection at INFO: thousands of lines that cost the sink CPU.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(_Sink(count), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """A running SMTP sink: its port, what it is, and how many messages it took."""

    def __init__(self, port: int, name: str) -> None:
        self.port, self.name = port, name
        self.accepted: int | None = None  # known once the sink has stopped


def find_smtp_sink(given: str | None) -> tuple[str, dict[str, str]] | None:
    """Postfix's smtp-sink and the environment to run it with, or None."""
    path = given or os.environ.get("BENCH_SMTP_SINK") or shutil.which("smtp-sink")
    if not path or not os.access(path, os.X_OK):
        return None
    env = dict(os.environ)
    # Extracted from the .deb, not installed: its libraries sit beside it, not in ld's path.
    libs = Path(path).resolve().parent.parent / "lib" / "postfix"
    if libs.is_dir():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    return path, env


@contextlib.contextmanager
def postfix_sink(path: str, env: dict[str, str]) -> Iterator[Sink]:
    """smtp-sink on a free port; `-c` prints `sess=N quit=N mesg=N` counters as it goes."""
    port = _free_port()
    args = [path, "-a", "-c"]  # no AUTH offered; counters on stdout
    if os.geteuid() == 0:
        args += ["-u", "nobody"]  # it refuses to run as root without a user to drop to
    sink = Sink(port, f"postfix smtp-sink ({path}, its own process)")
    # Its counters go to a file: a pipe nobody reads would fill and stall the sink.
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([*args, f"127.0.0.1:{port}", "256"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    out.seek(0)
                    raise RuntimeError(f"smtp-sink did not start: {out.read().decode()!r}")
                time.sleep(0.05)
            yield sink
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            out.seek(0)
            counts = re.findall(rb"mesg=(\d+)", out.read())
            sink.accepted = int(counts[-1]) if counts else 0


@contextlib.contextmanager
def aiosmtpd_sink() -> Iterator[Sink]:
    """A counting aiosmtpd sink on a free port, in its own process like any real mail server
    (in ours, its Python would share our GIL and we would measure the sink as much as us)."""
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    count, ready, stop = ctx.Value("i", 0), ctx.Event(), ctx.Event()
    worker: BaseProcess = ctx.Process(target=_serve_sink, args=(port, count, ready, stop))
    worker.start()
    sink = Sink(port, "aiosmtpd (Python, its own process; caps the rate near ~55 messages/s "
                      "of 240 KB here: set BENCH_SMTP_SINK to postfix's smtp-sink)")
    try:
        if not ready.wait(30):
            raise RuntimeError("the SMTP sink did not start")
        yield sink
    finally:
        stop.set()
        worker.join()
        sink.accepted = count.value


def sink_server(kind: str, path: str | None) -> contextlib.AbstractContextManager[Sink]:
    found = find_smtp_sink(path) if kind in ("auto", "postfix") else None
    if kind == "postfix" and found is None:
        raise SystemExit("bench: --sink postfix: no smtp-sink found (give --smtp-sink PATH)")
    return postfix_sink(*found) if found else aiosmtpd_sink()


MESSAGE_BYTES: list[int] = []  # the size of every message built in this process
_message_bytes = email_channel.message_bytes


def _counted_message_bytes(*args: object) -> bytes:
    data = _message_bytes(*args)  # type: ignore[arg-type]
    MESSAGE_BYTES.append(len(data))
    return data


# Only to print the messages' size beside the rate: one len() and append a message.
email_channel.message_bytes = _counted_message_bytes


def _sender(settings: Settings, connections: int) -> EmailSender:
    sender = EmailSender(settings)
    sender.concurrency = connections  # how many rows the outbox keeps in flight for it
    return sender


def _deliver_in_workers(settings: Settings, store: Store, now: datetime, n: int,
                        connections: int) -> tuple[float, float, DeliveryReport]:
    """The production route (`send_workers`: channels.workers): this process and n - 1
    spawned ones each send their share. Wall time includes starting the workers; CPU is
    this process's plus the workers' (reaped when the pool closes)."""
    settings = dataclasses.replace(settings, send_workers=n)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start, cpu = time.perf_counter(), time.process_time()
    report = asyncio.run(deliver_in_workers(settings, store, {"email": _sender(settings, connections)},
                                            now=now, workers=n, min_rows=0))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return elapsed, cpu, report


def send(store: Store, n_send: int, sink_kind: str, sink_path: str | None, profile: int,
         processes: int, connections: int) -> tuple[float, float, DeliveryReport, Sink]:
    """Seconds (wall, CPU of the sending processes) to deliver `n_send` digests over SMTP,
    the outbox's report (sent = the server's 250 replies) and the sink (its own count)."""
    with sink_server(sink_kind, sink_path) as sink:
        settings = load_settings(smtp_url=f"smtp://127.0.0.1:{sink.port}?starttls=false",
                                 db=store.path, **LINKS)
        store.db.execute("update subscribers set status = 'paused' where id > ?", [n_send])
        store.db.conn.commit()
        now = datetime.now(UTC)
        plan(store, settings, DAY, now=now, force=True)
        if processes > 1:
            elapsed, cpu, report = _deliver_in_workers(settings, store, now, processes,
                                                       connections)
            profiler = None
        else:
            profiler = cProfile.Profile() if profile else None

            async def deliver() -> tuple[float, float, DeliveryReport]:
                sender = _sender(settings, connections)
                start, cpu = time.perf_counter(), time.process_time()
                if profiler:
                    profiler.enable()
                report = await deliver_pending(store, {"email": sender}, now=now)
                if profiler:
                    profiler.disable()
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                await sender.aclose()  # QUIT: the sink's counter is final once sessions end
                return elapsed, cpu, report

            elapsed, cpu, report = asyncio.run(deliver())
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(profile)
    if report.failed or report.permanent:
        print(f"  warning: {report.summary()}")
    if sink.accepted != report.sent:
        print(f"  warning: the sink counted {sink.accepted} messages, the sender {report.sent}")
    sent_rows = store.db.execute(
        "select count(*) from deliveries where status = 'sent'").fetchone()[0]
    if sent_rows != report.sent:
        print(f"  warning: {sent_rows} rows marked sent, {report.sent} reported")
    return elapsed, cpu, report, sink


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--papers", type=int, default=1_500)
    ap.add_argument("--topics", type=int, default=30)
    ap.add_argument("--send", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sink", choices=("auto", "postfix", "aiosmtpd"), default="auto",
                    help="auto: postfix's smtp-sink when found, else aiosmtpd")
    ap.add_argument("--smtp-sink", metavar="PATH", help="postfix's smtp-sink binary")
    ap.add_argument("--processes", type=int, default=1,
                    help="sending processes, each with its shard of the rows and its own "
                         "SMTP_CONNECTIONS connections")
    ap.add_argument("--connections", type=int, default=SMTP_CONNECTIONS,
                    help="SMTP connections a sending process keeps (EmailSender.concurrency)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="print the N most expensive functions of the delivery (cProfile)")
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
              "CPU each, the first batch of the day (every paper's rows rendered) included; "
              f"garbage collected as planning and sending do: gen-0 threshold {BATCH_GEN0:,})")
        # The same again in a new batch (a new Library, as the next planning pass or the
        # delivery run makes): papers' rendered rows are kept by content, so the difference
        # is what rendering each paper once costs a day.
        again, again_cpu, _, _ = select_and_render(store)
        print(f"  a second batch: {again:.1f} s (CPU {again_cpu:.1f} s, "
              f"{1000 * again_cpu / args.subscribers:.2f} ms each); the first minus this, the "
              f"per-day part of rendering {args.papers} papers once: CPU {cpu - again_cpu:.1f} s "
              "(a difference of two runs: on a busy machine it is within their noise)")
        seconds, cpu, report, sink = send(store, args.send, args.sink, args.smtp_sink, args.profile,
                                          args.processes, args.connections)
        sent = report.sent
        print(f"send: {sent} messages over SMTP in {seconds:.1f} s (CPU {cpu:.1f} s, "
              f"{1000 * cpu / max(sent, 1):.1f} ms a message) ({sent / seconds:.0f} "
              f"messages/s; {args.processes} sending process(es) × {args.connections} "
              f"connections, timeout {SMTP_TIMEOUT:.0f} s; the "
              f"sink counted {sink.accepted}; messages {sum(MESSAGE_BYTES) / max(len(MESSAGE_BYTES), 1) / 1024:.0f}"
              f" KB on average, of this process's share) — target ≥ 200/s\n  sink: {sink.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
