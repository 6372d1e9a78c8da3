"""Core benchmark: the Ledger and History in-process, without the API, on SQLite and PostgreSQL.

1. create N jobs of 3 tasks, one `create_job` (one save) after another, in one thread;
2. read the whole log back with History.follow, a batch at a time;
3. create N jobs again from K threads at once into one queue (a fresh store).

    .venv/bin/python bench/core.py [--store sqlite|postgres|both] [--jobs 10000] [--threads 4]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError, Recording

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import fresh_postgres  # noqa: E402
from bench.progress import Progress  # noqa: E402
from domain.errors import ConflictError  # noqa: E402
from domain.history import History  # noqa: E402
from domain.ledger import Ledger  # noqa: E402

STORE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
ACTOR = "bench"
CLIENT_ATTEMPTS = 20  # a thread tries a command again when the ledger gives up with ConflictError

Row = tuple[str, float, str]  # (label, value, format)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def job_tasks(i: int) -> list[dict[str, Any]]:
    return [
        {"source": f"/in/{i}/{name}", "destination": f"/out/{i}/{name}", "size": size}
        for name, size in (("a.mov", 1_000), ("b.mov", 2_000), ("c.mov", 3_000))
    ]


class CountingLedger(Ledger):
    """A Ledger that counts the saves lost to another writer (each one is retried)."""

    def __init__(self, database_url: str) -> None:
        self.conflicts = 0
        self._conflicts_lock = threading.Lock()
        super().__init__(database_url)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        try:
            return super().save(*objs, **kwargs)
        except IntegrityError:
            with self._conflicts_lock:
                self.conflicts += 1
            raise


# -- stores ----------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_store() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="jlbench") as tmp:
        yield f"sqlite:///{tmp}/bench.db"


@contextlib.contextmanager
def open_ledger(store: str) -> Iterator[CountingLedger]:
    """A Ledger on a fresh, empty store that is removed afterwards."""
    with sqlite_store() if store == "sqlite" else fresh_postgres() as url:
        ledger = CountingLedger(url)
        try:
            yield ledger
        finally:
            ledger.close()


# -- phases ----------------------------------------------------------------------


def create_sequentially(ledger: Ledger, jobs: int) -> list[Row]:
    """One thread, one create_job after another; throughput and per-command latency."""
    before = ledger.position()
    latencies: list[float] = []
    with Progress("create, 1 thread", jobs).running() as progress:
        started = time.perf_counter()
        for i in range(jobs):
            t0 = time.perf_counter()
            ledger.jobs.create(tasks=job_tasks(i), actor=ACTOR)
            latencies.append(time.perf_counter() - t0)
            progress.add()
        elapsed = time.perf_counter() - started
    events = ledger.position() - before
    cuts = statistics.quantiles(latencies, n=100)
    return [
        ("create 1 thread: commands/s", jobs / elapsed, ",.0f"),
        ("create 1 thread: events/s", events / elapsed, ",.0f"),
        ("create 1 thread: events/command", events / jobs, ".1f"),
        ("create 1 thread: p50 ms", cuts[49] * 1000, ".2f"),
        ("create 1 thread: p99 ms", cuts[98] * 1000, ".2f"),
        ("create 1 thread: seconds", elapsed, ".1f"),
    ]


def read_log(ledger: Ledger, batch: int) -> list[Row]:
    """The whole log through History.follow, `batch` events per read."""
    history = History(ledger)
    total = ledger.position()
    count = 0
    with Progress(f"read, batches of {batch}", total).running() as progress:
        started = time.perf_counter()
        for count, _ in enumerate(history.follow(after=0, batch=batch), start=1):
            progress.set(count)
        elapsed = time.perf_counter() - started
    if count != total:
        say(f"warning: read {count:,} events, but the store's position is {total:,}")
    return [
        ("read log: events", count, ",.0f"),
        ("read log: events/s", count / elapsed, ",.0f"),
        ("read log: seconds", elapsed, ".1f"),
    ]


def client_create(ledger: Ledger, i: int, resent: Counter[str]) -> None:
    """create_job as an API client would call it: sent again when the ledger gives up
    (ConflictError) or fails unexpectedly; `resent` counts why, by exception type."""
    for _ in range(CLIENT_ATTEMPTS):
        try:
            ledger.jobs.create(tasks=job_tasks(i), actor=ACTOR)
            return
        except ConflictError:
            resent["gave up"] += 1
        except Exception as error:  # an internal error the API would answer with; counted
            if not resent[type(error).__name__]:
                say(f"\ncreate_job #{i} failed, sending it again: {type(error).__name__}: {error}")
            resent[type(error).__name__] += 1
    raise RuntimeError(f"create_job #{i} failed {CLIENT_ATTEMPTS} times")


def create_concurrently(ledger: CountingLedger, jobs: int, threads: int) -> list[Row]:
    """`threads` threads sharing one Ledger, `jobs` create_job calls in all, into one queue."""
    before = ledger.position()
    resent: list[Counter[str]] = [Counter() for _ in range(threads)]

    def worker(n: int, progress: Progress) -> None:
        for i in range(n, jobs, threads):
            client_create(ledger, i, resent[n])
            progress.add()

    with Progress(f"create, {threads} threads", jobs).running() as progress:
        started = time.perf_counter()
        run_threads(worker, threads, progress)
        elapsed = time.perf_counter() - started
    events = ledger.position() - before
    total = sum(resent, Counter[str]())
    failed = sum(v for k, v in total.items() if k != "gave up")
    if failed:
        say(f"unexpected errors, re-sent: {dict(total)}")
    label = f"create {threads} threads"
    return [
        (f"{label}: commands/s", jobs / elapsed, ",.0f"),
        (f"{label}: events/s", events / elapsed, ",.0f"),
        (f"{label}: conflicts retried", ledger.conflicts, ",.0f"),
        (f"{label}: gave up, re-sent", total["gave up"], ",.0f"),
        (f"{label}: errors, re-sent", failed, ",.0f"),
        (f"{label}: seconds", elapsed, ".1f"),
    ]


def run_threads(worker: Callable[[int, Progress], None], threads: int, progress: Progress) -> None:
    """Run worker(0..threads-1) at once; raise the first exception any of them raised."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(worker, n, progress) for n in range(threads)]
        for future in futures:
            future.result()


