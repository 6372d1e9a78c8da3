"""Handing work to workers: claims, leases, heartbeats, completion and failure.

Candidates come from the read model in scheduling order; every rule is checked
again here, on the aggregates, inside the command that writes the claim, so a
stale candidate costs a skip, never a double hand-out: two claimers of one task
collide on its version and the loser retries from fresh state.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from domain.access import Principal, Right, current_principal, guard_work
from domain.commands import Runner, Service, Written, command
from domain.errors import ConflictError, NotFoundError, ValidationError
from domain.idempotency import Idempotency
from domain.job import Job, JobStatus
from domain.lifecycle import max_attempts, set_status, settle
from domain.limits import (
    MAX_BYTES,
    MAX_CLAIM,
    MAX_ERROR_TEXT,
    MAX_LEASE_SECONDS,
    MAX_NAME,
    MAX_SPEED,
    MIN_LEASE_SECONDS,
)
from domain.queue import Queue
from domain.retry import RetryPolicy, policy_of
from domain.rules import UNSTORABLE, check_json, check_number, check_string
from domain.task import IN_FLIGHT, Task, TaskStatus
from domain.unit_of_work import UnitOfWork
from persistence.faults import taken

log = logging.getLogger("jobledger.dispatch")

# A claim asks for candidates again when others took those it was given first, this
# many times at most.
CLAIM_ROUNDS = 3


class Candidates(Protocol):
    """Where a claim finds its candidates: the read model's queued tasks."""

    def __call__(self, count: int, seen: int) -> Sequence[str]:
        """Up to `count` ids of queued tasks of dispatchable jobs, in hand-out order, read
        from a read model that includes at least store position `seen` (0: as it is)."""
        ...


def over_fetch(wanted: int) -> int:
    """How many candidates to ask for to hand out `wanted` tasks: some will be stale
    (claimed by others since the read model saw them, or their queue is full)."""
    return wanted * 4 + 16


DISPATCHABLE = frozenset({JobStatus.WAITING, JobStatus.RUNNING})


def check_claim(worker: object, limit: object, lease_seconds: object) -> None:
    """A claim's worker name, number of tasks and lease time are within their limits.
    A claim is checked before candidates are looked for, so that a claim that finds
    nothing is refused all the same."""
    check_string("worker", worker, MAX_NAME, blank=False)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CLAIM:
        raise ValidationError("limit", f"claim 1 to {MAX_CLAIM} tasks at a time (got {limit!r:.40})")
    if (
        isinstance(lease_seconds, bool)
        or not isinstance(lease_seconds, int)
        or not MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS
    ):
        raise ValidationError(
            "leaseSeconds",
            f"a lease lasts {MIN_LEASE_SECONDS} to {MAX_LEASE_SECONDS} seconds (got {lease_seconds!r:.40})",
        )


def error_text(error: object) -> str:
    """A worker's failure text as it is kept: what no store can hold (NUL, unpaired
    surrogates: a crashed program's output may have them) becomes U+FFFD, and beyond
    MAX_ERROR_TEXT characters it is cut in the middle, with a note (the head says what
    failed, the tail holds the last lines of output), so a failure report is never refused."""
    if not isinstance(error, str):
        raise ValidationError("error", "say what went wrong")
    error = UNSTORABLE.sub("\ufffd", error)
    if len(error) <= MAX_ERROR_TEXT:
        return error

    def note(cut: int) -> str:
        return f"\n[… {cut} of {len(error)} characters cut here; at most {MAX_ERROR_TEXT} are kept …]\n"

    kept = MAX_ERROR_TEXT - len(note(len(error)))  # the note never grows longer than this
    head = kept // 2
    return error[:head] + note(len(error) - kept) + error[len(error) - (kept - head) :]


def task_id_of(lease_id: str) -> str:
    """Lease ids are `<task id>.<random>`: the task is found without a lookup table."""
    return str(lease_id).split(".", 1)[0]


