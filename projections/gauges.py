"""What operators watch, read from the read models and the store at the moment they ask:
work by queue and status, live and overdue leases, and how far the projections trail the log.

Every reading is one query (the projection's, two small ones), so it is the same whichever
instance or process answers, and a scrape costs the database little: the task counts cover
the jobs of the ACTIVE list only (their rows are found through the (phase, queue, status)
and (job, status, seq) indexes), never the archive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.job import JobStatus
from domain.task import TaskStatus
from projections.runner import ProjectionRunner
from projections.schema import JOBS, QUEUES, TASKS
from projections.stores import ReadStore

TASK_STATUSES = tuple(s.value for s in TaskStatus)
JOB_STATUSES = tuple(s.value for s in JobStatus)


@dataclass(frozen=True)
class Counted:
    """How many of something one queue holds in one status (or, for leases, of one kind)."""

    queue: str
    status: str
    count: int


@dataclass(frozen=True)
class ProjectionLag:
    head: int  # the store's newest position
    position: int  # the newest position the read models include
    lag_seconds: float  # how long the oldest event they lack has waited (0: none lacking)
    stalled: bool  # retrying an event it cannot apply
    set_aside: int  # events set aside and not acknowledged

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class Gauges:
    """The readings, over one read store."""

    def __init__(self, store: ReadStore) -> None:
        self.store = store

    async def tasks_by_queue(self) -> list[Counted]:
        """Tasks of the ACTIVE list's jobs, by queue code and task status; every status of
        every queue, so a count that drops to nothing reads 0 rather than vanishing."""
        rows = await self.store.fetch(
            f"SELECT q.code AS queue, t.status AS status, COUNT(t.id) AS n FROM {QUEUES} q"
            f" LEFT JOIN {JOBS} j ON j.queue_id = q.id AND j.phase = 'ACTIVE'"
            f" LEFT JOIN {TASKS} t ON t.job_id = j.id"
            " WHERE q.deleted = ? GROUP BY q.code, t.status",
            [False],
        )
        return _every_status(rows, TASK_STATUSES)

    async def jobs_by_queue(self) -> list[Counted]:
        """Jobs of the ACTIVE list by queue code and job status (every status of every queue)."""
        rows = await self.store.fetch(
            f"SELECT q.code AS queue, j.status AS status, COUNT(j.id) AS n FROM {QUEUES} q"
            f" LEFT JOIN {JOBS} j ON j.queue_id = q.id AND j.phase = 'ACTIVE'"
            " WHERE q.deleted = ? GROUP BY q.code, j.status",
            [False],
        )
        return _every_status(rows, JOB_STATUSES)

    async def leases_by_queue(self, now: datetime) -> list[Counted]:
        """Live leases by queue: `active` (every task a worker holds) and `overdue` (past
        their deadline, not yet ended by the clock: a clock that stopped makes them pile up).
        Queues without leases are left out (the caller reads their zeros off the task counts)."""
        rows = await self.store.fetch(
            "SELECT q.code AS queue, COUNT(*) AS active,"
            " SUM(CASE WHEN t.lease_expires < ? THEN 1 ELSE 0 END) AS overdue"
            f" FROM {TASKS} t JOIN {JOBS} j ON j.id = t.job_id JOIN {QUEUES} q ON q.id = j.queue_id"
            " WHERE t.lease_expires IS NOT NULL GROUP BY q.code",
            [now],
        )
        counted = []
        for row in rows:
            counted.append(Counted(row["queue"], "active", int(row["active"] or 0)))
            counted.append(Counted(row["queue"], "overdue", int(row["overdue"] or 0)))
        return counted


def projection_lag(runner: ProjectionRunner, now: datetime) -> ProjectionLag:
    """Where the read models stand against the store (blocking: call it in a thread). The
    lag in seconds is the age of the oldest event they have not applied, so it is 0 while
    they keep up, however long the store has been idle, and grows while they fall behind."""
    status = runner.status()
    waited = 0.0
    if status.lag > 0:
        oldest = runner.history.read(status.position, 1)
        if oldest:
            waited = max(0.0, (now - oldest[0].timestamp).total_seconds())
    return ProjectionLag(status.head, status.position, waited, status.stalled, status.set_aside)


def _every_status(rows: Sequence[dict[str, object]], statuses: Sequence[str]) -> list[Counted]:
    found: dict[tuple[str, str], int] = {}
    queues: list[str] = []
    for row in rows:
        queue = str(row["queue"])
        if queue not in queues:
            queues.append(queue)
        if row["status"] is not None:
            found[(queue, str(row["status"]))] = int(row["n"])  # type: ignore[call-overload]
    return [Counted(q, s, found.get((q, s), 0)) for q in sorted(queues) for s in statuses]
