"""Job commands: create, change, delete, retire and archive jobs, and add and change their tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.access import Right, current_principal, guard_job, guard_queue
from domain.catalogue import JOB, TASK
from domain.commands import Service, command
from domain.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from domain.groups import commands_allowed
from domain.inputs import TaskSpec, job_code, task_specs
from domain.job import CREATABLE, FINISHED, Job, JobPhase, JobStatus
from domain.lifecycle import find_queue, move_job, set_status, set_task_status, settle
from domain.limits import MAX_TASKS_PER_CALL
from domain.queue import Queue
from domain.rules import UNSET, check_bool
from domain.task import Task, TaskStatus, identity_key, needs_destination
from domain.unit_of_work import UnitOfWork


class CountedIds(list[str]):
    """The ids a command that adds tasks answers with (`create`: the job's; `add_tasks`: one
    task's per task given, in order), and what became of the tasks given: `created` new
    tasks, `merged` given tasks that equal another (of the same call, or one the job had),
    and so name that task instead of making one. A list still (`Written.ids`); only the
    command's first answer has the counts, an idempotent replay answers with the ids alone."""

    def __init__(self, ids: list[str], created: int, merged: int) -> None:
        super().__init__(ids)
        self.created = created
        self.merged = merged


def counted_in_new_job(tasks: list[Any] | None) -> CountedIds:
    """How `create` holds `tasks` in a new job, without writing: a task per distinct source
    and destination (`created`), the rest merged into them. What a replayed createJob answers
    with, since its input is the first one's."""
    specs = task_specs("tasks", tasks)
    distinct = {identity_key(spec.source, spec.destination) for spec in specs}
    return CountedIds([], created=len(distinct), merged=len(specs) - len(distinct))


class JobCommands(Service):
    """The commands on jobs and their tasks (`ledger.jobs`). Each takes `actor=` and
    answers with `Written`: the job's id, or the ids of the tasks it added or changed."""

    name = "jobs"

    @command
    def create(
        self, uow: UnitOfWork, *, queue: str | None = None, tasks: list[Any] | None = None, **settings: Any
    ) -> list[str]:
        """A new job in `queue` (by code or id; the default queue if None), with its tasks.
        `settings` are the creatable fields of `domain.catalogue.JOB` (code, status, priority,
        source, destination, metadata, max_attempts); None or left out: their default."""
        specs = task_specs("tasks", tasks)
        fields = JOB.new({name: value for name, value in settings.items() if value is not None})
        if fields["status"] not in CREATABLE:
            raise ValidationError("status", f"a new job may start as {', '.join(sorted(CREATABLE))}")
        target = _submit_target(uow, queue)
        _check_commands(uow, target, specs)
        target.check_accepts_jobs()
        fields["code"] = job_code(fields["code"], fields["source"], specs)
        job = uow.add(Job(**fields, queue_id=str(target.id)))
        target.add_job(str(job.id), "created")
        added = _add_tasks(uow, job, specs, allow_duplicates=True)
        settle(uow, job)
        return CountedIds([str(job.id)], added.created, added.merged)

    @command
    def update(
        self, uow: UnitOfWork, job_id: str, *, status: Any = UNSET, queue: Any = UNSET, **changes: Any
    ) -> list[str]:
        """Change status (PENDING, WAITING, PAUSED, ABORTED, DONE), any other updatable field
        of `domain.catalogue.JOB` (priority, None: the queue's; metadata, destination,
        max_attempts), or move the job to `queue`."""
        job = _managed_job(uow, job_id)
        wanted = JOB["status"].checked(status) if status is not UNSET else None
        if wanted is not None and wanted != job.status:
            job.check_transition(wanted, by_user=True)
        changes = {name: value for name, value in JOB.changes(changes).items() if getattr(job, name) != value}
        if queue is not UNSET and queue is not None:
            target = find_queue(uow, queue)
            guard_queue(target, Right.SUBMIT, queue)
            move_job(uow, job, target)
        if changes:
            job.update(changes)
        if changes.get("destination"):
            _release_pending_tasks(uow, job)
        elif "destination" in changes:
            _hold_tasks_without_destination(uow, job)
        if wanted is not None:
            set_status(uow, job, wanted, by_user=True)
        # A finish the user chose stands; otherwise the tasks decide (a job resumed with
        # nothing left to run is DONE, not WAITING forever).
        if wanted is None or wanted not in FINISHED:
            settle(uow, job)
        return [str(job.id)]

    @command
    def delete(self, uow: UnitOfWork, job_id: str) -> list[str]:
        """Delete the job. Its tasks stay in the history, as every event does."""
        job = _managed_job(uow, job_id)
        queue = uow.get(Queue, job.queue_id, allow_deleted=True)
        if job.status == JobStatus.RUNNING and not queue.deleted:
            queue.stop_job(str(job.id))
        if not job.is_finished and not queue.deleted:
            queue.remove_job(str(job.id), "deleted")
        job.delete()
        return [str(job.id)]

    @command
    def retire(self, uow: UnitOfWork, job_ids: list[str], cutoff: datetime) -> list[str]:
        """Move jobs finished at or before `cutoff` from the ACTIVE list to FINISHED.
        Jobs that were reopened, deleted or already moved are left alone."""
        return _change_phase(uow, job_ids, cutoff, JobPhase.FINISHED)

    @command
    def archive(self, uow: UnitOfWork, job_ids: list[str], cutoff: datetime) -> list[str]:
        """Move jobs finished at or before `cutoff` from FINISHED to ARCHIVED."""
        return _change_phase(uow, job_ids, cutoff, JobPhase.ARCHIVED)

    @command
    def add_tasks(self, uow: UnitOfWork, job_id: str, tasks: list[Any], allow_duplicates: bool = True) -> list[str]:
        """Add tasks; one equal to an existing task (same source and destination) retries
        that task instead, or is refused with CONFLICT when duplicates are not allowed."""
        job = _managed_job(uow, job_id)
        specs = task_specs("tasks", tasks)
        if not specs:
            raise ValidationError("tasks", "give at least one task")
        _check_commands(uow, uow.get(Queue, job.queue_id, allow_deleted=True), specs)
        job.check_accepts_tasks()
        ids = _add_tasks(uow, job, specs, allow_duplicates=check_bool("allowDuplicates", allow_duplicates))
        settle(uow, job)
        return ids

    @command
    def update_tasks(self, uow: UnitOfWork, job_id: str, updates: list[dict[str, Any]]) -> list[str]:
        """Change the status (QUEUED, FAILED, ONHOLD, EXCLUDED, DONE), priority or
        metadata of tasks of one job. All are checked before any is written."""
        job = _managed_job(uow, job_id)
        if not isinstance(updates, list) or not updates:
            raise ValidationError("tasks", "give at least one task update")
        if len(updates) > MAX_TASKS_PER_CALL:
            raise ValidationError("tasks", f"at most {MAX_TASKS_PER_CALL} task updates per call (got {len(updates)})")
        planned: list[tuple[Task, TaskStatus | None, dict[str, Any]]] = []
        seen: set[str] = set()
        for index, update in enumerate(updates):
            planned.append(_planned_task_update(uow, job, f"tasks[{index}]", update, seen))
        for task, status, changes in planned:
            if changes:
                task.update(changes)
            if status is not None:
                set_task_status(job, task, status, by_user=True)
        settle(uow, job)
        return [str(task.id) for task, _, _ in planned]


def _managed_job(uow: UnitOfWork, job_id: str) -> Job:
    """The job, if the caller may change it (see `domain.access.guard_job`)."""
    job = uow.get(Job, job_id)
    guard_job(job, uow.get(Queue, job.queue_id, allow_deleted=True), job_id)
    return job


def _submit_target(uow: UnitOfWork, ref: str | None) -> Queue:
    """The queue a new job goes to, if the caller may submit to it."""
    target = find_queue(uow, ref)
    principal = current_principal()
    if ref is None and principal is not None and not principal.may(Right.SUBMIT, target.group):
        raise ForbiddenError(
            f"you may not submit to the default queue (group {target.group!r}); name a queue of your group"
        )
    guard_queue(target, Right.SUBMIT, ref)
    return target


def _is_command(spec: TaskSpec) -> bool:
    return isinstance(spec.source, dict) and spec.source.get("kind") == "command"


def _check_commands(uow: UnitOfWork, queue: Queue, specs: list[TaskSpec]) -> None:
    """FORBIDDEN for command tasks in a queue whose group does not allow them."""
    if any(_is_command(spec) for spec in specs) and not commands_allowed(uow, queue.group):
        raise ForbiddenError(
            f"group {queue.group!r} (queue {queue.code!r}) does not allow command tasks; "
            "a site admin can allow them with updateGroup(code, allowCommands: true)"
        )


_TASK_CHANGES = ", ".join(f.graphql_name for f in TASK.updatable[:-1]) + f" and {TASK.updatable[-1].graphql_name}"


def _planned_task_update(
    uow: UnitOfWork, job: Job, field_: str, update: object, seen: set[str]
) -> tuple[Task, TaskStatus | None, dict[str, Any]]:
    """One task update of `update_tasks`, checked: the task, its new status, its other
    changes. `seen` holds the tasks planned before it, each may be listed once."""
    if not isinstance(update, dict) or "id" not in update:
        raise ValidationError(field_, "must be an object with the task's id")
    unknown = set(update) - {"id", *(f.name for f in TASK.updatable)}
    if unknown:
        raise ValidationError(field_, f"only {_TASK_CHANGES} can change, not {', '.join(sorted(map(str, unknown)))}")
    task = uow.get(Task, update["id"])
    if task.job_id != str(job.id):
        raise NotFoundError("Task", f"{update['id']} in job {job.id}")
    if str(task.id) in seen:
        raise ValidationError(field_, f"task {task.id} is listed twice")
    seen.add(str(task.id))
    status = None
    if update.get("status") is not None:
        status = TASK["status"].checked(update["status"], f"{field_}.status")
        if status != task.status:
            task.check_transition(status, by_user=True)
    changes = {
        f.name: f.checked(update[f.name], f"{field_}.{f.graphql_name}")
        for f in TASK.updatable
        if f.name != "status" and update.get(f.name) is not None
    }
    return task, status, {k: v for k, v in changes.items() if getattr(task, k) != v}


def _change_phase(uow: UnitOfWork, job_ids: list[str], cutoff: datetime, phase: JobPhase) -> list[str]:
    moved = []
    for job_id in job_ids:
        job = uow.find(Job, job_id)
        if job is None or not job.due_to_leave(phase, cutoff):
            continue
        if phase == JobPhase.FINISHED:
            job.retire()
        else:
            job.archive()
        moved.append(str(job.id))
    return moved


def _add_tasks(uow: UnitOfWork, job: Job, specs: list[TaskSpec], *, allow_duplicates: bool) -> CountedIds:
    ids: list[str] = []
    new: list[tuple[Task, str]] = []
    known = job.task_ids_by_key()  # the job's tasks and, as they are made, the new ones
    for index, spec in enumerate(specs):
        key = identity_key(spec.source, spec.destination)
        existing = known.get(key)
        if existing is not None:
            if not allow_duplicates:
                raise ConflictError(
                    f"tasks[{index}]: a task with this source and destination already exists "
                    f"({existing}); allow duplicates to retry it instead"
                )
            _retry_task(job, uow.get(Task, existing))
            ids.append(existing)
            continue
        pending = spec.destination is None and not job.destination and needs_destination(spec.source)
        task = uow.add(
            Task(
                job_id=str(job.id),
                uri=str(len(job.tasks) + len(new)),
                source=spec.source,
                destination=spec.destination,
                size=spec.size,
                priority=spec.priority,
                metadata=spec.metadata,
                status=TaskStatus.PENDING if pending else TaskStatus.QUEUED,
            )
        )
        known[key] = str(task.id)
        new.append((task, key))
        ids.append(str(task.id))
    if new:
        job.add_tasks(
            [{"id": str(t.id), "uri": t.uri, "key": key, "size": t.size, "status": str(t.status)} for t, key in new]
        )
    return CountedIds(ids, created=len(new), merged=len(specs) - len(new))


def _retry_task(job: Job, task: Task) -> None:
    if task.status in (TaskStatus.QUEUED, TaskStatus.PENDING, TaskStatus.BOOTING, TaskStatus.EXECUTING):
        return  # it will run anyway
    pending = task.destination is None and not job.destination and needs_destination(task.source)
    task.retry(TaskStatus.PENDING if pending else TaskStatus.QUEUED)
    job.note_task_status(str(task.id), str(task.status))


def _release_pending_tasks(uow: UnitOfWork, job: Job) -> None:
    """The job got a destination: its tasks that waited for one are queued."""
    for task_id, tally in job.tasks.items():
        if tally["status"] == TaskStatus.PENDING:
            set_task_status(job, uow.get(Task, task_id), TaskStatus.QUEUED, by_user=False)
    if job.status in (JobStatus.PENDING, JobStatus.INIT):
        set_status(uow, job, JobStatus.WAITING, by_user=False)


def _hold_tasks_without_destination(uow: UnitOfWork, job: Job) -> None:
    """The job lost its destination: transfers with none of their own wait in PENDING."""
    for task_id, tally in job.tasks.items():
        if tally["status"] != TaskStatus.QUEUED:
            continue
        task = uow.get(Task, task_id)
        if task.destination is None and needs_destination(task.source):
            set_task_status(job, task, TaskStatus.PENDING, by_user=False)
