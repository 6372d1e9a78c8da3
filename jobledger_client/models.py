"""Typed results: frozen dataclasses with snake_case fields, parsed from the GraphQL answers.

Enum values (status, phase, state, execution mode) are kept as the server's
upper-case strings, e.g. `job.status == "PAUSED"`; datetimes are timezone-aware
`datetime`s in UTC. Every model has `to_dict()`.

A model's fields are the client's one list of an entity's fields: each is read from
its camelCase key (or the path `at` gives it), converted by its type, and the documents
select exactly these (`selection`). `QueueSettings` lists what callers set on a queue,
`RetrySettings` the retry policy a queue or a job sets.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from typing import Any, TypedDict, TypeVar, Union, get_args, get_origin, get_type_hints

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


def camel(name: str) -> str:
    """snake_case -> camelCase (`idle_timeout_s` -> `idleTimeoutS`); camelCase stays."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def at(path: str, **options: Any) -> Any:
    """A field read from a nested answer, e.g. `at("queue.id")` for a job's queue id."""
    return dataclasses.field(metadata={"path": path}, **options)


def _path(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    return tuple(f.metadata.get("path", camel(f.name)).split("."))


def _converter(hint: Any) -> Callable[[Any], Any]:
    """How a field of type `hint` is read from JSON: datetimes parsed, documents never
    None, nested models parsed; null stays None where the type allows it."""
    if get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint):
        inner = _converter(next(a for a in get_args(hint) if a is not type(None)))
        return lambda value: None if value is None else inner(value)
    if hint is datetime:
        return parse_datetime
    if hint is dict or get_origin(hint) is dict:
        return lambda value: value or {}
    if isinstance(hint, type) and issubclass(hint, Model):
        return hint.parse
    if hint in (str, int, float, bool):
        empty = hint()
        return lambda value: empty if value is None else hint(value)
    return lambda value: value


@cache
def _readers(model: type[Model]) -> list[tuple[str, tuple[str, ...], Callable[[Any], Any]]]:
    hints = get_type_hints(model)
    return [(f.name, _path(f), _converter(hints[f.name])) for f in dataclasses.fields(model)]  # type: ignore[arg-type]


def selection(model: type[Model]) -> str:
    """The GraphQL selection of a model's fields: `id code queue { id code } status ...`."""
    return _render(_tree(model))


