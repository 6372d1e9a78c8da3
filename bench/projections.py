"""Read-side benchmark: projection throughput, projection lag under a steady load, and (on
PostgreSQL) the latency of a filtered jobs page on a large jobs table.

    .venv/bin/python bench/projections.py [--store sqlite|postgres|both] [--events 100000]
        [--batch-sizes 100,1000,5000] [--lag-seconds 20] [--lag-rate 500] [--query-jobs 1000000]

1. Throughput: `--events` events are written first (not timed; `--writers` threads, one
   queue each), then `ProjectionRunner.catch_up()` is timed from an empty read side, once
   per batch size.
2. Lag: with `ReadSide.start()` following the log, writer threads create jobs at
   `--lag-rate` events/s for `--lag-seconds`; for every command, the time from its return
   until the read side's change feed has passed its `Written.position`.
3. Query (PostgreSQL only; bench/jobs_page.py): `--query-jobs` rows are bulk-loaded into
   jl_jobs, then `ReadModels.jobs(where="status=running AND priority>=500", first=50)` is
   timed, unsorted and sorted by created (newest first), after ANALYZE and again after VACUUM.

Progress goes to stderr; the EXPLAIN plans and the results table to stdout. PostgreSQL runs
in a fresh database (created and dropped) reached from JOBLEDGER_BENCH_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import fresh_postgres  # noqa: E402
from bench.jobs_page import measure_query, pct  # noqa: E402
from bench.progress import Progress  # noqa: E402
from domain.ledger import Ledger, Written  # noqa: E402
from projections import batch as batch_module  # noqa: E402
from projections.feed import ChangeFeed  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from projections.service import ReadSide  # noqa: E402
from projections.stores import open_read_store  # noqa: E402

TASKS = ["/in/a.mov", "/in/b.mov", "/in/c.mov"]
EVENTS_PER_JOB = 7  # Job.Created, Queue.JobAdded, 3 x Task.Created, Job.TasksAdded, Job.StatusChanged
PROGRESS_EVERY_S = 1.0  # how often the writers' progress is read from the store

Results = dict[str, float]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def work_around_notify_limit() -> str | None:
    """PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more. If a batch that touched many
    jobs, queues and tasks announces more than that, lower the id cap for this run (in memory
    only) so the runner can finish; returns a note saying so, or None when not needed."""
    cap = batch_module.MAX_ANNOUNCED_IDS
    worst = batch_module.Batch(
        first=1,
        last=10**9,
        jobs={str(uuid.uuid4()) for _ in range(cap + 1)},
        queues={str(uuid.uuid4()) for _ in range(cap + 1)},
        tasks={str(uuid.uuid4()) for _ in range(cap + 1)},
        types={f"Type.Number{i}" for i in range(12)},
    )
    size = len(worst.payload().encode())
    if size < 8000:
        return None
    batch_module.MAX_ANNOUNCED_IDS = 50
    return (
        f"WORKAROUND: a batch touching over {cap} jobs, queues and tasks announces a {size:,}-byte "
        f"payload, which pg_notify refuses (catch_up fails on PostgreSQL); MAX_ANNOUNCED_IDS was "
        f"lowered from {cap} to 50 in memory for this run."
    )


# -- databases -----------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="jlbench") as tmp:
        yield f"sqlite:///{tmp}/bench.db"


# -- writing -------------------------------------------------------------------


def create_job(ledger: Ledger, queue: str, n: int) -> Written:
    return ledger.jobs.create(queue=queue, tasks=TASKS, destination="/out", priority=n % 1001, actor="bench")


def bench_queues(ledger: Ledger, count: int) -> list[str]:
    """One queue per writer thread, so writers never collide on a queue aggregate."""
    return [ledger.queues.create(f"bench-{i}", actor="bench").id for i in range(count)]


def write_events(ledger: Ledger, queues: list[str], events: int, tag: str) -> float:
    """Create jobs from one thread per queue until about `events` are written; events/s."""
    per_writer = -(-events // (EVENTS_PER_JOB * len(queues)))
    start_position, started = ledger.position(), time.perf_counter()

    def writer(queue: str) -> None:
        for n in range(per_writer):
            create_job(ledger, queue, n)

    threads = [threading.Thread(target=writer, args=(q,), daemon=True) for q in queues]
    for thread in threads:
        thread.start()
    with Progress(f"[{tag}] write (events)", events).running() as progress:
        for thread in threads:
            while thread.is_alive():
                thread.join(PROGRESS_EVERY_S)
                progress.set(ledger.position() - start_position)
    written = ledger.position() - start_position
    return written / (time.perf_counter() - started)


# -- 1. throughput -------------------------------------------------------------


def time_catch_up(ledger: Ledger, batch_size: int, tag: str) -> float:
    """Events/s of `catch_up()` from empty read models."""
    store = open_read_store(ledger.store)
    try:
        runner = ProjectionRunner(ledger, store, batch_size=batch_size)
        runner.drop()
        runner.setup()
        with Progress(f"[{tag}] batch {batch_size}: catch_up (events)", 0).running() as progress:
            started = time.perf_counter()
            applied = runner.catch_up(progress.set)
            elapsed = time.perf_counter() - started
    finally:
        store.close()
    say(f"[{tag}] batch {batch_size}: {applied:,} events in {elapsed:.1f} s = {applied / elapsed:,.0f}/s")
    return applied / elapsed


# -- 2. lag --------------------------------------------------------------------


class LagWatcher:
    """Notes, for each (position, returned_at), when the feed first passed the position."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self.lags_ms: list[float] = []
        self._pending: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-watcher", daemon=True)
        self._thread.start()

    def expect(self, position: int, returned_at: float) -> None:
        with self._lock:
            self._pending.append((position, returned_at))

    def finish(self, timeout: float) -> int:
        """Stop once everything expected was seen (or after `timeout`); how many never were."""
        self._done.set()
        self._thread.join(timeout)
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        while True:
            with self._lock:
                target = min((p for p, _ in self._pending), default=None)
            if target is None:
                if self._done.is_set():
                    return
                time.sleep(0.001)
                continue
            self.feed.wait_for(target, 0.05)
            self._sweep()

    def _sweep(self) -> None:
        now, reached = time.perf_counter(), self.feed.position
        with self._lock:
            seen = [t for p, t in self._pending if p <= reached]
            self._pending = [(p, t) for p, t in self._pending if p > reached]
        self.lags_ms.extend(max(0.0, (now - t) * 1000) for t in seen)


