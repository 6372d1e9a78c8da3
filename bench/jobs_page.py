"""The query part of bench/projections.py (PostgreSQL only): the latency of a filtered
jobs page on a large jobs table.

`--query-jobs` rows are bulk-loaded into jl_jobs (in a schema of their own), then
`ReadModels.jobs(where="status=running AND priority>=500", first=50)` is timed, unsorted
and sorted by created (newest first), after ANALYZE and again after VACUUM, with the
EXPLAIN (ANALYZE, BUFFERS) of each statement such a call sends.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import psycopg

from domain.ledger import Ledger
from persistence import parse_database_url
from projections.query import ReadModels, Sort
from projections.runner import ProjectionRunner
from projections.stores import ReadStore, Row, open_read_store

WHERE = "status=running AND priority>=500"
QUERY_SCHEMA = "bench_query"
QUERY_QUEUES = 8

Results = dict[str, float]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    """The `q` quantile of `values` (nearest rank); NaN for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


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
