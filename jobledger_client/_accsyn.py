"""accsyn's session verbs: `find("Job where status=aborted")`, `find_one`, `create`,
`update`, `update_many` and `delete_one`, with their plans. Entities are named in any
case ("job", "Jobs", "QUEUE"), fields in snake_case, statuses in lower case."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from jobledger_client import _plans as plans
from jobledger_client._plans import MAX_PAGE, Listing, Plan
from jobledger_client._results import Runner
from jobledger_client.errors import Validation
from jobledger_client.models import Task

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
        yield from plans.queues(listing, where, bool(archived), None, page_size, max_items)
    elif entity == "Job":
        if finished and archived:
            raise Validation.of("archived", "ask for finished or for archived jobs, not both")
        phase = "ARCHIVED" if archived else "FINISHED" if finished else "ACTIVE"
        yield from plans.jobs(listing, where, phase, None, None, page_size, max_items)
    else:
        if finished or archived:
            raise Validation.of("finished", "tasks are listed with their job, whatever its phase")
        job_ref = job_id_in(where)
        if job_ref is None:
            raise Validation.of(
                "query", "a task query names its job, e.g. 'task WHERE job.id=<id> AND status<>executing'"
            )
        yield from plans.tasks(listing, job_ref, where, page_size, max_items)


def create_entity(entity: str, data: Any, entity_id: str | None, allow_duplicates: bool) -> Plan[Any]:
    kind = entity_of(entity)
    if kind == "Queue":
        return (yield from plans.create_queue(data))
    if kind == "Job":
        return (yield from plans.create_job(data))
    if entity_id is None:
        raise Validation.of("entity_id", "tasks are added to a job: create('task', {'tasks': [...]}, job_id)")
    items = data.get("tasks") if isinstance(data, Mapping) else data
    if not isinstance(items, list | tuple):
        raise Validation.of("tasks", "give {'tasks': [path or {'source': ..., 'destination': ...}, ...]}")
    duplicates = data.get("allow_duplicates", allow_duplicates) if isinstance(data, Mapping) else allow_duplicates
    return (yield from plans.add_tasks(entity_id, items, bool(duplicates)))


def update_entity(entity: str, entity_id: str, data: Mapping[str, Any]) -> Plan[Any]:
    kind = entity_of(entity)
    if kind == "Queue":
        return (yield from plans.update_queue(entity_id, data))
    if kind == "Job":
        return (yield from plans.update_job(entity_id, data))
    return (yield from plans.update_task(entity_id, data))


def delete_entity(entity: str, entity_id: str) -> Plan[str]:
    kind = entity_of(entity)
    if kind == "Queue":
        return (yield from plans.delete_queue(entity_id))
    if kind == "Job":
        return (yield from plans.delete_job(entity_id))
    raise Validation.of("entity", "tasks are never deleted (for the audit trail): exclude them instead")


class AccsynVerbs(Runner):
    """accsyn's session verbs, on both clients."""

    def find(self, query: str, finished: bool = False, archived: bool = False) -> list[Any]:
        """accsyn's find: every match of ``"<entity> [where <expression>]"`` as a list, e.g.
        ``find("Job where status=aborted")``, ``find("Queue")``,
        ``find("task WHERE job.id=<id> AND status<>executing")``. finished=True looks among
        finished jobs, archived=True among archived jobs (or includes archived queues)."""
        listing = Listing()
        return self._run(plans.collect(find(listing, query, finished, archived)))  # type: ignore[no-any-return]

    def find_one(self, query: str, finished: bool = False, archived: bool = False) -> Any:
        """accsyn's find_one: the first match of `query` (see find), or None."""
        listing = Listing()
        return self._run(plans.first_of(find(listing, query, finished, archived, max_items=1)))

    def create(self, entity: str, data: Any, entity_id: str | None = None, allow_duplicates: bool = True) -> Any:
        """accsyn's create: ``create("queue", {"code": "high_prio", "priority": 999})``,
        ``create("job", {"source": ..., "destination": ..., "status": "paused", "tasks": [...]})``
        or ``create("task", {"tasks": [path or {...}, ...]}, job_id)``. Keys in snake_case,
        statuses in lower case. Returns the Queue, the Job, or the list of Tasks."""
        return self._run(create_entity(entity, data, entity_id, allow_duplicates))

    def update(self, entity: str, entity_id: str, data: Mapping[str, Any]) -> Any:
        """accsyn's update: ``update("job", id, {"status": "paused"})``,
        ``update("queue", id, {"status": "disabled"})``, ``update("task", id, {"status": "onhold"})``.
        Returns the changed Queue, Job or Task."""
        return self._run(update_entity(entity, entity_id, data))

    def update_many(
        self,
        entity: str,
        entity_id: str | Sequence[Mapping[str, Any]] | None,
        data: Sequence[Mapping[str, Any]] | None = None,
        entityid: str | None = None,
    ) -> list[Task]:
        """accsyn's update_many for tasks of a job:
        ``update_many("task", job_id, [{"id": ..., "status": "excluded"}])`` or
        ``update_many("task", [{...}], entityid=job_id)``. Returns the changed tasks."""
        if entity_of(entity) != "Task":
            raise Validation.of("entity", "update_many changes the tasks of a job: update_many('task', ...)")
        job_id: str | None
        if isinstance(entity_id, str) or entity_id is None:
            job_id = entity_id or entityid
        else:  # the seeds' other form: update_many("task", [...], entityid=job_id)
            job_id, data = entityid, entity_id
        if not job_id or data is None:
            raise Validation.of("entityid", "name the job: update_many('task', job_id, [...])")
        return self._run(plans.update_tasks(job_id, data))  # type: ignore[no-any-return]

    def delete_one(self, entity: str, entity_id: str) -> str:
        """accsyn's delete_one: ``delete_one("job", id)`` or ``delete_one("queue", id)``. Returns the id."""
        return self._run(delete_entity(entity, entity_id))  # type: ignore[no-any-return]
