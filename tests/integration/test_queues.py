"""Queues as users of accsyn, Dioptra and Anyscale know them."""

from __future__ import annotations

import pytest

from domain.errors import ConflictError, NotFoundError, ValidationError
from domain.job import JobStatus
from tests.helpers import default_queue, job, queue, types_of


def test_the_first_start_creates_the_default_queue(ledger):
    default = default_queue(ledger)
    assert (default.code, default.default, default.uri) == ("default", True, "default")


def test_opening_the_store_again_does_not_create_a_second_default_queue(ledger, new_ledger):
    again = new_ledger()
    assert default_queue(again).id == default_queue(ledger).id
    assert set(again.registry().codes) == {"default"}


def test_creating_a_queue_records_every_field_and_who_created_it(ledger):
    written = ledger.queues.create(
        "high_prio",
        priority=999,
        description="rush",
        metadata={"team": "vfx"},
        tags={"site": "sthlm"},
        max_concurrency=4,
        idle_timeout_s=300,
        execution_mode="fifo",
        actor="lars@edit.com",
    )
    q = queue(ledger, written.id)
    assert (q.code, q.priority, q.status, q.state, q.default) == (
        "high_prio",
        999,
        "WAITING",
        "ACTIVE",
        False,
    )
    assert (q.max_concurrency, q.idle_timeout_s, q.execution_mode) == (4, 300, "FIFO")
    assert q.tags == {"site": "sthlm"} and q.metadata == {"team": "vfx"}
    from domain.history import History

    created = History(ledger).of_aggregate(written.id)[0]
    assert created.type == "Queue.Created" and created.actor == "lars@edit.com"
    assert created.timestamp.tzinfo is not None and created.timestamp.utcoffset().total_seconds() == 0


def test_a_queue_code_is_unique(ledger):
    ledger.queues.create("render")
    with pytest.raises(ConflictError, match="render"):
        ledger.queues.create("render")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"code": "Bad Code"}, "code"),
        ({"code": "ok", "priority": 1001}, "priority"),
        ({"code": "ok", "max_concurrency": 0}, "maxConcurrency"),
        ({"code": "ok", "execution_mode": "RANDOM"}, "executionMode"),
        ({"code": "ok", "status": "SLEEPING"}, "status"),
        ({"code": "ok", "tags": {"k": 1}}, "tags"),
        ({"code": "ok", "parent": "nope"}, None),
    ],
)
def test_bad_queue_input_is_refused_and_nothing_is_written(ledger, kwargs, field):
    before = ledger.position()
    with pytest.raises((ValidationError, NotFoundError)) as caught:
        ledger.queues.create(**kwargs)
    if field:
        assert caught.value.field == field
    assert ledger.position() == before


def test_nested_queues_have_a_parent_child_uri_and_a_parent_with_children_cannot_be_deleted(ledger):
    parent = ledger.queues.create("acmevfx")
    child = ledger.queues.create("medium", parent="acmevfx")
    assert queue(ledger, child.id).uri == "acmevfx/medium"
    with pytest.raises(ConflictError, match="nested"):
        ledger.queues.delete(parent.id)
    ledger.queues.delete(child.id)
    ledger.queues.delete(parent.id)


def test_making_a_queue_the_default_takes_the_flag_from_the_old_default(ledger):
    old = default_queue(ledger)
    new = ledger.queues.create("main", default=True)
    assert default_queue(ledger).id == queue(ledger, new.id).id
    assert queue(ledger, str(old.id)).default is False
    other = ledger.queues.create("other")
    ledger.queues.update(other.id, default=True)
    assert [q.default for q in (queue(ledger, new.id), queue(ledger, other.id))] == [False, True]


def test_the_default_queue_cannot_stop_being_the_default_by_itself(ledger):
    with pytest.raises(ValidationError, match="another queue the default"):
        ledger.queues.update(str(default_queue(ledger).id), default=False)


def test_updating_a_queue_changes_only_the_fields_given(ledger):
    q = ledger.queues.create("farm", priority=100, description="keep", max_concurrency=3)
    ledger.queues.update(q.id, priority=700, status="disabled", max_concurrency=None, actor="ops")
    after = queue(ledger, q.id)
    assert (after.priority, after.status, after.description, after.max_concurrency) == (
        700,
        "DISABLED",
        "keep",
        None,
    )
    assert types_of(ledger, q.id)[-1] == "Queue.Updated"


