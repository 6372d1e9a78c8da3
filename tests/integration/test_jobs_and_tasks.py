"""Jobs and their tasks, through the commands a user gives."""

from __future__ import annotations

import pytest

from domain.errors import ConflictError, InvalidTransitionError, NotFoundError, ValidationError
from domain.job import JobStatus
from domain.task import TaskStatus
from tests.helpers import default_queue, job, task, types_of


def submit(ledger, **kwargs):
    kwargs.setdefault("destination", "/Users/tommy/Downloads")
    return ledger.jobs.create(**kwargs)


def test_a_job_is_named_after_its_first_file_and_lands_in_the_default_queue(ledger):
    written = submit(ledger, tasks=["share=projects/thefilm/latest_edit.mov", "/b.mov"], actor="employee")
    created = job(ledger, written.id)
    assert created.code == "latest_edit.mov"
    assert created.queue_id == str(default_queue(ledger).id)
    assert created.status == JobStatus.WAITING
    assert written.id in ledger.open_jobs(str(default_queue(ledger).id))


def test_a_job_sent_without_tasks_is_named_after_its_source_and_stays_in_init(ledger):
    written = ledger.jobs.create(source="share=projects/thefilm/latest_edit.mov", destination="lars@edit.com")
    assert (job(ledger, written.id).code, job(ledger, written.id).status) == ("latest_edit.mov", "INIT")


def test_a_job_may_start_paused_and_stays_paused_when_it_has_tasks(ledger):
    written = submit(ledger, tasks=["/a"], status="paused")
    assert job(ledger, written.id).status == JobStatus.PAUSED


@pytest.mark.parametrize("status", ["RUNNING", "DONE", "FAILED", "ABORTED"])
def test_a_job_cannot_be_created_in_a_status_only_the_system_or_its_life_reaches(ledger, status):
    with pytest.raises(ValidationError) as caught:
        submit(ledger, tasks=["/a"], status=status)
    assert caught.value.field == "status"


def test_tasks_are_numbered_in_order_and_the_job_size_is_their_sum(ledger):
    written = submit(ledger, tasks=[{"source": f"/f{i}", "size": 100 * (i + 1)} for i in range(3)])
    j = job(ledger, written.id)
    assert [t["uri"] for t in j.tasks.values()] == ["0", "1", "2"]
    assert j.size == 600
    more = ledger.jobs.add_tasks(written.id, [{"source": "/f3", "size": 1}])
    assert task(ledger, more.id).uri == "3"
    assert job(ledger, written.id).size == 601


def test_job_size_is_unknown_while_any_task_size_is_unknown(ledger):
    written = submit(ledger, tasks=[{"source": "/a", "size": 5}, "/b"])
    assert job(ledger, written.id).size == -1


def test_a_task_without_any_destination_waits_in_pending_until_the_job_gets_one(ledger):
    written = ledger.jobs.create(tasks=["/send/a.mov"])
    j = job(ledger, written.id)
    (task_id,) = j.tasks
    assert (j.status, task(ledger, task_id).status) == (JobStatus.PENDING, TaskStatus.PENDING)
    ledger.jobs.update(written.id, destination="lars@edit.com")
    assert (job(ledger, written.id).status, task(ledger, task_id).status) == ("WAITING", "QUEUED")


def test_a_command_task_needs_no_destination(ledger):
    written = ledger.jobs.create(code="render", tasks=[{"source": {"kind": "command", "command": "echo hi"}}])
    assert job(ledger, written.id).status == JobStatus.WAITING


def test_adding_a_task_equal_to_an_existing_one_retries_that_task(ledger):
    written = submit(ledger, tasks=[{"source": "/a.mov", "destination": "/out/a.mov"}])
    (task_id,) = job(ledger, written.id).tasks
    ledger.jobs.update_tasks(written.id, [{"id": task_id, "status": "DONE"}])
    assert job(ledger, written.id).status == JobStatus.DONE
    again = ledger.jobs.add_tasks(written.id, [{"source": {"path": "/a.mov"}, "destination": "/out/a.mov"}])
    assert again.ids == [task_id]
    assert task(ledger, task_id).status == TaskStatus.QUEUED
    assert len(job(ledger, written.id).tasks) == 1
    assert types_of(ledger, task_id)[-1] == "Task.Retried"
    assert job(ledger, written.id).status == JobStatus.WAITING  # the job runs again


