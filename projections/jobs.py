"""The jobs read model: one row per job, listed by phase (ACTIVE, FINISHED, ARCHIVED),
with its queue's counts kept exact and its progress, size, speed and etr rolled up
from its tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.catalogue import DEFAULT_PRIORITY, JOB
from domain.history import Record
from domain.job import FINISHED
from projections.batch import Batch, Handler
from projections.schema import JOBS, QUEUES, TASKS, catalogue_row, column_names, insert, stored
from projections.stores import Tx, iter_chunks
from projections.timeleft import format_etr, job_time_left


def count(tx: Tx, queue_id: str, status: str, sign: int) -> None:
    """Add (sign=+1) or take away (-1) one job of `status` from its queue's counts."""
    tx.later(
        f"UPDATE {QUEUES} SET total_jobs = total_jobs + ?, successful_jobs = successful_jobs + ?,"
        " failed_jobs = failed_jobs + ?, active_jobs = active_jobs + ? WHERE id = ?",
        (
            sign,
            sign if status == "DONE" else 0,
            sign if status == "FAILED" else 0,
            sign if status not in FINISHED else 0,
            queue_id,
        ),
    )


def _queue_priority(tx: Tx, queue_id: str) -> int:
    row = tx.one(f"SELECT priority FROM {QUEUES} WHERE id = ?", (queue_id,))
    return int(row["priority"]) if row else DEFAULT_PRIORITY


def _job(tx: Tx, job_id: str) -> dict[str, object] | None:
    return tx.one(f"SELECT queue_id, status, own_priority FROM {JOBS} WHERE id = ?", (job_id,))