def _job_and_queue(aggregate: Any) -> list[UUID]:
    """What a dispatch command loads beside a task: its job, and the job's queue."""
    if isinstance(aggregate, Task):
        return [UUID(aggregate.job_id)]
    if isinstance(aggregate, Job):
        return [UUID(aggregate.queue_id)]
    return []


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def in_turn(fn: Callable[..., Written]) -> Callable[..., Written]:
    """Claims, completions and failures in one process take turns. Run side by side they
    mostly collide: concurrent claimers hold the same candidates, and claims and
    completions of neighbouring tasks meet on their job and queue, so most of them would
    be redone from fresh state. In turn, a claim finds the tasks taken before it (in the
    cache, at no cost) and leases the next ones. Heartbeats, which touch only their task,
    run freely; other processes still meet these as version conflicts, retried."""

    @functools.wraps(fn)
    def run(self: DispatchCommands, *args: Any, **kwargs: Any) -> Written:
        if self.runner.group is not None:  # a group commit runs them in turn, each seeing the ones before it
            return fn(self, *args, **kwargs)
        with taken(self.turn):
            return fn(self, *args, **kwargs)

    return run


class DispatchCommands(Service):
    """The worker-facing commands (`ledger.dispatch`). Each takes `actor=` and answers
    with `Written`: lease ids for a claim, else the ids of the tasks it changed."""

    name = "dispatch"

    def __init__(self, runner: Runner, turn: threading.Lock) -> None:
        """`turn` is the lock claims, completions and failures take turns on (see `in_turn`)."""
        super().__init__(runner)
        self.turn = turn

    def claim(
        self,
        worker: str,
        candidates: Candidates | Sequence[str],
        *,
        limit: int = 1,
        lease_seconds: int = 60,
        now: datetime | None = None,
        actor: str | None = None,
        principal: Principal | None = None,
        idempotency: Idempotency | None = None,
    ) -> Written:
        """Lease up to `limit` tasks that may run now, in the order of the candidates;
        answers with the lease ids (none when there is nothing to do).

        `candidates` is the read model's source of them, asked again (up to CLAIM_ROUNDS
        times, from a read model that includes the leases made so far) while others take
        the ones it gave first; or a list of task ids, tried once in its order."""
        check_claim(worker, limit, lease_seconds)  # also when no task is there to claim
        if (replay := self.runner.replayed(idempotency)) is not None:
            return replay
        source = candidates if callable(candidates) else _once(candidates)
        leases: list[str] = []
        saved: dict[str, Any] = {}
        position = 0
        # With a key, one round: its record holds what that one save leased.
        for rounds in range(1, 2 if idempotency is not None else CLAIM_ROUNDS + 1):
            wanted = limit - len(leases)
            try:
                offered = list(source(over_fetch(wanted), position))
                if not offered:
                    break
                written = self._claim(
                    worker,
                    offered,
                    wanted,
                    lease_seconds,
                    now,
                    actor=actor,
                    principal=principal,
                    idempotency=idempotency,
                )
            except Exception:
                if not leases:
                    raise
                # The leases of the rounds before are saved: answered, not hidden behind this
                # round's error (the worker would never learn of them until they expired).
                log.warning("a claim's round %d failed; answering the %d leases taken before it", rounds, len(leases))
                break
            leases += written.ids
            saved.update(written.saved)
            position = max(position, written.position)
            if len(leases) >= limit or len(offered) < over_fetch(wanted):
                break
        return Written(ids=leases, position=position, saved=saved)

    @in_turn
    @command
    def _claim(
        self,
        uow: UnitOfWork,
        worker: str,
        candidates: list[str],
        limit: int,
        lease_seconds: int,
        now: datetime | None,
    ) -> list[str]:
        """One round of a claim: lease up to `limit` of the candidates, in their order."""
        leases: list[str] = []
        notes: dict[str, tuple[Job, dict[str, str]]] = {}
        fetched = 0
        for index, task_id in enumerate(candidates):
            if len(leases) >= limit:
                break
            if index >= fetched:  # load the next stretch of candidates in one query
                fetched = index + 2 * (limit - len(leases)) + 2
                uow.prefetch(Task, candidates[index:fetched], _job_and_queue)
            claimed = _claim_one(uow, task_id, worker, lease_seconds, _now(now))
            if claimed is not None:
                lease_id, task, job = claimed
                leases.append(lease_id)
                notes.setdefault(str(job.id), (job, {}))[1][str(task.id)] = str(task.status)
        for job, statuses in notes.values():
            job.note_tasks(statuses)
        return leases

    @command
    def heartbeat(
        self,
        uow: UnitOfWork,
        lease_id: str,
        progress: int | None = None,
        bytes_done: int | None = None,
        speed: float | None = None,
        now: datetime | None = None,
        size: int | None = None,
    ) -> list[str]:
        """Renew the lease and report progress (0..100), bytes done, speed (MB/s) and the
        size of the source as the worker measured it (recorded when the task had another)."""
        if progress is not None and (
            isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100
        ):
            raise ValidationError("progress", f"must be a whole number from 0 to 100 (got {progress!r:.40})")
        if bytes_done is not None and (
            isinstance(bytes_done, bool) or not isinstance(bytes_done, int) or not 0 <= bytes_done <= MAX_BYTES
        ):
            raise ValidationError("bytesDone", f"must be a number of bytes from 0 to {MAX_BYTES}")
        if speed is not None:
            check_number("speed", speed, 0, MAX_SPEED)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_BYTES):
            raise ValidationError("size", f"must be a number of bytes from 0 to {MAX_BYTES}")
        task, _ = _leased(uow, lease_id, _now(now))
        task.renew(str(lease_id), _now(now), progress, bytes_done, speed, size)
        return [str(lease_id)]

    @in_turn
    @command
    def complete(self, uow: UnitOfWork, lease_id: str, result: Any = None, now: datetime | None = None) -> list[str]:
        """The work is done: the task is DONE with its `result` (any JSON)."""
        result = check_json("result", result)
        task, job = _leased(uow, lease_id, _now(now))
        task.complete(str(lease_id), _now(now), result)
        job.note_task_status(str(task.id), str(task.status))
        settle(uow, job)
        return [str(task.id)]

    @in_turn
    @command
    def complete_many(
        self, uow: UnitOfWork, completions: list[tuple[str, Any]], now: datetime | None = None
    ) -> list[str]:
        """Complete many leases in one atomic save (workers finishing small tasks in bulk).
        Any lease that is no longer live refuses the whole batch with CONFLICT."""
        if not isinstance(completions, list) or len(completions) > MAX_CLAIM:
            raise ValidationError("completions", f"complete at most {MAX_CLAIM} leases at a time")
        completions = [(lease, check_json(f"completions[{i}].result", r)) for i, (lease, r) in enumerate(completions)]
        uow.prefetch(Task, [task_id_of(lease_id) for lease_id, _ in completions], _job_and_queue)
        done: list[str] = []
        notes: dict[str, tuple[Job, dict[str, str]]] = {}
        for lease_id, result in completions:
            task, job = _leased(uow, lease_id, _now(now))
            task.complete(str(lease_id), _now(now), result)
            notes.setdefault(str(job.id), (job, {}))[1][str(task.id)] = str(task.status)
            done.append(str(task.id))
        for job, statuses in notes.values():
            job.note_tasks(statuses)
            settle(uow, job)
        return done

    @in_turn
    @command
    def fail(
        self,
        uow: UnitOfWork,
        lease_id: str,
        error: str,
        retry: bool = True,
        now: datetime | None = None,
    ) -> list[str]:
        """The attempt failed: queue the task again, or fail it for good after maxAttempts."""
        error = error_text(error)
        task, job = _leased(uow, lease_id, _now(now))
        final = not retry or task.attempts >= max_attempts(uow, job)
        task.fail_attempt(str(lease_id), error, final=final, retry=_retry_policy(uow, job), now=_now(now))
        job.note_task_status(str(task.id), str(task.status))
        settle(uow, job)
        return [str(task.id)]

    @in_turn
    @command
    def release(self, uow: UnitOfWork, lease_id: str, now: datetime | None = None) -> list[str]:
        """Give the task back unworked (a worker shutting down): queued again, not an attempt."""
        try:
            task = uow.get(Task, task_id_of(lease_id))
        except NotFoundError:
            raise NotFoundError("Lease", lease_id) from None
        _check_worker(uow, task, lease_id)
        task.check_lease(str(lease_id), _now(now))
        job = uow.get(Job, task.job_id, allow_deleted=True)
        task.fail_attempt(str(lease_id), None, final=False, how="released")
        if not job.deleted:
            job.note_task_status(str(task.id), str(task.status))
        return [str(task.id)]

    @in_turn
    @command
    def expire_leases(self, uow: UnitOfWork, task_ids: list[str], now: datetime | None = None) -> list[str]:
        """The clock's move: leases past their deadline end; the task runs again or fails."""
        expired = []
        uow.prefetch(Task, task_ids, _job_and_queue)
        for task_id in task_ids:
            task = uow.find(Task, task_id)
            if task is None or task.status not in IN_FLIGHT or task.lease_expires >= _now(now):
                continue
            job = uow.get(Job, task.job_id, allow_deleted=True)
            final = task.attempts >= max_attempts(uow, job)
            error = f"lease of worker {task.worker} expired at {task.lease_expires.isoformat()}"
            task.fail_attempt(
                str(task.lease_id), error, final=final, how="expired", retry=_retry_policy(uow, job), now=_now(now)
            )
            if not job.deleted:
                job.note_task_status(str(task.id), str(task.status))
                settle(uow, job)
            expired.append(str(task.id))
        return expired


