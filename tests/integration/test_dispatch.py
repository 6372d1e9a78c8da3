"""Handing work to workers, on the domain: the hand-out order, the dispatch rules, leases,
retries, and claims racing each other from several threads and Ledger instances.

Candidates come from the read model (`ReadModels.claim_candidates`, the order the API
hands work out in) after a ProjectionRunner has caught up; every rule is also checked
by handing the domain the task ids directly, since the domain must refuse on its own.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from domain.dispatch import task_id_of
from domain.errors import ConflictError, ValidationError
from domain.history import History, Record
from domain.job import JobStatus
from domain.ledger import Ledger
from domain.task import TaskStatus
from projections.clock import CLOCK_ACTOR, Clock
from projections.query import ReadModels
from projections.runner import ProjectionRunner
from projections.schema import JOBS, QUEUES, TASKS
from projections.stores import ReadStore, open_read_store
from tests.helpers import job, queue, task, types_of

# -- helpers ---------------------------------------------------------------------


@dataclass
class Reads:
    """The read side of a test: a runner to catch up, and the candidates it hands out."""

    ledger: Ledger
    store: ReadStore
    runner: ProjectionRunner
    models: ReadModels

    async def candidates(self, queues: Sequence[str] | None = None, count: int = 500) -> list[str]:
        self.runner.catch_up()
        return await self.models.claim_candidates(list(queues) if queues else None, count)

    async def job_row(self, job_id: str) -> dict[str, Any]:
        self.runner.catch_up()
        row = await self.models.job(job_id)
        assert row is not None
        return row


@pytest.fixture
async def reads(ledger):
    store = open_read_store(ledger.store)
    runner = ProjectionRunner(ledger, store)
    runner.setup()
    await store.open_async()
    yield Reads(ledger, store, runner, ReadModels(store))
    await store.close_async()
    store.close()


def tasks_of(ledger: Ledger, job_id: str) -> list[str]:
    """The job's task ids in creation order."""
    return list(job(ledger, job_id).tasks)


def submit(ledger: Ledger, count: int = 1, **kwargs: Any) -> tuple[str, list[str]]:
    """A job of `count` tasks (/t0, /t1, ...) with a destination; (job id, task ids)."""
    kwargs.setdefault("tasks", [f"/t{i}" for i in range(count)])
    kwargs.setdefault("destination", "/out")
    job_id = ledger.jobs.create(**kwargs).id
    return job_id, tasks_of(ledger, job_id)


def claim(ledger: Ledger, candidates: Sequence[str], limit: int = 500, **kwargs: Any) -> list[str]:
    """Lease ids of what the domain hands out from these candidates."""
    kwargs.setdefault("lease_seconds", 60)
    return ledger.dispatch.claim("w1", list(candidates), limit=limit, actor="w1", **kwargs).ids


def claim_one(ledger: Ledger, task_id: str, **kwargs: Any) -> str:
    leases = claim(ledger, [task_id], limit=1, **kwargs)
    assert [task_id_of(lease) for lease in leases] == [task_id], f"task {task_id} was not handed out"
    return leases[0]


def events_of(ledger: Ledger, aggregate_id: str, *types: str) -> list[Record]:
    return [r for r in History(ledger).of_aggregate(aggregate_id) if not types or r.type in types]


# -- the hand-out order ------------------------------------------------------------

