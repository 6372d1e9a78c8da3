"""Reading aggregates back in tests."""

from __future__ import annotations

from uuid import UUID

from domain.history import History
from domain.job import Job
from domain.ledger import Ledger
from domain.queue import Queue
from domain.task import Task


def queue(ledger: Ledger, queue_id: str) -> Queue:
    found = ledger.repository.get(UUID(queue_id))
    assert isinstance(found, Queue)
    return found


def job(ledger: Ledger, job_id: str) -> Job:
    found = ledger.repository.get(UUID(job_id))
    assert isinstance(found, Job)
    return found


def task(ledger: Ledger, task_id: str) -> Task:
    found = ledger.repository.get(UUID(task_id))
    assert isinstance(found, Task)
    return found


def default_queue(ledger: Ledger) -> Queue:
    registry = ledger.registry()
    assert registry is not None and registry.default_queue_id
    return queue(ledger, registry.default_queue_id)


def types_of(ledger: Ledger, aggregate_id: str) -> list[str]:
    return [r.type for r in History(ledger).of_aggregate(aggregate_id)]
