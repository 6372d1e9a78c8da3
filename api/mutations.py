"""Mutation resolvers: domain commands in the thread pool, answered from the read models
once they include the change (read-your-writes)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api import answers
from api.context import Context, answer_rows, run_command, services, task_rows, writing
from api.fields import given_fields, input_type
from api.identity import IdentityMutation
from api.types import Job, JobStatus, Long, Queue, Task, TaskStatus
from api.work import WorkMutation
from domain.catalogue import JOB, QUEUE
from domain.errors import NotFoundError
from domain.jobs import CountedIds, counted_in_new_job
from domain.retry import POLICY_FIELDS
from domain.rules import UNSET
from projections.stores import Row

MISSING: Any = strawberry.UNSET


def given(value: Any) -> Any:
    """GraphQL's 'left out' becomes the domain's UNSET; an explicit null stays None."""
    return UNSET if value is strawberry.UNSET else value


# From `domain.catalogue.QUEUE`: its creatable fields (then the references a new queue may
# name), and its updatable ones.
CreateQueueInput = input_type(
    "CreateQueueInput",
    QUEUE.creatable,
    defaults=True,
    parent=(str | None, MISSING),
    group=(str | None, strawberry.field(default=MISSING, description="owner; default: the caller's only group")),
)
UpdateQueueInput = input_type("UpdateQueueInput", QUEUE.updatable, defaults=False)


@strawberry.input
class TaskInput:
    source: JSON
    destination: JSON | None = MISSING
    size: Long | None = MISSING  # type: ignore[valid-type]
    priority: int | None = MISSING
    metadata: JSON | None = MISSING

    def spec(self) -> dict[str, Any]:
        values = {
            "source": self.source,
            "destination": self.destination,
            "size": self.size,
            "priority": self.priority,
            "metadata": self.metadata,
        }
        return {k: v for k, v in values.items() if v is not strawberry.UNSET}


def _retry_part(name: str) -> Any:
    """A part of a job's own retry policy (`domain.catalogue.JOB`): left out, its queue's."""
    return strawberry.field(default=MISSING, description=JOB[name].doc)


@strawberry.input
class CreateJobInput:
    code: str | None = MISSING
    queue: str | None = MISSING
    source: str | None = MISSING
    destination: str | None = MISSING
    status: JobStatus | None = MISSING  # type: ignore[valid-type]
    priority: int | None = MISSING
    metadata: JSON | None = MISSING
    tasks: list[TaskInput] | None = MISSING
    max_attempts: int | None = MISSING
    retry_delay: float | None = _retry_part("retry_delay")
    retry_backoff: float | None = _retry_part("retry_backoff")
    retry_max_delay: float | None = _retry_part("retry_max_delay")
    retry_jitter: float | None = _retry_part("retry_jitter")


@strawberry.input
class UpdateJobInput:
    status: JobStatus | None = MISSING  # type: ignore[valid-type]
    priority: int | None = MISSING
    metadata: JSON | None = MISSING
    queue: str | None = MISSING
    destination: str | None = MISSING
    max_attempts: int | None = MISSING
    retry_delay: float | None = _retry_part("retry_delay")
    retry_backoff: float | None = _retry_part("retry_backoff")
    retry_max_delay: float | None = _retry_part("retry_max_delay")
    retry_jitter: float | None = _retry_part("retry_jitter")


@strawberry.input
class TaskUpdateInput:
    id: strawberry.ID
    status: TaskStatus | None = MISSING  # type: ignore[valid-type]
    priority: int | None = MISSING
    metadata: JSON | None = MISSING

    def update(self) -> dict[str, Any]:
        values = {
            "id": str(self.id),
            "status": self.status,
            "priority": self.priority,
            "metadata": self.metadata,
        }
        return {k: v for k, v in values.items() if v is not strawberry.UNSET}


def _or(value: Any, default: Any = None) -> Any:
    return default if value is strawberry.UNSET else value


async def _queue(info: Info[Context, Any], queue_id: str) -> Queue:
    rows = await answer_rows(info, info.context["read"].queues_by_id, answers.queue_rows, [queue_id])
    return Queue.from_row(_found(rows.get(queue_id), "Queue", queue_id))


async def _job(info: Info[Context, Any], job_id: str) -> Job:
    rows = await answer_rows(info, info.context["read"].jobs_by_id, answers.job_rows, [job_id])
    return Job.from_row(_found(rows.get(job_id), "Job", job_id))


async def _tasks(info: Info[Context, Any], task_ids: list[str]) -> list[Task]:
    rows = await task_rows(info, task_ids)
    return [Task.from_row(_found(rows.get(i), "Task", i)) for i in task_ids]


def _note_task_counts(info: Info[Context, Any], counts: Any) -> None:
    """Say in the answer's `extensions.tasks`, under this field's response key (its alias, or
    `createJob` / `addTasks`), how many of the tasks given were created and how many merged
    into an equal task (`{"created": 1, "merged": 3}`). Counts are a fact of this command,
    not of the job, so they travel beside the data. An addTasks answer replayed for an
    Idempotency-Key has none (what the job held before is not known then)."""
    if isinstance(counts, CountedIds):
        noted = info.context.setdefault("extensions", {}).setdefault("tasks", {})
        noted[info.path.key] = {"created": counts.created, "merged": counts.merged}


def _found(row: Row | None, kind: str, key: str) -> Row:
    if row is None:
        raise NotFoundError(kind, key)
    return row


@strawberry.type
class Mutation(WorkMutation, IdentityMutation):
    @strawberry.mutation
    async def create_queue(self, info: Info[Context, None], input: CreateQueueInput) -> Queue:  # type: ignore[valid-type]
        written = await run_command(
            info,
            services(info).ledger.queues.create,
            **given_fields(input, QUEUE.creatable),
            parent=_or(input.parent),
            group=_or(input.group),
            **writing(info),
        )
        return await _queue(info, written.id)

    @strawberry.mutation
    async def update_queue(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
        input: UpdateQueueInput,  # type: ignore[valid-type]
    ) -> Queue:
        changes = given_fields(input, QUEUE.updatable)
        written = await run_command(info, services(info).ledger.queues.update, str(id), **changes, **writing(info))
        return await _queue(info, written.id)

    @strawberry.mutation(description="seal: no new jobs; running ones go on")
    async def archive_queue(self, info: Info[Context, None], id: strawberry.ID) -> Queue:
        written = await run_command(info, services(info).ledger.queues.seal, str(id), **writing(info))
        return await _queue(info, written.id)

    @strawberry.mutation(description="abort every job of it that is not finished")
    async def terminate_queue(self, info: Info[Context, None], id: strawberry.ID) -> Queue:
        written = await run_command(info, services(info).ledger.queues.terminate, str(id), **writing(info))
        return await _queue(info, written.id)

    @strawberry.mutation(description="its unfinished jobs move to the default queue")
    async def delete_queue(self, info: Info[Context, None], id: strawberry.ID) -> strawberry.ID:
        written = await run_command(info, services(info).ledger.queues.delete, str(id), **writing(info))
        return strawberry.ID(written.id)

    @strawberry.mutation
    async def add_queue_tags(self, info: Info[Context, None], id: strawberry.ID, tags: JSON) -> Queue:
        written = await run_command(info, services(info).ledger.queues.add_tags, str(id), tags, **writing(info))
        return await _queue(info, written.id)

    @strawberry.mutation
    async def remove_queue_tags(self, info: Info[Context, None], id: strawberry.ID, keys: list[str]) -> Queue:
        written = await run_command(
            info, services(info).ledger.queues.remove_tags, str(id), list(keys), **writing(info)
        )
        return await _queue(info, written.id)

    @strawberry.mutation(
        description="The answer's extensions.tasks.<response key> says how many tasks were created "
        "and how many merged into an equal one (same source and destination): {created, merged}."
    )
    async def create_job(self, info: Info[Context, None], input: CreateJobInput) -> Job:
        tasks = _or(input.tasks)
        specs = [t.spec() for t in tasks] if tasks else None
        written = await run_command(
            info,
            services(info).ledger.jobs.create,
            queue=_or(input.queue),
            code=_or(input.code),
            source=_or(input.source),
            destination=_or(input.destination),
            status=_or(input.status),
            priority=_or(input.priority),
            metadata=_or(input.metadata),
            tasks=specs,
            max_attempts=_or(input.max_attempts),
            **{name: _or(getattr(input, name)) for name in POLICY_FIELDS},
            **writing(info),
        )
        # A replay's input is the first request's: the counts follow from it alone.
        _note_task_counts(info, counted_in_new_job(specs) if written.replayed else written.ids)
        return await _job(info, written.id)

    @strawberry.mutation
    async def update_job(self, info: Info[Context, None], id: strawberry.ID, input: UpdateJobInput) -> Job:
        changes = {
            name: given(getattr(input, name))
            for name in ("status", "priority", "metadata", "queue", "destination", "max_attempts", *POLICY_FIELDS)
            if getattr(input, name) is not strawberry.UNSET
        }
        written = await run_command(info, services(info).ledger.jobs.update, str(id), **changes, **writing(info))
        return await _job(info, written.id)

    @strawberry.mutation
    async def delete_job(self, info: Info[Context, None], id: strawberry.ID) -> strawberry.ID:
        written = await run_command(info, services(info).ledger.jobs.delete, str(id), **writing(info))
        return strawberry.ID(written.id)

    @strawberry.mutation(
        description="A task whose source and destination equal an existing task's retries that task "
        "instead, or is rejected with CONFLICT when allowDuplicates is false. The answer's "
        "extensions.tasks.<response key> says how many tasks were created and how many merged: "
        "{created, merged}."
    )
    async def add_tasks(
        self,
        info: Info[Context, None],
        job_id: strawberry.ID,
        tasks: list[TaskInput],
        allow_duplicates: bool | None = True,
    ) -> list[Task]:
        written = await run_command(
            info,
            services(info).ledger.jobs.add_tasks,
            str(job_id),
            [t.spec() for t in tasks],
            allow_duplicates=True if allow_duplicates is None else allow_duplicates,
            **writing(info),
        )
        _note_task_counts(info, None if written.replayed else written.ids)
        return await _tasks(info, written.ids)

    @strawberry.mutation
    async def update_tasks(
        self, info: Info[Context, None], job_id: strawberry.ID, tasks: list[TaskUpdateInput]
    ) -> list[Task]:
        written = await run_command(
            info, services(info).ledger.jobs.update_tasks, str(job_id), [t.update() for t in tasks], **writing(info)
        )
        return await _tasks(info, written.ids)
