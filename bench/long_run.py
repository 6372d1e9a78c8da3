"""Long-run benchmark: does one jobledger server on PostgreSQL stay as fast at the end of a long
run as at its start, and does its database stop growing once the work is archived?

One `jobledger serve` (the server's default number of processes unless --processes) on a fresh
PostgreSQL database, with a short finished grace (--grace, default 5 s) and archive time
(--archive-after, default 30 s), so jobs are retired and archived while the run goes on.
Producers (--producers, default 2, an HTTP connection each) keep --backlog queued tasks ahead of
the workers (jobs of 100 no-op command tasks, one createJob after another on each); --workers
coroutines (an HTTP connection each) claim --claim tasks with claimTasks(limit: N) and complete
each claim with one completeTasks. The backlog is filled before the clock starts and the
producers keep it full until the --tasks measured completions are done, so every 10,000-task
window has the same mix of submitting and completing; the backlog left at the end is then
drained, untimed. Calls answered UNAVAILABLE with `retry: true` are retried after a second.

For every 10,000 tasks completed it prints that window's tasks/s and the database size; at the
start, middle and end, and after the work is archived (every job ARCHIVED, then the clock's next
VACUUM of the read models, see projections/clock.py), the biggest tables. At the end: the first
and last window's tasks/s and their ratio (the bar: last/first >= 0.8), and the database size at
each point, once more after one more vacuum cycle with the service idle.

    .venv/bin/python bench/long_run.py [--tasks 200000] [--workers 4] [--claim 200] [--backlog 20000]
        [--producers 2] [--lease 60] [--grace 5] [--archive-after 30] [--processes N]
        [--seconds-limit 7200] [--log FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import fresh_postgres  # noqa: E402
from bench.progress import Progress  # noqa: E402
from bench.throughput import CLAIM, COMPLETE_MANY, CREATE_JOB, TASKS_PER_JOB, say  # noqa: E402
from bench.throughput import Api as OneConnection  # noqa: E402
from projections.clock import VACUUM_EVERY_S  # noqa: E402
from tests.api.conftest import Server, start_server, stop_server  # noqa: E402

WINDOW = 10_000
ARCHIVED_JOBS = "{ jobs(phase: ARCHIVED, first: 0) { totalCount } }"
MB = 1024 * 1024
RETRIES = 10
BIGGEST = """
SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes, coalesce(s.n_live_tup, 0) AS live,
       coalesce(s.n_dead_tup, 0) AS dead
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 2 DESC LIMIT %s"""
LAST_VACUUM = "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'jl_tasks'"


class Api(OneConnection):
    """One HTTP connection to the server, retrying what the server answers with `retry: true`
    (UNAVAILABLE: nothing was written), as a worker would; other GraphQL errors raise."""

    retries = 0  # every retry of every connection, for the summary

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        for attempt in range(RETRIES + 1):
            body = (await self.http.post(self.url, json={"query": query, "variables": variables})).json()
            errors = body.get("errors")
            if not errors:
                return body["data"]  # type: ignore[no-any-return]
            if attempt == RETRIES or not all(e.get("extensions", {}).get("retry") for e in errors):
                break
            Api.retries += 1
            say(f"  retrying in 1 s: {errors[0].get('message')}")
            await asyncio.sleep(1)
        raise RuntimeError(f"GraphQL error: {errors[0]}")


@dataclass
class Window:
    end: int  # tasks completed at the window's end
    tasks: int
    seconds: float
    min_backlog: int  # fewest tasks queued ahead seen in the window: 0 means the producers fell behind
    db_bytes: int = 0

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds if self.seconds else 0.0


@dataclass
class Tally:
    measured: int  # completions the windows cover (--tasks)
    submit_total: int  # tasks the producers submit: measured plus the backlog drained at the end
    backlog: int
    submitted: int = 0
    reserved: int = 0  # submitted, and on their way in a createJob
    jobs: int = 0
    claimed: int = 0
    completed: int = 0
    empty_claims: int = 0
    windows: list[Window] = field(default_factory=list)
    mark_count: int = 0
    mark_time: float = 0.0
    min_backlog: int = 0
    measured_s: float = 0.0
    measured_done: asyncio.Event = field(default_factory=asyncio.Event)
    window_done: asyncio.Queue[Window] = field(default_factory=asyncio.Queue)

    def queued(self) -> int:
        return self.submitted - self.claimed

    def record(self, n: int) -> None:
        """n more tasks completed: close the window when it reaches its 10,000."""
        self.completed += n
        self.min_backlog = min(self.min_backlog, self.queued())
        size = min(WINDOW, self.measured - self.mark_count)
        if self.measured_done.is_set() or self.completed - self.mark_count < size:
            return
        now = time.perf_counter()
        window = Window(self.completed, self.completed - self.mark_count, now - self.mark_time, self.min_backlog)
        self.windows.append(window)
        self.window_done.put_nowait(window)
        self.mark_count, self.mark_time, self.min_backlog = self.completed, now, self.queued()
        if self.completed >= self.measured:
            self.measured_s = sum(w.seconds for w in self.windows)
            self.measured_done.set()


@dataclass
class Snapshot:
    label: str
    db_bytes: int
    tables: list[tuple[str, int, int, int]]  # name, bytes, live rows, dead rows


@dataclass
class Outcome:
    tasks: int
    windows: list[Window]
    snapshots: list[Snapshot]
    autovacuum: str
    processes: str
    drain_s: float
    archive_wait_s: float
    empty_claims: int
    reclaimed: int  # claimed more than once: their first lease was lost

    @property
    def first(self) -> float:
        return self.windows[0].rate

    @property
    def last(self) -> float:
        return self.windows[-1].rate

    @property
    def ratio(self) -> float:
        return self.last / self.first if self.first else 0.0


# -- database figures ---------------------------------------------------------------


async def snapshot(conn: psycopg.AsyncConnection, label: str, tables: int = 8) -> Snapshot:
    size = await (await conn.execute("SELECT pg_database_size(current_database())")).fetchone()
    rows = await (await conn.execute(BIGGEST, (tables,))).fetchall()
    return Snapshot(label, int(size[0]), [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows])  # type: ignore[index]


def print_snapshot(shot: Snapshot) -> None:
    print(f"  {shot.label}: database {shot.db_bytes / MB:,.1f} MB; biggest tables (total size, live/dead rows):")
    for name, size, live, dead in shot.tables:
        print(f"    {name:32}{size / MB:>10,.1f} MB{live:>12,} live{dead:>10,} dead")


async def monitor(url: str, tally: Tally, snapshots: list[Snapshot]) -> None:
    """The database size at the end of each window; the biggest tables in the middle and at the end."""
    windows = -(-tally.measured // WINDOW)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            window = await tally.window_done.get()
            n = len(tally.windows)
            shot = await snapshot(conn, f"after {window.end:,} tasks")
            window.db_bytes = shot.db_bytes
            print(
                f"  tasks {window.end:>9,}: {window.rate:>7,.0f} tasks/s over {window.seconds:6.1f} s,"
                f" fewest queued {window.min_backlog:>7,}, database {shot.db_bytes / MB:,.1f} MB",
                flush=True,
            )
            if n in {windows // 2, windows}:
                snapshots.append(Snapshot("middle" if n < windows else "end", shot.db_bytes, shot.tables))
                print_snapshot(snapshots[-1])
            if n >= windows:
                return


# -- the run --------------------------------------------------------------------------


async def produce(api: Api, tally: Tally) -> None:
    """createJob after createJob while fewer than `backlog` tasks are queued or on their way."""
    while tally.reserved < tally.submit_total:
        if tally.reserved - tally.claimed >= tally.backlog:
            await asyncio.sleep(0.02)
            continue
        n = min(TASKS_PER_JOB, tally.submit_total - tally.reserved)
        job, tally.jobs, tally.reserved = tally.jobs, tally.jobs + 1, tally.reserved + n
        specs = [{"source": {"kind": "command", "command": f"true {job}.{i}"}} for i in range(n)]
        await api(CREATE_JOB, code=f"long-{job}", tasks=specs)
        tally.submitted += n


async def work(api: Api, name: str, args: argparse.Namespace, tally: Tally, progress: Progress) -> None:
    """Claim and complete until every submitted task is done. A task whose lease was lost (a
    claim answered UNAVAILABLE although it took tasks) is queued again when its lease expires."""
    idle_since = None
    while tally.completed < tally.submit_total:
        found = (await api(CLAIM, worker=name, limit=args.claim, lease=args.lease))["claimTasks"]
        if not found:
            tally.empty_claims += 1
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > args.lease + 60:
                raise RuntimeError(
                    f"{name}: nothing to claim for {args.lease + 60} s, {tally.completed:,}/{tally.submit_total:,} done"
                )
            await asyncio.sleep(0.02)
            continue
        idle_since = None
        tally.claimed += len(found)
        await api(COMPLETE_MANY, completions=[{"leaseId": lease["id"]} for lease in found])
        tally.record(len(found))
        progress.add(len(found))


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], seconds: float) -> float:
    """Poll the coroutine function `check` every second until it is true; returns the seconds waited."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > seconds:
            raise RuntimeError(f"gave up after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(1)
    return time.perf_counter() - started


async def next_vacuum(conn: psycopg.AsyncConnection) -> float:
    """Wait until the clock has vacuumed jl_tasks after now (autovacuum is off: only the clock does)."""
    since = (await (await conn.execute("SELECT now()")).fetchone())[0]  # type: ignore[index]

    async def vacuumed() -> bool:
        last = (await (await conn.execute(LAST_VACUUM)).fetchone())[0]  # type: ignore[index]
        return last is not None and last > since

    return await wait_for("the clock's vacuum of jl_tasks", vacuumed, 3 * VACUUM_EVERY_S + 60)


async def drive(server: Server, url: str, args: argparse.Namespace, autovacuum: str) -> Outcome:
    jobs_total = -(-(args.tasks + args.backlog) // TASKS_PER_JOB)
    tally = Tally(args.tasks, jobs_total * TASKS_PER_JOB, args.backlog)
    snapshots: list[Snapshot] = []
    producers = [Api(server.graphql, f"long-run-submit-{n}") for n in range(args.producers)]
    apis = [Api(server.graphql, f"long-run-worker-{n}") for n in range(args.workers)]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        try:
            tally.submit_total = min(tally.backlog, tally.submit_total)
            with Progress("fill the backlog (tasks, untimed)", tally.submit_total).running() as progress:
                await asyncio.gather(*(produce(api, tally) for api in producers))
                progress.set(tally.submitted)
            tally.submit_total = jobs_total * TASKS_PER_JOB
            snapshots.append(await snapshot(conn, "start (backlog filled)"))
            print_snapshot(snapshots[-1])
            tally.mark_time, tally.min_backlog = time.perf_counter(), tally.queued()
            started = time.perf_counter()
            with Progress("long run (tasks completed)", tally.submit_total).running() as progress:
                run = asyncio.gather(
                    *(produce(api, tally) for api in producers),
                    monitor(url, tally, snapshots),
                    *(work(api, f"long-run-worker-{n}", args, tally, progress) for n, api in enumerate(apis)),
                )
                await asyncio.wait_for(run, args.seconds_limit)
            drain_s = time.perf_counter() - started - tally.measured_s
        except TimeoutError:
            raise RuntimeError(
                f"--seconds-limit {args.seconds_limit:.0f} s reached after {tally.completed:,} tasks; windows so far: "
                + ", ".join(f"{w.rate:,.0f}" for w in tally.windows)
            ) from None
        finally:
            for api in (*producers, *apis):
                await api.close()
        say(f"  all {tally.submit_total:,} tasks done ({tally.empty_claims} empty claims); waiting for the archive")
        api = Api(server.graphql, "long-run-check")
        try:

            async def archived() -> bool:
                return (await api(ARCHIVED_JOBS))["jobs"]["totalCount"] >= jobs_total

            archive_wait_s = await wait_for("every job ARCHIVED", archived, args.grace + args.archive_after + 300)
        finally:
            await api.close()
        print(f"  every job ARCHIVED {archive_wait_s:.0f} s after the last completion")
        say("  waiting for the clock's next vacuum of the read models")
        await next_vacuum(conn)
        snapshots.append(await snapshot(conn, "archived, then vacuumed by the clock"))
        print_snapshot(snapshots[-1])
        say("  idle: waiting for one more of the clock's vacuums")
        await next_vacuum(conn)
        snapshots.append(await snapshot(conn, "one vacuum cycle later, idle"))
        print_snapshot(snapshots[-1])
    return Outcome(
        args.tasks,
        tally.windows,
        snapshots,
        autovacuum,
        args.processes or "default",
        drain_s,
        archive_wait_s,
        tally.empty_claims,
        tally.claimed - tally.submit_total,
    )


def run(args: argparse.Namespace, tmp: str) -> Outcome:
    """One long run on a fresh database and server; prints as it goes and returns the figures."""
    with fresh_postgres("jobledger_long") as url:
        with psycopg.connect(url) as conn:
            autovacuum = str(conn.execute("SHOW autovacuum").fetchone()[0])  # type: ignore[index]
            pg = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        print(
            f"long run: {args.tasks:,} no-op tasks through one jobledger server on PostgreSQL {pg}"
            f" (autovacuum = {autovacuum}); processes {args.processes or 'default'}, {args.workers} workers"
            f" claiming {args.claim}, {args.producers} producers keeping {args.backlog:,} tasks queued ahead,"
            f" jobs of {TASKS_PER_JOB},"
            f" JOBLEDGER_FINISHED_GRACE={args.grace}, JOBLEDGER_ARCHIVE_AFTER={args.archive_after},"
            f" the clock vacuums every {VACUUM_EVERY_S:.0f} s",
            flush=True,
        )
        server = start_server(
            url,
            args.log or f"{tmp}/long-run.log",
            PYTHONPATH=str(ROOT),
            JOBLEDGER_WORKERS=str(args.processes or ""),  # empty: the server's default
            JOBLEDGER_FINISHED_GRACE=str(args.grace),
            JOBLEDGER_ARCHIVE_AFTER=str(args.archive_after),
        )
        try:
            outcome = asyncio.run(drive(server, url, args, autovacuum))
        finally:
            stop_server(server)
    print_summary(outcome)
    return outcome


def print_summary(o: Outcome) -> None:
    verdict = "meets" if o.ratio >= 0.8 else "MISSES"
    print(f"\nlong run: {o.tasks:,} tasks, autovacuum = {o.autovacuum}, processes {o.processes}")
    print(f"  first {o.windows[0].tasks:,} tasks: {o.first:,.0f} tasks/s")
    print(f"  last {o.windows[-1].tasks:,} tasks:  {o.last:,.0f} tasks/s")
    print(f"  last/first: {o.ratio:.2f} ({verdict} the bar of 0.80)")
    rates = [w.rate for w in o.windows]
    print(
        f"  windows: slowest {min(rates):,.0f}, fastest {max(rates):,.0f} tasks/s; {o.empty_claims} empty claims,"
        f" {Api.retries} calls retried on UNAVAILABLE, {o.reclaimed:,} tasks claimed again after a lost lease"
    )
    print(f"  backlog drained in {o.drain_s:.0f} s; every job ARCHIVED {o.archive_wait_s:.0f} s after that")
    print("  database size: " + ", ".join(f"{s.label} {s.db_bytes / MB:,.1f} MB" for s in o.snapshots))
    if len(o.snapshots) >= 2:
        growth = o.snapshots[-1].db_bytes - o.snapshots[-2].db_bytes
        print(f"  growth over one idle vacuum cycle after the archive: {growth / MB:+,.2f} MB")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200_000, help="tasks the windows measure (default 200,000)")
    parser.add_argument("--workers", type=int, default=4, help="worker coroutines, an HTTP connection each")
    parser.add_argument("--claim", type=int, default=200, help="claimTasks limit; one completeTasks per claim")
    parser.add_argument("--lease", type=int, default=60, help="leaseSeconds of each claim")
    parser.add_argument("--producers", type=int, default=2, help="createJob clients, an HTTP connection each")
    parser.add_argument("--backlog", type=int, default=20_000, help="tasks the producer keeps queued ahead")
    parser.add_argument("--grace", type=int, default=5, help="JOBLEDGER_FINISHED_GRACE of the server, seconds")
    parser.add_argument("--archive-after", type=int, default=30, help="JOBLEDGER_ARCHIVE_AFTER, seconds")
    parser.add_argument("--processes", type=int, default=0, help="JOBLEDGER_WORKERS (default: the server's own)")
    parser.add_argument(
        "--seconds-limit", type=float, default=7200, help="give up when processing takes longer (safety cap)"
    )
    parser.add_argument("--log", help="keep the server's log in this file (default: a temporary one)")
    args = parser.parse_args(argv)
    if (
        args.tasks < WINDOW
        or args.workers < 1
        or args.producers < 1
        or not 1 <= args.claim <= 500
        or args.backlog < TASKS_PER_JOB
    ):
        parser.error(
            f"--tasks at least {WINDOW:,}, --workers and --producers at least 1, --claim 1 to 500,"
            " --backlog at least 100"
        )
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jllongrun") as tmp:
        say(f"server log: {args.log or f'{tmp}/long-run.log (removed at the end)'}")
        run(args, tmp)
    say(f"\ntotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