def _tree(model: type[Model]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    hints = get_type_hints(model)
    for f in dataclasses.fields(model):  # type: ignore[arg-type]
        *parents, leaf = _path(f)
        node = tree
        for key in parents:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        hint = hints[f.name]
        if isinstance(hint, type) and issubclass(hint, Model):
            node[leaf] = {**_tree(hint), **(node.get(leaf) or {})}
        else:
            node.setdefault(leaf, None)
    return tree


def _render(tree: dict[str, Any]) -> str:
    return " ".join(key if sub is None else f"{key} {{ {_render(sub)} }}" for key, sub in tree.items())


class Model:
    """What every result type has in common."""

    @classmethod
    def parse(cls: type[T], node: Mapping[str, Any]) -> T:
        """The result from its GraphQL answer (camelCase keys)."""
        values = {}
        for name, path, convert in _readers(cls):
            value: Any = node
            for key in path:
                value = value.get(key) if isinstance(value, Mapping) else None
            values[name] = convert(value)
        return cls(**values)

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
    # Its retry policy; None: the server's default (10 s, x2, at most 600 s, 20 % jitter).
    retry_delay: float | None
    retry_backoff: float | None
    retry_max_delay: float | None
    retry_jitter: float | None
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


class RetrySettings(TypedDict, total=False):
    """A retry policy, as a queue sets it for its jobs and a job for itself (`create_queue`,
    `update_queue`, `create_job`, `update_job`): the wait after failed attempt n is
    min(retry_max_delay, retry_delay * retry_backoff ** (n - 1)), less a random share of up
    to retry_jitter of it. A part a job leaves out (None) is its queue's, one a queue leaves
    out the server's default (`RETRY_DEFAULTS`); in an update None clears it."""

    retry_delay: float | None  # seconds from a failed attempt to the next (0: at once); None: 10
    retry_backoff: float | None  # 1 to 10: each further wait this many times longer; None: 2
    retry_max_delay: float | None  # no wait longer, in seconds; None: 600
    retry_jitter: float | None  # 0 to 1: share of each wait drawn at random; None: 0.2


# The server's policy for the parts neither a job nor its queue sets (`domain.retry.DEFAULT_RETRY`).
RETRY_DEFAULTS: dict[str, float] = {
    "retry_delay": 10.0,
    "retry_backoff": 2.0,
    "retry_max_delay": 600.0,
    "retry_jitter": 0.2,
}


class QueueSettings(RetrySettings, total=False):
    """The fields of Queue that `create_queue` and `update_queue` set (and `RetrySettings`): a
    new queue takes the server's default for those not given; in an update None clears
    max_concurrency (unlimited), idle_timeout_s, max_attempts and the parts of the retry policy."""

    priority: int  # 0 (lowest) .. 1000 (highest)
    status: str  # "waiting" or "disabled", any case
    default: bool  # make it the default queue
    description: str
    metadata: dict[str, Any]
    max_concurrency: int | None  # jobs of it running at once; None: unlimited
    idle_timeout_s: int | None
    execution_mode: str  # "fifo", "lifo" or "priority", any case
    max_attempts: int | None  # tries per task before it fails; None: 3


@dataclasses.dataclass(frozen=True, eq=True)
class Job(Model):
    """A job: a set of tasks (files or commands) that runs in a queue."""

    id: str
    code: str
    uri: str
    queue_id: str = at("queue.id")
    queue_code: str = at("queue.code")
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
    # Its own retry policy; None: its queue's.
    retry_delay: float | None
    retry_backoff: float | None
    retry_max_delay: float | None
    retry_jitter: float | None
    time_left: int | None  # seconds until done while it runs; None when unknown or not running
    reason: str | None  # while it waits or is held: why, in words
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
        return self.time_left if self.time_left is not None else etr_seconds(self.etr)


@dataclasses.dataclass(frozen=True)
class TaskCounts:
    """What a createJob or addTasks did with the tasks it was given: `created` new tasks, and
    `merged` given tasks equal to another (same source and destination, in the same call or
    already in the job), which name that task instead of making one. From the answer's
    `extensions.tasks`; an addTasks answer replayed for an idempotency key has none."""

    created: int
    merged: int

    @classmethod
    def of(cls, extensions: Mapping[str, Any] | None, key: str) -> TaskCounts | None:
        """The counts the answer's extensions give for the field answered under `key`."""
        noted = ((extensions or {}).get("tasks") or {}).get(key)
        if not isinstance(noted, Mapping):
            return None
        return cls(created=int(noted.get("created", 0)), merged=int(noted.get("merged", 0)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class SubmittedJob(Job):
    """The job createJob made, with what became of the tasks it was given (`task_counts`;
    None from a service that does not say). It equals the same job read later."""

    task_counts: TaskCounts | None = None

    __hash__ = Model.__hash__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(Job))

    @classmethod
    def of(cls, job: Job, counts: TaskCounts | None) -> SubmittedJob:
        return cls(**{f.name: getattr(job, f.name) for f in dataclasses.fields(Job)}, task_counts=counts)


@dataclasses.dataclass(frozen=True, eq=True)
class Task(Model):
    """One file, directory or command of a job. Tasks are never deleted: exclude them."""

    id: str
    uri: str  # "0", "1", ... in order of creation within the job
    job_id: str = at("job.id")
    status: str  # PENDING QUEUED BOOTING EXECUTING FAILED ONHOLD EXCLUDED DONE
    priority: int
    source: Any
    destination: Any
    size: int  # bytes; -1 while unknown
    progress: int
    speed: float  # MB/s while it runs
    time_left: int | None  # seconds until done while it runs; None when unknown or not running
    attempts: int
    worker: str | None
    error: str | None
    reason: str | None  # while it waits or is held: why, in words
    result: Any
    metadata: dict[str, Any]
    created: datetime
    finished: datetime | None
    time: int | None  # milliseconds it took to execute
    retry_at: datetime | None  # queued again after a failed attempt: not handed out before

    __hash__ = Model.__hash__


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


@dataclasses.dataclass(frozen=True, eq=True)
class TaskLease(Model):
    """A worker's hold on a task until `expires`; renew it with heartbeat(). A claim also
    tells the task's job's code and destination, its queue's code and whether that queue's
    group allows command tasks (None, and False, from a heartbeat)."""

    id: str
    task: Task
    worker: str
    expires: datetime
    job_code: str | None = at("task.job.code", default=None)
    job_destination: str | None = at("task.job.destination", default=None)
    queue_code: str | None = at("task.job.queue.code", default=None)
    queue_allows_commands: bool = at("task.job.queue.allowCommands", default=False)

    __hash__ = Model.__hash__


@dataclasses.dataclass(frozen=True, eq=True)
class JobProgress(Model):
    """A job's progress as the jobProgress subscription reports it."""

    job_id: str
    status: str
    progress: int  # 0..100
    speed: float  # MB/s
    etr: str | None  # "Hh:Mm:Ss", None when unknown
    size: int  # bytes, -1 while unknown
    time_left: int | None  # seconds, None when unknown

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
        return self.time_left if self.time_left is not None else etr_seconds(self.etr)


class AddedTasks(list[Task]):
    """The tasks addTasks answers with, one per task given (a merged one names the task it
    equals), and `task_counts`: how many were created and how many merged (None when the
    answer was replayed for an idempotency key)."""

    def __init__(self, tasks: list[Task], task_counts: TaskCounts | None) -> None:
        super().__init__(tasks)
        self.task_counts = task_counts
