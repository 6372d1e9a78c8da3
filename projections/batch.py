"""What one batch of applied events touched: for the job roll-ups and the announcement."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain.history import Record
from projections.stores import Tx

MAX_ANNOUNCED_IDS = 100
MAX_PAYLOAD_BYTES = 7800  # PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more


UNKNOWN: Any = object()


class RunnerMemory:
    """What the handlers would otherwise read back for every event: the job of a task
    (which never changes), when its current attempt started, and the queue and status of
    a job.

    It mirrors the tasks table only while one runner applies the log without a gap, so
    the runner forgets it whenever another runner applied events in between, or a batch
    failed. A task it does not know is read from the table."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self.job_of: dict[str, str] = {}
        self.started: dict[str, Any] = {}
        self.jobs: dict[str, tuple[str, str]] = {}  # job id -> (queue id, status)

    def forget(self) -> None:
        self.job_of.clear()
        self.started.clear()
        self.jobs.clear()

    def learn(self, task_id: str, job_id: str | None = None, started: Any = UNKNOWN) -> None:
        if max(len(self.job_of), len(self.started), len(self.jobs)) > self.LIMIT:
            self.forget()
        if job_id is not None:
            self.job_of[task_id] = job_id
        if started is not UNKNOWN:
            self.started[task_id] = started


@dataclass
class Batch:
    first: int = 0
    last: int = 0
    jobs: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    dirty_jobs: set[str] = field(default_factory=set)
    memory: RunnerMemory = field(default_factory=RunnerMemory)

    def saw(self, record: Record) -> None:
        self.first = self.first or record.position
        self.last = record.position
        self.types.add(record.type)

    def payload(self) -> str:
        """The announcement: positions, and the ids that changed. Past the size NOTIFY
        allows, ids are left out and `more` says so (listeners then read the log)."""
        cap = MAX_ANNOUNCED_IDS
        while True:
            lists = {
                name: sorted(ids)[:cap]
                for name, ids in (("jobs", self.jobs), ("queues", self.queues), ("tasks", self.tasks))
            }
            more = any(len(ids) > cap for ids in (self.jobs, self.queues, self.tasks))
            text = json.dumps(
                {"first": self.first, "position": self.last, **lists, "types": sorted(self.types), "more": more},
                separators=(",", ":"),
            )
            if len(text.encode()) <= MAX_PAYLOAD_BYTES or cap == 0:
                return text
            cap //= 2


Handler = Callable[[Tx, Record, Batch], None]


def as_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)