# queues: code -> (priority, execution mode); jobs, in creation order:
# (label, queue code, own job priority or None to inherit the queue's, [(task label, task priority)]).
ORDERING = [
    pytest.param(
        {"lo": (100, "PRIORITY"), "hi": (900, "PRIORITY")},
        [("a", "lo", 1000, [("a0", 1000)]), ("b", "hi", 0, [("b0", 0)])],
        ["b0", "a0"],
        id="queue-priority-beats-job-and-task-priority",
    ),
    pytest.param(
        {"q": (500, "FIFO")},
        [("a", "q", 100, [("a0", 500)]), ("b", "q", 900, [("b0", 500)]), ("c", "q", None, [("c0", 500)])],
        ["b0", "c0", "a0"],
        id="job-priority-own-or-inherited-from-the-queue",
    ),
    pytest.param(
        {"hi": (800, "FIFO"), "lo": (200, "FIFO")},
        [("a", "lo", 1000, [("a0", 500)]), ("b", "hi", None, [("b0", 500)])],
        ["b0", "a0"],
        id="an-inherited-job-priority-still-ranks-below-its-queue",
    ),
    pytest.param(
        {"q": (500, "FIFO")},
        [(j, "q", None, [(f"{j}0", 500), (f"{j}1", 500)]) for j in "abc"],
        ["a0", "a1", "b0", "b1", "c0", "c1"],
        id="fifo-oldest-job-first-tasks-in-order",
    ),
    pytest.param(
        {"q": (500, "LIFO")},
        [(j, "q", None, [(f"{j}0", 500), (f"{j}1", 500)]) for j in "abc"],
        ["c0", "c1", "b0", "b1", "a0", "a1"],
        id="lifo-newest-job-first-tasks-in-order",
    ),
    pytest.param(
        {"q": (500, "LIFO")},
        [("a", "q", 900, [("a0", 500)]), ("b", "q", 100, [("b0", 500)]), ("c", "q", 100, [("c0", 500)])],
        ["a0", "c0", "b0"],
        id="lifo-only-among-jobs-of-equal-priority",
    ),
    pytest.param(
        {"q": (500, "FIFO")},
        [("a", "q", 100, [("a0", 500)]), ("b", "q", 100, [("b0", 500)]), ("c", "q", 900, [("c0", 500)])],
        ["c0", "a0", "b0"],
        id="fifo-only-among-jobs-of-equal-priority",
    ),
    pytest.param(
        {"q": (500, "PRIORITY")},
        [("a", "q", None, [("a0", 100), ("a1", 900)]), ("b", "q", None, [("b0", 500), ("b1", 900)])],
        ["a1", "b1", "b0", "a0"],
        id="priority-mode-by-task-priority-then-oldest-job",
    ),
    pytest.param(
        {"q": (500, "PRIORITY")},
        [("a", "q", None, [("a0", 500), ("a1", 500)]), ("b", "q", None, [("b0", 500), ("b1", 500)])],
        ["a0", "a1", "b0", "b1"],
        id="priority-mode-equal-task-priorities-oldest-job-first",
    ),
    pytest.param(
        {"q": (500, "PRIORITY")},
        [("a", "q", 100, [("a0", 1000)]), ("b", "q", 900, [("b0", 0)])],
        ["b0", "a0"],
        id="priority-mode-job-priority-before-task-priority",
    ),
    pytest.param(
        {"hi": (700, "FIFO"), "lo": (300, "LIFO")},
        [
            ("a", "lo", None, [("a0", 500)]),
            ("b", "hi", None, [("b0", 500)]),
            ("c", "lo", None, [("c0", 500)]),
            ("d", "hi", None, [("d0", 500)]),
        ],
        ["b0", "d0", "c0", "a0"],
        id="each-queue-in-its-own-mode",
    ),
]


async def _order_by_claiming(ledger: Ledger, reads: Reads, codes: list[str], label_of: dict[str, str]) -> list[str]:
    """Claim one task at a time from fresh candidates; the labels in hand-out order."""
    order: list[str] = []
    for _ in range(len(label_of) + 1):
        candidates = await reads.candidates(codes)
        if not candidates:
            return order
        leases = claim(ledger, candidates, limit=1)
        assert len(leases) == 1, f"nothing handed out of candidates {[label_of[c] for c in candidates]}"
        assert task_id_of(leases[0]) == candidates[0], "the domain skipped a claimable first candidate"
        order.append(label_of[task_id_of(leases[0])])
    raise AssertionError(f"more claims than tasks: {order}")


@pytest.mark.parametrize(("queues", "jobs", "expected"), ORDERING)
async def test_claims_follow_queue_priority_job_priority_then_execution_mode(ledger, reads, queues, jobs, expected):
    for code, (priority, mode) in queues.items():
        ledger.queues.create(code, priority=priority, execution_mode=mode)
    label_of: dict[str, str] = {}
    for label, code, priority, specs in jobs:
        _, task_ids = submit(
            ledger,
            code=label,
            queue=code,
            priority=priority,
            tasks=[{"source": f"/{t}", "priority": p} for t, p in specs],
        )
        label_of.update(zip(task_ids, [t for t, _ in specs], strict=True))

    codes = list(queues)
    assert [label_of[t] for t in await reads.candidates(codes)] == expected
    assert await _order_by_claiming(ledger, reads, codes, label_of) == expected


async def test_a_job_that_inherits_its_queues_priority_moves_when_the_queue_priority_changes(ledger, reads):
    q = ledger.queues.create("q", priority=500, execution_mode="FIFO").id
    labels = {}
    for label, priority in [("a", 400), ("b", None), ("c", 600)]:
        _, (task_id,) = submit(ledger, code=label, queue="q", priority=priority)
        labels[task_id] = label
    assert [labels[t] for t in await reads.candidates(["q"])] == ["c", "b", "a"]
    ledger.queues.update(q, priority=700)
    assert [labels[t] for t in await reads.candidates(["q"])] == ["b", "c", "a"]
    ledger.queues.update(q, priority=100)
    assert [labels[t] for t in await reads.candidates(["q"])] == ["c", "a", "b"]


# -- what is handed out, and what is not -------------------------------------------


