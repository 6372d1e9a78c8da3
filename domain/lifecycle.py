"""Coordination rules the services share: how a job's status, its queue's lists and its
tasks' tally move together. Functions over one UnitOfWork, so no service calls another's."""

from __future__ import annotations

from domain.errors import NotFoundError, ValidationError
from domain.job import DEFAULT_MAX_ATTEMPTS, Job, JobStatus
from domain.limits import MAX_NAME
from domain.queue import REGISTRY_ID, Queue, QueueRegistry, members
from domain.rules import check_string
from domain.task import Task, TaskStatus
from domain.unit_of_work import UnitOfWork


def find_queue(uow: UnitOfWork, ref: object) -> Queue:
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


def queue_members(uow: UnitOfWork, queue: Queue) -> tuple[list[str], list[str]]:
    """(unfinished job ids, running job ids) of the queue as this command loaded it,
    folded from its own events."""
    return members(uow.stored_events(queue))


def max_attempts(uow: UnitOfWork, job: Job) -> int:
    """The job's own limit, else its queue's, else 3."""
    if job.max_attempts:
        return int(job.max_attempts)
    queue = uow.get(Queue, job.queue_id, allow_deleted=True)
    return int(queue.max_attempts or DEFAULT_MAX_ATTEMPTS)


def set_status(uow: UnitOfWork, job: Job, status: JobStatus, *, by_user: bool) -> None:
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
        queue = find_queue(uow, None)
        job.move(job.queue_id, str(queue.id))
    queue.add_job(str(job.id), "reopened")
    if not by_user:
        return
    # A user reopening a job retries what failed; reopening a DONE job runs it again.
    rerun = {TaskStatus.FAILED, TaskStatus.DONE} if previous == JobStatus.DONE else {TaskStatus.FAILED}
    for task_id, tally in job.tasks.items():
        if tally["status"] in rerun:
            set_task_status(job, uow.get(Task, task_id), TaskStatus.QUEUED, by_user=False)


def settle(uow: UnitOfWork, job: Job) -> None:
    """Let the job's status follow its tasks: ready, done, failed or reopened."""
    if job.status == JobStatus.INIT and job.tasks:
        statuses = {t["status"] for t in job.tasks.values()}
        ready = JobStatus.PENDING if statuses == {TaskStatus.PENDING} else JobStatus.WAITING
        set_status(uow, job, ready, by_user=False)
    target = job.settled_status()
    if target is not None:
        set_status(uow, job, target, by_user=False)


def set_task_status(job: Job, task: Task, status: TaskStatus, *, by_user: bool) -> None:
    """Change the task's status and note it in its job's tally."""
    if task.change_status(status, by_user=by_user):
        job.note_task_status(str(task.id), str(status))


def move_job(uow: UnitOfWork, job: Job, target: Queue) -> None:
    """Move the job to `target`, with its place in the lists of unfinished and running jobs."""
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
