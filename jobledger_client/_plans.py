"""What each verb does, written once for the sync and the async client.

A plan is a generator that yields steps and receives their answers: `Call`
(a query or mutation; answered with its `data`, or with an `Answer` of its data and
extensions when it asks for them), `Open` (a subscription;
answered with a stream), `Next` (the stream's next `data`, or None when it
ended) and `Emit` (a result for the caller of an iterator). The clients drive
plans: `Client` with blocking calls, `AsyncClient` with awaits. Nothing here
does I/O, so the two clients cannot drift apart.

This module holds the steps, the generic plans (one request, pages of a
connection) and the plain API's plans; `_accsyn`, `_anyscale` and `_dioptra`
hold those of the other shapes, and `_inputs` turns arguments into inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from jobledger_client import documents as doc
from jobledger_client._inputs import (
    enum_value,
    given,
    looks_like_id,
    sort_directives,
    task_input,
    task_update,
    to_input,
)
from jobledger_client.errors import NotFound, Validation
from jobledger_client.models import (
    AddedTasks,
    Event,
    Job,
    JobProgress,
    Queue,
    SubmittedJob,
    Task,
    TaskCounts,
    TaskLease,
)

T = TypeVar("T")
Plan = Generator[Any, Any, T]
MAX_PAGE = 500


class Call(NamedTuple):
    document: str
    variables: dict[str, Any]
    extensions: bool = False  # answered with an Answer (data and extensions), not the data alone


class Answer(NamedTuple):
    """A Call's answer when it asked for the extensions too."""

    data: dict[str, Any]
    extensions: dict[str, Any]


class Open(NamedTuple):
    document: str
    variables: dict[str, Any]


class Next(NamedTuple):
    stream: Any


class Emit(NamedTuple):
    value: Any


@dataclass
class Listing:
    """What a lazily fetched list knows so far."""

    total_count: int | None = None  # from the first page on, for lists that count
    pages: int = 0  # requests made so far


# -- generic plans ------------------------------------------------------------------------


def call(document: str, variables: dict[str, Any], key: str, parse: Callable[[Any], T]) -> Plan[T]:
    """One request; its `key` parsed (None stays None)."""
    data = yield Call(document, variables)
    node = data[key]
    return None if node is None else parse(node)  # type: ignore[return-value]


def call_list(document: str, variables: dict[str, Any], key: str, parse: Callable[[Any], T]) -> Plan[list[T]]:
    data = yield Call(document, variables)
    return [parse(node) for node in data[key]]


def pages(
    document: str,
    variables: dict[str, Any],
    parse: Callable[[Any], T],
    listing: Listing,
    *,
    page_size: int,
    max_items: int | None = None,
    keep: Callable[[T], bool] | None = None,
    root: Sequence[str] = ("page",),
    missing: Callable[[], Exception] | None = None,
) -> Plan[None]:
    """Every node of a connection, one page per request, each page fetched only when the
    previous one has been used up."""
    if not 1 <= page_size <= MAX_PAGE:
        raise Validation.of("first", f"a page holds 1 to {MAX_PAGE} items (asked for {page_size})")
    if max_items is not None and max_items <= 0:
        return
    first = page_size if max_items is None or keep is not None else min(page_size, max_items)
    after: str | None = None
    emitted = 0
    while True:
        data = yield Call(document, given(**variables, first=first, after=after) | _nulls(variables))
        connection: Any = data
        for key in root:
            connection = connection.get(key) if connection is not None else None
        if connection is None:
            raise missing() if missing else NotFound("the list does not exist")
        listing.pages += 1
        listing.total_count = connection.get("totalCount", listing.total_count)
        for node in connection["nodes"]:
            item = parse(node)
            if keep is not None and not keep(item):
                continue
            yield Emit(item)
            emitted += 1
            if max_items is not None and emitted >= max_items:
                return
        info = connection["pageInfo"]
        if not info["hasNextPage"] or not info["endCursor"]:
            return
        after = info["endCursor"]


