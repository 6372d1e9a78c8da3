"""Commands racing each other from several threads and several Ledger instances on one store.

Each test opens 2-3 Ledger instances on the same store (as several API instances
would) and starts threads on them together behind a barrier. The invariants are
then checked three ways: on a ledger that took part, on a fresh Ledger instance
(replay from the store), and on the event log itself (domain.history.History).

A command that keeps losing races gives up with ConflictError("... kept colliding
... try again"). The threads here call commands the way an API client would:
`as_client` tries again on that answer. So those tests are about what races may
never do (lose, duplicate or misplace anything). The 8 x 25 jobs test, the
startup test and the delete-under-load test insist that commands commit on the
ledger's own retries.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest

from domain.errors import ConflictError, NotFoundError
from domain.history import History, Record
from domain.job import Job
from domain.ledger import Ledger
from domain.queue import Queue
from domain.task import Task

INSTANCES = 3
THREAD_TIMEOUT_S = 60
CLIENT_ATTEMPTS = 20


# -- helpers ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What one thread's call returned, or raised."""

    value: Any = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_together(calls: Sequence[Callable[[], Any]]) -> list[Outcome]:
    """Run every call on its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Outcome:
        barrier.wait(timeout=THREAD_TIMEOUT_S)
        try:
            return Outcome(value=call())
        except Exception as exc:  # the test decides which errors are allowed
            return Outcome(error=exc)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=THREAD_TIMEOUT_S) for future in futures]


def gave_up(error: BaseException) -> bool:
    """The ledger ran out of attempts against other writers (and wrote nothing)."""
    return isinstance(error, ConflictError) and "kept colliding" in error.message


def as_client(command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a ledger command like an API client: on "kept colliding ... try again", try again."""
    for _ in range(CLIENT_ATTEMPTS - 1):
        try:
            return command(*args, **kwargs)
        except ConflictError as exc:
            if not gave_up(exc):
                raise
    return command(*args, **kwargs)


def unexpected(outcomes: Sequence[Outcome], *allowed: type[Exception]) -> list[Exception]:
    """Errors other than the allowed kinds (running out of attempts is never allowed)."""
    return [o.error for o in outcomes if o.error is not None and (not isinstance(o.error, allowed) or gave_up(o.error))]


def instances(new_ledger: Callable[[], Ledger], count: int = INSTANCES) -> list[Ledger]:
    return [new_ledger() for _ in range(count)]


def log(ledger: Ledger, *types: str) -> list[Record]:
    """Every event in the store, oldest first, optionally only of the given types."""
    history = History(ledger)
    records = list(history.follow())
    return [r for r in records if not types or r.type in types]


def queue(ledger: Ledger, queue_id: str) -> Queue:
    found = ledger.repository.get(_uuid(queue_id))
    assert isinstance(found, Queue)
    return found


def job(ledger: Ledger, job_id: str) -> Job:
    found = ledger.repository.get(_uuid(job_id))
    assert isinstance(found, Job)
    return found


def _uuid(value: str) -> UUID:
    return UUID(value)


# -- several instances starting at once ---------------------------------------------


class InstancesFailedToStart(AssertionError):
    """Some of several Ledger instances opened at the same moment failed to open."""


def test_several_instances_starting_at_once_on_an_empty_store_create_one_default_queue(new_ledger):
    # Regression: on PostgreSQL their schema DDL collided (CREATE TYPE, CREATE OR REPLACE FUNCTION).
    outcomes = run_together([new_ledger for _ in range(4)])
    started = [o.value for o in outcomes if o.ok]
    assert started, [o.error for o in outcomes]

    # Whoever started agrees on one registry and one default queue.
    registries = {(r.default_queue_id, tuple(r.codes.items())) for r in (s.registry() for s in started) if r}
    assert len(registries) == 1, registries
    ((default_id, codes),) = registries
    assert dict(codes) == {"default": default_id}
    created = log(started[0], "Queue.Created")
    assert [r.aggregate_id for r in created] == [default_id]
    assert len(log(started[0], "QueueRegistry.Created")) == 1
    assert queue(started[0], default_id).default

    if not all(o.ok for o in outcomes):
        raise InstancesFailedToStart("; ".join(f"{type(o.error).__name__}: {o.error}" for o in outcomes if not o.ok))


