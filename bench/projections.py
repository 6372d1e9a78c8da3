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
3. Query (PostgreSQL only): `--query-jobs` rows are bulk-loaded into jl_jobs, then
   `ReadModels.jobs(where="status=running AND priority>=500", first=50)` is timed, unsorted
   and sorted by created (newest first), after ANALYZE and again after VACUUM.

Progress goes to stderr; the EXPLAIN plans and the results table to stdout. PostgreSQL runs
in a fresh database (created and dropped) reached from JOBLEDGER_BENCH_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import fresh_postgres  # noqa: E402
from domain.ledger import Ledger, Written  # noqa: E402
from persistence import parse_database_url  # noqa: E402
from projections import batch as batch_module  # noqa: E402
from projections.feed import ChangeFeed  # noqa: E402
from projections.query import ReadModels, Sort  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from projections.service import ReadSide  # noqa: E402
from projections.stores import ReadStore, Row, open_read_store  # noqa: E402

TASKS = ["/in/a.mov", "/in/b.mov", "/in/c.mov"]
EVENTS_PER_JOB = 7  # Job.Created, Queue.JobAdded, 3 x Task.Created, Job.TasksAdded, Job.StatusChanged
WHERE = "status=running AND priority>=500"
QUERY_SCHEMA = "bench_query"
QUERY_QUEUES = 8
PROGRESS_EVERY_S = 3.0

Results = dict[str, float]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Throttle:
    """Calls `report` at most once every PROGRESS_EVERY_S seconds."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report
        self.last = time.monotonic()

    def __call__(self, message: str) -> None:
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self.last = time.monotonic()
            self.report(message)


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
    for thread in threads:
        while thread.is_alive():
            thread.join(PROGRESS_EVERY_S)
            say(f"[{tag}] wrote {ledger.position() - start_position:,} / ~{events:,} events")
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
        throttle = Throttle(say)
        started = time.perf_counter()
        applied = runner.catch_up(
            lambda done, total: throttle(f"[{tag}] batch {batch_size}: applied {done:,} / {total:,}")
        )
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


# -- 3. query (PostgreSQL) -----------------------------------------------------

ADD_QUEUE = """INSERT INTO jl_queues (id, code, priority, status, state, is_default, uri, description,
    metadata, tags, execution_mode, created, modified, "user", modifier)
    VALUES (%s, %s, 500, 'WAITING', 'ACTIVE', FALSE, %s, '', '{}', '{}', 'PRIORITY', now(), now(),
    'bench', 'bench')"""
# ~10% RUNNING; phase 72% ACTIVE, 18% FINISHED, 10% ARCHIVED; priorities 0..1000; a year of jobs.
LOAD_JOBS = """INSERT INTO jl_jobs (id, code, queue_id, phase, status, own_priority, priority, source,
    destination, progress, size, metadata, created, modified, finished, "user", modifier)
SELECT id, code, queue_id, phase, status, prio, prio, source, '/out',
    CASE status WHEN 'DONE' THEN 100 WHEN 'RUNNING' THEN i %% 100 ELSE 0 END, 3000, '{}',
    created, created, CASE WHEN phase <> 'ACTIVE' OR status IN ('DONE', 'FAILED', 'ABORTED')
    THEN created + interval '1 hour' END, 'bench', 'bench'
FROM (
    SELECT i, md5(i::text)::uuid::text AS id, 'bench-' || i AS code, '/in/' || i || '.mov' AS source,
        (%(queues)s::text[])[1 + i %% %(n_queues)s] AS queue_id, prio, created,
        CASE WHEN r < 0.72 THEN 'ACTIVE' WHEN r < 0.90 THEN 'FINISHED' ELSE 'ARCHIVED' END AS phase,
        CASE WHEN r < 0.10 THEN 'RUNNING' WHEN r < 0.40 THEN 'WAITING' WHEN r < 0.50 THEN 'PENDING'
            WHEN r < 0.55 THEN 'PAUSED' WHEN r < 0.60 THEN 'INIT' WHEN r < 0.68 THEN 'DONE'
            WHEN r < 0.72 THEN 'FAILED' WHEN r < 0.86 THEN 'DONE' WHEN r < 0.88 THEN 'FAILED'
            WHEN r < 0.90 THEN 'ABORTED' ELSE 'DONE' END AS status
    FROM (
        SELECT i, random() AS r, floor(random() * 1001)::int AS prio,
            now() - random() * interval '365 days' AS created
        FROM generate_series(1, %(jobs)s) AS i
    ) AS drawn
) AS job"""
COUNT_QUEUE_JOBS = """UPDATE jl_queues q SET total_jobs = c.total, successful_jobs = c.done,
    failed_jobs = c.failed, active_jobs = c.active