def paced_writer(ledger: Ledger, queue: str, per_s: float, seconds: float, watcher: LagWatcher) -> int:
    """Create jobs at `per_s` commands/s for `seconds`; returns how many were created."""
    interval, started = 1 / per_s, time.perf_counter()
    n = 0
    while (due := started + n * interval) < started + seconds:
        time.sleep(max(0.0, due - time.perf_counter()))
        written = create_job(ledger, queue, n)
        watcher.expect(written.position, time.perf_counter())
        n += 1
    return n


def measure_lag(ledger: Ledger, queues: list[str], args: argparse.Namespace, tag: str) -> Results:
    read_side = ReadSide(ledger)
    read_side.start()
    try:
        if not read_side.feed.wait_for(ledger.position(), timeout=600):
            raise RuntimeError("the read side did not catch up before the lag test")
        per_writer = args.lag_rate / EVENTS_PER_JOB / len(queues)
        say(f"[{tag}] lag: {args.lag_rate} events/s ({len(queues)} writers) for {args.lag_seconds} s ...")
        watcher = LagWatcher(read_side.feed)
        start_position, started = ledger.position(), time.perf_counter()
        threads = [
            threading.Thread(target=paced_writer, args=(ledger, q, per_writer, args.lag_seconds, watcher))
            for q in queues
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        written = ledger.position() - start_position
        unseen = watcher.finish(timeout=60)
    finally:
        read_side.stop()
    lags = watcher.lags_ms
    say(f"[{tag}] lag: {len(lags):,} commands, p50 {pct(lags, 0.5):.1f} ms, max {max(lags):.1f} ms")
    return {
        "lag: load events/s": written / elapsed,
        "lag: commands": len(lags) + unseen,
        "lag: p50 ms": pct(lags, 0.5),
        "lag: p99 ms": pct(lags, 0.99),
        "lag: max ms": max(lags),
        "lag: never seen": unseen,
    }


# -- running -------------------------------------------------------------------


def bench_store(tag: str, url: str, args: argparse.Namespace) -> tuple[Results, list[str]]:
    ledger = Ledger(url)
    results: Results = {}
    try:
        queues = bench_queues(ledger, args.writers)
        say(f"[{tag}] writing ~{args.events:,} events with {args.writers} threads (not timed) ...")
        results["setup: write events/s"] = write_events(ledger, queues, args.events, tag)
        results["events in the log"] = ledger.position()
        for size in args.batch_sizes:
            results[f"catch_up events/s, batch {size}"] = time_catch_up(ledger, size, tag)
        results |= measure_lag(ledger, queues[: args.lag_writers], args, tag)
    finally:
        ledger.close()
    if tag != "postgres" or args.query_jobs <= 0:
        return results, []
    query_results, plans = measure_query(url, args, tag)
    return results | query_results, plans


def cell(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if " ms" in key else f"{value:,.0f}"


def print_report(results: dict[str, Results], plans: list[str], args: argparse.Namespace) -> None:
    if plans:
        print("\nEXPLAIN (ANALYZE, BUFFERS) of the SQL behind jobs(where: ...), PostgreSQL:\n")
        print("\n\n".join(plans))
    stores = list(results)
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    width = max(len(k) for k in keys) + 2
    print(
        f"\nRead-side benchmark ({args.events:,} events; lag at {args.lag_rate} events/s for "
        f"{args.lag_seconds} s; query on {args.query_jobs:,} jobs, {args.query_runs} runs)\n"
    )
    print(f"{'':{width}}" + "".join(f"{s:>14}" for s in stores))
    for key in keys:
        print(f"{key:{width}}" + "".join(f"{cell(key, results[s].get(key)):>14}" for s in stores))
    if len(stores) == 2:
        pg, lite = results["PostgreSQL"], results["SQLite"]
        print()
        for key in keys:
            if key.startswith(("catch_up", "lag: p50", "lag: p99")) and lite.get(key):
                print(f"PostgreSQL/SQLite {key}: {pg[key] / lite[key]:.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--events", type=int, default=100_000, help="events to write before catch_up")
    parser.add_argument("--writers", type=int, default=4, help="threads writing the events")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000, 5000])
    parser.add_argument("--lag-seconds", type=float, default=20)
    parser.add_argument("--lag-rate", type=float, default=500, help="events/s during the lag test")
    parser.add_argument("--lag-writers", type=int, default=4, help="paced writer threads (one queue each)")
    parser.add_argument("--query-jobs", type=int, default=1_000_000, help="rows in jl_jobs; 0 skips")
    parser.add_argument("--query-runs", type=int, default=200)
    args = parser.parse_args()
    args.lag_writers = max(1, min(args.lag_writers, args.writers))
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    results: dict[str, Results] = {}
    plans: list[str] = []
    if args.store in ("sqlite", "both"):
        with sqlite_database() as url:
            results["SQLite"], _ = bench_store("sqlite", url, args)
    notes: list[str] = []
    if args.store in ("postgres", "both"):
        if note := work_around_notify_limit():
            say(note)
            notes.append(note)
        with fresh_postgres() as url:
            results["PostgreSQL"], plans = bench_store("postgres", url, args)
    print_report(results, plans, args)
    for note in notes:
        print(f"\n{note}")
    print(f"\ntotal run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
