"""A mutation's answer when the read models lag behind its committed write.

A committed write is a success, whatever the read side is doing: when the read models
do not show it within the wait (stalled on an event, far behind, or an event of it set
aside), the answer is built from the aggregates the command saved instead, shaped as the
read models' rows are. What only the read models derive is approximate there: progress
counts finished tasks, speed and time left are unknown, and a queue's job counts are
its open and running jobs alone. The answer says so in `extensions.readModelsBehind`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from domain.catalogue import JOB, QUEUE, TASK, Catalogue
from domain.job import Job
from domain.ledger import Ledger
from domain.queue import Queue
from domain.task import Task, TaskStatus
from domain.unit_of_work import UnitOfWork
from projections.query import Page
from projections.schema import stored
from projections.stores import Row

_COUNTED_OUT = {TaskStatus.EXCLUDED}
T = TypeVar("T")


def _columns(catalogue: Catalogue, aggregate: Any) -> dict[str, Any]:
    return {f.column: stored(f, getattr(aggregate, f.name, f.default)) for f in catalogue}


def _times(aggregate: Any) -> dict[str, Any]:
    return {"created": aggregate.created_on, "modified": aggregate.modified_on}


class _Saved:
    """The aggregates the command saved, else the store's (which an outage may refuse)."""

    def __init__(self, ledger: Ledger, saved: Mapping[str, Any]) -> None:
        self.uow = UnitOfWork(ledger.identity.runner.loader)
        self.saved = saved

    def get(self, kind: type[T], aggregate_id: str) -> T:
        found = self.saved.get(str(aggregate_id))
        if isinstance(found, kind):
            return found
        return self.uow.get(kind, aggregate_id, allow_deleted=True)  # type: ignore[no-any-return]


def queue_rows(ledger: Ledger, ids: list[str], saved: Mapping[str, Any]) -> dict[str, Row]:
    uow = _Saved(ledger, saved)
    found: dict[str, Row] = {}
    for queue_id in ids:
        queue = uow.get(Queue, queue_id)
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


def job_rows(ledger: Ledger, ids: list[str], saved: Mapping[str, Any]) -> dict[str, Row]:
    uow = _Saved(ledger, saved)
    found: dict[str, Row] = {}
    for job_id in ids:
        job = uow.get(Job, job_id)
        queue = uow.get(Queue, job.queue_id)
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


def task_rows(ledger: Ledger, ids: list[str], saved: Mapping[str, Any]) -> dict[str, Row]:
    uow = _Saved(ledger, saved)
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
            "retry_at": getattr(task, "retry_at", None),
            **_times(task),
            "finished": getattr(task, "finished", None),
            "time": None,
        }
    return found


def saved_loaders(ledger: Ledger, saved: Mapping[str, Any], read: Any, call: Any) -> Any:
    """DataLoaders for the nested fields of an answer built from the aggregates: what the
    command saved comes from them (a new job's queue and tasks), anything else from the
    read models as usual."""
    from api.context import Loaders, new_loaders

    usual = new_loaders(read)

    def of(kind: type[Any]) -> list[str]:
        return [i for i, a in saved.items() if isinstance(a, kind)]

    async def queues(ids: list[str]) -> list[Row | None]:
        mine = [i for i in ids if i in of(Queue)]
        rows = await call(queue_rows, ledger, mine, saved) if mine else {}
        return [rows[i] if i in rows else await usual.queue.load(i) for i in ids]

    async def jobs(ids: list[str]) -> list[Row | None]:
        mine = [i for i in ids if i in of(Job)]
        rows = await call(job_rows, ledger, mine, saved) if mine else {}
        return [rows[i] if i in rows else await usual.job.load(i) for i in ids]

    async def tasks(keys: list[Any]) -> list[Page]:
        rows = await call(task_rows, ledger, of(Task), saved)
        pages = []
        for key in keys:
            job_id, statuses, first, _after = key
            mine = sorted((r for r in rows.values() if r["job_id"] == job_id), key=lambda r: r["uri"])
            if not mine:
                pages.append(await usual.tasks.load(key))
                continue
            wanted = [r for r in mine if not statuses or r["status"] in statuses]
            pages.append(Page(wanted[:first], len(wanted) > first, None, len(wanted)))
        return pages

    return Loaders(read, queue=DataLoader(queues), job=DataLoader(jobs), tasks=DataLoader(tasks))