# -- queue codes -------------------------------------------------------------------


@pytest.mark.parametrize("threads", [2, 8])
def test_threads_creating_the_same_queue_code_exactly_one_wins(new_ledger, threads):
    ledgers = instances(new_ledger)
    outcomes = run_together(
        [
            lambda i=i: as_client(ledgers[i % len(ledgers)].queues.create, "contested", description=f"by {i}")
            for i in range(threads)
        ]
    )

    winners = [o.value.id for o in outcomes if o.ok]
    losers = [o.error for o in outcomes if not o.ok]
    assert len(winners) == 1, outcomes
    assert len(losers) == threads - 1
    for error in losers:
        assert isinstance(error, ConflictError), repr(error)
        assert "'contested'" in error.message, error.message
        assert "kept colliding" not in error.message

    (winner,) = winners
    for ledger in [*ledgers, new_ledger()]:
        registry = ledger.registry()
        assert registry is not None
        assert registry.codes["contested"] == winner
        assert list(registry.codes.values()).count(winner) == 1

    created = [r for r in log(ledgers[0], "Queue.Created") if r.data["code"] == "contested"]
    assert [r.aggregate_id for r in created] == [winner]
    reserved = [r for r in log(ledgers[0], "QueueRegistry.CodeReserved") if r.data["code"] == "contested"]
    assert [r.data["queue_id"] for r in reserved] == [winner]


# -- the default queue -------------------------------------------------------------


def test_racing_default_changes_leave_exactly_one_default_queue(new_ledger):
    ledgers = instances(new_ledger)
    setup = ledgers[0]
    original_default = setup.registry().default_queue_id  # type: ignore[union-attr]
    queue_ids = [setup.queues.create(f"q{i}").id for i in range(6)]
    doomed = queue_ids[4:]  # also raced by delete_queue
    created_ids: list[str] = []
    created_lock = threading.Lock()

    def churn_default(worker: int) -> None:
        ledger = ledgers[worker % len(ledgers)]
        rng = random.Random(worker)
        for _ in range(3):
            target = rng.choice(queue_ids)
            try:
                as_client(ledger.queues.update, target, default=True, actor=f"worker-{worker}")
            except NotFoundError:
                assert target in doomed  # it was deleted first
            except ConflictError as exc:  # being deleted: sealed first, so it cannot become the default
                assert target in doomed and "is sealed" in exc.message, exc.message

    def create_default(worker: int) -> None:
        written = as_client(ledgers[worker % len(ledgers)].queues.create, f"new{worker}", default=True)
        with created_lock:
            created_ids.append(written.id)

    def delete(worker: int, queue_id: str) -> None:
        try:
            as_client(ledgers[worker % len(ledgers)].queues.delete, queue_id)
        except ConflictError as exc:  # it had just become the default
            assert "default queue" in exc.message, exc.message

    calls: list[Callable[[], Any]] = [lambda w=w: churn_default(w) for w in range(6)]
    calls += [lambda w=w: create_default(w) for w in range(6, 9)]
    calls += [lambda w=w, q=q: delete(w, q) for w, q in zip(range(9, 11), doomed, strict=True)]
    outcomes = run_together(calls)
    assert not unexpected(outcomes), [o.error for o in outcomes if o.error]
    assert len(created_ids) == 3

    everyone = [original_default, *queue_ids, *created_ids]

    def check(ledger: Ledger) -> str:
        registry = ledger.registry()
        assert registry is not None
        loaded = [ledger.repository.get(_uuid(q)) for q in everyone]
        defaults = [str(q.id) for q in loaded if q.default and not q.deleted]
        assert len(defaults) == 1, defaults
        assert defaults == [registry.default_queue_id]
        assert set(registry.codes.values()) == {str(q.id) for q in loaded if not q.deleted}
        return defaults[0]

    answers = {check(ledger) for ledger in [*ledgers, new_ledger()]}
    assert len(answers) == 1
    (default_id,) = answers

    # Folding the log by hand agrees too.
    flags: dict[str, bool] = {}
    deleted: set[str] = set()
    last_changed = None
    for record in log(setup):
        if record.type == "Queue.Created":
            flags[record.aggregate_id] = record.data["default"]
        elif record.type == "Queue.DefaultSet":
            assert not flags[record.aggregate_id], "set while already the default"
            flags[record.aggregate_id] = True
        elif record.type == "Queue.DefaultUnset":
            assert flags[record.aggregate_id], "unset while not the default"
            flags[record.aggregate_id] = False
        elif record.type == "Queue.Deleted":
            assert not flags[record.aggregate_id], "the default queue was deleted"
            deleted.add(record.aggregate_id)
        elif record.type == "QueueRegistry.DefaultChanged":
            last_changed = record.data["queue_id"]
        if record.type.startswith(("Queue.", "QueueRegistry.")):
            live = [q for q, flag in flags.items() if flag and q not in deleted]
            assert len(live) <= 1, f"two default queues after position {record.position}: {live}"
    assert [q for q, flag in flags.items() if flag and q not in deleted] == [default_id]
    assert last_changed == default_id


