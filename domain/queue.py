"""The Queue aggregate, and the registry that keeps queue codes and the default queue unique."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.access import ADMINS_GROUP
from domain.base import LedgerAggregate
from domain.errors import ConflictError, ValidationError
from domain.limits import MAX_TAGS
from domain.rules import check_json


class QueueStatus(StrEnum):
    WAITING = "WAITING"
    DISABLED = "DISABLED"  # every job in it is on hold


class QueueState(StrEnum):
    ACTIVE = "ACTIVE"
    SEALED = "SEALED"  # archived: accepts no new jobs, runs the ones it has


class ExecutionMode(StrEnum):
    FIFO = "FIFO"
    LIFO = "LIFO"
    PRIORITY = "PRIORITY"


class Queue(LedgerAggregate):
    """An ordered list of jobs with a priority that its jobs inherit unless they set their own."""

    # A snapshot taken before queues had a retry policy lacks these: none set.
    retry_delay: float | None = None
    retry_backoff: float | None = None
    retry_max_delay: float | None = None
    retry_jitter: float | None = None

    @event("Created")
    def __init__(
        self,
        code: str,
        uri: str,
        priority: int,
        status: str,
        description: str,
        metadata: dict[str, Any],
        tags: dict[str, str],
        max_concurrency: int | None,
        idle_timeout_s: int | None,
        execution_mode: str,
        max_attempts: int | None,
        parent_id: str | None,
        default: bool,
        group: str = ADMINS_GROUP,  # queues recorded before groups owned them are the admins'
        # Its retry policy (`domain.retry`); None: the default's. Absent from older events.
        retry_delay: float | None = None,
        retry_backoff: float | None = None,
        retry_max_delay: float | None = None,
        retry_jitter: float | None = None,
    ) -> None:
        self.code = code
        self.group = group
        self.uri = uri
        self.priority = priority
        self.status = QueueStatus(status)
        self.state = QueueState.ACTIVE
        self.description = description
        self.metadata = metadata
        self.tags = tags
        self.max_concurrency = max_concurrency
        self.idle_timeout_s = idle_timeout_s
        self.execution_mode = ExecutionMode(execution_mode)
        self.max_attempts = max_attempts
        self.retry_delay, self.retry_backoff = retry_delay, retry_backoff
        self.retry_max_delay, self.retry_jitter = retry_max_delay, retry_jitter
        self.parent_id = parent_id
        self.default = default
        self.children: list[str] = []
        # How many jobs are unfinished, and how many RUNNING (never above max_concurrency).
        # Counts, not sets, so that a busy queue stays small to load and copy; which
        # jobs they are is in the queue's own events (see `members`).
        self.open_count = 0
        self.running_count = 0
        self.deleted = False

    # -- rules ---------------------------------------------------------------

    def check_accepts_jobs(self) -> None:
        if self.state == QueueState.SEALED:
            raise ConflictError(
                f"queue {self.code!r} is sealed (archived) and accepts no new jobs; submit to another queue"
            )

    def check_room_for_tags(self, tags: dict[str, str]) -> None:
        """Its tags with these added stay within MAX_TAGS, and within one JSON document's size."""
        merged = {**self.tags, **tags}
        if len(merged) > MAX_TAGS:
            raise ValidationError("tags", f"a queue has at most {MAX_TAGS} tags (it would have {len(merged)})")
        check_json("tags", merged)

    @property
    def is_enabled(self) -> bool:
        """Hands out work: not disabled, not deleted (a sealed queue still runs its jobs)."""
        return self.status == QueueStatus.WAITING and not self.deleted

    @property
    def has_room(self) -> bool:
        return self.max_concurrency is None or self.running_count < self.max_concurrency

    def check_room(self) -> None:
        if not self.has_room:
            raise ConflictError(f"queue {self.code!r} already runs {self.running_count} jobs, its maxConcurrency")

    def check_deletable(self) -> None:
        if self.default:
            raise ConflictError(
                f"queue {self.code!r} is the default queue and cannot be deleted; make another queue the default first"
            )
        if self.children:
            raise ConflictError(f"queue {self.code!r} has {len(self.children)} nested queue(s); delete them first")

    # -- verbs ---------------------------------------------------------------

    @event("Updated")
    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if name == "status":
                value = QueueStatus(value)
            elif name == "execution_mode":
                value = ExecutionMode(value)
            setattr(self, name, value)

    @event("DefaultSet")
    def set_default(self) -> None:
        self.default = True

    @event("DefaultUnset")
    def unset_default(self) -> None:
        self.default = False

    @event("Sealed")
    def seal(self) -> None:
        self.state = QueueState.SEALED

    @event("Unsealed")
    def unseal(self) -> None:
        """Takes jobs again: undoes the seal of a delete that could not finish."""
        self.state = QueueState.ACTIVE

    @event("Terminated")
    def terminate(self, aborted_job_ids: list[str], stopped_job_ids: list[str]) -> None:
        self.open_count -= len(aborted_job_ids)
        self.running_count -= len(stopped_job_ids)

    @event("Deleted")
    def delete(self, moved_job_ids: list[str], moved_to: str) -> None:
        self.deleted = True
        self.open_count = self.running_count = 0

    @event("TagsAdded")
    def add_tags(self, tags: dict[str, str]) -> None:
        self.tags = {**self.tags, **tags}

    @event("TagsRemoved")
    def remove_tags(self, keys: list[str]) -> None:
        self.tags = {k: v for k, v in self.tags.items() if k not in keys}

    @event("JobAdded")
    def add_job(self, job_id: str, reason: str) -> None:
        self.open_count += 1

    @event("JobRemoved")
    def remove_job(self, job_id: str, reason: str) -> None:
        self.open_count -= 1

    @event("JobStarted")
    def start_job(self, job_id: str) -> None:
        self.running_count += 1

    @event("JobStopped")
    def stop_job(self, job_id: str) -> None:
        self.running_count -= 1

    @event("ChildAdded")
    def add_child(self, child_id: str) -> None:
        self.children = [*self.children, child_id]

    @event("ChildRemoved")
    def remove_child(self, child_id: str) -> None:
        self.children = [c for c in self.children if c != child_id]


