"""Every status transition of jobs and tasks, checked on the aggregates alone (no store)."""

from __future__ import annotations

import pytest

from domain.errors import InvalidTransitionError
from domain.job import ALLOWED as JOB_ALLOWED
from domain.job import USER_SETTABLE as JOB_USER_SETTABLE
from domain.job import Job, JobStatus
from domain.task import ALLOWED as TASK_ALLOWED
from domain.task import USER_SETTABLE as TASK_USER_SETTABLE
from domain.task import Task, TaskStatus


def job_in(status: JobStatus) -> Job:
    job = Job(
        code="edit.mov",
        queue_id="q",
        status="INIT",
        priority=None,
        source=None,
        destination=None,
        metadata={},
        max_attempts=None,
    )
    if status != JobStatus.INIT:
        job.trigger_event(job.StatusChanged, previous="INIT", status=str(status))
    return job


def task_in(status: TaskStatus) -> Task:
    return Task(
        job_id="j",
        uri="0",
        source="a.mov",
        destination="/b/a.mov",
        size=1,
        priority=500,
        metadata={},
        status=str(status),
    )


JOB_EDGES = [(a, b) for a, targets in JOB_ALLOWED.items() for b in sorted(targets)]
TASK_EDGES = [(a, b) for a, targets in TASK_ALLOWED.items() for b in sorted(targets)]


@pytest.mark.parametrize(("current", "target"), JOB_EDGES, ids=[f"{a}->{b}" for a, b in JOB_EDGES])
def test_every_allowed_job_transition_records_a_status_changed_event(current, target):
    job = job_in(current)
    assert job.change_status(target, by_user=False)
    last = job.pending_events[-1]
    assert type(last).__qualname__ == "Job.StatusChanged"
    assert (last.previous, last.status) == (current, target)
    assert job.status == target


@pytest.mark.parametrize(("current", "target"), TASK_EDGES, ids=[f"{a}->{b}" for a, b in TASK_EDGES])
def test_every_allowed_task_transition_records_an_event_named_after_the_status(current, target):
    task = task_in(current)
    assert task.change_status(target, by_user=False)
    assert task.status == target
    assert type(task.pending_events[-1]).__qualname__.startswith("Task.")


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (JobStatus.DONE, JobStatus.RUNNING),
        (JobStatus.ABORTED, JobStatus.DONE),
        (JobStatus.INIT, JobStatus.FAILED),
        (JobStatus.PAUSED, JobStatus.RUNNING),
        (JobStatus.FAILED, JobStatus.DONE),
    ],
)
def test_a_refused_job_transition_says_from_to_and_what_is_allowed(current, target):
    job = job_in(current)
    with pytest.raises(InvalidTransitionError) as caught:
        job.change_status(target, by_user=False)
    assert caught.value.details == {
        "from": str(current),
        "to": str(target),
        "allowed": sorted(str(s) for s in JOB_ALLOWED[current]),
    }
    assert caught.value.code == "INVALID_TRANSITION"
    assert job.status == current


@pytest.mark.parametrize("target", [JobStatus.RUNNING, JobStatus.FAILED, JobStatus.INIT])
def test_users_may_not_set_the_systems_job_statuses(target):
    job = job_in(JobStatus.WAITING)
    with pytest.raises(InvalidTransitionError) as caught:
        job.change_status(target, by_user=True)
    assert target not in caught.value.allowed
    assert set(caught.value.allowed) <= {str(s) for s in JOB_USER_SETTABLE}


def test_users_may_set_exactly_the_writeable_job_statuses_of_the_seed():
    assert {str(s) for s in JOB_USER_SETTABLE} == {"PENDING", "WAITING", "PAUSED", "ABORTED", "DONE"}


def test_users_may_set_exactly_the_writeable_task_statuses_of_the_seed():
    assert {str(s) for s in TASK_USER_SETTABLE} == {"QUEUED", "FAILED", "ONHOLD", "EXCLUDED", "DONE"}


@pytest.mark.parametrize("target", [TaskStatus.BOOTING, TaskStatus.EXECUTING, TaskStatus.PENDING])
def test_users_may_not_set_the_systems_task_statuses(target):
    task = task_in(TaskStatus.QUEUED)
    with pytest.raises(InvalidTransitionError) as caught:
        task.change_status(target, by_user=True)
    assert caught.value.details["from"] == "QUEUED"
    assert caught.value.details["to"] == str(target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (TaskStatus.EXCLUDED, TaskStatus.DONE),
        (TaskStatus.DONE, TaskStatus.FAILED),
        (TaskStatus.PENDING, TaskStatus.DONE),
        (TaskStatus.EXCLUDED, TaskStatus.EXECUTING),
    ],
)
def test_a_refused_task_transition_leaves_the_task_as_it_was(current, target):
    task = task_in(current)
    before = len(task.pending_events)
    with pytest.raises(InvalidTransitionError):
        task.change_status(target, by_user=False)
    assert task.status == current
    assert len(task.pending_events) == before


def test_setting_the_status_a_task_already_has_records_nothing():
    task = task_in(TaskStatus.QUEUED)
    assert task.change_status(TaskStatus.QUEUED) is False
    assert len(task.pending_events) == 1


def test_a_finished_job_carries_the_time_it_finished_and_loses_it_when_reopened():
    job = job_in(JobStatus.RUNNING)
    job.change_status(JobStatus.DONE, by_user=False)
    assert job.finished == job.pending_events[-1].timestamp
    job.change_status(JobStatus.WAITING, by_user=True)
    assert job.finished is None


def test_an_aggregate_copy_shares_nothing_mutable_with_the_original():
    """Commands work on copies from the aggregate cache; a command that fails after
    changing its copy must leave the cached original as it was."""
    import copy

    from domain.task import Task

    original = Task(
        job_id="j",
        uri="0",
        source={"kind": "command", "command": "true", "env": {"A": ["1"]}},
        destination=None,
        size=-1,
        priority=500,
        metadata={"tags": ["x"]},
        status="QUEUED",
    )
    clone = copy.deepcopy(original)
    assert clone is not original and vars(clone) == vars(original)
    clone.source["env"]["A"].append("2")
    clone.metadata["tags"].clear()
    clone.claim("w", 60, original.created_on)
    assert original.source["env"]["A"] == ["1"] and original.metadata == {"tags": ["x"]}
    assert str(original.status) == "QUEUED" and original.version == 1
    assert [type(e).__name__ for e in original.collect_events()] == ["Created"]
    assert [type(e).__name__ for e in clone.collect_events()] == ["Created", "Claimed"]
