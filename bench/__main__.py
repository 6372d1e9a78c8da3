"""Every benchmark in one go, one progress bar, one table: event append (single and batched),
projection catch-up and lag, wrk against the API beside stock Strawberry, createJob at 1,000 and
10,000 tasks, subscription latency, and end-to-end tasks/s beside Procrastinate and PgQueuer.

    .venv/bin/python -m bench [--quick] [--store sqlite|postgres|both] [--only SECTION,...]

The default run uses each script's own default sizes (about an hour on a 2-core machine);
`--quick` uses small ones (under five minutes). Each section imports its script's functions,
so the figures are the ones that script reports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import psycopg
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import api, core, create_job, long_run, projections, throughput, wrk  # noqa: E402
from bench.databases import ADMIN_URL, fresh_postgres  # noqa: E402
from bench.others import OTHERS_SCRIPT, others_python  # noqa: E402
from bench.progress import shared  # noqa: E402
from bench.report import STORE_NAMES, Report  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from tests.api.conftest import start_server, stop_server  # noqa: E402

SECTIONS = ("append", "projections", "api", "create_job", "subscription", "throughput")
OPTIONAL = ("long_run",)  # only when named in --only, never with --quick


@dataclass(frozen=True)
class Sizes:
    jobs: int = 10_000  # core.py --jobs
    threads: int = 4  # core.py --threads
    read_batch: int = 1000  # core.py --batch
    batched_tasks: int = 1000  # tasks of the one create_job whose events are appended in one save
    events: int = 100_000  # projections.py --events
    batch_sizes: tuple[int, ...] = (100, 1000, 5000)
    lag_seconds: float = 20
    lag_rate: float = 500
    query_jobs: int = 1_000_000
    query_runs: int = 200
    wrk_seconds: float = 10  # api.py --seconds
    connections: int = 50  # api.py --clients
    create_tasks: tuple[int, ...] = (1000, 10_000)  # create_job.py --tasks
    create_runs: int = 3
    subscribers: int = 100  # api.py --subscribers
    rounds: int = 10
    tasks: int = 10_000  # throughput.py --tasks
    batches: tuple[int, ...] = (50, 200)
    single_tasks: int = 2000  # 0: no claimTasks(limit: 1) runs
    long_tasks: int = 200_000  # long_run.py --tasks


QUICK = replace(
    Sizes(),
    jobs=300,
    threads=2,
    events=3000,
    batch_sizes=(1000,),
    lag_seconds=4,
    lag_rate=300,
    query_jobs=0,
    wrk_seconds=4,
    create_runs=1,
    subscribers=20,
    rounds=3,
    tasks=1000,
    single_tasks=0,
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Step:
    label: str
    run: Callable[[], None]


class Run:
    """The steps of one `python -m bench`, each adding its figures to the report."""

    def __init__(self, sizes: Sizes, stores: list[str], tmp: str) -> None:
        self.sizes = sizes
        self.stores = stores
        self.tmp = tmp
        self.report = Report(stores)
        self.throughput: list[throughput.Result] = []

    def steps(self, sections: list[str]) -> list[Step]:
        s, steps = self.sizes, []
        postgres = "postgres" in self.stores
        for store in self.stores if "append" in sections else []:
            steps.append(Step(f"event append, {STORE_NAMES[store]}", partial(self.append, store)))
        for store in self.stores if "projections" in sections else []:
            steps.append(Step(f"projections, {STORE_NAMES[store]}", partial(self.projections, store)))
        if "api" in sections and postgres:
            steps.append(Step("API under wrk, beside stock Strawberry", self.wrk))
        for store in self.stores if "create_job" in sections else []:
            steps.append(Step(f"createJob, {STORE_NAMES[store]}", partial(self.create_job, store)))
        for store in self.stores if "subscription" in sections else []:
            steps.append(Step(f"subscription latency, {STORE_NAMES[store]}", partial(self.subscription, store)))
        if "throughput" in sections:
            runs = [(size, workers) for size in s.batches for workers in throughput.WORKER_COUNTS]
            runs += [(1, workers) for workers in throughput.WORKER_COUNTS] if s.single_tasks else []
            for store in self.stores:
                for limit, workers in runs:
                    label = f"end to end, {STORE_NAMES[store]}, {workers} workers, limit {limit}"
                    steps.append(Step(label, partial(self.jobledger_run, store, limit, workers)))
            if postgres:
                for library in ("procrastinate", "pgqueuer"):
                    for workers in throughput.WORKER_COUNTS:
                        label = f"end to end, {library}, {workers} workers"
                        steps.append(Step(label, partial(self.other_run, library, workers)))
                steps.append(Step("end to end: ratios", self.throughput_ratios))
        if "long_run" in sections and postgres:
            steps.append(Step(f"long run, PG, {s.long_tasks:,} tasks", self.long_run))
        return steps

    # -- sections --------------------------------------------------------------------------------

    def append(self, store: str) -> None:
        s = self.sizes
        args = argparse.Namespace(jobs=s.jobs, threads=s.threads, batch=s.read_batch)
        for label, value, _ in core.bench_store(store, args):
            if not label.endswith(": seconds"):
                self.report.per_store("event append", label, store, value)
        with core.sqlite_store() if store == "sqlite" else fresh_postgres() as url:
            ledger = Ledger(url)
            try:
                before, started = ledger.position(), time.perf_counter()
                ledger.jobs.create(destination="/out", tasks=create_job.tasks_of(0, s.batched_tasks), actor="bench")
                elapsed, events = time.perf_counter() - started, ledger.position() - before
            finally:
                ledger.close()
        name = f"batched, one create_job of {s.batched_tasks:,} tasks"
        self.report.per_store("event append", f"{name}: events/s", store, events / elapsed)
        self.report.per_store("event append", f"{name}: events in its save", store, events)

    def projections(self, store: str) -> None:
        s = self.sizes
        args = argparse.Namespace(
            events=s.events,
            writers=4,
            batch_sizes=list(s.batch_sizes),
            lag_seconds=s.lag_seconds,
            lag_rate=s.lag_rate,
            lag_writers=4,
            query_jobs=s.query_jobs,
            query_runs=s.query_runs,
        )
        if store == "postgres":
            if (note := projections.work_around_notify_limit()) and note not in self.report.notes:
                self.report.notes.append(note)
            with fresh_postgres() as url:
                results, _ = projections.bench_store(store, url, args)
        else:
            with projections.sqlite_database() as url:
                results, _ = projections.bench_store(store, url, args)
        for key, value in results.items():
            self.report.per_store("projections", key, store, value)

    def wrk(self) -> None:
        s = self.sizes
        results = wrk.compare(s.wrk_seconds, s.connections, min(2, os.cpu_count() or 1), self.tmp)
        section = "API (wrk, PostgreSQL)"
        for c in results:
            if c.stock is None:
                self.report.compared(section, f"{c.ours.name}: {c.figure}/s", c.ours.requests_per_s, "", float("nan"))
                self.report.compared(section, f"{c.ours.name}: {c.figure} p99 ms", c.ours.p99_ms, "", float("nan"))
            else:
                for unit, ours_value, stock_value in (
                    ("/s", c.ours.requests_per_s, c.stock.requests_per_s),
                    (" p99 ms", c.ours.p99_ms, c.stock.p99_ms),
                ):
                    name = f"{c.ours.name}: {c.figure}{unit}"
                    self.report.compared(section, name, ours_value, c.stock.name, stock_value)
            for result in (c.ours, c.stock):
                if result is not None and result.errors:
                    self.report.notes.append(f"wrk: {result.errors} errors against {result.name}, {c.figure}")

    def create_job(self, store: str) -> None:
        s = self.sizes
        results = create_job.bench_store(store, list(s.create_tasks), s.create_runs, self.tmp)
        for label, seconds in results.items():
            self.report.per_store("createJob", f"{label}: s", store, statistics.median(seconds))

    def subscription(self, store: str) -> None:
        s = self.sizes
        with core.sqlite_store() if store == "sqlite" else fresh_postgres() as url:
            server = start_server(url, f"{self.tmp}/subscription-{store}.log")
            try:
                latencies = asyncio.run(api.subscription_latency(server, s.subscribers, s.rounds))
            finally:
                stop_server(server)
        name = f"{s.subscribers} subscribers, heartbeat to message"
        self.report.per_store("subscription", f"{name}: p50 ms", store, api.pct(latencies, 0.5))
        self.report.per_store("subscription", f"{name}: p99 ms", store, api.pct(latencies, 0.99))
        self.report.per_store("subscription", f"{s.subscribers} subscribers: messages", store, len(latencies))

    def jobledger_run(self, store: str, limit: int, workers: int) -> None:
        s = self.sizes
        tasks = s.tasks if limit > 1 else s.single_tasks
        args = argparse.Namespace(profile=None, py_spy=None)
        result = throughput.bench_jobledger(store, tasks, workers, limit, self.tmp, args)
        self.throughput.append(result)
        name = result.name.split(", ", 1)[1]
        self.report.per_store("end to end", f"{name}: tasks/s", store, result.rate)

    def other_run(self, library: str, workers: int) -> None:
        python = others_python(ROOT / "bench" / ".venv-others", False)
        script = Path(self.tmp) / "others.py"
        script.write_text(OTHERS_SCRIPT)
        self.throughput.append(
            throughput.bench_other(python, str(script), library, self.sizes.tasks, workers, max(self.sizes.batches))
        )

    def throughput_ratios(self) -> None:
        ours = [r for r in self.throughput if r.name.startswith("jobledger PG")]
        if not ours:
            return
        for figure, rate in (("tasks/s", "rate"), ("end-to-end/s", "end_to_end")):
            best = max(ours, key=lambda r: getattr(r, rate))
            for label in ("Procrastinate", "PgQueuer"):
                theirs = [r for r in self.throughput if r.name.startswith(label)]
                if theirs:
                    top = max(theirs, key=lambda r: getattr(r, rate))
                    section = "end to end"
                    name = f"best PostgreSQL {figure} ({best.name.split(', ', 1)[1]})"
                    self.report.compared(section, name, getattr(best, rate), top.name, getattr(top, rate))

    def long_run(self) -> None:
        outcome = long_run.run(long_run.parse_args([f"--tasks={self.sizes.long_tasks}"]), self.tmp)
        section = f"long run ({outcome.tasks:,} tasks)"
        self.report.per_store(section, f"first {outcome.windows[0].tasks:,}: tasks/s", "postgres", outcome.first)
        self.report.per_store(section, f"last {outcome.windows[-1].tasks:,}: tasks/s", "postgres", outcome.last)
        self.report.per_store(section, "last/first (bar: 0.80) x100", "postgres", outcome.ratio * 100)
        for shot in outcome.snapshots:
            self.report.per_store(section, f"database MB: {shot.label}", "postgres", shot.db_bytes / long_run.MB)


# -- running ---------------------------------------------------------------------------------------


def run_steps(steps: list[Step], console: Console) -> list[str]:
    """Each step in turn under one bar; a step that fails is reported and the run goes on."""
    failures: list[str] = []

    def one(n: int, step: Step) -> None:
        started = time.perf_counter()
        try:
            step.run()
        except Exception:  # one broken benchmark should not cost the figures of the others
            console.print(traceback.format_exc(), markup=False, highlight=False)
            failures.append(step.label)
        say(f"[{n}/{len(steps)}] {step.label}: {time.perf_counter() - started:.0f} s")

    if not console.is_terminal:
        for n, step in enumerate(steps, start=1):
            say(f"[{n}/{len(steps)}] {step.label} ...")
            one(n, step)
        return failures
    with shared(console) as bar:
        overall = bar.add_task("all benchmarks", total=len(steps))
        for n, step in enumerate(steps, start=1):
            bar.update(overall, description=f"[{n}/{len(steps)}] {step.label}")
            one(n, step)
            bar.advance(overall)
    return failures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run in under five minutes")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to run, of {', '.join(SECTIONS)}, and {', '.join(OPTIONAL)}"
        " (not run unless named here; not with --quick)",
    )
    args = parser.parse_args()
    args.sections = args.only.split(",") if args.only else list(SECTIONS)
    if unknown := set(args.sections) - set(SECTIONS) - set(OPTIONAL):
        known = ", ".join(SECTIONS + OPTIONAL)
        parser.error(f"unknown sections {', '.join(sorted(unknown))}; the sections are {known}")
    if args.quick and set(args.sections) & set(OPTIONAL):
        parser.error(f"{', '.join(OPTIONAL)} has no quick size: run it without --quick")
    return args


def main() -> None:
    args = parse_args()
    sizes = QUICK if args.quick else Sizes()
    stores = ["postgres", "sqlite"] if args.store == "both" else [args.store]
    console = Console(stderr=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jlbench") as tmp:
        run = Run(sizes, stores, tmp)
        failures = run_steps(run.steps(args.sections), console)
    with psycopg.connect(ADMIN_URL) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    elapsed = time.perf_counter() - started
    title = (
        f"jobledger benchmarks{' (--quick)' if args.quick else ''}: {os.cpu_count()} cores, PostgreSQL {pg}, "
        f"load average {os.getloadavg()[0]:.1f}, run time {elapsed:.0f} s"
    )
    out = Console(width=max(Console().width, 170))
    print()
    run.report.print(out, title)
    if lines := throughput.ratio_lines(run.throughput):
        print()
        print("\n".join(lines))
    print(f"\ncores: {os.cpu_count()}; total run time {elapsed:.0f} s")
    if failures:
        print(f"\nfailed: {'; '.join(failures)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
