"""Typed results: frozen dataclasses with snake_case fields, parsed from the GraphQL answers.

Enum values (status, phase, state, execution mode) are kept as the server's
upper-case strings, e.g. `job.status == "PAUSED"`; datetimes are timezone-aware
`datetime`s in UTC. Every model has `to_dict()`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T", bound="Model")

FINISHED_STATUSES = frozenset({"DONE", "FAILED", "ABORTED"})
_ETR = re.compile(r"^\s*(\d+)h:(\d+)m:(\d+)s\s*$")


def parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 text (as the server sends DateTime) as a datetime; None stays None."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def etr_seconds(etr: str | None) -> int | None:
    """Seconds of a "Hh:Mm:Ss" time left, e.g. "0h:04m:10s" -> 250; None when unknown."""
    match = _ETR.match(etr or "")
    if not match:
        return None
    hours, minutes, seconds = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class Model:
    """What every result type has in common."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (nested results as dicts too)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._identity()))

    def _identity(self) -> Any:
        return getattr(self, "id", None)


@dataclasses.dataclass(frozen=True, eq=True)
class Queue(Model):
    """A queue of jobs (accsyn's Queue, Anyscale's job queue, Dioptra's queue)."""

    id: str
    code: str
    priority: int
    status: str  # WAITING | DISABLED
    state: str  # ACTIVE | SEALED (archived)
    default: bool
    uri: str
    description: str
    metadata: dict[str, Any]
    tags: dict[str, Any]
    max_concurrency: int | None
    idle_timeout_s: int | None
    execution_mode: str  # FIFO | LIFO | PRIORITY
    max_attempts: int | None
    total_jobs: int
    successful_jobs: int
    failed_jobs: int
    active_jobs: int
    created: datetime
    modified: datetime
    user: str | None
    modifier: str | None

    __hash__ = Model.__hash__

    @property
    def name(self) -> str:
        """Anyscale's and Dioptra's word for `code`."""
        return self.code

    @property
    def created_at(self) -> datetime:
        """Anyscale's word for `created`."""
        return self.created

    @property
    def creator_id(self) -> str | None:
        """Anyscale's word for `user`."""
        return self.user

    @property
    def archived(self) -> bool:
        """Sealed: accepts no new jobs."""
        return self.state == "SEALED"

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> Queue:
        """A Queue from its GraphQL answer (camelCase keys)."""
        return cls(
            id=str(node["id"]),
            code=node["code"],
            priority=node["priority"],
            status=node["status"],
            state=node["state"],
            default=bool(node["default"]),
            uri=node["uri"],
            description=node.get("description") or "",
            metadata=node.get("metadata") or {},
            tags=node.get("tags") or {},
            max_concurrency=node.get("maxConcurrency"),
            idle_timeout_s=node.get("idleTimeoutS"),
            execution_mode=node["executionMode"],
            max_attempts=node.get("maxAttempts"),
            total_jobs=node["totalJobs"],
            successful_jobs=node["successfulJobs"],
            failed_jobs=node["failedJobs"],
            active_jobs=node["activeJobs"],
            created=parse_datetime(node["created"]),  # type: ignore[arg-type]
            modified=parse_datetime(node["modified"]),  # type: ignore[arg-type]
            user=node.get("user"),
            modifier=node.get("modifier"),
        )


@dataclasses.dataclass(frozen=True, eq=True)
class Job(Model):
    """A job: a set of tasks (files or commands) that runs in a queue."""

    id: str
    code: str
    uri: str
    queue_id: str
    queue_code: str
    status: str  # INIT PENDING WAITING RUNNING PAUSED FAILED ABORTED DONE
    phase: str  # ACTIVE FINISHED ARCHIVED
    priority: int
    source: str | None
    destination: str | None
    progress: int
    size: int
    speed: float
    etr: str | None
    metadata: dict[str, Any]
    max_attempts: int | None
    created: datetime
    modified: datetime
    finished: datetime | None
    user: str | None
    modifier: str | None

    __hash__ = Model.__hash__

    @property
    def is_finished(self) -> bool:
        """DONE, FAILED or ABORTED."""
        return self.status in FINISHED_STATUSES

    @property
    def etr_seconds(self) -> int | None:
        """The time left in seconds, when known."""
        return etr_seconds(self.etr)

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> Job:
        """A Job from its GraphQL answer (camelCase keys)."""
        queue = node.get("queue") or {}
        return cls(
            id=str(node["id"]),
            code=node["code"],
            uri=node.get("uri") or "",
            queue_id=str(queue.get("id") or ""),
            queue_code=queue.get("code") or "",
            status=node["status"],
            phase=node["phase"],
            priority=node["priority"],
            source=node.get("source"),
            destination=node.get("destination"),
            progress=node["progress"],
            size=node["size"],
            speed=float(node["speed"]),
            etr=node.get("etr"),
            metadata=node.get("metadata") or {},
            max_attempts=node.get("maxAttempts"),
            created=parse_datetime(node["created"]),  # type: ignore[arg-type]
            modified=parse_datetime(node["modified"]),  # type: ignore[arg-type]
            finished=parse_datetime(node.get("finished")),
            user=node.get("user"),
            modifier=node.get("modifier"),
        )