FROM (SELECT queue_id, count(*) AS total, count(*) FILTER (WHERE status = 'DONE') AS done,
        count(*) FILTER (WHERE status = 'FAILED') AS failed,
        count(*) FILTER (WHERE status NOT IN ('DONE', 'FAILED', 'ABORTED')) AS active
      FROM jl_jobs GROUP BY queue_id) AS c
WHERE q.id = c.queue_id"""
VARIANTS: dict[str, list[Sort] | None] = {
    "jobs(where) page": None,
    "jobs(where, created desc) page": [Sort("created", descending=True)],
}


class RecordingStore:
    """Passes queries through to a store and keeps each (sql, params), for EXPLAIN."""

    def __init__(self, store: ReadStore) -> None:
        self.store = store
        self.backend = store.backend
        self.statements: list[tuple[str, list[Any]]] = []

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.statements.append((sql, list(params)))
        return await self.store.fetch(sql, params)


def load_jobs(url: str, jobs: int, tag: str) -> None:
    """A fresh schema with the read-model tables, queues, and `jobs` rows in jl_jobs."""
    ledger = Ledger(f"{url}?schema={QUERY_SCHEMA}")
    store = open_read_store(ledger.store)
    try:
        runner = ProjectionRunner(ledger, store)
        runner.setup()
        runner.catch_up()  # the default queue
    finally:
        store.close()
        ledger.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {QUERY_SCHEMA}")
        for i in range(QUERY_QUEUES - 1):
            conn.execute(ADD_QUEUE, (str(uuid.uuid4()), f"bench-q{i}", f"bench-q{i}"))
        queues = [r[0] for r in conn.execute("SELECT id FROM jl_queues")]
        say(f"[{tag}] query: loading {jobs:,} jobs into jl_jobs ...")
        started = time.perf_counter()
        conn.execute("SELECT setseed(0.42)")
        conn.execute(LOAD_JOBS, {"queues": queues, "n_queues": len(queues), "jobs": jobs})
        conn.execute(COUNT_QUEUE_JOBS)
        conn.execute("ANALYZE jl_jobs")
        conn.execute("ANALYZE jl_queues")
        say(f"[{tag}] query: loaded and analysed in {time.perf_counter() - started:.1f} s")


def vacuum_jobs(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {QUERY_SCHEMA}.jl_jobs")


async def time_jobs(models: ReadModels, order_by: list[Sort] | None, runs: int) -> list[float]:
    """ms per `jobs(where=WHERE, first=50)` call (its COUNT and its page), after a warm-up."""
    for _ in range(5):
        page = await models.jobs(where=WHERE, order_by=order_by, first=50)
        assert len(page.nodes) == 50, "the loaded table should hold more than a page of matches"
    latencies = []
    for _ in range(runs):
        started = time.perf_counter()
        await models.jobs(where=WHERE, order_by=order_by, first=50)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def explain(store: ReadStore, order_by: list[Sort] | None) -> list[str]:
    """EXPLAIN ANALYZE of each statement one `jobs()` call sends."""
    recorder = RecordingStore(store)
    await ReadModels(cast(ReadStore, recorder)).jobs(where=WHERE, order_by=order_by, first=50)
    plans = []
    for sql, params in recorder.statements:
        rows = await store.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = "\n".join(f"    {r['QUERY PLAN']}" for r in rows)
        plans.append(f"  {sql}\n  params: {params}\n{plan}")
    return plans


async def query_round(url: str, runs: int, label: str, tag: str) -> tuple[Results, list[str]]:
    store = open_read_store(parse_database_url(f"{url}?schema={QUERY_SCHEMA}"))
    results: Results = {}
    plans: list[str] = []
    try:
        await store.open_async()
        models = ReadModels(store)
        for name, order_by in VARIANTS.items():
            say(f"[{tag}] query: {name} x {runs} ({label}) ...")
            latencies = await time_jobs(models, order_by, runs)
            results[f"query: {name} p50 ms ({label})"] = pct(latencies, 0.5)
            results[f"query: {name} p99 ms ({label})"] = pct(latencies, 0.99)
            plans += [f"{name}, {label}:\n{p}" for p in await explain(store, order_by)]
    finally:
        await store.close_async()
        store.close()
    return results, plans


def measure_query(url: str, args: argparse.Namespace, tag: str) -> tuple[Results, list[str]]:
    load_jobs(url, args.query_jobs, tag)
    results, plans = asyncio.run(query_round(url, args.query_runs, "ANALYZE", tag))
    say(f"[{tag}] query: VACUUM jl_jobs ...")
    vacuum_jobs(url)
    vacuumed, vacuum_plans = asyncio.run(query_round(url, args.query_runs, "VACUUM", tag))
    return results | vacuumed, plans + vacuum_plans


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