def prime(tx: Tx, records: list[Record], batch: Batch) -> None:
    """Read the queue and status of the batch's jobs that change status, if memory lacks
    them, in one query."""
    memory = batch.memory
    wanted = sorted({r.aggregate_id for r in records if r.type == "Job.StatusChanged"} - set(memory.jobs))
    for chunk in iter_chunks(wanted, 500):
        rows = tx.all(f"SELECT id, queue_id, status FROM {JOBS} WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
        for row in rows:
            memory.jobs[str(row["id"])] = (str(row["queue_id"]), str(row["status"]))


def _queue_and_status(tx: Tx, batch: Batch, job_id: str) -> tuple[str, str] | None:
    known = batch.memory.jobs.get(job_id)
    if known is None:
        row = _job(tx, job_id)
        if row is None:
            return None
        known = batch.memory.jobs[job_id] = (str(row["queue_id"]), str(row["status"]))
    return known


_INSERT = insert(
    JOBS, ("id", *column_names(JOB), "queue_id", "phase", "priority", "created", "modified", '"user"', "modifier")
)


def created(tx: Tx, r: Record, batch: Batch) -> None:
    d = r.data
    own = d["priority"]
    priority = own if own is not None else _queue_priority(tx, d["queue_id"])
    tx.later(
        _INSERT,
        [
            r.aggregate_id,
            *catalogue_row(JOB, d),
            d["queue_id"],
            "ACTIVE",
            priority,
            r.timestamp,
            r.timestamp,
            r.actor,
            r.actor,
        ],
    )
    count(tx, d["queue_id"], d["status"], +1)
    batch.memory.jobs[r.aggregate_id] = (d["queue_id"], d["status"])
    batch.jobs.add(r.aggregate_id)
    batch.queues.add(d["queue_id"])


def _touch(tx: Tx, r: Record, batch: Batch, values: dict[str, object]) -> None:
    assignments = "".join(f"{column} = ?, " for column in values)
    tx.later(
        f"UPDATE {JOBS} SET {assignments}modified = ?, modifier = ? WHERE id = ?",
        (*values.values(), r.timestamp, r.actor, r.aggregate_id),
    )
    batch.jobs.add(r.aggregate_id)


def status_changed(tx: Tx, r: Record, batch: Batch) -> None:
    job = _queue_and_status(tx, batch, r.aggregate_id)
    if job is None:
        return
    queue_id, previous = job
    status = r.data["status"]
    count(tx, queue_id, previous, -1)
    count(tx, queue_id, status, +1)
    batch.memory.jobs[r.aggregate_id] = (queue_id, status)
    values: dict[str, object] = {"status": status, "finished": r.timestamp if status in FINISHED else None}
    if status not in FINISHED:
        values["phase"] = "ACTIVE"
    _touch(tx, r, batch, values)
    batch.queues.add(queue_id)
    batch.dirty_jobs.add(r.aggregate_id)


# What a `Job.Updated` event may change: the updatable fields, each to its own column.
_UPDATABLE = {f.name: f for f in JOB.updatable}


def updated(tx: Tx, r: Record, batch: Batch) -> None:
    changes = r.data["changes"]
    fields = [(_UPDATABLE[name], value) for name, value in changes.items() if name in _UPDATABLE]
    values = {f.column: stored(f, value) for f, value in fields}
    if "priority" in changes:  # the one in force follows its own, or its queue's
        job = _job(tx, r.aggregate_id)
        own = changes["priority"]
        values["priority"] = own if own is not None else _queue_priority(tx, str(job["queue_id"]) if job else "")
    _touch(tx, r, batch, values)


def moved(tx: Tx, r: Record, batch: Batch) -> None:
    batch.memory.jobs.pop(r.aggregate_id, None)
    job = _job(tx, r.aggregate_id)
    if job is None:
        return
    target = r.data["to_queue_id"]
    count(tx, str(job["queue_id"]), str(job["status"]), -1)
    count(tx, target, str(job["status"]), +1)
    values: dict[str, object] = {"queue_id": target}
    if job["own_priority"] is None:
        values["priority"] = _queue_priority(tx, target)
    _touch(tx, r, batch, values)
    batch.queues.update({str(job["queue_id"]), target})


def deleted(tx: Tx, r: Record, batch: Batch) -> None:
    batch.memory.jobs.pop(r.aggregate_id, None)
    job = _job(tx, r.aggregate_id)
    if job is None:
        return
    count(tx, str(job["queue_id"]), str(job["status"]), -1)
    tx.execute(f"DELETE FROM {TASKS} WHERE job_id = ?", (r.aggregate_id,))
    tx.execute(f"DELETE FROM {JOBS} WHERE id = ?", (r.aggregate_id,))
    batch.jobs.add(r.aggregate_id)
    batch.queues.add(str(job["queue_id"]))
    batch.dirty_jobs.discard(r.aggregate_id)


def phase(name: str) -> Handler:
    def change_phase(tx: Tx, r: Record, batch: Batch) -> None:
        tx.execute(f"UPDATE {JOBS} SET phase = ? WHERE id = ?", (name, r.aggregate_id))
        batch.jobs.add(r.aggregate_id)

    return change_phase


def queue_priority_changed(tx: Tx, r: Record, batch: Batch) -> None:
    """Jobs without a priority of their own follow their queue's."""
    if "priority" in r.data["changes"]:
        tx.execute(
            f"UPDATE {JOBS} SET priority = ? WHERE queue_id = ? AND own_priority IS NULL",
            (r.data["changes"]["priority"], r.aggregate_id),
        )


def tasks_changed(tx: Tx, r: Record, batch: Batch) -> None:
    """Tasks added or changing status change the job too (its size, progress, modifier)."""
    _touch(tx, r, batch, {})
    batch.dirty_jobs.add(r.aggregate_id)


def roll_up(tx: Tx, job_ids: set[str]) -> None:
    """Recompute size, progress, speed, the bytes still to move, when the run started and etr
    of jobs whose tasks changed in this batch, from sums the database makes over their
    counted tasks (one row per job, not per task)."""
    for chunk in iter_chunks(sorted(job_ids), 500):
        marks = ", ".join("?" * len(chunk))
        for row in tx.all(
            f"SELECT j.id, j.status, COUNT(t.id) AS tasks, MIN(t.size) AS min_size, SUM(t.size) AS size,"
            " SUM(CASE WHEN t.size < 1 THEN 1 ELSE t.size END) AS weight,"
            " SUM(CASE WHEN t.size < 1 THEN 1 ELSE t.size END * t.progress) AS weighted_done,"
            " SUM(t.progress) AS done, SUM(t.speed) AS speed,"
            " SUM(CASE WHEN t.status <> 'DONE' THEN 1 ELSE 0 END) AS unfinished,"
            " SUM(CASE WHEN t.status = 'DONE' OR t.bytes_done >= t.size THEN 0"
            " ELSE t.size - t.bytes_done END) AS remaining,"
            f" MIN(CASE WHEN t.status IN ({RAN}) THEN t.started END) AS started"
            f" FROM {JOBS} j LEFT JOIN {TASKS} t ON t.job_id = j.id AND t.status <> 'EXCLUDED'"
            f" WHERE j.id IN ({marks}) GROUP BY j.id, j.status",
            chunk,
        ):
            size, progress, speed, etr = summarise(row)
            remaining = int(row["remaining"] or 0) if size >= 0 else -1
            tx.later(
                f"UPDATE {JOBS} SET size = ?, progress = ?, speed = ?, etr = ?, remaining = ?, started = ?"
                " WHERE id = ?",
                (size, progress, speed, etr, remaining, row["started"], row["id"]),
            )


# Statuses of a task whose `started` belongs to the job's current run (one queued again
# keeps the start of an attempt that is over).
RAN = "'BOOTING', 'EXECUTING', 'DONE', 'FAILED'"


def summarise(sums: dict[str, Any]) -> tuple[int, int, float, str | None]:
    """(size, progress 0..100 weighted by size, speed MB/s, etr) of a job from its counted
    tasks' sums.

    Every task weighs at least one byte, so an empty file still counts; while any size is
    unknown every task weighs the same. A job shows 100 only when it is DONE or all of its
    counted tasks are. The etr kept here is the one by bytes alone (it does not depend on
    when the events are applied); the API adds the one by progress rate
    (`projections.timeleft`)."""
    count, status = int(sums["tasks"]), str(sums["status"])
    known = count > 0 and int(sums["min_size"]) >= 0
    size = int(sums["size"]) if known else -1
    total, done = (int(sums["weight"]), int(sums["weighted_done"])) if known else (count, int(sums["done"] or 0))
    progress = done // total if total else 0
    if status == "DONE":
        progress = 100
    elif progress >= 100 and int(sums["unfinished"]):
        progress = 99
    speed = 0.0 if status in FINISHED or not count else round(float(sums["speed"]), 3)
    remaining = int(sums.get("remaining") or 0) if known else -1
    row = {"status": status, "progress": progress, "speed": speed, "remaining": remaining}
    etr = format_etr(job_time_left(row, datetime.now(UTC))) if remaining >= 0 else None
    return size, int(progress), speed, etr


HANDLERS: dict[str, Handler] = {
    "Job.Created": created,
    "Job.StatusChanged": status_changed,
    "Job.Updated": updated,
    "Job.Moved": moved,
    "Job.Deleted": deleted,
    "Job.Retired": phase("FINISHED"),
    "Job.Archived": phase("ARCHIVED"),
    "Job.TasksAdded": tasks_changed,
    "Job.TaskStatusChanged": tasks_changed,
    "Job.TaskStatusesChanged": tasks_changed,
    "Queue.Updated": queue_priority_changed,
}
