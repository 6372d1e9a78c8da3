"""The application service: every command users and workers can give, each one atomic."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent, Recording

from domain.base import LedgerAggregate
from domain.commands import Written, command
from domain.dispatch import Dispatch
from domain.errors import ConflictError, LedgerError, NotFoundError, ValidationError
from domain.inputs import TaskSpec, job_code, task_specs
from domain.job import CREATABLE, DEFAULT_MAX_ATTEMPTS, FINISHED, Job, JobPhase, JobStatus
from domain.job import UPDATABLE as JOB_UPDATABLE
from domain.limits import (
    MAX_ATTEMPTS,
    MAX_CONCURRENCY,
    MAX_DESCRIPTION,
    MAX_IDLE_TIMEOUT_S,
    MAX_NAME,
    MAX_PATH,
    MAX_TAGS,
    MAX_TASKS_PER_CALL,
)
from domain.queue import REGISTRY_ID, ExecutionMode, Queue, QueueRegistry, QueueState, QueueStatus, members
from domain.rules import (
    UNSET,
    check_code,
    check_enum,
    check_json_object,
    check_optional_string,
    check_positive,
    check_priority,
    check_string,
    check_tags,
)
from domain.storage import (
    StoreConfig,
    database_url_from_env,
    ensure_schema,
    parse_database_url,
    schema_lock,
    select_events_after,
)
from domain.task import Task, TaskStatus, identity_key, needs_destination
from domain.unit_of_work import UnitOfWork, load, parse_id

DEFAULT_QUEUE_CODE = "default"


class Ledger(Dispatch, Application[Any]):
    """Queues, jobs and tasks, event-sourced. Commands validate everything before they
    write, save every aggregate they touched in one transaction, and write nothing
    when they fail."""

    name = "jobledger"
    snapshotting_intervals = {Queue: 200, Job: 200, QueueRegistry: 200}  # noqa: RUF012
    env = {"AGGREGATE_CACHE_MAXSIZE": "50000"}  # noqa: RUF012

    def __init__(self, database_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.store: StoreConfig = parse_database_url(database_url or database_url_from_env())
        ensure_schema(self.store)
        # Called with the newest position after every save (the projection runner wakes on it).
        self.after_save: list[Callable[[int], None]] = []
        self.dispatching = threading.Lock()  # see domain.dispatch.in_turn
        with schema_lock(self.store):
            super().__init__(env={**self.store.env, **(env or {})})
            self.ensure_default_queue(actor="jobledger")

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        """Save like eventsourcing does, but record the events of all aggregates in the
        order they happened, so the log reads as a story (job created, then its tasks)."""
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        others = []
        for obj in objs:  # ours directly: eventsourcing's runtime Protocol checks cost ~20 us each
            if isinstance(obj, LedgerAggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                others.append(obj)
        processing_event.collect_events(*others, **kwargs)
        _into_causal_order(processing_event.events)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        if recordings:
            for listener in self.after_save:
                listener(recordings[-1].notification.id)
        return recordings

    def select_events_after(self, versions: dict[UUID, int]) -> list[Any]:
        """The stored events of many aggregates newer than the given versions, in one query."""
        return select_events_after(self.recorder, self.store.backend, versions)

    def position(self) -> int:
        """The position of the newest event in the store (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    # -- loading ---------------------------------------------------------------

    def open_jobs(self, queue_id: str) -> list[str]:
        """The unfinished jobs of a queue, in arrival order (from the queue's own events)."""
        return self._members(queue_id)[0]

    def running_jobs(self, queue_id: str) -> list[str]:
        """The RUNNING jobs of a queue (from the queue's own events)."""
        return self._members(queue_id)[1]

    def _members(self, queue_id: str, up_to: int | None = None) -> tuple[list[str], list[str]]:
        return members(self.events.get(parse_id("Queue", queue_id), lte=up_to))

    def registry(self) -> QueueRegistry | None:
        try:
            registry: Any = load(self.repository, REGISTRY_ID)
        except AggregateNotFoundError:
            return None
        assert isinstance(registry, QueueRegistry)
        return registry

    def _queue(self, uow: UnitOfWork, ref: object) -> Queue:
        """A queue by id or code; the default queue when `ref` is None."""
        registry = uow.get(QueueRegistry, REGISTRY_ID)
        if ref is None:
            return uow.get(Queue, registry.default_queue_id)
        if not isinstance(ref, str) or not ref:
            raise ValidationError("queue", "must be a queue code or id")
        check_string("queue", ref, MAX_NAME)
        queue_id = registry.queue_id_for(ref)
        if queue_id is not None:
            return uow.get(Queue, queue_id)
        try:
            return uow.get(Queue, ref)
        except NotFoundError:
            raise NotFoundError("Queue", ref) from None

    # -- queues ----------------------------------------------------------------

    @command
    def ensure_default_queue(self, uow: UnitOfWork) -> list[str]:
        """Create the registry and the `default` queue on the first start; else nothing."""
        registry = uow.find(QueueRegistry, REGISTRY_ID)
        if registry is not None and registry.default_queue_id:
            return [registry.default_queue_id]
        registry = registry or uow.add(QueueRegistry())
        queue = uow.add(_new_queue(DEFAULT_QUEUE_CODE, default=True, description="The default queue"))
        registry.reserve(DEFAULT_QUEUE_CODE, str(queue.id))
        registry.change_default(str(queue.id))
        return [str(queue.id)]

    @command
    def create_queue(
        self,
        uow: UnitOfWork,
        code: str,
        *,
        priority: int = 500,
        status: str = "WAITING",
        default: bool = False,
        description: str = "",
        metadata: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        max_concurrency: int | None = None,
        idle_timeout_s: int | None = None,
        execution_mode: str = "PRIORITY",
        parent: str | None = None,
        max_attempts: int | None = None,
    ) -> list[str]:
        registry = uow.get(QueueRegistry, REGISTRY_ID)
        check_code("code", code)
        registry.check_code_free(code)
        parent_queue = self._queue(uow, parent) if parent is not None else None
        queue = uow.add(
            _new_queue(
                code,
                uri=f"{parent_queue.uri}/{code}" if parent_queue else code,
                priority=check_priority("priority", priority),
                status=check_enum("status", QueueStatus, status),
                description=check_string("description", description, MAX_DESCRIPTION),
                metadata=check_json_object("metadata", metadata),
                tags=check_tags("tags", tags),
                max_concurrency=check_positive("maxConcurrency", max_concurrency, most=MAX_CONCURRENCY),
                idle_timeout_s=check_positive("idleTimeoutS", idle_timeout_s, most=MAX_IDLE_TIMEOUT_S, allow_zero=True),
                execution_mode=check_enum("executionMode", ExecutionMode, execution_mode),
                max_attempts=check_positive("maxAttempts", max_attempts, most=MAX_ATTEMPTS),
                parent_id=str(parent_queue.id) if parent_queue else None,
            )
        )
        registry.reserve(code, str(queue.id))
        if parent_queue is not None:
            parent_queue.add_child(str(queue.id))
        if _check_bool("default", default):
            self._make_default(uow, registry, queue)
        return [str(queue.id)]

    @command
    def update_queue(self, uow: UnitOfWork, queue_id: str, **changes: Any) -> list[str]:
        """Change any of priority, status, default, description, metadata, max_concurrency,
        idle_timeout_s, execution_mode, max_attempts. Only the fields given change."""
        queue = uow.get(Queue, queue_id)
        unknown = set(changes) - {"default", *Queue_UPDATE_CHECKS}
        if unknown:
            raise ValidationError(", ".join(sorted(unknown)), "is not a queue field that can be changed")
        checked = {
            name: Queue_UPDATE_CHECKS[name](value)
            for name, value in changes.items()
            if name != "default" and value is not UNSET
        }
        different = {k: v for k, v in checked.items() if getattr(queue, k) != v}
        if different:
            queue.update(different)
        wanted_default = changes.get("default", UNSET)
        if wanted_default is not UNSET and wanted_default is not None:
            if _check_bool("default", wanted_default) and not queue.default:
                self._make_default(uow, uow.get(QueueRegistry, REGISTRY_ID), queue)
            elif not wanted_default and queue.default:
                raise ValidationError(
                    "default",
                    "there is always exactly one default queue; make another queue the default instead",
                )
        return [str(queue.id)]

    def _make_default(self, uow: UnitOfWork, registry: QueueRegistry, queue: Queue) -> None:
        if queue.state == QueueState.SEALED:
            raise ConflictError(f"queue {queue.code!r} is sealed and cannot become the default queue")
        if registry.default_queue_id:
            uow.get(Queue, registry.default_queue_id).unset_default()
        registry.change_default(str(queue.id))
        queue.set_default()

    @command
    def seal_queue(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        """Archive: the queue takes no new jobs; the jobs it has go on."""
        queue = uow.get(Queue, queue_id)
        if queue.default:
            raise ConflictError(
                f"queue {queue.code!r} is the default queue and cannot be sealed; make another queue the default first"
            )
        if queue.state != QueueState.SEALED:
            queue.seal()
        return [str(queue.id)]

    @command
    def terminate_queue(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        """Abort every unfinished job of the queue."""
        queue = uow.get(Queue, queue_id)
        aborted, running = self._members(str(queue.id), queue.version)
        for job_id in aborted:
            uow.get(Job, job_id).change_status(JobStatus.ABORTED, by_user=False)
        queue.terminate(aborted, [j for j in running if j in set(aborted)])
        return [str(queue.id)]

    def delete_queue(self, queue_id: str, *, actor: str | None = None) -> Written:
        """Delete the queue; its unfinished jobs move to the default queue, in one save.

        A queue still taking jobs is sealed first (its own small save), so that clients
        submitting to it all the while cannot keep the move from ever committing."""
        sealed = self._seal_for_delete(queue_id, actor=actor)
        try:
            return self._delete_queue(queue_id, actor=actor)
        except LedgerError:
            if sealed.ids:  # the seal was ours: take it back, so the failed delete changes nothing
                self._unseal_after_failed_delete(queue_id, actor=actor)
            raise

    @command
    def _seal_for_delete(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        """Seal the queue if it is not yet; returns its id only if this sealed it."""
        queue = uow.get(Queue, queue_id)
        queue.check_deletable()
        if queue.state == QueueState.SEALED:
            return []
        queue.seal()
        return [str(queue.id)]

    @command
    def _unseal_after_failed_delete(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        queue = uow.find(Queue, queue_id)
        if queue is not None and queue.state == QueueState.SEALED:
            queue.unseal()
        return [str(queue_id)]

    @command
    def _delete_queue(self, uow: UnitOfWork, queue_id: str) -> list[str]:
        queue = uow.get(Queue, queue_id)
        queue.check_deletable()
        registry = uow.get(QueueRegistry, REGISTRY_ID)
        default = uow.get(Queue, registry.default_queue_id)
        moved = self._members(str(queue.id), queue.version)[0]
        for job_id in moved:
            job = uow.get(Job, job_id)
            job.move(str(queue.id), str(default.id))
            default.add_job(job_id, f"moved from deleted queue {queue.code}")
            if job.status == JobStatus.RUNNING:
                default.start_job(job_id)  # it keeps running, even beyond the default's limit
        queue.delete(moved, str(default.id))
        registry.release(queue.code)
        if queue.parent_id:
            uow.get(Queue, queue.parent_id).remove_child(str(queue.id))
        return [str(queue.id)]

    @command
    def add_queue_tags(self, uow: UnitOfWork, queue_id: str, tags: dict[str, str]) -> list[str]:
        queue = uow.get(Queue, queue_id)
        checked = check_tags("tags", tags)
        queue.check_room_for_tags(checked)
        if any(queue.tags.get(k) != v for k, v in checked.items()):
            queue.add_tags(checked)
        return [str(queue.id)]

    @command
    def remove_queue_tags(self, uow: UnitOfWork, queue_id: str, keys: list[str]) -> list[str]:
        queue = uow.get(Queue, queue_id)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValidationError("keys", "must be a list of tag keys")
        if len(keys) > MAX_TAGS:
            raise ValidationError("keys", f"at most {MAX_TAGS} tag keys (got {len(keys)})")
        present = [k for k in keys if k in queue.tags]
        if present:
            queue.remove_tags(present)
        return [str(queue.id)]

    # -- jobs ------------------------------------------------------------------

    @command
    def create_job(
        self,
        uow: UnitOfWork,
        *,
        queue: str | None = None,
        code: str | None = None,
        source: str | None = None,
        destination: str | None = None,
        status: str | None = None,
        priority: int | None = None,
        metadata: dict[str, Any] | None = None,
        tasks: list[Any] | None = None,
        max_attempts: int | None = None,
    ) -> list[str]:
        specs = task_specs("tasks", tasks)
        initial = check_enum("status", JobStatus, status or "INIT")
        if initial not in CREATABLE:
            raise ValidationError("status", f"a new job may start as {', '.join(sorted(CREATABLE))}")
        source = check_optional_string("source", source, MAX_PATH)
        target = self._queue(uow, queue)
        target.check_accepts_jobs()
        job = uow.add(
            Job(
                code=job_code(code, source, specs),
                queue_id=str(target.id),
                status=initial,
                priority=check_priority("priority", priority, optional=True),
                source=source,
                destination=check_optional_string("destination", destination, MAX_PATH),
                metadata=check_json_object("metadata", metadata),
                max_attempts=check_positive("maxAttempts", max_attempts, most=MAX_ATTEMPTS),
            )
        )
        target.add_job(str(job.id), "created")
        self._add_tasks(uow, job, specs, allow_duplicates=True)
        self._settle(uow, job)
        return [str(job.id)]

    @command
    def update_job(
        self,
        uow: UnitOfWork,
        job_id: str,
        *,
        status: Any = UNSET,
        priority: Any = UNSET,
        metadata: Any = UNSET,
        queue: Any = UNSET,
        destination: Any = UNSET,
        max_attempts: Any = UNSET,
    ) -> list[str]:
        """Change status (PENDING, WAITING, PAUSED, ABORTED, DONE), priority (None: the
        queue's), metadata, destination or max_attempts, or move the job to `queue`."""
        job = uow.get(Job, job_id)
        wanted = check_enum("status", JobStatus, status) if status is not UNSET else None
        if wanted is not None and wanted != job.status:
            job.check_transition(wanted, by_user=True)
        changes = {
            name: value
            for name, value in {
                "priority": priority if priority is UNSET else check_priority("priority", priority, optional=True),
                "metadata": metadata if metadata is UNSET else check_json_object("metadata", metadata),
                "destination": destination
                if destination is UNSET
                else check_optional_string("destination", destination, MAX_PATH),
                "max_attempts": max_attempts
                if max_attempts is UNSET
                else check_positive("maxAttempts", max_attempts, most=MAX_ATTEMPTS),
            }.items()
            if value is not UNSET and getattr(job, name) != value
        }
        if queue is not UNSET and queue is not None:
            self._move(uow, job, self._queue(uow, queue))
        if changes:
            assert set(changes) <= set(JOB_UPDATABLE)
            job.update(changes)
        if changes.get("destination"):
            self._release_pending_tasks(uow, job)
        elif "destination" in changes:
            self._hold_tasks_without_destination(uow, job)
        if wanted is not None:
            self._set_status(uow, job, wanted, by_user=True)
        # A finish the user chose stands; otherwise the tasks decide (a job resumed with
        # nothing left to run is DONE, not WAITING forever).
        if wanted is None or wanted not in FINISHED:
            self._settle(uow, job)
        return [str(job.id)]

    @command
    def delete_job(self, uow: UnitOfWork, job_id: str) -> list[str]:
        """Delete the job. Its tasks stay in the history, as every event does."""
        job = uow.get(Job, job_id)
        queue = uow.get(Queue, job.queue_id, allow_deleted=True)
        if job.status == JobStatus.RUNNING and not queue.deleted:
            queue.stop_job(str(job.id))
        if not job.is_finished and not queue.deleted:
            queue.remove_job(str(job.id), "deleted")
        job.delete()
        return [str(job.id)]

    @command
    def retire_jobs(self, uow: UnitOfWork, job_ids: list[str], cutoff: datetime) -> list[str]:
        """Move jobs finished at or before `cutoff` from the ACTIVE list to FINISHED.
        Jobs that were reopened, deleted or already moved are left alone."""
        return self._change_phase(uow, job_ids, cutoff, JobPhase.FINISHED)

    @command
    def archive_jobs(self, uow: UnitOfWork, job_ids: list[str], cutoff: datetime) -> list[str]:
        """Move jobs finished at or before `cutoff` from FINISHED to ARCHIVED."""
        return self._change_phase(uow, job_ids, cutoff, JobPhase.ARCHIVED)

    def _change_phase(self, uow: UnitOfWork, job_ids: list[str], cutoff: datetime, phase: JobPhase) -> list[str]:
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

    def _move(self, uow: UnitOfWork, job: Job, target: Queue) -> None:
        if str(target.id) == job.queue_id:
            return
        target.check_accepts_jobs()
        source = uow.get(Queue, job.queue_id, allow_deleted=True)
        if job.status == JobStatus.RUNNING:
            target.check_room()
            source.stop_job(str(job.id))
            target.start_job(str(job.id))
        if not job.is_finished:
            if not source.deleted:
                source.remove_job(str(job.id), f"moved to {target.code}")
            target.add_job(str(job.id), f"moved from {source.code}")
        job.move(str(source.id), str(target.id))

    def _set_status(self, uow: UnitOfWork, job: Job, status: JobStatus, *, by_user: bool) -> None:
        """Change the job's status and keep its queue's list of unfinished jobs exact."""
        was_finished, previous = job.is_finished, job.status
        if status == JobStatus.RUNNING and job.status != JobStatus.RUNNING:
            uow.get(Queue, job.queue_id).check_room()
        if not job.change_status(status, by_user=by_user):
            return
        queue = uow.get(Queue, job.queue_id, allow_deleted=True)
        if previous == JobStatus.RUNNING and not queue.deleted:
            queue.stop_job(str(job.id))
        if status == JobStatus.RUNNING:
            queue.start_job(str(job.id))
        if was_finished == job.is_finished:
            return
        if job.is_finished:
            queue.remove_job(str(job.id), str(status).lower())
            return
        if queue.deleted:  # reopened after its queue went away: it lands in the default queue
            queue = self._queue(uow, None)
            job.move(job.queue_id, str(queue.id))
        queue.add_job(str(job.id), "reopened")
        if not by_user:
            return
        # A user reopening a job retries what failed; reopening a DONE job runs it again.
        rerun = {TaskStatus.FAILED, TaskStatus.DONE} if previous == JobStatus.DONE else {TaskStatus.FAILED}
        for task_id, tally in job.tasks.items():
            if tally["status"] in rerun:
                self._set_task_status(uow, job, uow.get(Task, task_id), TaskStatus.QUEUED, by_user=False)

    def _settle(self, uow: UnitOfWork, job: Job) -> None:
        """Let the job's status follow its tasks: ready, done, failed or reopened."""
        if job.status == JobStatus.INIT and job.tasks:
            statuses = {t["status"] for t in job.tasks.values()}
            ready = JobStatus.PENDING if statuses == {TaskStatus.PENDING} else JobStatus.WAITING
            self._set_status(uow, job, ready, by_user=False)
        target = job.settled_status()
        if target is not None:
            self._set_status(uow, job, target, by_user=False)

    # -- tasks -----------------------------------------------------------------

    @command
    def add_tasks(self, uow: UnitOfWork, job_id: str, tasks: list[Any], allow_duplicates: bool = True) -> list[str]:
        """Add tasks; one equal to an existing task (same source and destination) retries
        that task instead, or is refused with CONFLICT when duplicates are not allowed."""
        job = uow.get(Job, job_id)
        specs = task_specs("tasks", tasks)
        if not specs:
            raise ValidationError("tasks", "give at least one task")
        job.check_accepts_tasks()
        ids = self._add_tasks(uow, job, specs, allow_duplicates=_check_bool("allowDuplicates", allow_duplicates))
        self._settle(uow, job)
        return ids

    def _add_tasks(self, uow: UnitOfWork, job: Job, specs: list[TaskSpec], *, allow_duplicates: bool) -> list[str]:
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
                self._retry_task(uow, job, uow.get(Task, existing))
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
        return ids

    def _retry_task(self, uow: UnitOfWork, job: Job, task: Task) -> None:
        if task.status in (TaskStatus.QUEUED, TaskStatus.PENDING, TaskStatus.BOOTING, TaskStatus.EXECUTING):
            return  # it will run anyway
        pending = task.destination is None and not job.destination and needs_destination(task.source)
        task.retry(TaskStatus.PENDING if pending else TaskStatus.QUEUED)
        job.note_task_status(str(task.id), str(task.status))

    def _release_pending_tasks(self, uow: UnitOfWork, job: Job) -> None:
        """The job got a destination: its tasks that waited for one are queued."""
        for task_id, tally in job.tasks.items():
            if tally["status"] == TaskStatus.PENDING:
                self._set_task_status(uow, job, uow.get(Task, task_id), TaskStatus.QUEUED, by_user=False)
        if job.status in (JobStatus.PENDING, JobStatus.INIT):
            self._set_status(uow, job, JobStatus.WAITING, by_user=False)

    def _hold_tasks_without_destination(self, uow: UnitOfWork, job: Job) -> None:
        """The job lost its destination: transfers with none of their own wait in PENDING."""
        for task_id, tally in job.tasks.items():
            if tally["status"] != TaskStatus.QUEUED:
                continue
            task = uow.get(Task, task_id)
            if task.destination is None and needs_destination(task.source):
                self._set_task_status(uow, job, task, TaskStatus.PENDING, by_user=False)

    def _set_task_status(self, uow: UnitOfWork, job: Job, task: Task, status: TaskStatus, *, by_user: bool) -> None:
        if task.change_status(status, by_user=by_user):
            job.note_task_status(str(task.id), str(status))

    @command
    def update_tasks(self, uow: UnitOfWork, job_id: str, updates: list[dict[str, Any]]) -> list[str]:
        """Change the status (QUEUED, FAILED, ONHOLD, EXCLUDED, DONE), priority or
        metadata of tasks of one job. All are checked before any is written."""
        job = uow.get(Job, job_id)
        if not isinstance(updates, list) or not updates:
            raise ValidationError("tasks", "give at least one task update")
        if len(updates) > MAX_TASKS_PER_CALL:
            raise ValidationError("tasks", f"at most {MAX_TASKS_PER_CALL} task updates per call (got {len(updates)})")
        planned: list[tuple[Task, TaskStatus | None, dict[str, Any]]] = []
        seen: set[str] = set()
        for index, update in enumerate(updates):
            field_ = f"tasks[{index}]"
            if not isinstance(update, dict) or "id" not in update:
                raise ValidationError(field_, "must be an object with the task's id")
            unknown = set(update) - {"id", "status", "priority", "metadata"}
            if unknown:
                raise ValidationError(
                    field_, f"only status, priority and metadata can change, not {', '.join(sorted(unknown))}"
                )
            task = uow.get(Task, update["id"])
            if task.job_id != str(job.id):
                raise NotFoundError("Task", f"{update['id']} in job {job.id}")
            if str(task.id) in seen:
                raise ValidationError(field_, f"task {task.id} is listed twice")
            seen.add(str(task.id))
            status = None
            if update.get("status") is not None:
                status = check_enum(f"{field_}.status", TaskStatus, update["status"])
                if status != task.status:
                    task.check_transition(status, by_user=True)
            changes: dict[str, Any] = {}
            if update.get("priority") is not None:
                changes["priority"] = check_priority(f"{field_}.priority", update["priority"])
            if "metadata" in update and update["metadata"] is not None:
                changes["metadata"] = check_json_object(f"{field_}.metadata", update["metadata"])
            planned.append((task, status, {k: v for k, v in changes.items() if getattr(task, k) != v}))
        for task, status, changes in planned:
            if changes:
                task.update(changes)
            if status is not None:
                self._set_task_status(uow, job, task, status, by_user=True)
        self._settle(uow, job)
        return [str(task.id) for task, _, _ in planned]


def _into_causal_order(events: list[Any]) -> None:
    """Sort by timestamp (stable), unless a clock step would put one aggregate's
    events out of version order; then keep them as collected."""
    ordered = sorted(events, key=lambda e: e.timestamp)
    last: dict[Any, int] = {}
    for event in ordered:
        if last.get(event.originator_id, 0) >= event.originator_version:
            return
        last[event.originator_id] = event.originator_version
    events[:] = ordered


def _check_bool(field_name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field_name, "must be true or false")
    return value


def _new_queue(code: str, *, default: bool = False, **fields: Any) -> Queue:
    values: dict[str, Any] = {
        "uri": code,
        "priority": 500,
        "status": QueueStatus.WAITING,
        "description": "",
        "metadata": {},
        "tags": {},
        "max_concurrency": None,
        "idle_timeout_s": None,
        "execution_mode": ExecutionMode.PRIORITY,
        "max_attempts": None,
        "parent_id": None,
    }
    values.update(fields)
    return Queue(code=code, default=default, **values)


Queue_UPDATE_CHECKS: dict[str, Callable[[Any], Any]] = {
    "priority": lambda v: check_priority("priority", v),
    "status": lambda v: check_enum("status", QueueStatus, v),
    "description": lambda v: check_string("description", v, MAX_DESCRIPTION),
    "metadata": lambda v: check_json_object("metadata", v),
    "max_concurrency": lambda v: check_positive("maxConcurrency", v, most=MAX_CONCURRENCY),
    "idle_timeout_s": lambda v: check_positive("idleTimeoutS", v, most=MAX_IDLE_TIMEOUT_S, allow_zero=True),
    "execution_mode": lambda v: check_enum("executionMode", ExecutionMode, v),
    "max_attempts": lambda v: check_positive("maxAttempts", v, most=MAX_ATTEMPTS),
}

__all__ = ["DEFAULT_MAX_ATTEMPTS", "Ledger", "Written"]