# -- contention on one queue ---------------------------------------------------------


def test_eight_threads_creating_25_jobs_each_in_one_queue_all_succeed_by_clean_retry(new_ledger):
    ledgers = instances(new_ledger)
    target = ledgers[0].queues.create("busy").id

    def create_jobs(worker: int) -> list[str]:
        ledger = ledgers[worker % len(ledgers)]
        ref = "busy" if worker % 2 else target  # by code and by id
        return [ledger.jobs.create(queue=ref, code=f"w{worker}-j{n}").id for n in range(25)]  # no client retry

    outcomes = run_together([lambda w=w: create_jobs(w) for w in range(8)])
    assert not unexpected(outcomes), [o.error for o in outcomes if o.error]
    created = [job_id for o in outcomes for job_id in o.value]
    assert len(created) == len(set(created)) == 200

    for ledger in [*ledgers, new_ledger()]:
        assert set(ledger.open_jobs(target)) == set(created)
        assert len(ledger.open_jobs(target)) == 200

    job_created = log(ledgers[0], "Job.Created")
    assert len(job_created) == 200
    assert {r.aggregate_id for r in job_created} == set(created)
    assert {r.data["queue_id"] for r in job_created} == {target}
    added = [r for r in log(ledgers[0], "Queue.JobAdded") if r.aggregate_id == target]
    assert sorted(r.data["job_id"] for r in added) == sorted(created)


# -- lost updates ---------------------------------------------------------------------


def test_concurrent_tag_additions_with_different_keys_are_all_kept(new_ledger):
    ledgers = instances(new_ledger)
    target = ledgers[0].queues.create("tagged", tags={"initial": "yes"}).id

    def add_tags(worker: int) -> None:
        ledger = ledgers[worker % len(ledgers)]
        for n in range(3):
            as_client(ledger.queues.add_tags, target, {f"k{worker}-{n}": f"v{worker}-{n}"})

    outcomes = run_together([lambda w=w: add_tags(w) for w in range(8)])
    assert not unexpected(outcomes), [o.error for o in outcomes if o.error]

    expected = {"initial": "yes"} | {f"k{w}-{n}": f"v{w}-{n}" for w in range(8) for n in range(3)}
    for ledger in [*ledgers, new_ledger()]:
        assert queue(ledger, target).tags == expected
    added = [r for r in log(ledgers[0], "Queue.TagsAdded") if r.aggregate_id == target]
    assert len(added) == 24


def test_concurrent_task_additions_to_one_job_get_unique_contiguous_uris(new_ledger):
    ledgers = instances(new_ledger)
    job_id = ledgers[0].jobs.create(code="gather").id
    per_thread, threads = 3, 8

    def add_tasks(worker: int) -> list[str]:
        ledger = ledgers[worker % len(ledgers)]
        ids = []
        for n in range(per_thread):
            task = {"source": f"/in/{worker}-{n}.mov", "destination": f"/out/{worker}-{n}.mov"}
            ids += as_client(ledger.jobs.add_tasks, job_id, [task]).ids
        return ids

    outcomes = run_together([lambda w=w: add_tasks(w) for w in range(threads)])
    assert not unexpected(outcomes), [o.error for o in outcomes if o.error]
    task_ids = [t for o in outcomes for t in o.value]
    total = per_thread * threads
    assert len(task_ids) == len(set(task_ids)) == total

    for ledger in [*ledgers, new_ledger()]:
        tallies = job(ledger, job_id).tasks
        assert set(tallies) == set(task_ids)
        assert sorted(int(t["uri"]) for t in tallies.values()) == list(range(total))
        for task_id, tally in tallies.items():
            task = ledger.repository.get(_uuid(task_id))
            assert isinstance(task, Task)
            assert task.uri == tally["uri"]
            assert task.job_id == job_id

    task_created = log(ledgers[0], "Task.Created")
    assert len(task_created) == total
    assert sorted(int(r.data["uri"]) for r in task_created) == list(range(total))
    tasks_added = [r for r in log(ledgers[0], "Job.TasksAdded") if r.aggregate_id == job_id]
    assert sorted(t["id"] for r in tasks_added for t in r.data["tasks"]) == sorted(task_ids)


