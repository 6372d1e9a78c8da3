"""The Job aggregate: a transfer or compute job in a queue, and the tally of its tasks."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import ConflictError, InvalidTransitionError
from domain.task import IN_FLIGHT, TaskStatus, stored_key


class JobPhase(StrEnum):
    """Which list a job is in: ACTIVE until it has been finished for a grace period,
    then FINISHED, then ARCHIVED. Moves are events the clock records."""

    ACTIVE = "ACTIVE"
    FINISHED = "FINISHED"
    ARCHIVED = "ARCHIVED"


class JobStatus(StrEnum):
    INIT = "INIT"
    PENDING = "PENDING"  # waiting for a destination
    WAITING = "WAITING"  # ready, waiting for resources
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    DONE = "DONE"


J = JobStatus
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    J.INIT: frozenset({J.PENDING, J.WAITING, J.PAUSED, J.ABORTED, J.DONE}),
    J.PENDING: frozenset({J.WAITING, J.PAUSED, J.ABORTED, J.DONE}),
    J.WAITING: frozenset({J.PENDING, J.RUNNING, J.PAUSED, J.ABORTED, J.DONE}),
    J.RUNNING: frozenset({J.WAITING, J.PAUSED, J.FAILED, J.ABORTED, J.DONE}),
    J.PAUSED: frozenset({J.PENDING, J.WAITING, J.ABORTED, J.DONE}),
    J.FAILED: frozenset({J.PENDING, J.WAITING, J.ABORTED}),  # retry, resend, give up
    J.ABORTED: frozenset({J.PENDING, J.WAITING}),  # resume, resend
    J.DONE: frozenset({J.PENDING, J.WAITING}),  # run again, resend
}
USER_SETTABLE = frozenset({J.PENDING, J.WAITING, J.PAUSED, J.ABORTED, J.DONE})
CREATABLE = frozenset({J.INIT, J.PENDING, J.WAITING, J.PAUSED})
FINISHED = frozenset({J.DONE, J.FAILED, J.ABORTED})
DEFAULT_MAX_ATTEMPTS = 3


class Job(LedgerAggregate):
    """A job in a queue. It keeps a tally of its tasks so that its own status can follow them."""

    # A snapshot taken before jobs had a retry policy lacks these: its queue's.
    retry_delay: float | None = None
    retry_backoff: float | None = None
    retry_max_delay: float | None = None
    retry_jitter: float | None = None

    @event("Created")
    def __init__(
        self,
        code: str,
        queue_id: str,
        status: str,
        priority: int | None,
        source: str | None,
        destination: str | None,
        metadata: dict[str, Any],
        max_attempts: int | None,
        actor: str | None = None,
        # Its own parts of the retry policy (`domain.retry`); None: its queue's.
        retry_delay: float | None = None,
        retry_backoff: float | None = None,
        retry_max_delay: float | None = None,
        retry_jitter: float | None = None,
    ) -> None:
        self.code = code
        self.user = actor  # who submitted it (the Created event's actor): a member manages their own
        self.queue_id = queue_id
        self.status = JobStatus(status)
        self.priority = priority
        self.source = source
        self.destination = destination
        self.metadata = metadata
        self.max_attempts = max_attempts
        self.retry_delay, self.retry_backoff = retry_delay, retry_backoff
        self.retry_max_delay, self.retry_jitter = retry_max_delay, retry_jitter
        # task id -> {"uri", "key", "size", "status"}, in creation order.
        self.tasks: dict[str, dict[str, Any]] = {}
        self.finished: Any = None
        self.phase = JobPhase.ACTIVE
        self.deleted = False

    class StatusChanged(LedgerAggregate.Event):
        previous: str
        status: str

        def apply(self, job: Job) -> None:
            job.status = JobStatus(self.status)
            job.finished = self.timestamp if job.status in FINISHED else None
            if job.finished is None:
                job.phase = JobPhase.ACTIVE

    # -- reading -------------------------------------------------------------

    def _copy_of(self, name: str, value: Any, memo: dict[int, Any]) -> Any:
        """The tally holds one flat dict of strings and numbers per task: copied as such, a
        job of thousands of tasks copies several times faster than value by value."""
        if name == "tasks":
            return {task_id: dict(tally) for task_id, tally in value.items()}
        return super()._copy_of(name, value, memo)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def size(self) -> int:
        """Bytes of the tasks that will run; -1 while any of them is unknown."""
        sizes = [t["size"] for t in self.tasks.values() if t["status"] != TaskStatus.EXCLUDED]
        if not sizes or any(s < 0 for s in sizes):
            return -1
        return sum(sizes)

    def task_ids_by_key(self) -> dict[str, str]:
        """Its tasks' ids by identity key (see `domain.task.identity_key`): built once by a
        command that adds many tasks, which then looks each one up in constant time."""
        index: dict[str, str] = {}
        for task_id, tally in self.tasks.items():
            index.setdefault(stored_key(tally["key"]), task_id)
        return index

    def settled_status(self) -> JobStatus | None:
        """The status the tasks call for, if it differs from the current one."""
        counted = [TaskStatus(t["status"]) for t in self.tasks.values()]
        active = [s for s in counted if s != TaskStatus.EXCLUDED]
        if not active:
            return None
        if self.status not in FINISHED:
            if all(s == TaskStatus.DONE for s in active):
                return J.DONE
            if self.status == J.RUNNING and TaskStatus.FAILED in active and not any(s in IN_FLIGHT for s in active):
                return J.FAILED
        elif self.status in (J.DONE, J.FAILED) and any(s in (TaskStatus.QUEUED, TaskStatus.PENDING) for s in active):
            return J.WAITING
        return None

    # -- rules ---------------------------------------------------------------

    def check_accepts_tasks(self) -> None:
        if self.status == J.ABORTED:
            raise ConflictError(f"job {self.code!r} is aborted; set its status to WAITING before adding tasks")

    def check_transition(self, status: JobStatus, *, by_user: bool) -> None:
        allowed = ALLOWED[self.status]
        if by_user:
            allowed = allowed & USER_SETTABLE
        if status not in allowed:
            raise InvalidTransitionError(f"job {self.code!r}", self.status, status, allowed)

    # -- verbs ---------------------------------------------------------------

    def change_status(self, status: JobStatus, *, by_user: bool = True) -> bool:
        """Move to `status` if the transition table allows it; False when already there."""
        if status == self.status:
            return False
        self.check_transition(status, by_user=by_user)
        self.trigger_event(self.StatusChanged, previous=str(self.status), status=str(status))
        return True

    @event("Updated")
    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    @event("Moved")
    def move(self, from_queue_id: str, to_queue_id: str) -> None:
        self.queue_id = to_queue_id

    @event("Deleted")
    def delete(self) -> None:
        self.deleted = True

    def due_to_leave(self, phase: JobPhase, cutoff: Any) -> bool:
        """Finished at or before `cutoff` and still in the phase before `phase`."""
        before = JobPhase.ACTIVE if phase == JobPhase.FINISHED else JobPhase.FINISHED
        return self.is_finished and self.phase == before and self.finished <= cutoff

    @event("Retired")
    def retire(self) -> None:
        """Finished long enough ago to leave the active list."""
        self.phase = JobPhase.FINISHED

    @event("Archived")
    def archive(self) -> None:
        self.phase = JobPhase.ARCHIVED

    @event("TasksAdded")
    def add_tasks(self, tasks: list[dict[str, Any]]) -> None:
        for tally in tasks:
            self.tasks[tally["id"]] = {k: v for k, v in tally.items() if k != "id"}

    @event("TaskStatusChanged")
    def note_task_status(self, task_id: str, status: str) -> None:
        self.tasks[task_id]["status"] = status

    @event("TaskStatusesChanged")
    def note_task_statuses(self, statuses: dict[str, str]) -> None:
        """Several of its tasks changed status in one command (a bulk claim or completion):
        one event for the job instead of one per task."""
        for task_id, status in statuses.items():
            self.tasks[task_id]["status"] = status

    def note_tasks(self, statuses: dict[str, str]) -> None:
        if len(statuses) == 1:
            self.note_task_status(*next(iter(statuses.items())))
        elif statuses:
            self.note_task_statuses(statuses)
