"""Domain stories on eventsourcing's in-memory store: the rules, without a database."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import pytest

from domain.errors import ConflictError
from domain.history import History
from domain.job import Job, JobStatus
from domain.ledger import Ledger
from domain.queue import Queue
from domain.task import Task, TaskStatus
from domain.unit_of_work import UnitOfWork


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("memory://")


def get(ledger: Ledger, kind: type, aggregate_id: str) -> object:
    found = ledger.load(UUID(aggregate_id))
    assert isinstance(found, kind)
    return found


def tasks_of(ledger: Ledger, job_id: str) -> list[str]:
    job = get(ledger, Job, job_id)
    assert isinstance(job, Job)
    return list(job.tasks)


def written_so_far(ledger: Ledger) -> int:
    return len(ledger.recorder.select_notifications(start=1, limit=10_000))


def test_the_ledger_keeps_its_events_in_memory(ledger):
    assert type(ledger.recorder).__module__ == "eventsourcing.popo"
    registry = ledger.registry()
    assert registry is not None and list(registry.codes) == ["default"]


def test_a_job_whose_tasks_are_all_completed_is_done(ledger):
    ledger.queues.create("renders", max_concurrency=1, actor="lars")
    job_id = ledger.jobs.create(queue="renders", tasks=["/a.exr", "/b.exr"], destination="/out", actor="lars").id
    assert get(ledger, Job, job_id).status == JobStatus.WAITING

    leases = ledger.dispatch.claim("w1", tasks_of(ledger, job_id), limit=5, lease_seconds=60, actor="w1").ids
    assert len(leases) == 2
    assert get(ledger, Job, job_id).status == JobStatus.RUNNING

    ledger.dispatch.complete(leases[0], {"frames": 1}, actor="w1")
    ledger.dispatch.complete(leases[1], actor="w1")

    job = get(ledger, Job, job_id)
    assert job.status == JobStatus.DONE
    assert {get(ledger, Task, t).status for t in job.tasks} == {TaskStatus.DONE}
    renders = job.queue_id
    assert ledger.open_jobs(renders) == [] and ledger.running_jobs(renders) == []
    assert ledger.position() == written_so_far(ledger)


def test_a_full_queue_hands_out_no_work_of_another_job(ledger):
    ledger.queues.create("one-at-a-time", max_concurrency=1)
    first = ledger.jobs.create(queue="one-at-a-time", tasks=["/a"], destination="/o").id
    second = ledger.jobs.create(queue="one-at-a-time", tasks=["/b"], destination="/o").id
    candidates = tasks_of(ledger, first) + tasks_of(ledger, second)

    assert len(ledger.dispatch.claim("w1", candidates, limit=2).ids) == 1
    assert get(ledger, Job, second).status == JobStatus.WAITING


def test_a_task_failing_every_attempt_fails_its_job(ledger):
    # Retried at once (no retry delay): the attempts are the point here, not the wait.
    job_id = ledger.jobs.create(tasks=["/a"], destination="/o", max_attempts=2, retry_delay=0).id
    (task_id,) = tasks_of(ledger, job_id)
    for _ in range(2):
        (lease,) = ledger.dispatch.claim("w1", [task_id]).ids
        ledger.dispatch.fail(lease, "disk full")
    assert get(ledger, Task, task_id).status == TaskStatus.FAILED
    assert get(ledger, Job, job_id).status == JobStatus.FAILED


def test_a_claim_asks_again_for_candidates_when_others_took_the_first_ones(ledger):
    job_id = ledger.jobs.create(tasks=[f"/f{i}" for i in range(40)], destination="/o").id
    task_ids = tasks_of(ledger, job_id)
    ledger.dispatch.claim("w1", task_ids[:20], limit=20)
    asked: list[tuple[int, int]] = []

    def read_model(count: int, seen: int) -> Sequence[str]:
        """Stale at first (it has not seen w1's claims), up to date when asked again."""
        asked.append((count, seen))
        queued = task_ids if len(asked) == 1 else [t for t in task_ids if get(ledger, Task, t).status == "QUEUED"]
        return queued[:count]

    (lease,) = ledger.dispatch.claim("w2", read_model, limit=1).ids
    assert lease.startswith(task_ids[20])
    assert [seen > 0 for _, seen in asked] == [False, True]


def test_a_lease_completed_twice_is_a_conflict(ledger):
    job_id = ledger.jobs.create(tasks=["/a"], destination="/o").id
    (lease,) = ledger.dispatch.claim("w1", tasks_of(ledger, job_id)).ids
    ledger.dispatch.complete(lease)
    before = ledger.position()
    with pytest.raises(ConflictError):
        ledger.dispatch.complete(lease)
    assert ledger.position() == before


def test_a_queue_code_is_taken_once(ledger):
    ledger.queues.create("ingest")
    with pytest.raises(ConflictError):
        ledger.queues.create("ingest")


def test_terminating_a_queue_aborts_its_unfinished_jobs(ledger):
    queue_id = ledger.queues.create("doomed").id
    job_ids = [ledger.jobs.create(queue="doomed", tasks=[f"/{i}"], destination="/o").id for i in range(3)]
    ledger.queues.terminate(queue_id)
    assert {get(ledger, Job, j).status for j in job_ids} == {JobStatus.ABORTED}
    assert ledger.open_jobs(queue_id) == []


def test_a_command_that_loses_a_race_runs_again_from_fresh_state(ledger):
    queue_id = ledger.queues.create("busy").id
    seen_versions: list[int] = []

    def describe(uow: UnitOfWork) -> list[str]:
        queue = uow.get(Queue, queue_id)
        seen_versions.append(queue.version)
        if len(seen_versions) == 1:
            ledger.queues.update(queue_id, priority=7)  # another writer commits first
        queue.update({"description": "busy indeed"})
        return [queue_id]

    written = ledger.queues.runner.run("test.describe", describe, actor="tester")
    assert seen_versions == [seen_versions[0], seen_versions[0] + 1]
    queue = get(ledger, Queue, queue_id)
    assert (queue.priority, queue.description) == (7, "busy indeed")
    assert written.position == ledger.position()


def test_the_history_tells_a_jobs_story_in_log_order(ledger):
    queue_id = ledger.queues.create("renders", actor="lars").id
    job_id = ledger.jobs.create(queue="renders", tasks=["/a", "/b"], destination="/o", actor="lars").id
    (lease, _) = ledger.dispatch.claim("w1", tasks_of(ledger, job_id), limit=2, actor="w1").ids
    ledger.dispatch.complete(lease, actor="w1")
    history = History(ledger)

    story = history.of_job(job_id)
    assert [r.position for r in story] == sorted(r.position for r in story)
    assert {r.aggregate_id for r in story} == {job_id, *tasks_of(ledger, job_id)}
    assert story[0].type == "Job.Created" and story[0].actor == "lars"
    assert "Task.Completed" in {r.type for r in story}

    queue_story = history.of_aggregate(queue_id)
    assert [r.version for r in queue_story] == list(range(1, len(queue_story) + 1))
    assert all(r.aggregate_id == queue_id for r in queue_story)
    log = {(r.position, r.aggregate_id, r.version) for r in history.read(limit=10_000)}
    assert {(r.position, r.aggregate_id, r.version) for r in story + queue_story} <= log
    assert history.of_aggregate(UUID(int=1)) == [] and history.of_job(str(UUID(int=1))) == []


def test_a_claim_whose_later_round_fails_answers_the_leases_it_took_before(ledger):
    job_id = ledger.jobs.create(tasks=[f"/in/{n}" for n in range(30)], destination="/out", actor="lars").id
    tasks = tasks_of(ledger, job_id)
    ledger.dispatch.claim("w0", tasks[:25], limit=25, actor="w0")  # taken by another worker
    asked: list[int] = []

    def candidates(count: int, seen: int) -> list[str]:
        asked.append(count)
        if len(asked) > 1:
            raise TimeoutError("the read models did not answer")  # the second round fails
        return [*tasks[: count - 1], tasks[25]]  # a full round: the taken ones and one free task

    written = ledger.dispatch.claim("w1", candidates, limit=2, actor="w1")

    assert len(asked) == 2
    assert [lease.split(".", 1)[0] for lease in written.ids] == [tasks[25]]
    task = get(ledger, Task, tasks[25])
    assert isinstance(task, Task) and task.status == TaskStatus.BOOTING


def test_a_claim_whose_first_round_fails_says_so(ledger):
    ledger.jobs.create(tasks=["/in/a"], destination="/out", actor="lars")

    def candidates(count: int, seen: int) -> list[str]:
        raise TimeoutError("the read models did not answer")

    with pytest.raises(TimeoutError):
        ledger.dispatch.claim("w1", candidates, limit=2, actor="w1")