def test_an_update_that_changes_nothing_writes_nothing(ledger):
    q = ledger.queues.create("farm", priority=100)
    before = ledger.position()
    ledger.queues.update(q.id, priority=100)
    assert ledger.position() == before


def test_a_queue_code_cannot_be_changed(ledger):
    q = ledger.queues.create("farm")
    with pytest.raises(ValidationError, match="code"):
        ledger.queues.update(q.id, code="other")


def test_a_sealed_queue_takes_no_new_jobs_but_keeps_its_own(ledger):
    q = ledger.queues.create("season1")
    kept = ledger.jobs.create(queue="season1", tasks=["/a.mov"], destination="/out")
    ledger.queues.seal(q.id)
    assert queue(ledger, q.id).state == "SEALED"
    with pytest.raises(ConflictError, match="sealed"):
        ledger.jobs.create(queue="season1", tasks=["/b.mov"], destination="/out")
    with pytest.raises(ConflictError, match="sealed"):
        ledger.jobs.update(ledger.jobs.create(tasks=["/c.mov"], destination="/o").id, queue="season1")
    ledger.jobs.update(kept.id, status="PAUSED")
    assert job(ledger, kept.id).status == "PAUSED"


def test_the_default_queue_cannot_be_sealed_or_deleted(ledger):
    default_id = str(default_queue(ledger).id)
    with pytest.raises(ConflictError, match="default"):
        ledger.queues.seal(default_id)
    with pytest.raises(ConflictError, match="default"):
        ledger.queues.delete(default_id)


def test_terminating_a_queue_aborts_every_unfinished_job_and_only_those(ledger):
    q = ledger.queues.create("batch")
    open_ids = [ledger.jobs.create(queue="batch", tasks=[f"/f{i}"], destination="/o").id for i in range(3)]
    done = ledger.jobs.create(queue="batch", tasks=["/done"], destination="/o")
    ledger.jobs.update(done.id, status="DONE")
    ledger.queues.terminate(q.id, actor="ops")
    assert {job(ledger, j).status for j in open_ids} == {JobStatus.ABORTED}
    assert job(ledger, done.id).status == JobStatus.DONE
    assert ledger.open_jobs(q.id) == []


def test_deleting_a_queue_moves_unfinished_jobs_to_the_default_queue_in_one_save(ledger):
    q = ledger.queues.create("temp")
    waiting = ledger.jobs.create(queue="temp", tasks=["/a"], destination="/o")
    finished = ledger.jobs.create(queue="temp", tasks=["/b"], destination="/o")
    ledger.jobs.update(finished.id, status="ABORTED")
    written = ledger.queues.delete(q.id)
    default = default_queue(ledger)
    assert job(ledger, waiting.id).queue_id == str(default.id)
    assert waiting.id in ledger.open_jobs(str(default.id))
    assert job(ledger, finished.id).queue_id == q.id  # finished jobs stay with their history
    with pytest.raises(NotFoundError):
        ledger.queues.update(q.id, priority=1)
    from domain.history import History

    last_write = [r for r in History(ledger).read(0, 10_000) if r.position > written.position - 4]
    assert [r.type for r in last_write][-4:] == [
        "Job.Moved",
        "Queue.JobAdded",
        "Queue.Deleted",
        "QueueRegistry.CodeReleased",
    ]


def test_a_deleted_queues_code_can_be_used_again(ledger):
    first = ledger.queues.create("reuse")
    ledger.queues.delete(first.id)
    second = ledger.queues.create("reuse")
    assert second.id != first.id
    assert ledger.registry().codes["reuse"] == second.id


def test_tags_are_upserted_and_removed_by_key(ledger):
    q = ledger.queues.create("tagged", tags={"team": "a"})
    ledger.queues.add_tags(q.id, {"team": "mlops", "tier": "gold"})
    ledger.queues.remove_tags(q.id, ["tier", "absent"])
    assert queue(ledger, q.id).tags == {"team": "mlops"}
    assert types_of(ledger, q.id)[-2:] == ["Queue.TagsAdded", "Queue.TagsRemoved"]


def test_an_unknown_queue_id_or_code_is_not_found(ledger):
    with pytest.raises(NotFoundError):
        ledger.queues.seal("00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFoundError):
        ledger.queues.seal("not-an-id")
    with pytest.raises(NotFoundError):
        ledger.jobs.create(queue="missing", tasks=["/a"])
    job_id = ledger.jobs.create(tasks=["/a"], destination="/o").id
    with pytest.raises(NotFoundError):
        ledger.queues.seal(job_id)  # a job's id is not a queue's