def _nulls(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Variables deliberately null (given as None in `variables`)."""
    return {k: None for k, v in variables.items() if v is None}


def collect(plan: Plan[Any]) -> Plan[list[Any]]:
    """Everything a listing plan emits, as one list."""
    items: list[Any] = []
    reply = None
    try:
        while True:
            try:
                step = plan.send(reply)
            except StopIteration:
                return items
            reply = None
            if isinstance(step, Emit):
                items.append(step.value)
            else:
                reply = yield step
    finally:
        plan.close()


def first_of(plan: Plan[Any]) -> Plan[Any]:
    """The first thing a listing plan emits, or None."""
    reply = None
    try:
        while True:
            try:
                step = plan.send(reply)
            except StopIteration:
                return None
            reply = None
            if isinstance(step, Emit):
                return step.value
            reply = yield step
    finally:
        plan.close()


# -- queues -------------------------------------------------------------------------------


def queue(id: str | None = None, code: str | None = None) -> Plan[Queue | None]:
    if id is None and code is None:
        raise Validation.of("queue", "give an id or a code")
    if id is not None and code is None and not looks_like_id(id):
        id, code = None, id  # a code given where an id was expected
    return (yield from call(doc.QUEUE_BY, given(id=id, code=code), "queue", Queue.parse))


def queue_id(ref: str) -> Plan[str]:
    """The id of a queue given by id or by code."""
    if looks_like_id(ref):
        return str(ref)
    found = yield from queue(code=ref)
    if found is None:
        raise NotFound(f"Queue {ref} does not exist", details={"kind": "Queue", "key": str(ref)})
    return found.id


def queues(
    listing: Listing,
    where: str | None = None,
    include_archived: bool = False,
    order_by: Any = None,
    page_size: int = 50,
    max_items: int | None = None,
    keep: Callable[[Queue], bool] | None = None,
) -> Plan[None]:
    variables = given(where=where, includeArchived=include_archived, orderBy=sort_directives(order_by))
    yield from pages(doc.QUEUES, variables, Queue.parse, listing, page_size=page_size, max_items=max_items, keep=keep)


def create_queue(fields: Mapping[str, Any]) -> Plan[Queue]:
    return (yield from call(doc.CREATE_QUEUE, {"input": to_input(fields)}, "createQueue", Queue.parse))


def update_queue(ref: str, changes: Mapping[str, Any]) -> Plan[Queue]:
    qid = yield from queue_id(ref)
    return (yield from call(doc.UPDATE_QUEUE, {"id": qid, "input": to_input(changes)}, "updateQueue", Queue.parse))


def queue_mutation(document: str, key: str, ref: str, **variables: Any) -> Plan[Queue]:
    qid = yield from queue_id(ref)
    return (yield from call(document, {"id": qid, **variables}, key, Queue.parse))


def delete_queue(ref: str) -> Plan[str]:
    qid = yield from queue_id(ref)
    data = yield Call(doc.DELETE_QUEUE, {"id": qid})
    return str(data["deleteQueue"])


# -- jobs ---------------------------------------------------------------------------------


def job(id: str) -> Plan[Job | None]:
    return (yield from call(doc.JOB_BY, {"id": str(id)}, "job", Job.parse))


def jobs(
    listing: Listing,
    where: str | None = None,
    phase: Any = "ACTIVE",
    queue: str | None = None,
    order_by: Any = None,
    page_size: int = 50,
    max_items: int | None = None,
) -> Plan[None]:
    variables: dict[str, Any] = given(where=where, queue=queue, orderBy=sort_directives(order_by))
    variables["phase"] = None if phase is None else enum_value(phase)  # null: every phase
    yield from pages(doc.JOBS, variables, Job.parse, listing, page_size=page_size, max_items=max_items)


def create_job(fields: Mapping[str, Any]) -> Plan[SubmittedJob]:
    """The job made, with how many of its tasks were created and how many merged."""
    answer = yield Call(doc.CREATE_JOB, {"input": to_input(fields)}, extensions=True)
    job = Job.parse(answer.data["createJob"])
    return SubmittedJob.of(job, TaskCounts.of(answer.extensions, "createJob"))


def update_job(id: str, changes: Mapping[str, Any]) -> Plan[Job]:
    return (yield from call(doc.UPDATE_JOB, {"id": str(id), "input": to_input(changes)}, "updateJob", Job.parse))


def delete_job(id: str) -> Plan[str]:
    data = yield Call(doc.DELETE_JOB, {"id": str(id)})
    return str(data["deleteJob"])


# -- tasks --------------------------------------------------------------------------------


def task(id: str) -> Plan[Task | None]:
    return (yield from call(doc.TASK_BY, {"id": str(id)}, "task", Task.parse))


def tasks(
    listing: Listing, job_id: str, where: str | None = None, page_size: int = 100, max_items: int | None = None
) -> Plan[None]:
    variables = given(jobId=str(job_id), where=where)
    yield from pages(doc.TASKS, variables, Task.parse, listing, page_size=page_size, max_items=max_items)


def add_tasks(job_id: str, items: Iterable[Any], allow_duplicates: bool = True) -> Plan[AddedTasks]:
    variables = {"jobId": str(job_id), "tasks": [task_input(t) for t in items], "allowDuplicates": allow_duplicates}
    answer = yield Call(doc.ADD_TASKS, variables, extensions=True)
    tasks = [Task.parse(node) for node in answer.data["addTasks"]]
    return AddedTasks(tasks, TaskCounts.of(answer.extensions, "addTasks"))


def update_tasks(job_id: str, updates: Iterable[Mapping[str, Any]]) -> Plan[list[Task]]:
    variables = {"jobId": str(job_id), "tasks": [task_update(u) for u in updates]}
    return (yield from call_list(doc.UPDATE_TASKS, variables, "updateTasks", Task.parse))


def update_task(task_id: str, changes: Mapping[str, Any]) -> Plan[Task]:
    """One task by its id alone: finds its job first."""
    found = yield from task(task_id)
    if found is None:
        raise NotFound(f"Task {task_id} does not exist", details={"kind": "Task", "key": str(task_id)})
    changed = yield from update_tasks(found.job_id, [{**changes, "id": str(task_id)}])
    return changed[0]


# -- history and live progress -------------------------------------------------------------


def events(
    listing: Listing,
    after: int = 0,
    aggregate_id: str | None = None,
    types: Sequence[str] | None = None,
    follow: bool = False,
    page_size: int = 100,
) -> Plan[None]:
    """The history from `after` page by page; then, when following, the events subscription
    from the last position seen, so nothing is missed or repeated."""
    if not 1 <= page_size <= MAX_PAGE:
        raise Validation.of("first", f"a page holds 1 to {MAX_PAGE} items (asked for {page_size})")
    last = int(after or 0)
    filters = given(aggregateId=aggregate_id, types=list(types) if types else None)
    while True:
        data = yield Call(doc.EVENTS, {**filters, "after": last, "first": page_size})
        listing.pages += 1
        page = data["page"]
        for node in page["nodes"]:
            event = Event.parse(node)
            last = max(last, event.position)
            yield Emit(event)
        if not page["pageInfo"]["hasNextPage"] or not page["nodes"]:
            break
    if not follow:
        return
    stream = yield Open(doc.FOLLOW_EVENTS, {**filters, "after": last})
    while True:
        data = yield Next(stream)
        if data is None:
            return
        event = Event.parse(data["events"])
        if event.position <= last:
            continue  # never twice
        last = event.position
        yield Emit(event)


def job_events(listing: Listing, job_id: str, after: int = 0, page_size: int = 100) -> Plan[None]:
    """A job's own history and its tasks', oldest first."""
    last = int(after or 0)
    while True:
        data = yield Call(doc.JOB_EVENTS, {"id": str(job_id), "after": last, "first": page_size})
        if data["job"] is None:
            raise NotFound(f"Job {job_id} does not exist", details={"kind": "Job", "key": str(job_id)})
        listing.pages += 1
        page = data["job"]["page"]
        for node in page["nodes"]:
            event = Event.parse(node)
            last = max(last, event.position)
            yield Emit(event)
        if not page["pageInfo"]["hasNextPage"] or not page["nodes"]:
            return


def watch(job_id: str) -> Plan[None]:
    """JobProgress from the jobProgress subscription: the current value at once, then each
    change; ends when the job is finished (or deleted)."""
    stream = yield Open(doc.WATCH, {"jobId": str(job_id)})
    while True:
        data = yield Next(stream)
        if data is None:
            return
        progress = JobProgress.parse(data["jobProgress"])
        yield Emit(progress)
        if progress.finished:
            return


# -- workers ------------------------------------------------------------------------------


def claim(worker: str, queues: Sequence[str] | None, limit: int, lease_seconds: int) -> Plan[list[TaskLease]]:
    variables = given(worker=worker, queues=list(queues) if queues else None, limit=limit, leaseSeconds=lease_seconds)
    return (yield from call_list(doc.CLAIM, variables, "claimTasks", TaskLease.parse))


def heartbeat(
    lease_id: str, progress: int | None, bytes_done: int | None, speed: float | None, size: int | None = None
) -> Plan[TaskLease]:
    variables = given(leaseId=str(lease_id), progress=progress, bytesDone=bytes_done, speed=speed, size=size)
    return (yield from call(doc.HEARTBEAT, variables, "heartbeat", TaskLease.parse))


def complete(lease_id: str, result: Any) -> Plan[Task]:
    variables = given(leaseId=str(lease_id), result=result)
    return (yield from call(doc.COMPLETE, variables, "completeTask", Task.parse))


def fail(lease_id: str, error: str, retry: bool) -> Plan[Task]:
    variables = {"leaseId": str(lease_id), "error": error, "retry": retry}
    return (yield from call(doc.FAIL, variables, "failTask", Task.parse))


def release(lease_id: str) -> Plan[Task]:
    return (yield from call(doc.RELEASE, {"leaseId": str(lease_id)}, "releaseTask", Task.parse))


def queue_jobs(
    listing: Listing, ref: str, status: Any = None, page_size: int = 50, max_items: int | None = None
) -> Plan[None]:
    statuses = None if status is None else [enum_value(s) for s in ([status] if isinstance(status, str) else status)]
    key = {"id": str(ref)} if looks_like_id(ref) else {"code": str(ref)}
    yield from pages(
        doc.QUEUE_JOBS,
        given(**key, status=statuses),
        Job.parse,
        listing,
        page_size=page_size,
        max_items=max_items,
        root=("queue", "page"),
        missing=lambda: NotFound(f"Queue {ref} does not exist", details={"kind": "Queue", "key": str(ref)}),
    )
