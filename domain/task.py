"""The Task aggregate: one file to transfer or one item to compute, within a job."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import uuid4

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import ConflictError, InvalidTransitionError, ValidationError
from domain.limits import MAX_BYTES, MAX_PATH
from domain.retry import RetryPolicy
from domain.rules import DEFAULT_PRIORITY, check_json_object, check_string, shown


class TaskStatus(StrEnum):
    PENDING = "PENDING"  # no destination yet
    QUEUED = "QUEUED"
    BOOTING = "BOOTING"
    EXECUTING = "EXECUTING"
    FAILED = "FAILED"
    ONHOLD = "ONHOLD"
    EXCLUDED = "EXCLUDED"
    DONE = "DONE"


S = TaskStatus
ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.PENDING: frozenset({S.QUEUED, S.ONHOLD, S.EXCLUDED}),
    S.QUEUED: frozenset({S.PENDING, S.BOOTING, S.EXECUTING, S.FAILED, S.ONHOLD, S.EXCLUDED, S.DONE}),
    S.BOOTING: frozenset({S.EXECUTING, S.QUEUED, S.FAILED, S.ONHOLD, S.EXCLUDED, S.DONE}),
    S.EXECUTING: frozenset({S.QUEUED, S.FAILED, S.ONHOLD, S.EXCLUDED, S.DONE}),
    S.FAILED: frozenset({S.QUEUED, S.PENDING, S.ONHOLD, S.EXCLUDED, S.DONE}),
    S.ONHOLD: frozenset({S.QUEUED, S.PENDING, S.FAILED, S.EXCLUDED, S.DONE}),
    S.EXCLUDED: frozenset({S.QUEUED, S.PENDING, S.ONHOLD}),
    S.DONE: frozenset({S.QUEUED, S.PENDING, S.EXCLUDED}),
}
USER_SETTABLE = frozenset({S.QUEUED, S.FAILED, S.ONHOLD, S.EXCLUDED, S.DONE})
# Statuses in which a worker holds the task.
IN_FLIGHT = frozenset({S.BOOTING, S.EXECUTING})

TASK_KINDS = ("transfer", "command")
DEFAULT_TASK_PRIORITY = DEFAULT_PRIORITY


def normalise_location(field: str, value: object, *, optional: bool) -> str | dict[str, Any] | None:
    """A source or destination: a non-empty path string, or an object with a string `path`
    (a command's object has a `command` instead), within the limits of `domain.limits`."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, "is required: give a path, or an object with a 'path'")
    if isinstance(value, str):
        if not value.strip():
            raise ValidationError(field, "must not be an empty path")
        return check_string(field, value, MAX_PATH)
    if isinstance(value, dict):
        location = check_json_object(field, value)
        kind = location.get("kind", "transfer")
        if kind not in TASK_KINDS:
            raise ValidationError(f"{field}.kind", f"{shown(kind)} is not one of {', '.join(TASK_KINDS)}")
        path = location.get("path")
        if kind == "command" and path is None:
            command = location.get("command")
            if not command or not isinstance(command, str | list):
                raise ValidationError(f"{field}.command", "a command task needs a command line")
        elif not isinstance(path, str) or not path.strip():
            raise ValidationError(f"{field}.path", "must be a non-empty string")
        else:
            check_string(f"{field}.path", path, MAX_PATH)
        return location
    raise ValidationError(field, "must be a path string or an object with a 'path'")


def location_path(value: str | dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    path = value.get("path")
    if path is None:
        command = value.get("command")
        return " ".join(map(str, command)) if isinstance(command, list) else command
    return str(path)


def identity_key(source: object, destination: object) -> str:
    """Two tasks are the same work when this key is equal: path strings equal `{"path": ...}`.

    A digest, so that a job's list of its tasks stays small however long their paths are."""

    def canonical(loc: object) -> object:
        return {"path": loc} if isinstance(loc, str) else loc

    return stored_key(json.dumps([canonical(source), canonical(destination)], sort_keys=True))


def stored_key(key: str) -> str:
    """The digest of an identity key. Jobs created before keys were digests list the
    canonical JSON itself (it starts with `[`); a digest is hex."""
    if not key.startswith("["):
        return key
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def bytes_of(result: object) -> int | None:
    """The `bytes` a task's result names, when it is a number of bytes (0 to MAX_BYTES)."""
    found = result.get("bytes") if isinstance(result, dict) else None
    if isinstance(found, bool) or not isinstance(found, int) or not 0 <= found <= MAX_BYTES:
        return None
    return found


def needs_destination(source: object) -> bool:
    return not (isinstance(source, dict) and source.get("kind") == "command")


class Task(LedgerAggregate):
    """A unit of work. Never deleted: excluded instead, so the history stays whole."""

    @event("Created")
    def __init__(
        self,
        job_id: str,
        uri: str,
        source: str | dict[str, Any],
        destination: str | dict[str, Any] | None,
        size: int,
        priority: int,
        metadata: dict[str, Any],
        status: str,
    ) -> None:
        self.job_id = job_id
        self.uri = uri
        self.source = source
        self.destination = destination
        self.size = size
        self.priority = priority
        self.metadata = metadata
        self.status = TaskStatus(status)
        self.attempts = 0
        self.error: str | None = None
        self.finished: Any = None
        self.result: Any = None
        self.progress = 0
        # The live lease, if a worker holds the task.
        self.worker: str | None = None
        self.lease_id: str | None = None
        self.lease_expires: Any = None
        self.lease_seconds = 0
        self.lease_renewed: Any = None
        # When it may run again after a failed attempt (`domain.retry`); None: at once.
        self.retry_at: datetime | None = None

    class StatusChanged(LedgerAggregate.Event):
        previous: str
        status: str

        def apply(self, task: Task) -> None:
            task.status = TaskStatus(self.status)
            task.finished = self.timestamp if task.status in (S.DONE, S.FAILED) else None
            if task.status == S.DONE:
                task.progress = 100
            if task.status == S.QUEUED and self.previous in (S.FAILED, S.DONE, S.EXCLUDED):
                task.attempts = 0
                task.error = None
                task.progress = 0
            if task.status not in IN_FLIGHT:
                task.lease_id = task.lease_expires = None
            task.retry_at = None  # held, released or queued by hand: no wait left

    # One event name per status, so the history reads `Task.Excluded`, `Task.Done`, ...
    class Pending(StatusChanged):
        pass

    class Queued(StatusChanged):
        pass

    class Booting(StatusChanged):
        pass

    class Executing(StatusChanged):
        pass

    class Failed(StatusChanged):
        pass

    class PutOnHold(StatusChanged):
        pass

    class Excluded(StatusChanged):
        pass

    class Done(StatusChanged):
        pass

    @property
    def key(self) -> str:
        return identity_key(self.source, self.destination)

    def check_transition(self, status: TaskStatus, *, by_user: bool) -> None:
        allowed = ALLOWED[self.status]
        if by_user:
            allowed = allowed & USER_SETTABLE
        if status not in allowed:
            raise InvalidTransitionError(f"task {self.uri}", self.status, status, allowed)

    def change_status(self, status: TaskStatus, *, by_user: bool = True) -> bool:
        """Move to `status` if the transition table allows it; False when already there."""
        if status == self.status:
            return False
        self.check_transition(status, by_user=by_user)
        event_class = _STATUS_EVENTS[status]
        self.trigger_event(event_class, previous=str(self.status), status=str(status))
        return True

    # -- leases ----------------------------------------------------------------

    def is_due(self, now: datetime) -> bool:
        """Not waiting to retry: no retry time, or it has come."""
        return self.retry_at is None or self.retry_at <= now

    def check_lease(self, lease_id: str, now: datetime) -> None:
        """The lease is this task's live one: not finished, released or expired."""
        if self.lease_id != lease_id or self.status not in IN_FLIGHT:
            raise ConflictError(f"lease {lease_id} is finished or was taken away; claim the task again")
        if self.lease_expires < now:
            raise ConflictError(
                f"lease {lease_id} expired at {self.lease_expires.isoformat()}; the task is queued again"
            )

    class Claimed(LedgerAggregate.Event):
        lease_id: str
        worker: str
        expires: datetime
        lease_seconds: int

        def apply(self, task: Task) -> None:
            task.status = S.BOOTING
            task.attempts += 1
            task.worker, task.lease_id, task.lease_expires = self.worker, self.lease_id, self.expires
            task.lease_seconds, task.lease_renewed = self.lease_seconds, self.timestamp
            task.progress, task.finished, task.result = 0, None, None
            task.retry_at = None

    class LeaseRenewed(LedgerAggregate.Event):
        lease_id: str
        expires: datetime
        progress: int | None
        bytes_done: int | None
        speed: float | None
        # The source's size as the worker measured it (events recorded before it was
        # reported have none: the class default).
        size: int | None = None

        def apply(self, task: Task) -> None:
            task.lease_expires, task.lease_renewed = self.expires, self.timestamp
            if self.progress is not None:
                task.progress = self.progress
            if self.size is not None:
                task.size = self.size

    class Completed(LedgerAggregate.Event):
        lease_id: str
        result: Any
        size: int | None = None  # learnt from the result's `bytes` while the size was unknown

        def apply(self, task: Task) -> None:
            task.status, task.progress, task.result, task.error = S.DONE, 100, self.result, None
            learnt = self.size if self.size is not None else bytes_of(self.result)  # older events: the result's
            if learnt is not None and task.size < 0:
                task.size = learnt
            task.finished = self.timestamp
            task.lease_id = task.lease_expires = None
            task.retry_at = None

    class AttemptFailed(LedgerAggregate.Event):
        """The worker failed (or the lease expired, or was released): queued again, or FAILED.
        Queued again, it may be claimed from `retry_at` on (None: at once, as in events
        recorded before retries waited)."""

        lease_id: str
        error: str | None
        status: str
        retry_at: datetime | None = None

        def apply(self, task: Task) -> None:
            task.status = TaskStatus(self.status)
            if self.error is not None:
                task.error = self.error
            task.finished = self.timestamp if task.status == S.FAILED else None
            task.lease_id = task.lease_expires = None
            task.retry_at = self.retry_at

    class LeaseExpired(AttemptFailed):
        pass

    class LeaseReleased(AttemptFailed):
        def apply(self, task: Task) -> None:
            super().apply(task)
            task.attempts -= 1  # given back unworked: not an attempt

    def claim(self, worker: str, lease_seconds: int, now: datetime) -> str:
        if self.status != S.QUEUED:
            raise ConflictError(f"task {self.uri} is {self.status}, not QUEUED")
        if self.retry_at is not None and self.retry_at > now:
            raise ConflictError(f"task {self.uri} waits to retry until {self.retry_at.isoformat()}")
        lease_id = f"{self.id}.{uuid4().hex[:12]}"
        self.trigger_event(
            self.Claimed,
            lease_id=lease_id,
            worker=worker,
            expires=now + timedelta(seconds=lease_seconds),
            lease_seconds=lease_seconds,
        )
        return lease_id

    def renew(
        self,
        lease_id: str,
        now: datetime,
        progress: int | None,
        bytes_done: int | None,
        speed: float | None,
        size: int | None = None,
    ) -> bool:
        """Extend the lease; coalesced to one event a second unless the lease runs short or
        the worker reports a size the task did not have (the size is recorded at once)."""
        self.check_lease(lease_id, now)
        measured = size if size is not None and size != self.size else None
        if self.status == S.BOOTING:
            self.trigger_event(Task.Executing, previous=str(self.status), status=str(S.EXECUTING))
        elif (
            measured is None
            and (now - self.lease_renewed).total_seconds() < 1
            and ((self.lease_expires - now).total_seconds() > self.lease_seconds / 2)
        ):
            return False
        self.trigger_event(
            self.LeaseRenewed,
            lease_id=lease_id,
            expires=now + timedelta(seconds=self.lease_seconds),
            progress=progress,
            bytes_done=bytes_done,
            speed=speed,
            size=measured,
        )
        return True

    def complete(self, lease_id: str, now: datetime, result: Any) -> None:
        """Done, with its result; a task whose size is still unknown takes the `bytes` its
        result names (a transfer's result says how many it moved)."""
        self.check_lease(lease_id, now)
        learnt = bytes_of(result) if self.size < 0 else None
        self.trigger_event(self.Completed, lease_id=lease_id, result=result, size=learnt)

    def fail_attempt(
        self,
        lease_id: str,
        error: str | None,
        *,
        final: bool,
        how: str = "failed",
        retry: RetryPolicy | None = None,
        now: datetime | None = None,
    ) -> None:
        """End the lease without success: FAILED if `final`, else queued again, to run
        from the time `retry` draws for the next attempt (at once without a policy: a
        lease given back unworked)."""
        event = {"failed": self.AttemptFailed, "expired": self.LeaseExpired, "released": self.LeaseReleased}[how]
        status = S.FAILED if final else S.QUEUED
        retry_at = None
        if not final and retry is not None and now is not None:
            retry_at = retry.next_attempt(now, self.attempts)
        self.trigger_event(event, lease_id=lease_id, error=error, status=str(status), retry_at=retry_at)

    @event("Retried")
    def retry(self, status: str) -> None:
        """Run the task again: its duplicate was added to the job."""
        self.status = TaskStatus(status)
        self.attempts = 0
        self.error = None
        self.finished = None
        self.progress = 0
        self.retry_at = None

    @event("Updated")
    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)


_STATUS_EVENTS: dict[TaskStatus, type[Task.StatusChanged]] = {
    S.PENDING: Task.Pending,
    S.QUEUED: Task.Queued,
    S.BOOTING: Task.Booting,
    S.EXECUTING: Task.Executing,
    S.FAILED: Task.Failed,
    S.ONHOLD: Task.PutOnHold,
    S.EXCLUDED: Task.Excluded,
    S.DONE: Task.Done,
}