async def test_tasks_on_hold_excluded_or_pending_are_never_handed_out(ledger, reads):
    job_id = ledger.jobs.create(
        code="mixed",
        tasks=[
            {"source": "/queued", "destination": "/o/queued"},
            {"source": "/held", "destination": "/o/held"},
            {"source": "/excluded", "destination": "/o/excluded"},
            "/pending",  # no destination, and the job has none: PENDING
        ],
    ).id
    queued, held, excluded, pending = tasks_of(ledger, job_id)
    ledger.jobs.update_tasks(job_id, [{"id": held, "status": "ONHOLD"}, {"id": excluded, "status": "EXCLUDED"}])
    statuses = [task(ledger, t).status for t in (queued, held, excluded, pending)]
    assert statuses == ["QUEUED", "ONHOLD", "EXCLUDED", "PENDING"]
    assert job(ledger, job_id).status == JobStatus.WAITING

    assert await reads.candidates() == [queued]
    leases = claim(ledger, [held, excluded, pending, queued])
    assert [task_id_of(lease) for lease in leases] == [queued]
    assert claim(ledger, [held, excluded, pending]) == []
    assert [task(ledger, t).status for t in (held, excluded, pending)] == ["ONHOLD", "EXCLUDED", "PENDING"]


async def test_the_tasks_of_a_paused_job_are_not_handed_out_until_it_is_resumed(ledger, reads):
    paused, (first,) = submit(ledger, tasks=["/p0"], status="PAUSED")
    running, (r0, r1) = submit(ledger, tasks=["/r0", "/r1"])
    claim_one(ledger, r0)
    ledger.jobs.update(running, status="PAUSED")  # paused while running: the rest waits
    assert job(ledger, running).status == JobStatus.PAUSED

    assert await reads.candidates() == []
    assert claim(ledger, [first, r1]) == []

    ledger.jobs.update(paused, status="WAITING")
    assert await reads.candidates() == [first]
    assert [task_id_of(lease) for lease in claim(ledger, [first, r1])] == [first]


async def test_a_disabled_queue_hands_out_nothing_and_a_sealed_queue_still_runs_its_jobs(ledger, reads):
    q = ledger.queues.create("media").id
    _, (t0, t1) = submit(ledger, 2, queue="media")
    ledger.queues.update(q, status="DISABLED")
    assert await reads.candidates() == []
    assert await reads.candidates(["media"]) == []
    assert claim(ledger, [t0, t1]) == []

    ledger.queues.update(q, status="WAITING")
    ledger.queues.seal(q)
    assert queue(ledger, q).state == "SEALED"
    with pytest.raises(ConflictError):
        submit(ledger, queue="media")  # sealed: no new jobs...
    assert await reads.candidates(["media"]) == [t0, t1]  # ...but the ones it has still run
    assert [task_id_of(lease) for lease in claim(ledger, [t0, t1])] == [t0, t1]


async def test_max_concurrency_one_holds_back_a_second_job_until_the_first_finishes(ledger, reads):
    q = ledger.queues.create("single", max_concurrency=1, execution_mode="FIFO").id
    first, (a0, a1) = submit(ledger, 2, queue="single", code="first")
    second, (b0,) = submit(ledger, 1, queue="single", code="second")

    candidates = await reads.candidates(["single"])
    assert candidates == [a0, a1, b0]  # the read model lists them; the domain decides
    leases = claim(ledger, candidates)
    assert [task_id_of(lease) for lease in leases] == [a0, a1]
    assert list(ledger.running_jobs(q)) == [first]
    assert job(ledger, second).status == JobStatus.WAITING
    assert claim(ledger, [b0]) == []

    ledger.dispatch.complete(leases[0])
    assert claim(ledger, await reads.candidates(["single"])) == []  # first is still RUNNING
    ledger.dispatch.complete(leases[1])
    assert job(ledger, first).status == JobStatus.DONE
    assert list(ledger.running_jobs(q)) == []

    assert [task_id_of(lease) for lease in claim(ledger, await reads.candidates(["single"]))] == [b0]
    assert list(ledger.running_jobs(q)) == [second]
    started = [r.data["job_id"] for r in events_of(ledger, q, "Queue.JobStarted")]
    stopped = [r.data["job_id"] for r in events_of(ledger, q, "Queue.JobStopped")]
    assert (started, stopped) == ([first, second], [first])


async def test_a_job_turns_running_at_its_first_claim_and_done_when_all_but_excluded_tasks_are_done(ledger, reads):
    job_id, (a, b, c) = submit(ledger, 3, code="story")
    q = job(ledger, job_id).queue_id
    ledger.jobs.update_tasks(job_id, [{"id": c, "status": "EXCLUDED"}])
    assert job(ledger, job_id).status == JobStatus.WAITING

    lease_a = claim_one(ledger, a)
    assert job(ledger, job_id).status == JobStatus.RUNNING
    assert job_id in ledger.running_jobs(q)
    lease_b = claim_one(ledger, b)
    ledger.dispatch.complete(lease_a, {"bytes": 1})
    assert job(ledger, job_id).status == JobStatus.RUNNING
    ledger.dispatch.complete(lease_b)

    done = job(ledger, job_id)
    assert done.status == JobStatus.DONE and done.finished is not None
    assert job_id not in ledger.running_jobs(q)
    assert job_id not in ledger.open_jobs(q)
    assert task(ledger, a).result == {"bytes": 1}
    row = await reads.job_row(job_id)
    assert (row["status"], row["progress"]) == ("DONE", 100)
    changes = [(r.data["previous"], r.data["status"]) for r in events_of(ledger, job_id, "Job.StatusChanged")]
    assert changes == [("INIT", "WAITING"), ("WAITING", "RUNNING"), ("RUNNING", "DONE")]
    assert types_of(ledger, a) == ["Task.Created", "Task.Claimed", "Task.Completed"]