# -- deleting and sealing while jobs arrive --------------------------------------------


def race_against_job_creation(
    ledgers: list[Ledger],
    target: str,
    action: Callable[[Ledger], Any],
    refused: Callable[[Exception], bool],
    pause_s: float = 0.001,
) -> tuple[list[Any], list[Exception], Any]:
    """Four creators add jobs to `target`, pausing `pause_s` between jobs, while, once
    a few exist, `action` runs.

    A creator stops at its first refusal. One that made its 30 jobs first waits
    for the action to commit and tries once more, which must be refused; so every
    creator ends refused, whichever way the race went. Returns the Written of every
    job created, the refusals, and what `action` returned.
    """
    some_created = threading.Event()
    committed = threading.Event()
    created: list[Any] = []
    refusals: list[Exception] = []
    lock = threading.Lock()

    def create(worker: int) -> None:
        ledger = ledgers[worker % len(ledgers)]
        ref = "target" if worker % 2 else target  # by code and by id
        for n in range(31):
            if n == 30:
                assert committed.wait(timeout=THREAD_TIMEOUT_S)
            try:
                written = as_client(ledger.jobs.create, queue=ref, code=f"w{worker}-j{n}")
            except Exception as exc:
                if not refused(exc):
                    raise
                with lock:
                    refusals.append(exc)
                return
            with lock:
                created.append(written)
                if len(created) >= 6:
                    some_created.set()
            time.sleep(pause_s)
        raise AssertionError(f"creator {worker} made a job after the action committed")

    def act() -> Any:
        assert some_created.wait(timeout=THREAD_TIMEOUT_S)
        written = as_client(action, ledgers[-1])
        committed.set()
        return written

    outcomes = run_together([*[lambda w=w: create(w) for w in range(4)], act])
    assert not unexpected(outcomes), [o.error for o in outcomes if o.error]
    assert len(created) >= 6
    assert len(refusals) == 4
    return created, refusals, outcomes[-1].value


def _queue_is_gone(error: Exception) -> bool:
    return isinstance(error, NotFoundError) and error.kind == "Queue"


def _queue_is_sealed(error: Exception) -> bool:
    return isinstance(error, ConflictError) and "sealed" in error.message and "'target'" in error.message


def test_jobs_created_while_their_queue_is_deleted_all_end_up_in_the_default_queue(new_ledger):
    ledgers = instances(new_ledger)
    target = ledgers[0].queues.create("target").id
    default_id = ledgers[0].registry().default_queue_id  # type: ignore[union-attr]

    created, _, _ = race_against_job_creation(
        ledgers,
        target,
        lambda ledger: ledger.queues.delete(target),
        # delete_queue seals the queue first, then moves its jobs and deletes it.
        refused=lambda error: _queue_is_sealed(error) or _queue_is_gone(error),
    )
    created_ids = {w.id for w in created}

    # Every successful create committed before the queue closed, so the delete moved them all.
    (deleted,) = [r for r in log(ledgers[0], "Queue.Deleted") if r.aggregate_id == target]
    closed = min(r.position for r in log(ledgers[0], "Queue.Sealed", "Queue.Deleted") if r.aggregate_id == target)
    assert set(deleted.data["moved_job_ids"]) == created_ids
    assert deleted.data["moved_to"] == default_id
    assert all(w.position < closed for w in created)

    for ledger in [*ledgers, new_ledger()]:
        assert queue(ledger, target).deleted
        assert ledger.open_jobs(target) == []
        default = queue(ledger, default_id)
        assert created_ids <= set(ledger.open_jobs(str(default.id)))
        for job_id in created_ids:
            moved = job(ledger, job_id)
            assert not moved.is_finished
            assert moved.queue_id == default_id
        # No job of the store is left unfinished in the deleted queue.
        for record in log(ledger, "Job.Created"):
            found = job(ledger, record.aggregate_id)
            assert found.is_finished or found.queue_id != target, record.aggregate_id
    assert len(log(ledgers[0], "Job.Created")) == len(created_ids)


