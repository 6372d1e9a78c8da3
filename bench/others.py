"""Procrastinate and PgQueuer, for bench/throughput.py to compare with: each in a virtual
environment of its own (they never go into the project's dependencies), run as a
subprocess with a script of its own, in a fresh PostgreSQL database.

The script runs under the others' python, which has neither the project nor rich: its
progress is a plain line every 10 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.databases import fresh_postgres

OTHERS_PACKAGES = ["procrastinate", "pgqueuer", "psycopg[binary]", "asyncpg"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


OTHERS_SCRIPT = r'''
"""Run by bench/throughput.py with the others' venv: one library, one fresh database.
    python others.py procrastinate|pgqueuer DATABASE_URL TASKS WORKERS BATCH
Prints one JSON line on stdout: submit and process seconds, jobs done, the library's version."""
import asyncio, json, logging, sys, time
from datetime import timedelta
from importlib.metadata import version

library, url, tasks, workers, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
CHUNK = 1000  # jobs per batch enqueue
done = 0
logging.basicConfig(level=logging.WARNING)
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)  # "App is instantiated in __main__"


def say(message):
    print(message, file=sys.stderr, flush=True)


async def progress(label):
    started = time.perf_counter()
    while True:
        await asyncio.sleep(10)
        elapsed = time.perf_counter() - started
        say(f"  {label}: {done:,}/{tasks:,}  {done / elapsed:,.0f}/s  {elapsed:.0f} s")


async def procrastinate_run():
    global done
    import procrastinate
    import psycopg

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", queue="bench")
    async def noop(i):
        global done
        done += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        started = time.perf_counter()
        for first in range(0, tasks, CHUNK):
            await noop.batch_defer_async(*({"i": i} for i in range(first, min(tasks, first + CHUNK))))
        submit = time.perf_counter() - started
        # Not timed. The server runs with autovacuum = off, so the new procrastinate_jobs table
        # never gets statistics. The planner then guesses 1 row and runs procrastinate_fetch_job_v2
        # (sql/schema.sql) as a bitmap scan + sort of every 'todo' job: 3.7 ms a fetch at 10,000
        # jobs, getting faster as the queue drains. With statistics it reads the first entry of
        # procrastinate_jobs_priority_idx_v1 (0.04 ms). ANALYZE does what autovacuum would do
        # after these inserts on a default server.
        await app.connector.execute_query_async("ANALYZE procrastinate_jobs")
        shower = asyncio.create_task(progress("process (jobs)"))
        started = time.perf_counter()
        await app.run_worker_async(
            queues=["bench"], concurrency=workers, wait=False, listen_notify=False, install_signal_handlers=False
        )
        process = time.perf_counter() - started
        shower.cancel()
    with psycopg.connect(url) as conn:
        statuses = dict(conn.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1").fetchall())
    return submit, process, statuses.get("succeeded", 0), statuses


async def pgqueuer_run():
    global done
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    conn = await asyncpg.connect(url)
    queries = Queries.from_asyncpg_connection(conn)
    await queries.install()
    started = time.perf_counter()
    for first in range(0, tasks, CHUNK):
        n = min(tasks, first + CHUNK) - first
        await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
    submit = time.perf_counter() - started

    managers, connections = [], []
    for _ in range(workers):
        connection = await asyncpg.connect(url)
        connections.append(connection)
        qm = QueueManager(Queries.from_asyncpg_connection(connection))

        @qm.entrypoint("noop")
        async def noop(job):
            global done
            done += 1

        managers.append(qm)
    shower = asyncio.create_task(progress("process (jobs)"))
    started = time.perf_counter()
    await asyncio.gather(*(
        qm.run(batch_size=batch, mode=QueueExecutionMode.drain, log_aggregation_interval=timedelta(0))
        for qm in managers
    ))
    process = time.perf_counter() - started
    shower.cancel()
    left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    logged = dict(await conn.fetch("SELECT status::text, count(*) FROM pgqueuer_log GROUP BY 1"))
    for connection in [conn, *connections]:
        await connection.close()
    return submit, process, tasks - left, {"left in queue": left, "log": logged}


run = {"procrastinate": procrastinate_run, "pgqueuer": pgqueuer_run}[library]
submit, process, finished, detail = asyncio.run(run())
print(json.dumps({"submit": submit, "process": process, "done": finished, "ran": done, "detail": detail,
                  "version": version(library)}))
'''


def others_python(venv: Path, profile: bool) -> str:
    """The others' venv python; created, and the libraries installed, when missing."""
    python = venv / "bin" / "python"
    wanted = [*OTHERS_PACKAGES, *(["py-spy"] if profile else [])]
    check = "import procrastinate, pgqueuer, psycopg, asyncpg"
    ready = python.exists() and subprocess.run([python, "-c", check], capture_output=True).returncode == 0
    if ready and (not profile or (venv / "bin" / "py-spy").exists()):
        return str(python)
    if not python.exists():
        say(f"creating {venv} (python3 -m venv) ...")
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        (venv / ".gitignore").write_text("*\n")  # keep the repository's status clean
    say(f"installing {' '.join(wanted)} into {venv} ...")
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted], check=True)
    return str(python)


def run_other(python: str, script: str, library: str, tasks: int, workers: int, batch: int) -> dict[str, Any]:
    """One run of `library` (procrastinate or pgqueuer) on `tasks` no-op jobs in a fresh
    database: its answer (submit and process seconds, jobs done, its version), checked."""
    with fresh_postgres(f"{library}_bench") as url:
        done = subprocess.run(
            [python, script, library, url, str(tasks), str(workers), str(batch)],
            stdout=subprocess.PIPE,
            text=True,
            timeout=3600,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{library} run failed with exit code {done.returncode}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if answer["done"] != tasks or answer["ran"] != tasks:
        raise RuntimeError(f"{library}: {answer['done']} jobs finished, {answer['ran']} ran, of {tasks}: {answer}")
    return answer