def bench_store(store: str, args: argparse.Namespace) -> list[Row]:
    name = STORE_NAMES[store]
    say(f"== {name}")
    with open_ledger(store) as ledger:
        rows = create_sequentially(ledger, args.jobs)
        rows += read_log(ledger, args.batch)
    if args.threads > 0:
        with open_ledger(store) as ledger:
            rows += create_concurrently(ledger, args.jobs, args.threads)
    return rows


# -- report ----------------------------------------------------------------------


def print_table(results: dict[str, list[Row]]) -> None:
    stores = list(results)
    ratio = stores == ["SQLite", "PostgreSQL"]
    width = max(len(label) for rows in results.values() for label, _, _ in rows) + 2
    header = f"{'':{width}}" + "".join(f"{s:>14}" for s in stores) + (f"{'PG/SQLite':>12}" if ratio else "")
    print(header)
    print("-" * len(header))
    for index, (label, _, fmt) in enumerate(results[stores[0]]):
        values = [results[s][index][1] for s in stores]
        line = f"{label:{width}}" + "".join(f"{v:>14{fmt}}" for v in values)
        if ratio:
            line += f"{values[1] / values[0]:>12.2f}" if values[0] else f"{'-':>12}"
        print(line)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs to create per phase (3 tasks each)")
    parser.add_argument("--threads", type=int, default=4, help="threads for phase 3; 0 skips it")
    parser.add_argument("--batch", type=int, default=1000, help="events per read when reading the log")
    args = parser.parse_args()
    if args.jobs < 2:
        parser.error("--jobs must be at least 2")
    return args


def main() -> None:
    args = parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    started = time.perf_counter()
    results = {STORE_NAMES[store]: bench_store(store, args) for store in stores}
    print(
        f"\njobledger core benchmark: {args.jobs:,} jobs x 3 tasks, {args.threads} threads, "
        f"read batches of {args.batch}\n"
    )
    print_table(results)
    say(f"\ntotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