def members(events: Iterable[Any]) -> tuple[list[str], list[str]]:
    """(unfinished job ids, running job ids) of a queue, folded from its events in order."""
    open_jobs: dict[str, bool] = {}
    running: dict[str, bool] = {}
    for change in events:
        name = type(change).__name__
        if name == "JobAdded":
            open_jobs[change.job_id] = True
        elif name == "JobRemoved":
            open_jobs.pop(change.job_id, None)
        elif name == "JobStarted":
            running[change.job_id] = True
        elif name == "JobStopped":
            running.pop(change.job_id, None)
        elif name == "Terminated":
            for job_id in change.aborted_job_ids:
                open_jobs.pop(job_id, None)
                running.pop(job_id, None)
        elif name == "Deleted":
            open_jobs, running = {}, {}
    return list(open_jobs), list(running)


REGISTRY_ID = uuid5(NAMESPACE_URL, "jobledger:queue-registry")


class QueueRegistry(LedgerAggregate):
    """One per store: which queue holds each code, and which queue is the default.

    Every command that claims a code or moves the default writes here, so two
    concurrent writers collide on its version and exactly one of them wins.
    """

    @staticmethod
    def create_id() -> UUID:
        return REGISTRY_ID

    @event("Created")
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.default_queue_id: str | None = None

    def queue_id_for(self, code: str) -> str | None:
        return self.codes.get(code)

    def check_code_free(self, code: str) -> None:
        if code in self.codes:
            raise ConflictError(f"a queue with code {code!r} already exists; choose another code")

    @event("CodeReserved")
    def reserve(self, code: str, queue_id: str) -> None:
        self.codes = {**self.codes, code: queue_id}

    @event("CodeReleased")
    def release(self, code: str) -> None:
        self.codes = {k: v for k, v in self.codes.items() if k != code}

    @event("DefaultChanged")
    def change_default(self, queue_id: str) -> None:
        self.default_queue_id = queue_id
