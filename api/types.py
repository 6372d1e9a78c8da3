"""GraphQL types of the contract, each built from a read-model row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from api.context import Context, caller, loaders
from api.event_pages import read_events
from api.fields import from_columns, with_catalogue
from domain import catalogue
from domain import job as job_domain
from domain import queue as queue_domain
from domain import task as task_domain
from projections.query import Page
from projections.reasons import job_reason, task_reason
from projections.timeleft import format_etr, job_time_left, task_elapsed, task_time_left

Long = catalogue.Long  # a 64-bit whole number (a size, a position), served as the Long scalar
TIME_LEFT = (
    "seconds until it is done, while it runs: the bytes still to move at its speed, else its progress "
    "rate so far carried on to 100 %; null when unknown or not running"
)


def _long(value: int | None) -> Long | None:  # type: ignore[valid-type]
    return None if value is None else Long(value)


def _parse_long(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("Long must be a whole number")
    if not -(2**63) <= value < 2**63:
        raise ValueError("Long must fit in 64 bits")
    return value


LONG_SCALAR = strawberry.scalar(
    name="Long",
    serialize=int,
    parse_value=_parse_long,
    description="64-bit integer, serialized as a JSON number",
)


QueueStatus = strawberry.enum(queue_domain.QueueStatus, name="QueueStatus")
QueueState = strawberry.enum(queue_domain.QueueState, name="QueueState")
ExecutionMode = strawberry.enum(queue_domain.ExecutionMode, name="ExecutionMode")
JobStatus = strawberry.enum(job_domain.JobStatus, name="JobStatus")
JobPhase = strawberry.enum(job_domain.JobPhase, name="JobPhase")
TaskStatus = strawberry.enum(task_domain.TaskStatus, name="TaskStatus")


@strawberry.enum
class SortOrder(Enum):
    ASC = "ASC"
    DESC = "DESC"


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
@with_catalogue(catalogue.QUEUE, after="id")
class Queue:
    """The fields of `domain.catalogue.QUEUE` (code, priority, status, default, ...) come
    after `id`; these are the ones the read model adds."""

    id: strawberry.ID
    state: QueueState  # type: ignore[valid-type]
    uri: str
    group: str = strawberry.field(description="code of the group that owns it")
    total_jobs: int
    successful_jobs: int
    failed_jobs: int
    active_jobs: int
    created: datetime
    modified: datetime
    user: str | None
    modifier: str | None
    deleted: bool = strawberry.field(description="true once the queue has been deleted")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Queue:
        return cls(
            id=strawberry.ID(row["id"]),
            **from_columns(catalogue.QUEUE, row),
            state=queue_domain.QueueState(row["state"]),
            uri=row["uri"],
            group=row["owner"],
            total_jobs=row["total_jobs"],
            successful_jobs=row["successful_jobs"],
            failed_jobs=row["failed_jobs"],
            active_jobs=row["active_jobs"],
            created=row["created"],
            modified=row["modified"],
            user=row["user"],
            modifier=row["modifier"],
            deleted=bool(row["deleted"]),
        )

    @strawberry.field
    async def jobs(
        self,
        info: Info[Context, None],
        status: list[JobStatus] | None = strawberry.UNSET,  # type: ignore[valid-type]
        first: int | None = 50,
        after: str | None = strawberry.UNSET,
    ) -> JobConnection:
        readable = caller(info).readable()
        page = await info.context["read"].jobs(
            groups=readable if readable is None or self.group in readable else frozenset(),
            phase=None,
            queue=str(self.id),
            statuses=status or None,
            first=_first(first, 50),
            after=after or None,
        )
        return await job_connection(info, page)

    @strawberry.field(description="whether jobs of this queue may hold command tasks (its group allows them)")
    async def allow_commands(self, info: Info[Context, None]) -> bool:
        return await loaders(info).commands.load(self.group)


@strawberry.type
class Job:
    id: strawberry.ID
    code: str
    status: JobStatus  # type: ignore[valid-type]
    phase: JobPhase  # type: ignore[valid-type]
    priority: int
    source: str | None
    destination: str | None
    progress: int
    size: Long  # type: ignore[valid-type]
    speed: float
    # Parsed only when asked for: most pages do not show it, and parsing is half a job's building.
    metadata: JSON = strawberry.field(resolver=lambda root: _json(root.row["metadata"]))
    max_attempts: int | None = strawberry.field(description="tries per task before it fails; null: its queue's")
    # Its own retry policy (`domain.retry`); null parts are its queue's.
    retry_delay: float | None = strawberry.field(description=catalogue.JOB["retry_delay"].doc)
    retry_backoff: float | None = strawberry.field(description=catalogue.JOB["retry_backoff"].doc)
    retry_max_delay: float | None = strawberry.field(description=catalogue.JOB["retry_max_delay"].doc)
    retry_jitter: float | None = strawberry.field(description=catalogue.JOB["retry_jitter"].doc)
    created: datetime
    modified: datetime
    finished: datetime | None
    user: str | None
    modifier: str | None
    queue_id: strawberry.Private[str]
    row: strawberry.Private[dict[str, Any]]
    # Its queue, when the page that built it fetched its jobs' queues at once (`job_connection`).
    queue_node: strawberry.Private[Queue | None] = None

    @classmethod
    def from_row(cls, row: dict[str, Any], queue_node: Queue | None = None) -> Job:
        return cls(
            id=strawberry.ID(row["id"]),
            code=row["code"],
            status=job_domain.JobStatus(row["status"]),
            phase=job_domain.JobPhase(row["phase"]),
            priority=row["priority"],
            source=row["source"],
            destination=row["destination"],
            progress=row["progress"],
            size=row["size"],
            speed=float(row["speed"]),
            max_attempts=row["max_attempts"],
            retry_delay=row["retry_delay"],
            retry_backoff=row["retry_backoff"],
            retry_max_delay=row["retry_max_delay"],
            retry_jitter=row["retry_jitter"],
            created=row["created"],
            modified=row["modified"],
            finished=row["finished"],
            user=row["user"],
            modifier=row["modifier"],
            queue_id=row["queue_id"],
            row=row,
            queue_node=queue_node,
        )

    @strawberry.field(description=TIME_LEFT)
    def time_left(self) -> Long | None:  # type: ignore[valid-type]
        return _long(job_time_left(self.row, datetime.now(UTC)))

    # Worked out only when asked for, as `time_left`: a page of jobs rarely shows it.
    @strawberry.field(description='time left, "Hh:Mm:Ss"; null when unknown')
    def etr(self) -> str | None:
        return format_etr(job_time_left(self.row, datetime.now(UTC)))

    @strawberry.field(description="while it waits or is held: why, in words")
    async def reason(self, info: Info[Context, None]) -> str | None:
        if self.row["status"] not in ("INIT", "PENDING", "PAUSED", "WAITING", "RUNNING"):
            return None
        queue = await loaders(info).queue.load(self.queue_id)
        running = None
        if self.row["status"] == "WAITING" and queue is not None and queue["max_concurrency"] is not None:
            running = await loaders(info).running.load(self.queue_id)
        return job_reason(self.row, queue, running)

    # `uri` and `queue` are plain functions that answer at once when the job came with its
    # queue, and return an awaitable (which graphql-core awaits) when it did not: an `async`
    # resolver would cost an asyncio task per job of a page, most of a page's time.
    @strawberry.field(description='"<queue uri>" the job sits in')
    def uri(self, info: Info[Context, None]) -> str:
        if self.queue_node is not None:
            return self.queue_node.uri
        return self._loaded_uri(info)  # type: ignore[return-value]

    @strawberry.field
    def queue(self, info: Info[Context, None]) -> Queue:
        if self.queue_node is not None:
            return self.queue_node
        return self._loaded_queue(info)  # type: ignore[return-value]

    async def _loaded_uri(self, info: Info[Context, None]) -> str:
        queue = await loaders(info).queue.load(self.queue_id)
        return str(queue["uri"]) if queue else ""

    async def _loaded_queue(self, info: Info[Context, None]) -> Queue:
        row = await loaders(info).queue.load(self.queue_id)
        return Queue.from_row(row)

    @strawberry.field
    async def tasks(
        self,
        info: Info[Context, None],
        status: list[TaskStatus] | None = strawberry.UNSET,  # type: ignore[valid-type]
        first: int | None = 100,
        after: str | None = strawberry.UNSET,
    ) -> TaskConnection:
        key = (str(self.id), tuple(str(s) for s in status or ()), _first(first, 100), after or None)
        return connection(await loaders(info).tasks.load(key), Task.from_row)

    @strawberry.field(description="its own history and its tasks', oldest first")
    async def events(
        self,
        info: Info[Context, None],
        first: int | None = 100,
        after: Long | None = strawberry.UNSET,  # type: ignore[valid-type]
    ) -> EventConnection:
        size = _first(first, 100)
        return EventConnection.of(await read_events(info, job_id=str(self.id), after=after or 0, first=size), size)


@strawberry.type
class Task:
    id: strawberry.ID
    uri: str
    status: TaskStatus  # type: ignore[valid-type]
    priority: int
    source: JSON
    destination: JSON | None
    size: Long  # type: ignore[valid-type]
    progress: int
    attempts: int
    worker: str | None
    error: str | None
    result: JSON | None
    metadata: JSON
    created: datetime
    finished: datetime | None
    time: Long | None  # type: ignore[valid-type]
    retry_at: datetime | None = strawberry.field(
        description="queued again after a failed attempt: not handed out before this time (null: at once)"
    )
    job_id: strawberry.Private[str]
    row: strawberry.Private[dict[str, Any]]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        return cls(
            id=strawberry.ID(row["id"]),
            uri=row["uri"],
            status=task_domain.TaskStatus(row["status"]),
            priority=row["priority"],
            source=_json(row["source"]),
            destination=_json(row["destination"]),
            size=row["size"],
            progress=row["progress"],
            attempts=row["attempts"],
            worker=row["worker"],
            error=row["error"],
            result=_json(row["result"]),
            metadata=_json(row["metadata"]),
            created=row["created"],
            finished=row["finished"],
            time=row["time"],
            retry_at=row.get("retry_at"),
            job_id=row["job_id"],
            row=row,
        )

    @strawberry.field(description="MB/s, current (0 unless it runs)")
    def speed(self) -> float:
        return float(self.row.get("speed") or 0)

    @strawberry.field(description="bytes moved so far by its current or last attempt")
    def bytes_done(self) -> Long:  # type: ignore[valid-type]
        return Long(int(self.row.get("bytes_done") or 0))

    @strawberry.field(description=TIME_LEFT)
    def time_left(self) -> Long | None:  # type: ignore[valid-type]
        return _long(task_time_left(self.row, datetime.now(UTC)))

    @strawberry.field(description="seconds its current attempt has run, or its last one took; null: it never ran")
    def elapsed(self) -> Long | None:  # type: ignore[valid-type]
        return _long(task_elapsed(self.row, datetime.now(UTC)))

    @strawberry.field(description="while it waits or is held: why, in words")
    async def reason(self, info: Info[Context, None]) -> str | None:
        if self.row["status"] not in ("PENDING", "ONHOLD", "EXCLUDED", "QUEUED"):
            return None
        job = await loaders(info).job.load(self.job_id)
        queue = await loaders(info).queue.load(job["queue_id"]) if job is not None else None
        return task_reason(self.row, job, queue)

    @strawberry.field
    async def job(self, info: Info[Context, None]) -> Job:
        row = await loaders(info).job.load(self.job_id)
        return Job.from_row(row)


@strawberry.type
class Event:
    position: Long  # type: ignore[valid-type]
    aggregate_id: strawberry.ID
    aggregate_type: str
    version: int
    type: str
    timestamp: datetime
    actor: str | None
    data: JSON

    @classmethod
    def from_record(cls, record: Any) -> Event:
        return cls(
            position=record.position,
            aggregate_id=strawberry.ID(record.aggregate_id),
            aggregate_type=record.aggregate_type,
            version=record.version,
            type=record.type,
            timestamp=record.timestamp,
            actor=record.actor,
            data=record.data,
        )


N = TypeVar("N")


@strawberry.type
class Connection(Generic[N]):
    """A page of nodes; strawberry names each use after its node type (`JobConnection`)."""

    nodes: list[N]
    page_info: PageInfo
    total_count: int


QueueConnection = Connection[Queue]
JobConnection = Connection[Job]
TaskConnection = Connection[Task]


def connection(page: Page, node: Callable[[dict[str, Any]], N]) -> Connection[N]:
    """The GraphQL page of a read-model page, each row made a node by `node`."""
    return Connection(
        nodes=[node(r) for r in page.nodes],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        total_count=page.total_count,
    )


QUEUE_OF_JOB = frozenset({"queue", "uri", "reason"})  # a job's fields that read its queue


async def job_connection(info: Info[Context, Any], page: Page) -> Connection[Job]:
    """The GraphQL page of a read-model page of jobs. When the query asks the jobs about
    their queue, the page's queues are loaded at once (through the request's loader, so the
    rows are the ones every other field sees) and each made a node once, shared by its jobs."""
    queues: dict[str, Queue] = {}
    if page.nodes and QUEUE_OF_JOB & node_fields(info):
        ids = list(dict.fromkeys(row["queue_id"] for row in page.nodes))
        rows = await loaders(info).queue.load_many(ids)
        queues = {id: Queue.from_row(row) for id, row in zip(ids, rows, strict=True) if row is not None}
    return connection(page, lambda row: Job.from_row(row, queues.get(row["queue_id"])))


def node_fields(info: Info[Context, Any]) -> set[str]:
    """The names of the fields the query asks of the `nodes` of the connection being
    resolved, through fragments too."""
    return {
        field.name
        for selected in info.selected_fields
        for nodes in _fields(selected.selections)
        if nodes.name == "nodes"
        for field in _fields(nodes.selections)
    }


def _fields(selections: list[Selection]) -> Iterator[SelectedField]:
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        else:  # a fragment: its own fields
            yield from _fields(selection.selections)


@strawberry.type
class EventConnection:
    nodes: list[Event]
    page_info: PageInfo

    @classmethod
    def of(cls, records: list[Any], first: int) -> EventConnection:
        """`records` holds up to `first` + 1 events: one more tells that a next page exists."""
        shown = records[:first]
        return cls(
            nodes=[Event.from_record(r) for r in shown],
            page_info=PageInfo(
                has_next_page=len(records) > first, end_cursor=str(shown[-1].position) if shown else None
            ),
        )


@strawberry.input
class SortDirective:
    field: str
    order: SortOrder | None = SortOrder.ASC


@strawberry.type
class JobProgress:
    job_id: strawberry.ID
    status: JobStatus  # type: ignore[valid-type]
    progress: int
    speed: float
    etr: str | None
    size: Long  # type: ignore[valid-type]
    time_left: Long | None = strawberry.field(description=TIME_LEFT)  # type: ignore[valid-type]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobProgress:
        return cls(
            job_id=strawberry.ID(row["id"]),
            status=job_domain.JobStatus(row["status"]),
            progress=row["progress"],
            speed=float(row["speed"]),
            etr=format_etr(left := job_time_left(row, datetime.now(UTC))),
            size=row["size"],
            time_left=_long(left),
        )


def _first(first: int | None, default: int) -> int:
    return default if first is None else first


@strawberry.type
class TaskLease:
    id: strawberry.ID
    worker: str
    expires: datetime
    task_row: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def task(self) -> Task:
        return Task.from_row(self.task_row)

    @classmethod
    def from_row(cls, lease_id: str, row: dict[str, Any]) -> TaskLease:
        return cls(
            id=strawberry.ID(lease_id),
            worker=row["worker"] or "",
            expires=row["lease_expires"] or row["modified"],
            task_row=row,
        )
