"""Throughput benchmark: no-op tasks submitted, claimed and completed end to end over real HTTP
against a real `jobledger serve`, on PostgreSQL and SQLite, next to Procrastinate and PgQueuer
processing the same number of no-op jobs on the same PostgreSQL.

jobledger: `--tasks` command tasks (jobs of 100, submitted one createJob after another from one
client; never executed) are claimed with claimTasks(limit: N) for each N of --batch (default 50
and 200) and completed with one completeTasks per claim by 1 and 4 workers (coroutines with an
HTTP connection each), and, for comparison, with claimTasks(limit: 1) and completeTask per task on
`--single-tasks` tasks. Every run has a fresh store and a fresh server; on PostgreSQL the filled
database is ANALYZEd before processing starts (untimed), as autovacuum would.

Procrastinate and PgQueuer run in a separate virtual environment (created on first use under
--others-venv, default bench/.venv-others) as a subprocess, each in a fresh database: batch
enqueue of --tasks no-op jobs, then 1 and 4 workers until the queue is empty.

    .venv/bin/python bench/throughput.py [--tasks 10000] [--batch 50,200] [--store sqlite|postgres|both] [--skip-others]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import ADMIN_URL, fresh_postgres  # noqa: E402
from bench.others import OTHERS_SCRIPT, others_python, run_other  # noqa: E402
from bench.progress import Progress  # noqa: E402
from tests.api.conftest import Server, start_server, stop_server  # noqa: E402

STORE_NAMES = {"postgres": "PG", "sqlite": "SQLite"}
TASKS_PER_JOB = 100
WORKER_COUNTS = (1, 4)
LEASE_SECONDS = 600

CREATE_JOB = "mutation($code: String!, $tasks: [TaskInput!]!) { createJob(input: {code: $code, tasks: $tasks}) { id } }"
CLAIM = """mutation($worker: String!, $limit: Int!, $lease: Int!) {
  claimTasks(worker: $worker, limit: $limit, leaseSeconds: $lease) { id task { id } } }"""
COMPLETE_MANY = "mutation($completions: [Completion!]!) { completeTasks(completions: $completions) { id } }"
COMPLETE_ONE = "mutation($lease: ID!) { completeTask(leaseId: $lease) { id } }"
DONE_JOBS = '{ jobs(phase: null, where: "status=done", first: 0) { totalCount } }'


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Result:
    name: str
    tasks: int
    submit_s: float
    process_s: float
    note: str = ""
    server_cpu_s: float | None = None  # CPU time of the jobledger server process while processing
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # 1-minute load average at the end

    @property
    def rate(self) -> float:
        return self.tasks / self.process_s if self.process_s else 0.0

    @property
    def end_to_end(self) -> float:
        total = self.submit_s + self.process_s
        return self.tasks / total if total else 0.0


# -- databases -------------------------------------------------------------------


def analyze(url: str) -> None:
    """Not timed: statistics for the freshly filled tables, as autovacuum would gather after
    such inserts. This machine's PostgreSQL runs with autovacuum off; the Procrastinate run
    does the same for its table."""
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")


@contextlib.contextmanager
def fresh_store(store: str, tmp: str) -> Iterator[str]:
    if store == "postgres":
        with fresh_postgres("jobledger_bench") as url:
            yield url
    else:
        path = Path(tmp) / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- jobledger -------------------------------------------------------------------


class Api:
    """One HTTP connection to the server; GraphQL errors raise."""

    def __init__(self, url: str, user: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(
            timeout=120, headers={"X-Jobledger-User": user}, limits=httpx.Limits(max_connections=1)
        )

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        body = (await self.http.post(self.url, json={"query": query, "variables": variables})).json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL error: {body['errors'][0]}")
        return body["data"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.http.aclose()


async def submit(server: Server, tasks: int) -> float:
    """createJob one after another, TASKS_PER_JOB command tasks each; returns seconds.
    Sources differ (`true 3.17`): tasks of a job with equal source and destination are one task."""
    api = Api(server.graphql, "bench-submit")
    jobs = -(-tasks // TASKS_PER_JOB)
    try:
        with Progress("submit (tasks)", tasks).running() as progress:
            started = time.perf_counter()
            for j in range(jobs):
                n = min(TASKS_PER_JOB, tasks - j * TASKS_PER_JOB)
                specs = [{"source": {"kind": "command", "command": f"true {j}.{i}"}} for i in range(n)]
                await api(CREATE_JOB, code=f"bench-{j}", tasks=specs)
                progress.add(n)
            return time.perf_counter() - started
    finally:
        await api.close()


@dataclass
class Tally:
    total: int
    claimed: int = 0
    empty_claims: int = 0  # claims that came back empty while other workers still had work


async def work(api: Api, name: str, limit: int, tally: Tally, progress: Progress) -> None:
    """Claim up to `limit`, complete them all (completeTasks, or completeTask when limit is 1),
    until every task has been claimed."""
    idle = 0
    while tally.claimed < tally.total:
        leases = [
            lease["id"] for lease in (await api(CLAIM, worker=name, limit=limit, lease=LEASE_SECONDS))["claimTasks"]
        ]
        if not leases:
            # another worker's claim was in flight and took what we saw; look again shortly
            tally.empty_claims += 1
            idle += 1
            if idle > 200:
                raise RuntimeError(f"{name}: nothing to claim after 200 tries, {tally.claimed}/{tally.total} claimed")
            await asyncio.sleep(0.02)
            continue
        idle = 0
        tally.claimed += len(leases)
        if limit == 1:
            await api(COMPLETE_ONE, lease=leases[0])
        else:
            await api(COMPLETE_MANY, completions=[{"leaseId": lease} for lease in leases])
        progress.add(len(leases))


async def process(server: Server, tasks: int, workers: int, limit: int, label: str) -> float:
    apis = [Api(server.graphql, f"bench-worker-{n}") for n in range(workers)]
    tally = Tally(tasks)
    try:
        with Progress(label, tasks).running() as progress:
            started = time.perf_counter()
            await asyncio.gather(
                *(work(api, f"bench-worker-{n}", limit, tally, progress) for n, api in enumerate(apis))
            )
            elapsed = time.perf_counter() - started
        done = (await apis[0](DONE_JOBS))["jobs"]["totalCount"]
        jobs = -(-tasks // TASKS_PER_JOB)
        if done != jobs or tally.claimed != tasks:
            raise RuntimeError(f"{label}: {done}/{jobs} jobs DONE, {tally.claimed}/{tasks} tasks claimed")
        if tally.empty_claims:
            say(f"  ({tally.empty_claims} empty claims retried)")
        return elapsed
    finally:
        for api in apis:
            await api.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its threads (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def profiled(pid: int, path: str | None, py_spy: str | None) -> Iterator[None]:
    """py-spy record of the server process while the block runs (raw collapsed stacks, idle included)."""
    if not path or not py_spy:
        yield
        return
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--idle",
            "--threads",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            path,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()
        say(f"  py-spy profile: {path}")


def bench_jobledger(store: str, tasks: int, workers: int, limit: int, tmp: str, args: argparse.Namespace) -> Result:
    mode = f"batch {limit}" if limit > 1 else "single"
    name = f"jobledger {STORE_NAMES[store]}, {workers} worker{'s' if workers > 1 else ''}, {mode}"
    say(f"== {name}: {tasks:,} tasks")
    slug = f"{store}-{workers}w-{f'batch{limit}' if limit > 1 else 'single'}"
    with fresh_store(store, tmp) as url:
        server = start_server(url, f"{tmp}/{slug}.log", PYTHONPATH=str(ROOT))
        try:
            submit_s = asyncio.run(submit(server, tasks))
            analyze(url)
            profile = f"{args.profile}/{slug}.txt" if args.profile else None
            cpu_before = cpu_seconds(server.process.pid)
            with profiled(server.process.pid, profile, args.py_spy):
                process_s = asyncio.run(process(server, tasks, workers, limit, "process (tasks)"))
            cpu_after = cpu_seconds(server.process.pid)
        finally:
            stop_server(server)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    result = Result(name, tasks, submit_s, process_s, server_cpu_s=cpu)
    say(
        f"  submit {submit_s:.1f} s, process {process_s:.1f} s, {result.rate:,.0f} tasks/s"
        + (f", server CPU {cpu:.1f} s" if cpu is not None else "")
        + f", load {result.load:.1f}"
    )
    return result


# -- Procrastinate and PgQueuer (bench/others.py) ------------------------------------


def bench_other(python: str, script: str, library: str, tasks: int, workers: int, batch: int) -> Result:
    label = {"procrastinate": "Procrastinate", "pgqueuer": "PgQueuer"}[library]
    unit = "concurrency" if library == "procrastinate" else "QueueManager" + ("s" if workers > 1 else "")
    name = f"{label}, {workers} {unit}" if library != "procrastinate" else f"{label}, concurrency {workers}"
    say(f"== {name}: {tasks:,} jobs")
    answer = run_other(python, script, library, tasks, workers, batch)
    result = Result(name, tasks, answer["submit"], answer["process"], note=f"{library} {answer['version']}")
    say(
        f"  submit {result.submit_s:.1f} s, process {result.process_s:.1f} s, {result.rate:,.0f} jobs/s,"
        f" load {result.load:.1f}"
    )
    return result


# -- report ----------------------------------------------------------------------


def print_table(results: list[Result], versions: list[str]) -> None:
    width = max(len(r.name) for r in results) + 2
    header = (
        f"{'':{width}}{'tasks':>8}{'submit s':>10}{'process s':>11}{'tasks/s':>10}{'end-to-end/s':>14}"
        f"{'server CPU s':>14}{'load':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        cpu = f"{r.server_cpu_s:>14.1f}" if r.server_cpu_s is not None else f"{'-':>14}"
        print(
            f"{r.name:{width}}{r.tasks:>8,}{r.submit_s:>10.1f}{r.process_s:>11.1f}{r.rate:>10,.0f}"
            f"{r.end_to_end:>14,.0f}{cpu}{r.load:>6.1f}"
        )
    print(
        "\ntasks/s = tasks / process s; end-to-end/s = tasks / (submit s + process s); server CPU s = the jobledger"
        " server's CPU time while processing; load = 1-minute load average when the run ended"
    )
    if versions:
        print(f"\n({', '.join(versions)})")
    if lines := ratio_lines(results):
        print()
        print("\n".join(lines))


def ratio_lines(results: list[Result]) -> list[str]:
    """jobledger's best PostgreSQL tasks/s, then its ratio to Procrastinate's and PgQueuer's best.
    Other tools read these lines (`  / Procrastinate's best (...): R`): keep their form."""
    ours = [r for r in results if r.name.startswith("jobledger PG")]
    if not ours:
        return []
    best = max(ours, key=lambda r: r.rate)
    lines = [f"jobledger's best PostgreSQL figure: {best.rate:,.0f} tasks/s ({best.name})"]
    for label in ("Procrastinate", "PgQueuer"):
        theirs = [r for r in results if r.name.startswith(label)]
        if theirs:
            top = max(theirs, key=lambda r: r.rate)
            lines.append(f"  / {label}'s best ({top.name}, {top.rate:,.0f} jobs/s): {best.rate / top.rate:.3f}")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks (jobs) per batch run")
    parser.add_argument("--single-tasks", type=int, help="tasks per single-task (limit 1) run; default tasks/5")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--batch",
        default="50,200",
        help="claimTasks limits of the batch runs, comma-separated (PgQueuer uses the largest as its batch size)",
    )
    parser.add_argument("--skip-others", action="store_true", help="jobledger only: no Procrastinate or PgQueuer")
    parser.add_argument("--skip-single", action="store_true", help="no claimTasks(limit: 1) runs")
    parser.add_argument(
        "--others-venv", type=Path, default=ROOT / "bench" / ".venv-others", help="venv for the other libraries"
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy record the server of each jobledger run into DIR")
    args = parser.parse_args()
    try:
        args.batches = [int(size) for size in str(args.batch).split(",")]
    except ValueError:
        parser.error("--batch takes claim limits separated by commas, e.g. 50,200")
    if args.tasks < 1 or not all(2 <= size <= 500 for size in args.batches):
        parser.error("--tasks must be at least 1 and each --batch 2 to 500 (limit 1 is the single-task run)")
    args.single_tasks = args.single_tasks or max(1, args.tasks // 5)
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    args.py_spy = None
    python = None
    if not args.skip_others or args.profile:
        python = others_python(args.others_venv, bool(args.profile))
        args.py_spy = str(args.others_venv / "bin" / "py-spy") if args.profile else None
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
    stores = ["postgres", "sqlite"] if args.store == "both" else [args.store]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="jlthroughput") as tmp:
        load = os.getloadavg()[0]
        say(f"server logs in {tmp} (removed at the end); load average {load:.1f} on {os.cpu_count()} cores")
        for store in stores:
            for size in args.batches:
                for workers in WORKER_COUNTS:
                    results.append(bench_jobledger(store, args.tasks, workers, size, tmp, args))
            if not args.skip_single:
                for workers in WORKER_COUNTS:
                    results.append(bench_jobledger(store, args.single_tasks, workers, 1, tmp, args))
        versions: list[str] = []
        if not args.skip_others and python:
            script = Path(tmp) / "others.py"
            script.write_text(textwrap.dedent(OTHERS_SCRIPT))
            for library in ("procrastinate", "pgqueuer"):
                for workers in WORKER_COUNTS:
                    result = bench_other(python, str(script), library, args.tasks, workers, max(args.batches))
                    results.append(result)
                    if result.note not in versions:
                        versions.append(result.note)
    with psycopg.connect(ADMIN_URL) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    print(
        f"\nthroughput: no-op tasks submitted, claimed and completed; PostgreSQL {pg}, {os.cpu_count()} cores; "
        f"jobledger jobs of {TASKS_PER_JOB} tasks, claimTasks limit {args.batch} (batch) or 1 (single); "
        f"PgQueuer batch size {max(args.batches)}\n"
    )
    print_table(results, versions)
    say(f"\ntotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