# -- failures, retries and leases ----------------------------------------------------


@pytest.mark.parametrize(
    ("queue_limit", "job_limit", "expected"),
    [
        pytest.param(None, None, 3, id="default-3"),
        pytest.param(1, None, 1, id="queue-says-1"),
        pytest.param(5, None, 5, id="queue-says-5"),
        pytest.param(5, 2, 2, id="job-says-2-over-queue-5"),
        pytest.param(None, 4, 4, id="job-says-4"),
    ],
)
async def test_a_failed_attempt_is_retried_until_max_attempts_then_the_task_and_job_fail(
    ledger, reads, queue_limit, job_limit, expected
):
    ledger.queues.create("retries", max_attempts=queue_limit, retry_delay=0)  # the attempts count here, not waits
    job_id, (flaky, steady) = submit(ledger, 2, queue="retries", max_attempts=job_limit)
    steady_lease = claim_one(ledger, steady)  # still in flight when `flaky` finally fails

    for attempt in range(1, expected + 1):
        assert await reads.candidates(["retries"]) == [flaky]
        lease = claim_one(ledger, flaky)
        ledger.dispatch.fail(lease, f"disk full ({attempt})", actor="w1")
        failed = task(ledger, flaky)
        assert failed.attempts == attempt
        assert failed.error == f"disk full ({attempt})"
        assert failed.status == (TaskStatus.FAILED if attempt == expected else TaskStatus.QUEUED)
        with pytest.raises(ConflictError):
            ledger.dispatch.complete(lease)  # that lease is over

    assert await reads.candidates(["retries"]) == []
    assert job(ledger, job_id).status == JobStatus.RUNNING  # `steady` still executes
    ledger.dispatch.complete(steady_lease)
    assert job(ledger, job_id).status == JobStatus.FAILED
    assert job_id not in ledger.running_jobs(job(ledger, job_id).queue_id)
    assert Counter(types_of(ledger, flaky))["Task.AttemptFailed"] == expected


async def test_failing_without_retry_fails_the_task_at_once(ledger):
    job_id, (only,) = submit(ledger, 1)
    lease = claim_one(ledger, only)
    ledger.dispatch.fail(lease, "unsupported codec", retry=False)
    failed = task(ledger, only)
    assert (failed.status, failed.attempts, failed.error) == ("FAILED", 1, "unsupported codec")
    assert job(ledger, job_id).status == JobStatus.FAILED


async def test_an_expired_lease_is_refused_and_expiry_requeues_the_task_until_max_attempts(ledger, reads):
    job_id, (only,) = submit(ledger, 1, retry_delay=0)  # queued again at once (backoff: test_retry_policy)
    clock = Clock(ledger, reads.store, finished_grace_s=3600, archive_after_s=7200)

    for attempt in (1, 2, 3):
        start = datetime.now(UTC)
        lease = claim_one(ledger, only, lease_seconds=10, now=start)
        later = start + timedelta(seconds=11)
        before = ledger.position()
        for refused in (
            partial(ledger.dispatch.complete, lease, now=later),
            partial(ledger.dispatch.heartbeat, lease, progress=50, now=later),
            partial(ledger.dispatch.fail, lease, "late", now=later),
        ):
            with pytest.raises(ConflictError, match="expired"):
                refused()
        assert ledger.position() == before  # refusals write nothing

        if attempt == 1:  # the domain command itself...
            assert ledger.dispatch.expire_leases([only], now=start + timedelta(seconds=5)).ids == []  # not yet due
            assert ledger.dispatch.expire_leases([only], now=later, actor=CLOCK_ACTOR).ids == [only]
        else:  # ...and the clock, which finds due leases in the read model
            reads.runner.catch_up()
            assert clock.expire_leases(start + timedelta(seconds=5)) == 0
            assert clock.expire_leases(later) == 1

        expired = task(ledger, only)
        assert expired.attempts == attempt
        assert "expired" in (expired.error or "")
        assert expired.status == (TaskStatus.FAILED if attempt == 3 else TaskStatus.QUEUED)
        with pytest.raises(ConflictError):
            ledger.dispatch.complete(lease)  # even "in time" by the wall clock: that lease is over

    expiries = events_of(ledger, only, "Task.LeaseExpired")
    assert [r.actor for r in expiries] == [CLOCK_ACTOR] * 3
    assert job(ledger, job_id).status == JobStatus.FAILED


