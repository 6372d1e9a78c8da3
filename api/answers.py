"""A mutation's answer when the read models lag behind its committed write.

A committed write is a success, whatever the read side is doing: when the read models
do not show it within the wait (stalled on an event, far behind, or an event of it set
aside), the answer is built from the aggregates the command saved instead, shaped as the
read models' rows are. What only the read models derive is approximate there: progress
counts finished tasks, speed and time left are unknown, and a queue's job counts are
its open and running jobs alone. The answer says so in `extensions.readModelsBehind`.
"""

from __future__ import annotations

from typing import Any

from domain.catalogue import JOB, QUEUE, TASK, Catalogue
from domain.job import Job
from domain.ledger import Ledger
from domain.queue import Queue
from domain.task import Task, TaskStatus
from domain.unit_of_work import UnitOfWork
from projections.schema import stored
from projections.stores import Row

_COUNTED_OUT = {TaskStatus.EXCLUDED}


def _columns(catalogue: Catalogue, aggregate: Any) -> dict[str, Any]:
    return {f.column: stored(f, getattr(aggregate, f.name, f.default)) for f in catalogue}


def _times(aggregate: Any) -> dict[str, Any]:
    return {"created": aggregate.created_on, "modified": aggregate.modified_on}


def queue_rows(ledger: Ledger, ids: list[str]) -> dict[str, Row]:
    uow = UnitOfWork(ledger.identity.runner.loader)
    found: dict[str, Row] = {}
    for queue_id in ids:
        queue = uow.get(Queue, queue_id, allow_deleted=True)
        found[queue_id] = {
            "id": str(queue.id),
            **_columns(QUEUE, queue),
            "is_default": bool(queue.default),
            "state": str(queue.state),
            "uri": queue.uri,
            "parent_id": queue.parent_id,
            "owner": queue.group,
            "total_jobs": queue.open_count,
            "successful_jobs": 0,
            "failed_jobs": 0,
            "active_jobs": queue.open_count,
            **_times(queue),
            "user": None,
            "modifier": None,
            "deleted": bool(queue.deleted),
        }
    return found


def job_rows(ledger: Ledger, ids: list[str]) -> dict[str, Row]:
    uow = UnitOfWork(ledger.identity.runner.loader)
    found: dict[str, Row] = {}
    for job_id in ids:
        job = uow.get(Job, job_id, allow_deleted=True)
        queue = uow.get(Queue, job.queue_id, allow_deleted=True)
        counted = [t for t in job.tasks.values() if t.get("status") not in _COUNTED_OUT]
        done = sum(1 for t in counted if t.get("status") == TaskStatus.DONE)
        sizes = [int(t.get("size") or -1) for t in counted]
        found[job_id] = {
            "id": str(job.id),
            **_columns(JOB, job),
            "queue_id": job.queue_id,
            "phase": str(job.phase),
            "priority": job.priority if job.priority is not None else queue.priority,
            "progress": round(100 * done / len(counted)) if counted else 0,
            "size": sum(sizes) if sizes and min(sizes) >= 0 else -1,
            "speed": 0.0,
            "etr": None,
            **_times(job),
            "finished": job.finished,
            "user": job.user,
            "modifier": None,
        }
    return found


def task_rows(ledger: Ledger, ids: list[str]) -> dict[str, Row]:
    uow = UnitOfWork(ledger.identity.runner.loader)
    found: dict[str, Row] = {}
    for task_id in ids:
        task = uow.get(Task, task_id)
        found[task_id] = {
            "id": str(task.id),
            **_columns(TASK, task),
            "job_id": task.job_id,
            "uri": task.uri,
            "progress": task.progress,
            "attempts": task.attempts,
            "worker": getattr(task, "worker", None),
            "error": getattr(task, "error", None),
            "result": stored(TASK["metadata"], getattr(task, "result", None)),
            "lease_id": getattr(task, "lease_id", None),
            "lease_expires": getattr(task, "lease_expires", None),
            **_times(task),
            "finished": getattr(task, "finished", None),
            "time": None,
        }
    return found