def test_a_duplicate_task_is_refused_when_duplicates_are_not_allowed(ledger):
    written = submit(ledger, tasks=["/a.mov"])
    before = ledger.position()
    with pytest.raises(ConflictError, match="already exists"):
        ledger.jobs.add_tasks(written.id, ["/b.mov", "/a.mov"], allow_duplicates=False)
    assert ledger.position() == before
    assert len(job(ledger, written.id).tasks) == 1


def test_tasks_are_never_deleted_only_excluded_and_an_excluded_task_leaves_the_size(ledger):
    written = submit(ledger, tasks=[{"source": "/a", "size": 10}, {"source": "/b", "size": 5}])
    _, second = job(ledger, written.id).tasks
    ledger.jobs.update_tasks(written.id, [{"id": second, "status": "excluded"}], actor="tommy")
    assert task(ledger, second).status == TaskStatus.EXCLUDED
    assert job(ledger, written.id).size == 10
    assert types_of(ledger, second)[-1] == "Task.Excluded"
    assert not hasattr(ledger, "delete_task")


def test_a_job_is_done_when_every_task_that_is_not_excluded_is_done(ledger):
    written = submit(ledger, tasks=["/a", "/b", "/c"])
    a, b, c = job(ledger, written.id).tasks
    ledger.jobs.update_tasks(written.id, [{"id": a, "status": "DONE"}, {"id": b, "status": "EXCLUDED"}])
    assert job(ledger, written.id).status == JobStatus.WAITING
    ledger.jobs.update_tasks(written.id, [{"id": c, "status": "DONE"}])
    done = job(ledger, written.id)
    assert done.status == JobStatus.DONE and done.finished is not None
    assert written.id not in ledger.open_jobs(str(default_queue(ledger).id))


def test_only_status_priority_and_metadata_of_a_task_can_change(ledger):
    written = submit(ledger, tasks=["/a"])
    (task_id,) = job(ledger, written.id).tasks
    with pytest.raises(ValidationError, match="source"):
        ledger.jobs.update_tasks(written.id, [{"id": task_id, "source": "/elsewhere"}])
    ledger.jobs.update_tasks(written.id, [{"id": task_id, "priority": 900, "metadata": {"note": "rush"}}])
    t = task(ledger, task_id)
    assert (t.priority, t.metadata, t.source) == (900, {"note": "rush"}, "/a")


def test_a_task_update_batch_is_all_or_nothing(ledger):
    written = submit(ledger, tasks=["/a", "/b"])
    a, b = job(ledger, written.id).tasks
    before = ledger.position()
    with pytest.raises(InvalidTransitionError):
        ledger.jobs.update_tasks(written.id, [{"id": a, "status": "ONHOLD"}, {"id": b, "status": "EXECUTING"}])
    assert ledger.position() == before
    assert task(ledger, a).status == TaskStatus.QUEUED


def test_a_task_of_another_job_is_not_found_in_this_one(ledger):
    one, other = submit(ledger, tasks=["/a"]), submit(ledger, tasks=["/b"])
    (foreign,) = job(ledger, other.id).tasks
    with pytest.raises(NotFoundError):
        ledger.jobs.update_tasks(one.id, [{"id": foreign, "status": "ONHOLD"}])


def test_pause_resume_and_abort_as_in_the_seed(ledger):
    written = submit(ledger, tasks=["/a"])
    for status in ("paused", "waiting", "aborted"):
        ledger.jobs.update(written.id, status=status, actor="employee")
    aborted = job(ledger, written.id)
    assert aborted.status == JobStatus.ABORTED and aborted.finished is not None
    with pytest.raises(ConflictError, match="aborted"):
        ledger.jobs.add_tasks(written.id, ["/b"])
    with pytest.raises(InvalidTransitionError) as caught:
        ledger.jobs.update(written.id, status="PAUSED")
    assert caught.value.details["allowed"] == ["PENDING", "WAITING"]


def test_users_cannot_set_running_or_failed(ledger):
    written = submit(ledger, tasks=["/a"])
    for status in ("RUNNING", "FAILED"):
        with pytest.raises(InvalidTransitionError):
            ledger.jobs.update(written.id, status=status)


