"""createJob with many tasks: the seconds one call takes for 1,000 and for 10,000 tasks, on
SQLite and PostgreSQL, through the Ledger (in-process) and through the GraphQL API (a real
`jobledger serve`, whose answer waits until the read models include the job).

    .venv/bin/python bench/create_job.py [--store sqlite|postgres|both] [--tasks 1000,10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import fresh_postgres  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from tests.api.conftest import start_server, stop_server  # noqa: E402

STORE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
CREATE_JOB = """mutation($tasks: [TaskInput!]) {
  createJob(input: {destination: "/out", tasks: $tasks}) { id status tasks(first: 0) { totalCount } } }"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tasks_of(run: int, count: int) -> list[dict[str, Any]]:
    """Transfers with paths of their own (equal ones would count as one task)."""
    return [{"source": f"/in/{run}/{i:05}.mov", "size": 1000} for i in range(count)]


def timed(runs: int, once: Callable[[int], None]) -> list[float]:
    """Seconds of each of `runs` calls of `once(run)`."""
    seconds = []
    for run in range(runs):
        started = time.perf_counter()
        once(run)
        seconds.append(time.perf_counter() - started)
    return seconds


def through_ledger(url: str, count: int, runs: int) -> list[float]:
    ledger = Ledger(url)
    try:

        def once(run: int) -> None:
            ledger.jobs.create(destination="/out", tasks=tasks_of(run, count), actor="bench")

        return timed(runs, once)
    finally:
        ledger.close()


def through_api(url: str, count: int, runs: int, log: str) -> list[float]:
    server = start_server(url, log)
    try:
        with httpx.Client(timeout=600, headers={"X-Jobledger-User": "bench"}) as http:

            def once(run: int) -> None:
                body = {"query": CREATE_JOB, "variables": {"tasks": tasks_of(run, count)}}
                answer = http.post(server.graphql, json=body).json()
                if answer.get("errors"):
                    raise SystemExit(f"createJob of {count} tasks failed: {answer['errors']}")
                job = answer["data"]["createJob"]
                assert job["tasks"]["totalCount"] == count, job

            return timed(runs, once)
    finally:
        stop_server(server)


def bench_store(store: str, counts: list[int], runs: int, tmp: str) -> dict[str, list[float]]:
    """{row label: seconds of each run}, each size and path on a fresh store."""
    results: dict[str, list[float]] = {}
    for count in counts:
        for path in ("Ledger", "GraphQL"):
            label = f"{count:,} tasks, {path}"
            say(f"[{STORE_NAMES[store]}] {label} x {runs} ...")
            if store == "sqlite":
                url = f"sqlite:///{tmp}/{count}-{path}.db"
                results[label] = _measure(path, url, count, runs, f"{tmp}/{store}.log")
            else:
                with fresh_postgres("jobledger_bench_create_job") as url:
                    results[label] = _measure(path, url, count, runs, f"{tmp}/{store}.log")
    return results


def _measure(path: str, url: str, count: int, runs: int, log: str) -> list[float]:
    return through_ledger(url, count, runs) if path == "Ledger" else through_api(url, count, runs, log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tasks", default="1000,10000", help="comma-separated task counts, one createJob each")
    parser.add_argument("--runs", type=int, default=3, help="createJob calls per count (the median is shown)")
    args = parser.parse_args()
    counts = [int(c) for c in args.tasks.split(",")]
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="jlbench") as tmp:
        say(f"server logs in {tmp}")
        for store in stores:
            results[STORE_NAMES[store]] = bench_store(store, counts, args.runs, tmp)
    names = list(results)
    print(f"\nseconds per createJob, median of {args.runs} (min..max)")
    print(f"{'':24}" + "".join(f"{name:>24}" for name in names))
    for label in next(iter(results.values())):
        cells = []
        for name in names:
            seconds = results[name][label]
            cells.append(f"{statistics.median(seconds):.2f} ({min(seconds):.2f}..{max(seconds):.2f})")
        print(f"{label:24}" + "".join(f"{cell:>24}" for cell in cells))


if __name__ == "__main__":
    main()
