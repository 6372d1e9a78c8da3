"""The log as audit tools and projections read it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import ValidationError
from domain.history import History, event_types


def workload(ledger) -> list[str]:
    q = ledger.queues.create("audit", actor="lars@edit.com")
    j = ledger.jobs.create(queue="audit", tasks=["/a", "/b"], destination="/o", actor="employee@acmevfx.com")
    first, _ = ledger.repository.get(__import__("uuid").UUID(j.id)).tasks
    ledger.jobs.update_tasks(j.id, [{"id": first, "status": "EXCLUDED"}], actor="tommy")
    ledger.jobs.update(j.id, status="ABORTED", actor="ops")
    return [q.id, j.id, first]


def test_the_global_log_is_ordered_and_gap_free_from_position_one(ledger):
    workload(ledger)
    records = History(ledger).read(0, 10_000)
    assert [r.position for r in records] == list(range(1, len(records) + 1))
    assert ledger.position() == records[-1].position


def test_reading_after_a_position_returns_exactly_what_follows(ledger):
    workload(ledger)
    everything = History(ledger).read(0, 10_000)
    middle = everything[len(everything) // 2].position
    assert History(ledger).read(middle, 10_000) == [r for r in everything if r.position > middle]
    assert list(History(ledger).follow(0, batch=3)) == everything


def test_every_event_names_its_aggregate_type_version_actor_and_utc_time(ledger):
    started = datetime.now(UTC) - timedelta(seconds=1)
    _, job_id, task_id = workload(ledger)
    history = History(ledger)
    for record in history.read(0, 10_000):
        assert record.type.split(".")[0] == record.aggregate_type
        assert record.aggregate_type in {"Queue", "QueueRegistry", "Job", "Task"}
        assert record.timestamp.utcoffset() == timedelta(0)
        assert started <= record.timestamp <= datetime.now(UTC)
        json.loads(record.to_json_line())
    job_events = history.of_aggregate(job_id)
    assert [r.version for r in job_events] == list(range(1, len(job_events) + 1))
    assert job_events[0].type == "Job.Created" and job_events[0].actor == "employee@acmevfx.com"
    assert job_events[-1].type == "Job.StatusChanged"
    assert job_events[-1].data == {"previous": "WAITING", "status": "ABORTED"}
    assert job_events[-1].actor == "ops"
    task_events = history.of_aggregate(task_id)
    assert [(r.type, r.actor) for r in task_events] == [
        ("Task.Created", "employee@acmevfx.com"),
        ("Task.Excluded", "tommy"),
    ]


def test_one_aggregates_events_carry_their_global_positions(ledger):
    _, job_id, _ = workload(ledger)
    history = History(ledger)
    by_position = {r.position: r for r in history.read(0, 10_000)}
    for record in history.of_aggregate(job_id):
        assert by_position[record.position] == record


def test_the_log_can_be_filtered_by_event_type(ledger):
    workload(ledger)
    records = History(ledger).read(0, 10_000, types=["Job.Created", "Task.Excluded"])
    assert [r.type for r in records] == ["Job.Created", "Task.Excluded"]
    with pytest.raises(ValidationError, match="unknown event type"):
        History(ledger).read(0, 10, types=["Job.Exploded"])


def test_event_type_names_read_aggregate_dot_verb():
    names = set(event_types())
    assert {"Queue.Created", "Job.StatusChanged", "Task.Excluded", "Task.Done", "Queue.Sealed"} <= names
    assert all(n.count(".") == 1 for n in names)


def test_an_unknown_aggregate_has_no_events_and_a_malformed_id_is_a_validation_error(ledger):
    assert History(ledger).of_aggregate("00000000-0000-0000-0000-000000000000") == []
    with pytest.raises(ValidationError):
        History(ledger).of_aggregate("nope")


def test_a_failed_command_writes_nothing_at_all(ledger):
    workload(ledger)
    before = History(ledger).read(0, 10_000)
    failures = [
        lambda: ledger.queues.create("audit"),
        lambda: ledger.jobs.create(queue="audit", tasks=["/ok", {"source": "/bad", "size": "big"}], destination="/o"),
        lambda: ledger.queues.delete(ledger.registry().default_queue_id),
    ]
    for fail in failures:
        with pytest.raises(Exception) as caught:
            fail()
        assert hasattr(caught.value, "code")
    assert History(ledger).read(0, 10_000) == before


def test_replaying_the_store_in_a_new_process_gives_the_same_aggregates(ledger, new_ledger):
    ids = workload(ledger)
    fresh = new_ledger()
    from uuid import UUID

    for aggregate_id in ids:
        assert fresh.repository.get(UUID(aggregate_id)).facts == ledger.repository.get(UUID(aggregate_id)).facts