@dataclasses.dataclass(frozen=True, eq=True)
class Task(Model):
    """One file, directory or command of a job. Tasks are never deleted: exclude them."""

    id: str
    uri: str  # "0", "1", ... in order of creation within the job
    job_id: str
    status: str  # PENDING QUEUED BOOTING EXECUTING FAILED ONHOLD EXCLUDED DONE
    priority: int
    source: Any
    destination: Any
    size: int
    progress: int
    attempts: int
    worker: str | None
    error: str | None
    result: Any
    metadata: dict[str, Any]
    created: datetime
    finished: datetime | None
    time: int | None  # milliseconds it took to execute

    __hash__ = Model.__hash__

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> Task:
        """A Task from its GraphQL answer (camelCase keys)."""
        job = node.get("job") or {}
        return cls(
            id=str(node["id"]),
            uri=node["uri"],
            job_id=str(job.get("id") or ""),
            status=node["status"],
            priority=node["priority"],
            source=node.get("source"),
            destination=node.get("destination"),
            size=node["size"],
            progress=node["progress"],
            attempts=node["attempts"],
            worker=node.get("worker"),
            error=node.get("error"),
            result=node.get("result"),
            metadata=node.get("metadata") or {},
            created=parse_datetime(node["created"]),  # type: ignore[arg-type]
            finished=parse_datetime(node.get("finished")),
            time=node.get("time"),
        )


@dataclasses.dataclass(frozen=True, eq=True)
class Event(Model):
    """One entry of the history: who (`actor`) did what (`type`, `data`) to which aggregate, when."""

    position: int  # global, strictly increasing, gap-free
    aggregate_id: str
    aggregate_type: str  # Queue | Job | Task
    version: int
    type: str  # e.g. "Job.StatusChanged"
    timestamp: datetime
    actor: str | None
    data: Any

    __hash__ = Model.__hash__

    def _identity(self) -> Any:
        return self.position

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> Event:
        """A Event from its GraphQL answer (camelCase keys)."""
        return cls(
            position=int(node["position"]),
            aggregate_id=str(node["aggregateId"]),
            aggregate_type=node["aggregateType"],
            version=node["version"],
            type=node["type"],
            timestamp=parse_datetime(node["timestamp"]),  # type: ignore[arg-type]
            actor=node.get("actor"),
            data=node.get("data"),
        )


@dataclasses.dataclass(frozen=True, eq=True)
class TaskLease(Model):
    """A worker's hold on a task until `expires`; renew it with heartbeat(). A claim also
    tells the task's job's code and destination (None from a heartbeat)."""

    id: str
    task: Task
    worker: str
    expires: datetime
    job_code: str | None = None
    job_destination: str | None = None

    __hash__ = Model.__hash__

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> TaskLease:
        """A TaskLease from its GraphQL answer (camelCase keys)."""
        job = node["task"].get("job") or {}
        return cls(
            id=str(node["id"]),
            task=Task.parse(node["task"]),
            worker=node["worker"],
            expires=parse_datetime(node["expires"]),  # type: ignore[arg-type]
            job_code=job.get("code"),
            job_destination=job.get("destination"),
        )


@dataclasses.dataclass(frozen=True, eq=True)
class JobProgress(Model):
    """A job's progress as the jobProgress subscription reports it."""

    job_id: str
    status: str
    progress: int  # 0..100
    speed: float  # MB/s
    etr: str | None  # "Hh:Mm:Ss", None when unknown
    size: int  # bytes, -1 while unknown

    __hash__ = Model.__hash__

    def _identity(self) -> Any:
        return (self.job_id, self.status, self.progress)

    @property
    def finished(self) -> bool:
        """DONE, FAILED or ABORTED: the last report of a watch."""
        return self.status in FINISHED_STATUSES

    @property
    def etr_seconds(self) -> int | None:
        """The time left in seconds, when known."""
        return etr_seconds(self.etr)

    @classmethod
    def parse(cls, node: Mapping[str, Any]) -> JobProgress:
        """A JobProgress from its GraphQL answer (camelCase keys)."""
        return cls(
            job_id=str(node["jobId"]),
            status=node["status"],
            progress=node["progress"],
            speed=float(node["speed"]),
            etr=node.get("etr"),
            size=node["size"],
        )
