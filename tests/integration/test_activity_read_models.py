"""The activity read models (jl_workers, jl_throughput: projections/workers.py) on the
seeded realistic workload of test_projections, on both stores.

Each queue's newest throughput row must say as many QUEUED tasks as the tasks read model
holds for it (itself checked against a pure fold of the log), through moves, deletions,
retries and status changes; the sums of DONE and FAILED, and each worker's claims, must
equal what a plain reading of the log counts; and the rows must not depend on how the
log was cut into batches (a rebuild, batches of 1 or 7 events).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from domain.history import Record
from projections.schema import JOBS, TASKS, THROUGHPUT, WORKERS
from projections.stores import ReadStore
from tests.integration.test_projections import all_records, open_runner, realistic_workload  # noqa: F401


def queued_by_queue(store: ReadStore) -> dict[str, int]:
    rows = store.read(
        f"SELECT j.queue_id, COUNT(*) AS n FROM {TASKS} t JOIN {JOBS} j ON j.id = t.job_id"
        " WHERE t.status = 'QUEUED' GROUP BY j.queue_id"
    )
    return {r["queue_id"]: int(r["n"]) for r in rows if int(r["n"])}


def newest_queued(store: ReadStore) -> dict[str, int]:
    rows = store.read(
        f"SELECT h.queue_id, h.queued FROM {THROUGHPUT} h"
        f" WHERE h.minute = (SELECT MAX(m.minute) FROM {THROUGHPUT} m WHERE m.queue_id = h.queue_id)"
    )
    return {r["queue_id"]: int(r["queued"]) for r in rows if int(r["queued"])}


def counted_from_the_log(records: list[Record]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """(tasks that became DONE, tasks that became FAILED, claims per worker), of jobs that
    were not deleted when it happened, read off the events one by one."""
    implied = {"Task.Claimed": "BOOTING", "Task.Completed": "DONE"}
    status: dict[str, str | None] = {}
    job_of: dict[str, str] = {}
    deleted: set[str] = set()
    done: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    claims: Counter[str] = Counter()
    for r in records:
        if r.type == "Job.Deleted":
            deleted.add(r.aggregate_id)
        if not r.type.startswith("Task."):
            continue
        if r.type == "Task.Created":
            job_of[r.aggregate_id] = r.data["job_id"]
        if job_of.get(r.aggregate_id) in deleted:
            continue
        if r.type == "Task.Claimed":
            claims[r.data["worker"]] += 1
        new: Any = implied.get(r.type, r.data.get("status"))
        if new is None or new == status.get(r.aggregate_id):
            continue
        status[r.aggregate_id] = new
        if new in ("DONE", "FAILED"):
            (done if new == "DONE" else failed)[job_of[r.aggregate_id]] += 1
    return done, failed, claims


def activity(store: ReadStore) -> dict[str, list[dict[str, Any]]]:
    return {
        WORKERS: store.read(f"SELECT * FROM {WORKERS} ORDER BY worker, queue_id"),
        THROUGHPUT: store.read(f"SELECT * FROM {THROUGHPUT} ORDER BY queue_id, minute"),
    }


def test_queue_depth_done_failed_and_claims_follow_the_log(ledger, open_runner):  # noqa: F811
    realistic_workload(ledger)
    records = all_records(ledger)
    runner = open_runner()
    runner.catch_up()
    store = runner.store

    expected_depth = queued_by_queue(store)
    assert sum(expected_depth.values()) > 0, "the workload leaves queued tasks"
    assert any(r.type == "Job.Moved" for r in records) and any(r.type == "Job.Deleted" for r in records)
    assert newest_queued(store) == expected_depth

    done, failed, claims = counted_from_the_log(records)
    totals = store.read(f"SELECT SUM(done) AS done, SUM(failed) AS failed FROM {THROUGHPUT}")[0]
    assert int(totals["done"]) == sum(done.values()) > 0
    assert int(totals["failed"]) == sum(failed.values()) > 0
    per_worker = store.read(f"SELECT worker, SUM(claimed) AS claimed FROM {WORKERS} GROUP BY worker")
    assert {r["worker"]: int(r["claimed"]) for r in per_worker} == dict(claims)
    assert set(claims) == {"worker-1", "worker-2"}


def test_the_rows_do_not_depend_on_how_the_log_is_cut_into_batches(ledger, open_runner):  # noqa: F811
    realistic_workload(ledger)
    whole = open_runner()
    whole.catch_up()
    expected = activity(whole.store)
    assert expected[WORKERS] and expected[THROUGHPUT]
    whole.rebuild()
    assert activity(whole.store) == expected
    for size in (1, 7):
        runner = open_runner(batch_size=size)
        runner.rebuild()
        assert activity(runner.store) == expected, f"batches of {size}"