def test_resuming_a_done_job_runs_its_tasks_again(ledger):
    written = submit(ledger, tasks=["/a"])
    (task_id,) = job(ledger, written.id).tasks
    ledger.jobs.update_tasks(written.id, [{"id": task_id, "status": "DONE"}])
    ledger.jobs.update(written.id, status="WAITING")
    assert (job(ledger, written.id).status, task(ledger, task_id).status) == ("WAITING", "QUEUED")
    assert written.id in ledger.open_jobs(str(default_queue(ledger).id))


def test_a_job_inherits_its_queues_priority_until_it_sets_its_own(ledger):
    written = submit(ledger, tasks=["/a"], priority=None)
    assert job(ledger, written.id).priority is None
    ledger.jobs.update(written.id, priority=800)
    assert job(ledger, written.id).priority == 800
    ledger.jobs.update(written.id, priority=None)
    assert job(ledger, written.id).priority is None


def test_moving_a_job_moves_it_between_the_queues_lists(ledger):
    target = ledger.queues.create("fast")
    written = submit(ledger, tasks=["/a"])
    ledger.jobs.update(written.id, queue="fast", actor="ops")
    assert job(ledger, written.id).queue_id == target.id
    assert written.id in ledger.open_jobs(target.id)
    assert written.id not in ledger.open_jobs(str(default_queue(ledger).id))
    assert types_of(ledger, written.id)[-1] == "Job.Moved"


def test_deleting_a_job_keeps_its_history_and_frees_its_queue(ledger):
    written = submit(ledger, tasks=["/a"])
    ledger.jobs.delete(written.id, actor="ops")
    assert written.id not in ledger.open_jobs(str(default_queue(ledger).id))
    assert types_of(ledger, written.id)[-1] == "Job.Deleted"
    with pytest.raises(NotFoundError):
        ledger.jobs.update(written.id, status="PAUSED")


def test_reopening_a_job_whose_queue_was_deleted_puts_it_in_the_default_queue(ledger):
    q = ledger.queues.create("gone")
    written = submit(ledger, queue="gone", tasks=["/a"])
    ledger.jobs.update(written.id, status="ABORTED")
    ledger.queues.delete(q.id)
    ledger.jobs.update(written.id, status="WAITING")
    assert job(ledger, written.id).queue_id == str(default_queue(ledger).id)
    assert written.id in ledger.open_jobs(str(default_queue(ledger).id))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tasks": [{"source": "/a", "size": -5}]}, "tasks[0].size"),
        ({"tasks": ["/a", {"source": {"nopath": 1}}]}, "tasks[1].source.path"),
        ({"tasks": ["/a"], "priority": 5000}, "priority"),
        ({"tasks": ["/a"], "metadata": "notjson"}, "metadata"),
        ({"code": "", "tasks": ["/a"]}, "code"),
    ],
)
def test_bad_job_input_names_the_field_and_writes_nothing(ledger, kwargs, field):
    before = ledger.position()
    with pytest.raises(ValidationError) as caught:
        submit(ledger, **kwargs)
    assert caught.value.field == field
    assert ledger.position() == before


def test_resuming_a_job_with_nothing_left_to_run_finishes_it(ledger):
    written = submit(ledger, tasks=["/a"])
    (task_id,) = job(ledger, written.id).tasks
    ledger.jobs.update(written.id, status="ABORTED")
    ledger.jobs.update_tasks(written.id, [{"id": task_id, "status": "DONE"}])
    ledger.jobs.update(written.id, status="WAITING")
    assert job(ledger, written.id).status == JobStatus.DONE


def test_taking_away_the_jobs_destination_puts_its_transfers_back_in_pending(ledger):
    written = submit(ledger, tasks=["/a", {"source": "/b", "destination": "/elsewhere/b"}])
    first, second = job(ledger, written.id).tasks
    ledger.jobs.update(written.id, destination=None)
    assert (task(ledger, first).status, task(ledger, second).status) == ("PENDING", "QUEUED")
    ledger.jobs.update(written.id, destination="/new")
    assert task(ledger, first).status == "QUEUED"
