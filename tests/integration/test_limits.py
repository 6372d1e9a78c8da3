"""Hostile input on both stores: what no store can hold is refused with the field and writes
nothing; everything up to each limit is stored and read back; one past it is refused with
the limit in the message."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.errors import ValidationError
from domain.limits import (
    MAX_DESCRIPTION,
    MAX_ERROR_TEXT,
    MAX_JOB_CODE,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_LEASE_SECONDS,
    MAX_PATH,
    MAX_TAGS,
    MAX_TASKS_PER_CALL,
)
from domain.task import TaskStatus
from projections.query import ReadModels
from projections.runner import ProjectionRunner
from projections.stores import open_read_store
from tests.helpers import job, task

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def refused(ledger, command, *args, **kwargs) -> ValidationError:
    """The command is refused with VALIDATION, and the store is as it was."""
    before = ledger.position()
    with pytest.raises(ValidationError) as caught:
        command(*args, **kwargs)
    assert ledger.position() == before, "a refused command wrote events"
    return caught.value


def document_of(size: int, fill: str = "a") -> dict[str, str]:
    """A JSON object of exactly `size` bytes as the store keeps it (compact, UTF-8)."""
    width = len(fill.encode())
    document = {"x": fill * ((size - len('{"x":""}')) // width)}
    assert len(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()) == size
    return document


def nested(levels: int) -> dict[str, Any]:
    document: dict[str, Any] = {"leaf": "\U0001f3ac \x01 é"}
    for _ in range(levels - 1):
        document = {"a": document}
    return document


def task_ids(ledger, job_id: str) -> list[str]:
    return list(job(ledger, job_id).tasks)


def leased(ledger, job_id: str) -> str:
    [lease] = ledger.dispatch.claim("w1", task_ids(ledger, job_id)[:1], limit=1, lease_seconds=60, now=NOW).ids
    return lease


@pytest.fixture
async def read_models(ledger):
    """The read side, caught up on demand: what each store really holds."""
    store = open_read_store(ledger.store)
    runner = ProjectionRunner(ledger, store)
    runner.setup()
    await store.open_async()
    models = ReadModels(store)
    models.catch_up = runner.catch_up  # type: ignore[attr-defined]
    yield models
    await store.close_async()
    store.close()
    store.close()


# -- what no store can hold ------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"code": "a\x00b"}, "code"),
        ({"source": "/in/\x00"}, "source"),
        ({"destination": "/out/\ud800"}, "destination"),
        ({"metadata": {"foo": "a\x00b"}}, "metadata.foo"),
        ({"metadata": {"shot": {"frames": [1, "\x00"]}}}, "metadata.shot.frames[1]"),
        ({"metadata": {"score": math.nan}}, "metadata.score"),
        ({"tasks": ["/in/0", "/in/1", "/in/2", "/in/\x00.mov"]}, "tasks[3].source"),
        ({"tasks": ["/in/0", {"source": {"path": "/in/\x00"}}]}, "tasks[1].source.path"),
        (
            {"tasks": [{"source": "/in/0", "destination": {"path": "/o", "host": "\udc00"}}]},
            "tasks[0].destination.host",
        ),
        ({"tasks": [{"source": "/in/0", "metadata": {"k": "\x00"}}]}, "tasks[0].metadata.k"),
    ],
)
def test_a_job_holding_what_no_store_can_hold_is_refused_with_the_field_and_nothing_is_written(ledger, fields, field):
    error = refused(ledger, ledger.jobs.create, **{"tasks": ["/in/a.mov"], **fields})
    assert error.field == field


def test_a_queue_holding_nul_is_refused_with_the_field_and_nothing_is_written(ledger):
    assert refused(ledger, ledger.queues.create, "ingest", description="a\x00b").field == "description"
    assert refused(ledger, ledger.queues.create, "ingest", tags={"team": "po\x00st"}).field == "tags.team"
    assert refused(ledger, ledger.queues.create, "ingest", tags={"te\x00am": "post"}).field == "tags"
    assert refused(ledger, ledger.queues.create, "ingest", metadata={"a": ["\x00"]}).field == "metadata.a[0]"
    queue_id = ledger.queues.create("ingest").id
    assert refused(ledger, ledger.queues.update, queue_id, description="\x00").field == "description"
    assert refused(ledger, ledger.queues.add_tags, queue_id, {"team": "\ud800"}).field == "tags.team"


def test_changes_to_a_job_and_its_tasks_holding_nul_are_refused_with_the_field(ledger):
    job_id = ledger.jobs.create(destination="/out", tasks=["/in/a.mov"]).id
    assert refused(ledger, ledger.jobs.update, job_id, metadata={"x": "\x00"}).field == "metadata.x"
    assert refused(ledger, ledger.jobs.update, job_id, destination="/o\x00").field == "destination"
    assert refused(ledger, ledger.jobs.add_tasks, job_id, ["/in/b.mov", "/in/\x00"]).field == "tasks[1].source"
    [task_id] = task_ids(ledger, job_id)
    update = [{"id": task_id, "metadata": {"x": "\x00"}}]
    assert refused(ledger, ledger.jobs.update_tasks, job_id, update).field == "tasks[0].metadata.x"


def test_an_actor_holding_nul_is_refused(ledger):
    assert refused(ledger, ledger.jobs.create, tasks=["/in/a"], actor="ann\x00").field == "actor"


def test_a_workers_report_holding_what_no_store_can_hold_is_refused_and_the_lease_stays_live(ledger):
    job_id = ledger.jobs.create(destination="/out", tasks=["/in/a.mov"]).id
    lease = leased(ledger, job_id)
    assert refused(ledger, ledger.dispatch.complete, lease, {"log": ["ok", "\x00"]}, now=NOW).field == "result.log[1]"
    assert refused(ledger, ledger.dispatch.complete, lease, {"speed": math.inf}, now=NOW).field == "result.speed"
    assert refused(ledger, ledger.dispatch.complete_many, [(lease, "\ud800")], now=NOW).field == "completions[0].result"
    assert refused(ledger, ledger.dispatch.heartbeat, lease, speed=math.nan, now=NOW).field == "speed"
    assert refused(ledger, ledger.dispatch.heartbeat, lease, bytes_done=2**63, now=NOW).field == "bytesDone"
    ledger.dispatch.complete(lease, {"log": ["ok"]}, now=NOW)
    assert (task(ledger, task_ids(ledger, job_id)[0]).status, task(ledger, task_ids(ledger, job_id)[0]).result) == (
        TaskStatus.DONE,
        {"log": ["ok"]},
    )


def test_a_worker_named_with_nul_is_refused(ledger):
    job_id = ledger.jobs.create(destination="/out", tasks=["/in/a.mov"]).id
    error = refused(ledger, ledger.dispatch.claim, "w\x00", task_ids(ledger, job_id), lease_seconds=60, now=NOW)
    assert error.field == "worker"


# -- leases ----------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [-10, 0, MAX_LEASE_SECONDS + 1, 1_000_000_000])
def test_a_lease_shorter_than_a_second_or_longer_than_a_day_is_refused(ledger, seconds):
    job_id = ledger.jobs.create(destination="/out", tasks=["/in/a.mov"]).id
    error = refused(ledger, ledger.dispatch.claim, "w1", task_ids(ledger, job_id), lease_seconds=seconds, now=NOW)
    assert error.field == "leaseSeconds"
    assert str(MAX_LEASE_SECONDS) in error.message


@pytest.mark.parametrize("seconds", [1, MAX_LEASE_SECONDS])
def test_a_lease_of_one_second_to_a_day_is_granted_and_heartbeats_extend_it_as_long(ledger, seconds):
    job_id = ledger.jobs.create(destination="/out", tasks=["/in/a.mov"]).id
    [lease] = ledger.dispatch.claim("w1", task_ids(ledger, job_id), lease_seconds=seconds, now=NOW).ids
    claimed = task(ledger, task_ids(ledger, job_id)[0])
    assert claimed.lease_expires == NOW + timedelta(seconds=seconds)
    later = NOW + timedelta(seconds=seconds / 2)
    ledger.dispatch.heartbeat(lease, progress=50, now=later)
    assert task(ledger, claimed.id.hex).lease_expires == later + timedelta(seconds=seconds)


# -- each limit, at it and one past it ----------------------------------------------


async def test_values_at_every_limit_are_stored_and_read_back_by_both_stores(ledger, read_models):
    metadata = document_of(MAX_JSON_BYTES, fill="é")
    queue_id = ledger.queues.create(
        "ingest",
        description="d\U0001f3ac" * (MAX_DESCRIPTION // 2),
        tags={f"k{i}": "v" for i in range(MAX_TAGS)},
        metadata=metadata,
    ).id
    long_path = "/" + "p" * (MAX_PATH - 1)
    job_id = ledger.jobs.create(
        queue="ingest",
        code="c" * MAX_JOB_CODE,
        destination=long_path,
        metadata=nested(MAX_JSON_DEPTH),
        tasks=[{"source": long_path, "metadata": metadata}, {"source": {"path": long_path, **document_of(30_000)}}],
    ).id
    lease = leased(ledger, job_id)
    ledger.dispatch.fail(lease, "exit 1\n" + "out\n" * MAX_ERROR_TEXT, now=NOW)

    read_models.catch_up()
    queue_row = (await read_models.queues_by_id([queue_id]))[queue_id]
    assert len(queue_row["description"]) == MAX_DESCRIPTION
    assert len(json.loads(queue_row["tags"])) == MAX_TAGS
    assert json.loads(queue_row["metadata"]) == metadata
    job_row = await read_models.job(job_id)
    assert job_row is not None
    assert (job_row["code"], job_row["destination"]) == ("c" * MAX_JOB_CODE, long_path)
    assert json.loads(job_row["metadata"]) == nested(MAX_JSON_DEPTH)
    rows = await read_models.tasks_by_id(task_ids(ledger, job_id))
    first, second = (rows[i] for i in task_ids(ledger, job_id))
    assert json.loads(first["metadata"]) == metadata
    assert json.loads(second["source"])["path"] == long_path
    assert len(first["error"]) <= MAX_ERROR_TEXT and first["error"].startswith("exit 1\n")


@pytest.mark.parametrize(
    ("fields", "field", "limit"),
    [
        ({"code": "c" * (MAX_JOB_CODE + 1)}, "code", MAX_JOB_CODE),
        ({"destination": "/" + "p" * MAX_PATH}, "destination", MAX_PATH),
        ({"metadata": document_of(MAX_JSON_BYTES + 1)}, "metadata", MAX_JSON_BYTES),
        ({"metadata": nested(MAX_JSON_DEPTH + 1)}, "metadata", MAX_JSON_DEPTH),
        ({"tasks": ["/" + "p" * MAX_PATH]}, "tasks[0].source", MAX_PATH),
        (
            {"tasks": [{"source": "/a", "metadata": document_of(MAX_JSON_BYTES + 1)}]},
            "tasks[0].metadata",
            MAX_JSON_BYTES,
        ),
        ({"tasks": [f"/in/{i}" for i in range(MAX_TASKS_PER_CALL + 1)]}, "tasks", MAX_TASKS_PER_CALL),
    ],
)
def test_a_job_one_past_a_limit_is_refused_with_the_limit_in_the_message(ledger, fields, field, limit):
    error = refused(ledger, ledger.jobs.create, **{"destination": "/out", "tasks": ["/in/a"], **fields})
    assert error.field == field
    assert str(limit) in error.message


def test_a_queue_one_past_a_limit_is_refused_with_the_limit_in_the_message(ledger):
    error = refused(ledger, ledger.queues.create, "ingest", description="d" * (MAX_DESCRIPTION + 1))
    assert (error.field, str(MAX_DESCRIPTION) in error.message) == ("description", True)
    error = refused(ledger, ledger.queues.create, "ingest", tags={f"k{i}": "v" for i in range(MAX_TAGS + 1)})
    assert (error.field, str(MAX_TAGS) in error.message) == ("tags", True)
    queue_id = ledger.queues.create("ingest", tags={f"k{i}": "v" for i in range(MAX_TAGS)}).id
    error = refused(ledger, ledger.queues.add_tags, queue_id, {"one-more": "v"})
    assert (error.field, str(MAX_TAGS) in error.message) == ("tags", True)
    ledger.queues.add_tags(queue_id, {"k0": "changed"})  # replacing one keeps the count


def test_a_failure_text_past_the_limit_is_kept_cut_so_the_worker_is_never_refused(ledger):
    job_id = ledger.jobs.create(destination="/out", tasks=["/in/a.mov"]).id
    ledger.dispatch.fail(leased(ledger, job_id), "boom\n" + "x" * 10 * MAX_ERROR_TEXT + "\nlast line", now=NOW)
    failed = task(ledger, task_ids(ledger, job_id)[0])
    assert failed.status == TaskStatus.QUEUED
    assert len(failed.error) <= MAX_ERROR_TEXT
    assert failed.error.startswith("boom\n") and failed.error.endswith("\nlast line")
    assert "characters cut" in failed.error


# -- many tasks in one call ----------------------------------------------------------


def test_a_job_of_the_most_tasks_one_call_takes_is_created_and_its_duplicates_still_found(ledger):
    tasks = [{"source": f"/in/{i:05}.mov", "size": i} for i in range(MAX_TASKS_PER_CALL)]
    job_id = ledger.jobs.create(destination="/out", tasks=tasks).id
    created = job(ledger, job_id)
    assert len(created.tasks) == MAX_TASKS_PER_CALL
    assert created.size == sum(range(MAX_TASKS_PER_CALL))
    first = task_ids(ledger, job_id)[0]
    added = ledger.jobs.add_tasks(job_id, [{"source": {"path": "/in/00000.mov"}}, "/in/new.mov", "/in/new.mov"])
    assert added.ids[0] == first  # `{"path": ...}` is the same work as the path string: retried, not added
    assert added.ids[1] == added.ids[2]
    assert len(job(ledger, job_id).tasks) == MAX_TASKS_PER_CALL + 1