async def test_a_heartbeat_keeps_a_lease_alive_past_its_first_deadline(ledger):
    _, (only,) = submit(ledger, 1)
    start = datetime.now(UTC)
    lease = claim_one(ledger, only, lease_seconds=10, now=start)
    ledger.dispatch.heartbeat(lease, progress=40, now=start + timedelta(seconds=5))
    assert ledger.dispatch.expire_leases([only], now=start + timedelta(seconds=11)).ids == []
    ledger.dispatch.complete(lease, now=start + timedelta(seconds=14))
    assert task(ledger, only).status == TaskStatus.DONE


async def test_completing_in_bulk_is_all_or_nothing(ledger):
    job_id, (a, b, c) = submit(ledger, 3)
    start = datetime.now(UTC)
    live = [claim_one(ledger, t, lease_seconds=60, now=start) for t in (a, b)]
    short = claim_one(ledger, c, lease_seconds=5, now=start)
    before = ledger.position()
    with pytest.raises(ConflictError, match="expired"):
        ledger.dispatch.complete_many([(lease, None) for lease in [*live, short]], now=start + timedelta(seconds=6))
    assert ledger.position() == before
    assert {task(ledger, t).status for t in (a, b, c)} == {TaskStatus.BOOTING}

    written = ledger.dispatch.complete_many([(live[0], {"n": 1}), (live[1], {"n": 2}), (short, None)], now=start)
    assert written.ids == [a, b, c]
    assert task(ledger, b).result == {"n": 2}
    assert job(ledger, job_id).status == JobStatus.DONE


async def test_completing_heartbeating_or_failing_after_the_job_was_aborted_is_a_conflict(ledger):
    job_id, (a, b) = submit(ledger, 2)
    lease = claim_one(ledger, a)
    ledger.jobs.update(job_id, status="ABORTED", actor="ops")
    before = ledger.position()
    for refused in (
        lambda: ledger.dispatch.complete(lease),
        lambda: ledger.dispatch.heartbeat(lease, progress=10),
        lambda: ledger.dispatch.fail(lease, "x"),
    ):
        with pytest.raises(ConflictError, match="aborted"):
            refused()
    assert ledger.position() == before
    assert claim(ledger, [b]) == []
    assert job(ledger, job_id).status == JobStatus.ABORTED


async def test_heartbeats_within_a_second_are_coalesced_into_about_one_lease_renewal_a_second(ledger):
    _, (only,) = submit(ledger, 1)
    lease = claim_one(ledger, only, lease_seconds=60)
    started = time.monotonic()
    calls = 0
    while (time.monotonic() - started < 3.0 or calls < 30) and time.monotonic() - started < 30:
        ledger.dispatch.heartbeat(lease, progress=min(99, calls), bytes_done=calls * 1000, speed=1.5)
        calls += 1
        time.sleep(0.01)
    elapsed = time.monotonic() - started

    kinds = Counter(types_of(ledger, only))
    assert calls >= 30, f"only {calls} heartbeats in {elapsed:.1f} s; the test proves nothing"
    assert kinds["Task.Executing"] == 1  # the first heartbeat starts it
    renewals = kinds["Task.LeaseRenewed"]
    assert 2 <= renewals <= int(elapsed) + 2, f"{renewals} LeaseRenewed events for {calls} heartbeats"
    assert task(ledger, only).status == TaskStatus.EXECUTING
    assert task(ledger, only).lease_expires > datetime.now(UTC) + timedelta(seconds=55)


async def test_a_heartbeat_renews_at_once_when_the_lease_runs_short(ledger):
    _, (only,) = submit(ledger, 1)
    lease = claim_one(ledger, only, lease_seconds=1)
    claimed = task(ledger, only).lease_renewed  # times relative to the claim, whatever the load
    ledger.dispatch.heartbeat(lease, now=claimed + timedelta(seconds=0.1))  # BOOTING -> EXECUTING, renewed
    assert Counter(types_of(ledger, only))["Task.LeaseRenewed"] == 1
    # Less than a second after the last renewal, but with less than half the lease left.
    ledger.dispatch.heartbeat(lease, now=claimed + timedelta(seconds=0.8))
    assert Counter(types_of(ledger, only))["Task.LeaseRenewed"] == 2


async def test_releasing_a_lease_queues_the_task_again_without_counting_an_attempt(ledger, reads):
    job_id, (only,) = submit(ledger, 1)
    lease = claim_one(ledger, only)
    assert task(ledger, only).attempts == 1
    ledger.dispatch.release(lease, actor="w1")
    released = task(ledger, only)
    assert (released.status, released.attempts, released.lease_id) == ("QUEUED", 0, None)
    assert types_of(ledger, only)[-1] == "Task.LeaseReleased"
    with pytest.raises(ConflictError):
        ledger.dispatch.complete(lease)
    assert await reads.candidates() == [only]
    again = claim_one(ledger, only)
    assert task(ledger, only).attempts == 1
    ledger.dispatch.complete(again)
    assert job(ledger, job_id).status == JobStatus.DONE