def test_jobs_created_while_their_queue_is_sealed_all_precede_the_seal_in_the_log(new_ledger):
    ledgers = instances(new_ledger)
    target = ledgers[0].queues.create("target").id

    created, refusals, sealed_written = race_against_job_creation(
        ledgers, target, lambda ledger: ledger.queues.seal(target), refused=_queue_is_sealed
    )
    created_ids = {w.id for w in created}
    for error in refusals:
        assert "sealed" in error.message and "'target'" in error.message, error.message

    (sealed,) = [r for r in log(ledgers[0], "Queue.Sealed") if r.aggregate_id == target]
    assert sealed.position == sealed_written.position
    job_created = {r.aggregate_id: r for r in log(ledgers[0], "Job.Created")}
    assert set(job_created) == created_ids  # no refused create wrote anything
    for written in created:
        assert job_created[written.id].position < sealed.position
        assert written.position < sealed.position
    added = [r for r in log(ledgers[0], "Queue.JobAdded") if r.aggregate_id == target]
    assert {r.data["job_id"] for r in added} == created_ids
    assert all(r.version < sealed.version for r in added)

    for ledger in [*ledgers, new_ledger()]:
        assert set(ledger.open_jobs(target)) == created_ids
        assert queue(ledger, target).state == "SEALED"


# -- a command under a steady stream of other writes ---------------------------------


class GaveUp(AssertionError):
    """A command answered "kept colliding ... try again" where it should have committed."""


def test_delete_queue_commits_while_one_client_keeps_submitting_jobs(new_ledger):
    # Regression: delete_queue read every open job per attempt, and each new job voided
    # the attempt, so it ran out of attempts on both stores (now it seals the queue first).
    submitter, admin = instances(new_ledger, 2)
    target = submitter.queues.create("busy").id
    for n in range(50):
        submitter.jobs.create(queue=target, code=f"backlog-{n}")
    stop = threading.Event()

    def submit() -> None:
        n = 0
        while not stop.is_set():
            try:
                submitter.jobs.create(queue=target, code=f"live-{n}")
            except (NotFoundError, ConflictError) as exc:
                assert _queue_is_gone(exc) or "is sealed" in str(exc), exc
                return  # the queue is closed: that is the point
            n += 1
            time.sleep(0.001)

    thread = threading.Thread(target=submit)
    thread.start()
    try:
        time.sleep(0.02)
        try:
            admin.queues.delete(target)
        except ConflictError as exc:
            if gave_up(exc):
                raise GaveUp(exc.message) from exc
            raise
    finally:
        stop.set()
        thread.join(timeout=THREAD_TIMEOUT_S)
    assert queue(admin, target).deleted


def test_a_delete_queue_that_fails_leaves_the_queue_as_it_was(new_ledger):
    admin, other = instances(new_ledger, 2)
    parent = admin.queues.create("parent").id

    def another_instance_nests_a_queue(position: int) -> None:
        # Runs after each of admin's saves: right after the delete's seal, before its move.
        if queue(admin, parent).state == "SEALED" and "child" not in admin.registry().codes:  # type: ignore[union-attr]
            other.queues.create("child", parent="parent")

    admin.after_save.append(another_instance_nests_a_queue)
    with pytest.raises(ConflictError, match="nested queue"):
        admin.queues.delete(parent)
    admin.after_save.remove(another_instance_nests_a_queue)

    fresh = new_ledger()
    assert not queue(fresh, parent).deleted
    assert queue(fresh, parent).state == "ACTIVE", "the failed delete_queue left the queue sealed"
    fresh.jobs.create(queue="parent", code="still-welcome")
