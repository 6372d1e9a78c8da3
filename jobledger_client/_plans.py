"""What each verb does, written once for the sync and the async client.

A plan is a generator that yields steps and receives their answers: `Call`
(a query or mutation; answered with its `data`), `Open` (a subscription;
answered with a stream), `Next` (the stream's next `data`, or None when it
ended) and `Emit` (a result for the caller of an iterator). The clients drive
plans: `Client` with blocking calls, `AsyncClient` with awaits. Nothing here
does I/O, so the two clients cannot drift apart.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from jobledger_client import documents as doc
from jobledger_client.errors import NotFound, Validation
from jobledger_client.models import Event, Job, JobProgress, Queue, Task, TaskLease

T = TypeVar("T")
Plan = Generator[Any, Any, T]
MAX_PAGE = 500


class Call(NamedTuple):
    document: str
    variables: dict[str, Any]


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


class _Unset:
    """`UNSET`: an argument left out (as opposed to None, which sends null)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()

# -- turning Python arguments into GraphQL inputs ---------------------------------------

_ENUM_KEYS = frozenset({"status", "executionMode", "phase", "order"})


def camel(key: str) -> str:
    """snake_case -> camelCase (`idle_timeout_s` -> `idleTimeoutS`); camelCase stays."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _enum_value(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().upper()
    name = getattr(value, "value", None) or getattr(value, "name", None)
    return str(name).upper() if name is not None else value


def to_input(data: Mapping[str, Any] | None, *, skip_unset: bool = True) -> dict[str, Any]:
    """A dict of accsyn-style fields as a GraphQL input: snake_case keys in camelCase,
    lower-case statuses in upper case, tasks as TaskInput. UNSET values are left out."""
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if skip_unset and value is UNSET:
            continue
        name = camel(str(key))
        if name in _ENUM_KEYS and value is not None:
            value = _enum_value(value)
        elif name == "tasks" and value is not None:
            value = [task_input(t) for t in value]
        out[name] = value
    return out


def task_input(task: Any) -> dict[str, Any]:
    """A task to add: a path, or a dict with source (and destination, size, priority, metadata)."""
    if isinstance(task, Mapping):
        return to_input(task)
    return {"source": task}


def task_update(update: Mapping[str, Any]) -> dict[str, Any]:
    """A task change: {"id": ..., "status": "excluded", "priority": ..., "metadata": ...}."""
    if "id" not in update:
        raise Validation.of("tasks", "each task change needs the task's id")
    return to_input(update)


def given(**values: Any) -> dict[str, Any]:
    """The values that were given (not None, not UNSET)."""
    return {k: v for k, v in values.items() if v is not None and v is not UNSET}


def looks_like_id(value: Any) -> bool:
    """Ids are UUIDs; anything else is taken for a code."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def quoted(value: Any) -> str:
    """A value for the `where` language, double-quoted with \\ and \" escaped."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def sort_directives(spec: Any) -> list[dict[str, str]] | None:
    """Sorting in any of the shapes users bring, as [SortDirective]:

    "created", "-created" (descending), "created desc", "+code";
    ("created", "DESC"); {"field": "created", "order": "DESC"};
    Anyscale's {"sort_field": "CREATED_AT", "sort_order": "DESC"} or objects with
    sort_field / sort_order; or a list of any of these (first sorts first)."""
    if spec is None:
        return None
    items = [spec] if isinstance(spec, str | Mapping | tuple) or hasattr(spec, "sort_field") else list(spec)
    out: list[dict[str, str]] = []
    for item in items:
        if isinstance(item, str):
            text = item.strip()
            parts = text.split()
            order = "ASC"
            if len(parts) == 2 and parts[1].upper() in ("ASC", "DESC"):
                text, order = parts[0], parts[1].upper()
            if text.startswith("-"):
                text, order = text[1:], "DESC"
            elif text.startswith("+"):
                text = text[1:]
            field: Any = text
        elif isinstance(item, tuple) and len(item) == 2:
            field, order = item
        elif isinstance(item, Mapping):
            field = item.get("field", item.get("sort_field"))
            order = item.get("order", item.get("sort_order")) or "ASC"
        elif hasattr(item, "sort_field"):
            field, order = item.sort_field, getattr(item, "sort_order", None) or "ASC"
        else:
            raise Validation.of("orderBy", f"cannot read a sort directive from {item!r}")
        field = getattr(field, "value", field)
        order = str(_enum_value(order))
        if not field or not isinstance(field, str):
            raise Validation.of("orderBy", f"a sort directive needs a field name, not {field!r}")
        if order not in ("ASC", "DESC"):
            raise Validation.of("orderBy", f"sort order is ASC or DESC, not {order!r}")
        out.append({"field": field, "order": order})
    return out


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
    variables["phase"] = None if phase is None else _enum_value(phase)  # null: every phase
    yield from pages(doc.JOBS, variables, Job.parse, listing, page_size=page_size, max_items=max_items)


def queue_jobs(
    listing: Listing, ref: str, status: Any = None, page_size: int = 50, max_items: int | None = None
) -> Plan[None]:
    statuses = None if status is None else [_enum_value(s) for s in ([status] if isinstance(status, str) else status)]
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


def create_job(fields: Mapping[str, Any]) -> Plan[Job]:
    return (yield from call(doc.CREATE_JOB, {"input": to_input(fields)}, "createJob", Job.parse))


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


def add_tasks(job_id: str, items: Iterable[Any], allow_duplicates: bool = True) -> Plan[list[Task]]:
    variables = {"jobId": str(job_id), "tasks": [task_input(t) for t in items], "allowDuplicates": allow_duplicates}
    return (yield from call_list(doc.ADD_TASKS, variables, "addTasks", Task.parse))


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


def heartbeat(lease_id: str, progress: int | None, bytes_done: int | None, speed: float | None) -> Plan[TaskLease]:
    variables = given(leaseId=str(lease_id), progress=progress, bytesDone=bytes_done, speed=speed)
    return (yield from call(doc.HEARTBEAT, variables, "heartbeat", TaskLease.parse))


# -- accsyn's query strings -------------------------------------------------------------

_ENTITIES = {"queue": "Queue", "job": "Job", "task": "Task"}
_FIND = re.compile(r"^\s*([A-Za-z_]+)\s*(?:\s(?i:where)\s+(.*?))?\s*$", re.S)
_JOB_ID = re.compile(r'(?<![\w.])job\.id\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s()"]+))', re.I)


def entity_of(name: str) -> str:
    """ "job", "Jobs", "QUEUE" ... -> "Job" / "Queue" / "Task"."""
    key = str(name).strip().lower()
    key = key[:-1] if key.endswith("s") and key[:-1] in _ENTITIES else key
    if key not in _ENTITIES:
        raise Validation.of("entity", f"{name!r} is not one of: queue, job, task")
    return _ENTITIES[key]


def parse_find(query: str) -> tuple[str, str | None]:
    """`"Job where status=aborted"` -> ("Job", "status=aborted"); `"Queue"` -> ("Queue", None)."""
    match = _FIND.match(query or "")
    if not match:
        raise Validation.of(
            "query", f"write '<entity> [where <expression>]', e.g. 'Job where status=aborted', not {query!r}"
        )
    entity = entity_of(match.group(1))
    where = match.group(2)
    if where is not None and not where.strip():
        raise Validation.of("query", "expected an expression after 'where'")
    return entity, where


def job_id_in(where: str | None) -> str | None:
    """The job a task query names with `job.id=<id>`."""
    found = {(m.group(1) if m.group(1) is not None else m.group(2)) for m in _JOB_ID.finditer(where or "")}
    if len(found) > 1:
        raise Validation.of("query", "a task query names one job (job.id=<id>)")
    return found.pop() if found else None


def find(
    listing: Listing,
    query: str,
    finished: bool = False,
    archived: bool = False,
    page_size: int = MAX_PAGE,
    max_items: int | None = None,
) -> Plan[None]:
    entity, where = parse_find(query)
    if entity == "Queue":
        if finished:
            raise Validation.of("finished", "queues do not finish; archived=True includes archived queues")
        yield from queues(listing, where, bool(archived), None, page_size, max_items)
    elif entity == "Job":
        if finished and archived:
            raise Validation.of("archived", "ask for finished or for archived jobs, not both")
        phase = "ARCHIVED" if archived else "FINISHED" if finished else "ACTIVE"
        yield from jobs(listing, where, phase, None, None, page_size, max_items)
    else:
        if finished or archived:
            raise Validation.of("finished", "tasks are listed with their job, whatever its phase")
        job_ref = job_id_in(where)
        if job_ref is None:
            raise Validation.of(
                "query", "a task query names its job, e.g. 'task WHERE job.id=<id> AND status<>executing'"
            )
        yield from tasks(listing, job_ref, where, page_size, max_items)


def create_entity(entity: str, data: Any, entity_id: str | None, allow_duplicates: bool) -> Plan[Any]:
    kind = entity_of(entity)
    if kind == "Queue":
        return (yield from create_queue(data))
    if kind == "Job":
        return (yield from create_job(data))
    if entity_id is None:
        raise Validation.of("entity_id", "tasks are added to a job: create('task', {'tasks': [...]}, job_id)")
    items = data.get("tasks") if isinstance(data, Mapping) else data
    if not isinstance(items, list | tuple):
        raise Validation.of("tasks", "give {'tasks': [path or {'source': ..., 'destination': ...}, ...]}")
    duplicates = data.get("allow_duplicates", allow_duplicates) if isinstance(data, Mapping) else allow_duplicates
    return (yield from add_tasks(entity_id, items, bool(duplicates)))


def update_entity(entity: str, entity_id: str, data: Mapping[str, Any]) -> Plan[Any]:
    kind = entity_of(entity)
    if kind == "Queue":
        return (yield from update_queue(entity_id, data))
    if kind == "Job":
        return (yield from update_job(entity_id, data))
    return (yield from update_task(entity_id, data))


def delete_entity(entity: str, entity_id: str) -> Plan[str]:
    kind = entity_of(entity)
    if kind == "Queue":
        return (yield from delete_queue(entity_id))
    if kind == "Job":
        return (yield from delete_job(entity_id))
    raise Validation.of("entity", "tasks are never deleted (for the audit trail): exclude them instead")


# -- Anyscale's job queue verbs ----------------------------------------------------------


def resolve_queue(job_queue_id: str | None, name: str | None, include_archived: bool = True) -> Plan[Queue]:
    """A queue by id, or by name (an archived one only when include_archived)."""
    if not job_queue_id and not name:
        raise Validation.of("job_queue_id", "give job_queue_id or name")
    key = str(job_queue_id or name)
    found = yield from call(
        doc.QUEUE_BY, {"id": str(job_queue_id)} if job_queue_id else {"code": name}, "queue", Queue.parse
    )
    if found is None:
        raise NotFound(f"Queue {key} does not exist", details={"kind": "Queue", "key": key})
    if not job_queue_id and not include_archived and found.archived:
        raise NotFound(
            f"Queue {key} is archived; pass include_archived=True to use it", details={"kind": "Queue", "key": key}
        )
    return found


def ref_id(job_queue_id: str | None, name: str | None, include_archived: bool = True) -> Plan[str]:
    if job_queue_id:
        return str(job_queue_id)
    return (yield from resolve_queue(None, name, include_archived)).id


def tags_matcher(tags_filter: Any) -> Callable[[Queue], bool] | None:
    """Anyscale's tags_filter: {key: [values]} or ["key:value", ...]; a queue matches when each
    key has one of its values (any value when the list is empty)."""
    if not tags_filter:
        return None
    wanted: dict[str, set[str]] = {}
    if isinstance(tags_filter, Mapping):
        for key, values in tags_filter.items():
            values = [values] if isinstance(values, str) else list(values or [])
            wanted.setdefault(str(key), set()).update(str(v) for v in values)
    else:
        for entry in tags_filter:
            key, sep, value = str(entry).partition(":")
            wanted.setdefault(key, set())
            if sep:
                wanted[key].add(value)

    def matches(queue: Queue) -> bool:
        for key, values in wanted.items():
            if key not in queue.tags:
                return False
            if values and str(queue.tags[key]) not in values:
                return False
        return True

    return matches


def job_queue_list(
    listing: Listing,
    job_queue_id: str | None,
    name: str | None,
    creator_id: str | None,
    tags_filter: Any,
    page_size: int | None,
    max_items: int | None,
    sorting_directives: Any,
    include_archived: bool,
) -> Plan[None]:
    if job_queue_id:
        found = yield from call(doc.QUEUE_BY, {"id": str(job_queue_id)}, "queue", Queue.parse)
        listing.pages, listing.total_count = 1, int(found is not None)
        if found is not None and (max_items is None or max_items > 0):
            yield Emit(found)
        return
    conditions = []
    if name is not None:
        conditions.append(f"code={quoted(name)}")
    if creator_id is not None:
        conditions.append(f"user={quoted(creator_id)}")
    yield from queues(
        listing,
        " AND ".join(conditions) or None,
        include_archived,
        sorting_directives,
        page_size or 50,
        max_items,
        keep=tags_matcher(tags_filter),
    )
