"""The tasks read model: every task of every job that still exists, in job order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.catalogue import TASK
from domain.history import Record
from domain.task import bytes_of, location_path
from projections.batch import UNKNOWN, Batch, Handler, as_json
from projections.schema import TASKS, catalogue_row, column_names, insert, stored
from projections.stores import Tx, iter_chunks

_RESTARTED_FROM = {"FAILED", "DONE", "EXCLUDED"}


_INSERT = insert(
    TASKS,
    ("id", *column_names(TASK), "job_id", "seq", "uri", "source_path", "destination_path", "created", "modified"),
)


def created(tx: Tx, r: Record, batch: Batch) -> None:
    d = r.data
    tx.later(
        _INSERT,
        [
            r.aggregate_id,
            *catalogue_row(TASK, d),
            d["job_id"],
            int(d["uri"]),
            d["uri"],
            location_path(d["source"]),
            location_path(d["destination"]),
            r.timestamp,
            r.timestamp,
        ],
    )
    batch.memory.learn(r.aggregate_id, job_id=d["job_id"], started=None)
    _changed(r, batch, d["job_id"])


def _changed(r: Record, batch: Batch, job_id: str | None = None) -> None:
    batch.tasks.add(r.aggregate_id)
    if job_id:
        batch.dirty_jobs.add(job_id)
        batch.jobs.add(job_id)


def _job_of(tx: Tx, batch: Batch, task_id: str) -> str | None:
    known = batch.memory.job_of.get(task_id)
    if known is not None:
        return known
    return _facts(tx, batch, task_id)[0]


def prime(tx: Tx, records: list[Record], batch: Batch) -> None:
    """Read what memory lacks of the batch's tasks in one query, not one per event (after
    a restart, or once another runner applied events)."""
    memory = batch.memory
    wanted = sorted(
        {
            r.aggregate_id
            for r in records
            if r.type.startswith("Task.")
            and r.type != "Task.Created"
            and (r.aggregate_id not in memory.job_of or r.aggregate_id not in memory.started)
        }
    )
    for chunk in iter_chunks(wanted, 500):
        rows = tx.all(f"SELECT id, job_id, started FROM {TASKS} WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
        for row in rows:
            memory.learn(str(row["id"]), job_id=str(row["job_id"]), started=row["started"])


def _facts(tx: Tx, batch: Batch, task_id: str) -> tuple[str | None, Any]:
    """(job id, when its current attempt started) of a task: from memory, else its row."""
    job_id, started = batch.memory.job_of.get(task_id), batch.memory.started.get(task_id, UNKNOWN)
    if job_id is not None and started is not UNKNOWN:
        return job_id, started
    row = tx.one(f"SELECT job_id, started FROM {TASKS} WHERE id = ?", (task_id,))
    if row is None:
        return None, None
    batch.memory.learn(task_id, job_id=str(row["job_id"]), started=row["started"])
    return str(row["job_id"]), row["started"]


def status_changed(tx: Tx, r: Record, batch: Batch) -> None:
    status, previous = r.data["status"], r.data["previous"]
    values: dict[str, object] = {"status": status, "modified": r.timestamp}
    values["finished"] = r.timestamp if status in ("DONE", "FAILED") else None
    if status == "DONE":
        values["progress"] = 100
    if status in ("BOOTING", "EXECUTING") and previous not in ("BOOTING", "EXECUTING"):
        values["started"] = r.timestamp
    if status == "QUEUED" and previous in _RESTARTED_FROM:
        values.update(attempts=0, error=None, progress=0, bytes_done=0)
    if status not in ("BOOTING", "EXECUTING"):
        values.update(speed=0.0, lease_id=None, lease_expires=None)
    values["retry_at"] = None  # held, released or queued by hand: no wait left
    job_id, started = _facts(tx, batch, r.aggregate_id)
    if status == "DONE" and started is not None:
        values["time"] = int((r.timestamp - started).total_seconds() * 1000)
    _update(tx, r, values)
    if "started" in values and job_id is not None:
        batch.memory.learn(r.aggregate_id, started=r.timestamp)
    _changed(r, batch, job_id)


def retried(tx: Tx, r: Record, batch: Batch) -> None:
    values = {
        "status": r.data["status"],
        "attempts": 0,
        "error": None,
        "finished": None,
        "progress": 0,
        "bytes_done": 0,
        "speed": 0.0,
        "retry_at": None,
        "modified": r.timestamp,
    }
    _update(tx, r, values)
    _changed(r, batch, _job_of(tx, batch, r.aggregate_id))


# What a `Task.Updated` event may change: the updatable fields, each to its own column.
_UPDATABLE = {f.name: f for f in TASK.updatable}


def updated(tx: Tx, r: Record, batch: Batch) -> None:
    fields = [(_UPDATABLE[name], value) for name, value in r.data["changes"].items() if name in _UPDATABLE]
    values: dict[str, object] = {f.column: stored(f, value) for f, value in fields}
    values["modified"] = r.timestamp
    _update(tx, r, values)
    _changed(r, batch)


def _update(tx: Tx, r: Record, values: dict[str, object]) -> None:
    assignments = ", ".join(f"{column} = ?" for column in values)
    tx.later(f"UPDATE {TASKS} SET {assignments} WHERE id = ?", (*values.values(), r.aggregate_id))


def claimed(tx: Tx, r: Record, batch: Batch) -> None:
    d = r.data
    job_id = _job_of(tx, batch, r.aggregate_id)
    tx.later(
        f"UPDATE {TASKS} SET status = 'BOOTING', attempts = attempts + 1, worker = ?, lease_id = ?,"
        " lease_expires = ?, started = ?, finished = NULL, result = NULL, error = NULL, progress = 0,"
        " bytes_done = 0, speed = 0, retry_at = NULL, modified = ? WHERE id = ?",
        (d["worker"], d["lease_id"], datetime.fromisoformat(d["expires"]), r.timestamp, r.timestamp, r.aggregate_id),
    )
    if job_id is not None:
        batch.memory.learn(r.aggregate_id, started=r.timestamp)
    _changed(r, batch, job_id)


def lease_renewed(tx: Tx, r: Record, batch: Batch) -> None:
    d = r.data
    values: dict[str, object] = {"lease_expires": datetime.fromisoformat(d["expires"]), "modified": r.timestamp}
    for name in ("progress", "bytes_done", "speed", "size"):  # size: measured by the worker (newer events)
        if d.get(name) is not None:
            values[name] = d[name]
    _update(tx, r, values)
    _changed(r, batch, _job_of(tx, batch, r.aggregate_id))


def completed(tx: Tx, r: Record, batch: Batch) -> None:
    job_id, started = _facts(tx, batch, r.aggregate_id)
    values: dict[str, object] = {
        "status": "DONE",
        "progress": 100,
        "result": as_json(r.data["result"]),
        "error": None,
        "finished": r.timestamp,
        "lease_id": None,
        "lease_expires": None,
        "speed": 0.0,
        "retry_at": None,
        "modified": r.timestamp,
    }
    if started is not None:
        values["time"] = int((r.timestamp - started).total_seconds() * 1000)
    # A task whose size was unknown takes the one its completion learnt: the event's own
    # `size`, or, in events recorded before completions carried one, its result's `bytes`.
    # A done task of known size moved all of its bytes.
    learnt = r.data.get("size")
    if learnt is None:
        learnt = bytes_of(r.data["result"])
    if learnt is None:
        sizes, params = "bytes_done = CASE WHEN size >= 0 THEN size ELSE bytes_done END", []
    else:
        sizes = "size = CASE WHEN size < 0 THEN ? ELSE size END, bytes_done = CASE WHEN size < 0 THEN ? ELSE size END"
        params = [learnt, learnt]
    assignments = "".join(f"{column} = ?, " for column in values)
    tx.later(f"UPDATE {TASKS} SET {assignments}{sizes} WHERE id = ?", (*values.values(), *params, r.aggregate_id))
    _changed(r, batch, job_id)


def attempt_ended(tx: Tx, r: Record, batch: Batch) -> None:
    d = r.data
    values: dict[str, object] = {
        "status": d["status"],
        "finished": r.timestamp if d["status"] == "FAILED" else None,
        "lease_id": None,
        "lease_expires": None,
        "speed": 0.0,
        # When it may be claimed again, as the command drew it (absent from older events: at once).
        "retry_at": datetime.fromisoformat(d["retry_at"]) if d.get("retry_at") else None,
        "modified": r.timestamp,
    }
    if d.get("error") is not None:
        values["error"] = d["error"]
    _update(tx, r, values)
    if r.type == "Task.LeaseReleased":
        tx.later(f"UPDATE {TASKS} SET attempts = attempts - 1 WHERE id = ?", (r.aggregate_id,))
    _changed(r, batch, _job_of(tx, batch, r.aggregate_id))


_STATUS_EVENTS = ("Pending", "Queued", "Booting", "Executing", "Failed", "PutOnHold", "Excluded", "Done")
HANDLERS: dict[str, Handler] = {
    "Task.Created": created,
    "Task.Retried": retried,
    "Task.Updated": updated,
    **{f"Task.{name}": status_changed for name in _STATUS_EVENTS},
    "Task.Claimed": claimed,
    "Task.LeaseRenewed": lease_renewed,
    "Task.Completed": completed,
    "Task.AttemptFailed": attempt_ended,
    "Task.LeaseExpired": attempt_ended,
    "Task.LeaseReleased": attempt_ended,
}
