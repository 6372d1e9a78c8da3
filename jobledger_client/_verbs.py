"""Every verb of the plain API, once for both clients: queues, jobs, tasks, the history,
live progress and the workers' verbs; Dioptra's `submit` and `queue_jobs`; accsyn's
session verbs come in from `_accsyn`. Each verb builds a plan and hands it to `_run`
(one result) or `_iter` (a listing), which the blocking and the asyncio client implement.

Every verb that changes something (but `heartbeat`) takes `idempotency_key=`: sent again
with the same key, it is not done twice (see `jobledger_client.idempotency`). Without one,
each call gets a fresh key, kept through its retries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jobledger_client import _plans as plans
from jobledger_client import documents as doc
from jobledger_client._accsyn import AccsynVerbs
from jobledger_client._inputs import UNSET, given, settable
from jobledger_client._plans import Listing, queue_jobs
from jobledger_client._results import ResultIterator
from jobledger_client.models import (
    AddedTasks,
    Event,
    Job,
    JobProgress,
    Queue,
    QueueSettings,
    RetrySettings,
    SubmittedJob,
    Task,
    TaskLease,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Verbs(AccsynVerbs):
    """The verbs both clients offer (on `AsyncClient`, awaited, and listings async iterators)."""

    # -- queues ---------------------------------------------------------------------

    def queues(
        self,
        where: str | None = None,
        include_archived: bool = False,
        order_by: Any = None,
        first: int = 50,
        max_items: int | None = None,
    ) -> ResultIterator[Queue]:
        """Queues matching `where` (e.g. ``"priority>=500 AND status=waiting"``), sorted by
        `order_by` (``"-created"``, ``["priority", "-code"]``, ``{"field": "code", "order":
        "DESC"}``...), `first` per page, pages fetched as you iterate. Archived (sealed) queues
        only with include_archived=True."""
        listing = Listing()
        return self._iter(plans.queues(listing, where, include_archived, order_by, first, max_items), listing)

    def queue(self, id: str | None = None, *, code: str | None = None) -> Queue | None:
        """A queue by id or by code (``client.queue(code="ingest")``; a code given as `id` works
        too); None when there is none."""
        return self._run(plans.queue(id, code))  # type: ignore[no-any-return]

    def create_queue(
        self,
        code: str,
        *,
        tags: dict[str, Any] | None = None,
        parent: str | None = None,
        idempotency_key: str | None = None,
        **settings: Unpack[QueueSettings],
    ) -> Queue:
        """Create a queue with any of `QueueSettings` (priority, status "waiting" or "disabled",
        default, description, metadata, max_concurrency, idle_timeout_s, execution_mode "fifo",
        "lifo" or "priority" in any case, max_attempts); `parent` is the code of a parent queue.
        Raises Conflict when the code is taken, Validation for bad values."""
        fields = given(code=code, tags=tags, parent=parent, **settable(QueueSettings, settings, "create_queue"))
        return self._run(plans.create_queue(fields), idempotency_key)  # type: ignore[no-any-return]

    def update_queue(
        self, queue: str, *, idempotency_key: str | None = None, **changes: Unpack[QueueSettings]
    ) -> Queue:
        """Change a queue (by id or code): only the `QueueSettings` given change; None clears
        max_concurrency (unlimited), idle_timeout_s and max_attempts."""
        plan = plans.update_queue(queue, settable(QueueSettings, changes, "update_queue"))
        return self._run(plan, idempotency_key)  # type: ignore[no-any-return]

    def archive_queue(self, queue: str, *, idempotency_key: str | None = None) -> Queue:
        """Seal a queue (by id or code): it accepts no new jobs; those it has run on."""
        plan = plans.queue_mutation(doc.ARCHIVE_QUEUE, "archiveQueue", queue)
        return self._run(plan, idempotency_key)  # type: ignore[no-any-return]

    def terminate_queue(self, queue: str, *, idempotency_key: str | None = None) -> Queue:
        """Abort every unfinished job of a queue (by id or code)."""
        plan = plans.queue_mutation(doc.TERMINATE_QUEUE, "terminateQueue", queue)
        return self._run(plan, idempotency_key)  # type: ignore[no-any-return]

    def delete_queue(self, queue: str, *, idempotency_key: str | None = None) -> str:
        """Delete a queue (by id or code); its unfinished jobs move to the default queue.
        Returns its id. The default queue cannot be deleted."""
        return self._run(plans.delete_queue(queue), idempotency_key)  # type: ignore[no-any-return]

    def add_queue_tags(self, queue: str, tags: Mapping[str, Any], *, idempotency_key: str | None = None) -> Queue:
        """Add or replace tags ``{key: value}`` of a queue (by id or code)."""
        plan = plans.queue_mutation(doc.ADD_QUEUE_TAGS, "addQueueTags", queue, tags=dict(tags))
        return self._run(plan, idempotency_key)  # type: ignore[no-any-return]

    def remove_queue_tags(self, queue: str, keys: Iterable[str], *, idempotency_key: str | None = None) -> Queue:
        """Remove tags of a queue (by id or code) by key."""
        plan = plans.queue_mutation(doc.REMOVE_QUEUE_TAGS, "removeQueueTags", queue, keys=list(keys))
        return self._run(plan, idempotency_key)  # type: ignore[no-any-return]

    # -- jobs -----------------------------------------------------------------------

    def jobs(
        self,
        where: str | None = None,
        phase: str | None = "ACTIVE",
        queue: str | None = None,
        order_by: Any = None,
        first: int = 50,
        max_items: int | None = None,
    ) -> ResultIterator[Job]:
        """Jobs matching `where` (e.g. ``'status=paused AND user="lars@edit.com"'``) in `phase`
        ("ACTIVE", "FINISHED", "ARCHIVED"; None: every phase), in `queue` (id or code), sorted by
        `order_by`, `first` per page, pages fetched as you iterate."""
        listing = Listing()
        return self._iter(plans.jobs(listing, where, phase, queue, order_by, first, max_items), listing)

    def job(self, id: str) -> Job | None:
        """A job by id; None when there is none."""
        return self._run(plans.job(id))  # type: ignore[no-any-return]

    def create_job(
        self,
        *,
        queue: str | None = None,
        tasks: Iterable[Any] | None = None,
        code: str | None = None,
        source: str | None = None,
        destination: str | None = None,
        status: str | None = None,
        priority: int | None = None,
        metadata: dict[str, Any] | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        **retry: Unpack[RetrySettings],
    ) -> SubmittedJob:
        """Submit a job to `queue` (id or code; the default queue when None). `tasks` are paths
        or dicts with source (and destination, size, priority, metadata). `status` may be
        "init" (the default), "pending", "waiting" or "paused". Its own retry policy
        (`RetrySettings`: retry_delay, retry_backoff, retry_max_delay, retry_jitter) overrides
        its queue's part by part. Sent again with the same
        `idempotency_key` (within 24 h), it answers with the job it made the first time.
        Tasks equal to another (same source and destination) are merged into one: the job's
        `task_counts` says how many were created and how many merged (None on a replay)."""
        fields = given(
            queue=queue,
            tasks=list(tasks) if tasks is not None else None,
            code=code,
            source=source,
            destination=destination,
            status=status,
            priority=priority,
            metadata=metadata,
            max_attempts=max_attempts,
            **settable(RetrySettings, retry, "create_job"),
        )
        return self._run(plans.create_job(fields), idempotency_key)  # type: ignore[no-any-return]

    def update_job(
        self,
        id: str,
        *,
        status: str = UNSET,
        priority: int = UNSET,
        metadata: dict[str, Any] = UNSET,
        queue: str = UNSET,
        destination: str = UNSET,
        max_attempts: int | None = UNSET,
        idempotency_key: str | None = None,
        **retry: Unpack[RetrySettings],
    ) -> Job:
        """Change a job: status ("pending", "waiting", "paused", "aborted", "done"), priority,
        metadata, queue (move it), destination, max_attempts, the parts of its retry policy
        (`RetrySettings`; None gives a part back to its queue). Raises InvalidTransition for a
        status it may not take from its current one."""
        changes = {
            "status": status,
            "priority": priority,
            "metadata": metadata,
            "queue": queue,
            "destination": destination,
            "max_attempts": max_attempts,
            **settable(RetrySettings, retry, "update_job"),
        }
        return self._run(plans.update_job(id, changes), idempotency_key)  # type: ignore[no-any-return]

    def pause_job(self, id: str, *, idempotency_key: str | None = None) -> Job:
        """Put a job on hold (PAUSED)."""
        return self.update_job(id, status="PAUSED", idempotency_key=idempotency_key)

    def resume_job(self, id: str, *, idempotency_key: str | None = None) -> Job:
        """Set a job WAITING: a paused one runs on; the service also runs a finished one again
        (an aborted or failed one retries what did not finish, a done one runs every task
        again). The `jobledger` command line resumes paused jobs only and reruns finished ones
        with `job rerun`, which asks first for a done one."""
        return self.update_job(id, status="WAITING", idempotency_key=idempotency_key)

    def abort_job(self, id: str, *, idempotency_key: str | None = None) -> Job:
        """Abort a job (ABORTED)."""
        return self.update_job(id, status="ABORTED", idempotency_key=idempotency_key)

    def delete_job(self, id: str, *, idempotency_key: str | None = None) -> str:
        """Delete a job; returns its id."""
        return self._run(plans.delete_job(id), idempotency_key)  # type: ignore[no-any-return]

    # -- tasks ----------------------------------------------------------------------

    def tasks(
        self, job_id: str, where: str | None = None, first: int = 100, max_items: int | None = None
    ) -> ResultIterator[Task]:
        """A job's tasks in order, matching `where` (e.g. ``"status<>executing"``), `first` per
        page, pages fetched as you iterate."""
        listing = Listing()
        return self._iter(plans.tasks(listing, job_id, where, first, max_items), listing)

    def task(self, id: str) -> Task | None:
        """A task by id; None when there is none."""
        return self._run(plans.task(id))  # type: ignore[no-any-return]

    def add_tasks(
        self, job_id: str, tasks: Iterable[Any], allow_duplicates: bool = True, *, idempotency_key: str | None = None
    ) -> AddedTasks:
        """Add tasks (paths, or dicts with source, destination, size, priority, metadata) to a job.
        A task equal to an existing one (same source and destination) retries that one, or is
        refused with Conflict when allow_duplicates is False. The answer holds one task per
        task given, and `task_counts`: how many were created, how many merged."""
        return self._run(plans.add_tasks(job_id, tasks, allow_duplicates), idempotency_key)  # type: ignore[no-any-return]

    def update_tasks(
        self, job_id: str, updates: Iterable[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> list[Task]:
        """Change tasks of a job: ``[{"id": ..., "status": "excluded"}, {"id": ..., "priority": 5}]``.
        Writeable statuses: queued, failed, onhold, excluded, done."""
        return self._run(plans.update_tasks(job_id, updates), idempotency_key)  # type: ignore[no-any-return]

    def exclude_tasks(self, job_id: str, task_ids: Iterable[str], *, idempotency_key: str | None = None) -> list[Task]:
        """Exclude tasks of a job from execution (tasks are never deleted)."""
        updates = [{"id": t, "status": "EXCLUDED"} for t in task_ids]
        return self.update_tasks(job_id, updates, idempotency_key=idempotency_key)

    # -- history and progress -------------------------------------------------------

    def events(
        self,
        after: int = 0,
        aggregate_id: str | None = None,
        types: Sequence[str] | None = None,
        follow: bool = False,
        first: int = 100,
    ) -> ResultIterator[Event]:
        """The event history after position `after`, oldest first, optionally of one aggregate
        and of some types ("Job.StatusChanged", ...). With follow=True it goes on with live
        events from the events subscription, without gap or repeat, until you stop."""
        listing = Listing()
        return self._iter(plans.events(listing, after, aggregate_id, types, follow, first), listing)

    def job_events(self, job_id: str, after: int = 0, first: int = 100) -> ResultIterator[Event]:
        """A job's history and its tasks', oldest first: who did what, when."""
        listing = Listing()
        return self._iter(plans.job_events(listing, job_id, after, first), listing)

    def watch(self, job_id: str) -> ResultIterator[JobProgress]:
        """A job's progress, live: its current value at once, then each change; the iteration
        ends when the job is finished (DONE, FAILED or ABORTED) or deleted. Raises NotFound for
        a job that does not exist."""
        listing = Listing()
        return self._iter(plans.watch(job_id), listing)

    # -- workers --------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        queues: Sequence[str] | None = None,
        limit: int = 1,
        lease_seconds: int = 60,
        *,
        idempotency_key: str | None = None,
    ) -> list[TaskLease]:
        """Lease up to `limit` queued tasks for `worker` (from `queues`, ids or codes, or all).
        Sent again with the same `idempotency_key`, it answers with the same leases."""
        return self._run(plans.claim(worker, queues, limit, lease_seconds), idempotency_key)  # type: ignore[no-any-return]

    def heartbeat(
        self,
        lease_id: str,
        progress: int | None = None,
        bytes_done: int | None = None,
        speed: float | None = None,
        size: int | None = None,
    ) -> TaskLease:
        """Renew a lease and report progress (0..100), bytes done, speed (MB/s) and the size
        of the task's source in bytes, as measured (recorded on the task). Raises Conflict (or
        NotFound) when the lease is over: the job was aborted or the lease expired. Sent
        without an idempotency key: renewing a lease twice does no harm."""
        return self._run(plans.heartbeat(lease_id, progress, bytes_done, speed, size))  # type: ignore[no-any-return]

    def complete(self, lease_id: str, result: Any = None, *, idempotency_key: str | None = None) -> Task:
        """Finish a leased task successfully, with an optional JSON result."""
        return self._run(plans.complete(lease_id, result), idempotency_key)  # type: ignore[no-any-return]

    def fail(self, lease_id: str, error: str, retry: bool = True, *, idempotency_key: str | None = None) -> Task:
        """Report a leased task failed; it is queued again while attempts remain and retry is True."""
        return self._run(plans.fail(lease_id, error, retry), idempotency_key)  # type: ignore[no-any-return]

    def release(self, lease_id: str, *, idempotency_key: str | None = None) -> Task:
        """Give a leased task back unworked (not counted as an attempt)."""
        return self._run(plans.release(lease_id), idempotency_key)  # type: ignore[no-any-return]

    # -- Dioptra ----------------------------------------------------------------------

    def submit(self, queue: str, tasks: Iterable[Any] | None = None, **fields: Any) -> SubmittedJob:
        """Dioptra's job submission: a new job in `queue` (id or code), with `tasks` and any
        other field of create_job (code, destination, status, priority, metadata...)."""
        return self.create_job(queue=queue, tasks=tasks, **fields)

    def queue_jobs(
        self, queue: str, status: Any = None, first: int = 50, max_items: int | None = None
    ) -> ResultIterator[Job]:
        """The jobs of a queue (id or code) in every phase, optionally only those in `status`
        (one or a list), pages fetched as you iterate. Raises NotFound for no such queue."""
        listing = Listing()
        return self._iter(queue_jobs(listing, queue, status, first, max_items), listing)