def _once(task_ids: Sequence[str]) -> Candidates:
    """A fixed list of candidates, offered to one claim's first round only."""
    offers = [list(task_ids)]

    def offer(count: int, seen: int) -> Sequence[str]:
        return offers.pop() if offers else []

    return offer


def _claim_one(
    uow: UnitOfWork, task_id: str, worker: str, lease_seconds: int, now: datetime
) -> tuple[str, Task, Job] | None:
    """Lease the task if the rules let it run now: it is queued and not waiting to retry,
    its job dispatchable, its queue enabled and, for a job not yet running, under its
    maxConcurrency."""
    task = uow.find(Task, task_id)
    if task is None or task.status != TaskStatus.QUEUED or not task.is_due(now):
        return None
    job = uow.find(Job, task.job_id)
    if job is None or job.status not in DISPATCHABLE:
        return None
    queue = uow.get(Queue, job.queue_id, allow_deleted=True)
    principal = current_principal()
    if not queue.is_enabled or (principal is not None and not principal.may(Right.WORK, queue.group)):
        return None
    if job.status != JobStatus.RUNNING:
        if not queue.has_room:
            return None
        set_status(uow, job, JobStatus.RUNNING, by_user=False)
    return task.claim(worker, lease_seconds, now), task, job


def _retry_policy(uow: UnitOfWork, job: Job) -> RetryPolicy:
    """The job's retry policy: its own parts, else its queue's, else the default's."""
    return policy_of(job, uow.get(Queue, job.queue_id, allow_deleted=True))


def _leased(uow: UnitOfWork, lease_id: str, now: datetime) -> tuple[Task, Job]:
    """The task and job of a live lease; CONFLICT if the lease or its job is over."""
    try:
        task = uow.get(Task, task_id_of(lease_id))
    except NotFoundError:
        raise NotFoundError("Lease", lease_id) from None
    _check_worker(uow, task, lease_id)
    task.check_lease(str(lease_id), now)
    job = uow.find(Job, task.job_id)
    if job is None or job.status == JobStatus.ABORTED:
        raise ConflictError(f"the job of lease {lease_id} was aborted or deleted; stop working on it")
    return task, job


def _check_worker(uow: UnitOfWork, task: Task, lease_id: str) -> None:
    """The caller works for the group of the task's queue: else NOT_FOUND (a lease of a
    group they cannot see) or FORBIDDEN (a reader of the group, not one of its workers)."""
    if current_principal() is None:
        return
    job = uow.get(Job, task.job_id, allow_deleted=True)
    guard_work(uow.get(Queue, job.queue_id, allow_deleted=True), str(lease_id))