def test_claim_arguments_are_validated(ledger):
    _, (only,) = submit(ledger, 1)
    for kwargs, field_ in [
        ({"worker": " "}, "worker"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"lease_seconds": 0}, "leaseSeconds"),
    ]:
        args = {"worker": "w1", "limit": 1, "lease_seconds": 60, **kwargs}
        with pytest.raises(ValidationError) as caught:
            ledger.dispatch.claim(args.pop("worker"), [only], **args)
        assert caught.value.field == field_


# -- claims racing each other -----------------------------------------------------

RACE_THREADS = 8
RACE_JOBS = 20
RACE_TASKS_PER_JOB = 10
RACE_LIMIT = 2
RACE_TIMEOUT_S = 120


def _as_client(command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call like an API client: on "kept colliding ... try again", try again."""
    for _ in range(30):
        try:
            return command(*args, **kwargs)
        except ConflictError as exc:
            if "kept colliding" not in exc.message:
                raise
    raise AssertionError(f"{command.__name__} kept colliding 30 times in a row")


def most_running_at_once(records: list[Record]) -> int:
    """Replay Queue.JobStarted / Queue.JobStopped in position order: the peak of running jobs."""
    running: set[str] = set()
    peak = 0
    for record in sorted(records, key=lambda r: r.position):
        if record.type == "Queue.JobStarted":
            running.add(record.data["job_id"])
        elif record.type == "Queue.JobStopped":
            running.discard(record.data["job_id"])
        peak = max(peak, len(running))
    return peak


async def test_eight_threads_on_two_ledgers_hand_out_every_task_once_within_max_concurrency(new_ledger, reads):
    ledgers = [reads.ledger, new_ledger()]
    q = ledgers[0].queues.create("race", max_concurrency=RACE_LIMIT, execution_mode="FIFO").id
    job_ids, task_ids = [], []
    for j in range(RACE_JOBS):
        job_id, ids = submit(ledgers[0], RACE_TASKS_PER_JOB, queue="race", code=f"job{j}")
        job_ids.append(job_id)
        task_ids += ids
    # The read model follows the log in the background, as in a server.
    runner = reads.runner
    runner.start(poll_interval=0.02)
    for ledger in ledgers:
        ledger.after_save.append(runner.wake)

    completed: Counter[str] = Counter()
    empty_claims = 0
    deadline = time.monotonic() + RACE_TIMEOUT_S
    loop = asyncio.get_running_loop()

    async def claimer(number: int, pool: ThreadPoolExecutor) -> None:
        nonlocal empty_claims
        ledger = ledgers[number % len(ledgers)]
        rng = random.Random(number)
        name = f"racer-{number}"
        while sum(completed.values()) < len(task_ids):
            assert time.monotonic() < deadline, f"only {sum(completed.values())}/{len(task_ids)} done in time"
            candidates = await reads.models.claim_candidates(["race"], 40)
            if not candidates:
                await asyncio.sleep(0.01)
                continue
            claim_some = partial(
                _as_client,
                ledger.dispatch.claim,
                name,
                candidates,
                limit=rng.randint(1, 3),
                lease_seconds=120,
                actor=name,
            )
            written = await loop.run_in_executor(pool, claim_some)
            if not written.ids:
                empty_claims += 1  # stale candidates, or the queue is full: others took them
                await asyncio.sleep(0.005)
                continue
            for lease in written.ids:
                await asyncio.sleep(rng.uniform(0, 0.003))  # "working"
                await loop.run_in_executor(pool, partial(_as_client, ledger.dispatch.complete, lease))
                completed[task_id_of(lease)] += 1

    try:
        with ThreadPoolExecutor(max_workers=RACE_THREADS) as pool:
            await asyncio.wait_for(
                asyncio.gather(*(claimer(n, pool) for n in range(RACE_THREADS))), RACE_TIMEOUT_S + 10
            )
    finally:
        runner.stop()

    log = list(History(ledgers[0]).follow())
    claimed = Counter(r.aggregate_id for r in log if r.type == "Task.Claimed")
    done = Counter(r.aggregate_id for r in log if r.type == "Task.Completed")
    assert set(claimed) == set(task_ids)
    assert {t: n for t, n in claimed.items() if n != 1} == {}, "a task was handed out twice"
    assert {t: n for t, n in done.items() if n != 1} == {}
    assert set(completed) == set(task_ids) and set(completed.values()) == {1}
    assert not [r for r in log if r.type in ("Task.AttemptFailed", "Task.LeaseExpired", "Task.LeaseReleased")]

    queue_events = [r for r in log if r.aggregate_id == q and r.type in ("Queue.JobStarted", "Queue.JobStopped")]
    assert len(queue_events) == 2 * RACE_JOBS
    assert most_running_at_once(queue_events) <= RACE_LIMIT
    fresh = new_ledger()  # replayed from the store, not a racer's cache
    assert {job(fresh, j).status for j in job_ids} == {JobStatus.DONE}
    assert fresh.running_jobs(q) == []


def test_commands_saving_while_the_runner_of_their_own_ledger_reads_a_batch_are_not_refused(ledger):
    """A regression: on SQLite the runner used to read a batch's events through the ledger's
    pool while holding the read models' write transaction (BEGIN IMMEDIATE on the same file).
    One command then held the pool's writer lock waiting for the file, a second held the
    pool's semaphore waiting for the writer lock, and the runner waited for the semaphore,
    until eventsourcing's 5 s pool timeout failed one of them (ConnectionUnavailableError)."""
    store = open_read_store(ledger.store)
    runner = ProjectionRunner(ledger, store)
    runner.setup()
    _, (a, b) = submit(ledger, 2)
    failures: list[BaseException] = []

    def claim_in_thread(task_id: str) -> threading.Thread:
        def run() -> None:
            try:
                claim_one(ledger, task_id)
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    read_events = runner.history.read
    writers: list[threading.Thread] = []

    def read_while_two_commands_save(*args: Any, **kwargs: Any) -> list[Record]:
        runner.history.read = read_events  # type: ignore[method-assign]
        writers.append(claim_in_thread(a))  # gets the pool's writer lock, waits for the file
        time.sleep(0.7)
        writers.append(claim_in_thread(b))  # waits for the writer lock
        time.sleep(0.7)
        return read_events(*args, **kwargs)

    runner.history.read = read_while_two_commands_save  # type: ignore[method-assign]
    started = time.monotonic()
    try:
        runner.run_batch()
    except Exception as exc:
        failures.append(exc)
    elapsed = time.monotonic() - started
    for writer in writers:
        writer.join(40)
    try:
        assert failures == [], failures
        assert elapsed < 4, f"the batch took {elapsed:.1f} s"
        assert {task(ledger, t).status for t in (a, b)} == {TaskStatus.BOOTING}
    finally:
        store.close()


# -- claims and completions in bulk ---------------------------------------------------


def test_a_bulk_claim_and_a_bulk_completion_note_each_job_once(ledger):
    """An audit reader sees one job event per command for the tasks it moved, not one
    per task; the job's tally follows, and the job ends DONE."""
    first, first_tasks = submit(ledger, 5, code="bulk-a")
    second, second_tasks = submit(ledger, 3, code="bulk-b")
    leases = claim(ledger, [*first_tasks, *second_tasks], limit=8)
    assert len(leases) == 8
    for job_id, task_ids in ((first, first_tasks), (second, second_tasks)):
        (noted,) = events_of(ledger, job_id, "Job.TaskStatusesChanged")
        assert noted.data["statuses"] == {t: "BOOTING" for t in task_ids}
        assert noted.actor == "w1"
        assert not events_of(ledger, job_id, "Job.TaskStatusChanged")
        assert job(ledger, job_id).status == JobStatus.RUNNING

    ledger.dispatch.complete_many([(lease, {"ok": True}) for lease in leases], actor="w1")
    for job_id, task_ids in ((first, first_tasks), (second, second_tasks)):
        completed = events_of(ledger, job_id, "Job.TaskStatusesChanged")[-1]
        assert completed.data["statuses"] == {t: "DONE" for t in task_ids}
        assert {t["status"] for t in job(ledger, job_id).tasks.values()} == {"DONE"}
        assert job(ledger, job_id).status == JobStatus.DONE
        assert types_of(ledger, job_id)[-1] == "Job.StatusChanged"


def test_a_single_claim_still_notes_its_task_alone(ledger):
    job_id, (only,) = submit(ledger, 1)
    claim_one(ledger, only)
    (noted,) = events_of(ledger, job_id, "Job.TaskStatusChanged")
    assert noted.data == {"task_id": only, "status": "BOOTING"}
    assert not events_of(ledger, job_id, "Job.TaskStatusesChanged")


def test_an_instance_whose_cache_is_behind_claims_and_completes_from_the_store(ledger, new_ledger):
    """Two instances on one store: each has its own aggregate cache. What one claimed, the
    other (which loaded those tasks before) must see as taken, and it can complete a
    lease the first one handed out."""
    behind = new_ledger()
    job_id, task_ids = submit(ledger, 6)
    # Claiming the first two loads (and caches) all six, the job and the queue.
    assert [task_id_of(lease) for lease in claim(behind, task_ids, limit=2)] == task_ids[:2]
    ahead = claim(ledger, task_ids, limit=3)  # tasks 2, 3, 4 through the other instance
    assert [task_id_of(lease) for lease in ahead] == task_ids[2:5]

    late = claim(behind, task_ids, limit=6)  # only task 5 is still queued
    assert [task_id_of(lease) for lease in late] == task_ids[5:]
    behind.dispatch.complete_many([(lease, None) for lease in ahead])
    assert {task(ledger, t).status for t in task_ids[2:5]} == {TaskStatus.DONE}
    assert job(behind, job_id).tasks[task_ids[4]]["status"] == "DONE"
    assert job(ledger, job_id).status == JobStatus.RUNNING


# The hand-out order written as one full sort of every queued task: the definition the
# candidate query (jobs first, then each job's first tasks) must agree with.
FULL_SORT = (
    f"SELECT t.id FROM {TASKS} t JOIN {JOBS} j ON j.id = t.job_id JOIN {QUEUES} q ON q.id = j.queue_id"
    " WHERE t.status = 'QUEUED' AND j.status IN ('WAITING', 'RUNNING') AND q.status = 'WAITING' AND q.deleted = ?"
    " AND (j.status = 'RUNNING' OR q.max_concurrency IS NULL OR q.max_concurrency >"
    f" (SELECT COUNT(*) FROM {JOBS} r WHERE r.phase = 'ACTIVE' AND r.queue_id = q.id AND r.status = 'RUNNING'))"
    " ORDER BY q.priority DESC, j.priority DESC,"
    " CASE WHEN q.execution_mode = 'PRIORITY' THEN t.priority ELSE 0 END DESC,"
    " CASE WHEN q.execution_mode = 'LIFO' THEN j.created END DESC, j.created ASC, j.id, t.seq LIMIT ?"
)


@pytest.fixture(params=["sorted", "by-group"])
def candidate_path(request, reads, monkeypatch):
    """Small backlogs are sorted whole; larger ones go group by group: test both ways."""
    if request.param == "by-group":
        monkeypatch.setattr(reads.models, "SORT_ALL_BELOW", 0)
    return request.param


@pytest.mark.parametrize("seed", range(6))
async def test_candidates_agree_with_a_full_sort_of_every_queued_task(ledger, reads, seed, candidate_path):
    rng = random.Random(seed)
    for code in ("qa", "qb", "qc"):
        ledger.queues.create(
            code,
            priority=rng.choice([300, 500, 500, 800]),
            execution_mode=rng.choice(["FIFO", "LIFO", "PRIORITY"]),
            max_concurrency=rng.choice([None, None, 2]),
        )
    for j in range(14):
        job_id, task_ids = submit(
            ledger,
            code=f"j{j}",
            queue=rng.choice(["qa", "qb", "qc"]),
            priority=rng.choice([None, 100, 500, 900]),
            tasks=[{"source": f"/j{j}/t{t}", "priority": rng.choice([0, 500, 1000])} for t in range(rng.randint(1, 7))],
        )
        if rng.random() < 0.2:
            ledger.jobs.update(job_id, status="PAUSED")
        if rng.random() < 0.3:
            ledger.jobs.update_tasks(job_id, [{"id": task_ids[0], "status": "EXCLUDED"}])
    for _ in range(3):  # some tasks and jobs already running
        candidates = await reads.candidates()
        if candidates:
            claim(ledger, candidates[: rng.randint(1, 4)], limit=4)
    reads.runner.catch_up()
    for count in (1, 3, 8, 40, 500):
        expected = [r["id"] for r in await reads.store.fetch(FULL_SORT, [False, count])]
        assert await reads.models.claim_candidates(None, count) == expected, count


async def test_candidates_across_many_small_jobs_agree_with_the_full_sort(ledger, reads, candidate_path):
    """Many jobs of one or two tasks in one group: the jobs are read a page at a time."""
    ledger.queues.create("many", execution_mode="LIFO")
    for j in range(30):
        submit(ledger, 1 + j % 2, code=f"m{j}", queue="many")
    reads.runner.catch_up()
    for count in (1, 7, 8, 9, 44, 45, 46, 100):
        expected = [r["id"] for r in await reads.store.fetch(FULL_SORT, [False, count])]
        assert len(expected) == min(count, 45)
        assert await reads.models.claim_candidates(["many"], count) == expected, count


async def test_candidates_across_many_task_priorities_agree_with_the_full_sort(ledger, reads, candidate_path):
    """A PRIORITY queue whose tasks spread over more priorities than are walked one by one."""
    rng = random.Random(7)
    ledger.queues.create("spread", execution_mode="PRIORITY")
    for j in range(6):
        submit(
            ledger,
            code=f"s{j}",
            queue="spread",
            tasks=[{"source": f"/s{j}/{t}", "priority": rng.randrange(0, 1000, 50)} for t in range(8)],
        )
    reads.runner.catch_up()
    for count in (1, 5, 12, 30, 48, 60):
        expected = [r["id"] for r in await reads.store.fetch(FULL_SORT, [False, count])]
        assert await reads.models.claim_candidates(["spread"], count) == expected, count
