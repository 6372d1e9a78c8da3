"""Time left and time spent (projections.timeleft), the progress lines a command prints
(worker.execute), and sizes learnt from events, also from events recorded before
completions and heartbeats carried a size."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from domain.ledger import Ledger
from domain.task import Task
from projections.runner import ProjectionRunner
from projections.schema import JOBS, TASKS
from projections.stores import open_read_store
from projections.timeleft import format_etr, job_time_left, task_elapsed, task_time_left
from worker.execute import said_progress

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def task_row(**values: object) -> dict[str, object]:
    row: dict[str, object] = {"status": "EXECUTING", "size": -1, "bytes_done": 0, "speed": 0.0, "progress": 0}
    row.update(started=NOW - timedelta(seconds=10), time=None)
    row.update(values)
    return row


def test_a_transfer_has_the_bytes_it_still_moves_at_its_speed_left():
    row = task_row(size=10_000_000, bytes_done=4_000_000, speed=2.0, progress=40)
    assert task_time_left(row, NOW) == 3
    assert task_time_left({**row, "bytes_done": 3_999_999}, NOW) == 4  # rounded up: never 0 s before it ends


def test_without_a_speed_the_progress_rate_tells_the_time_left():
    # A command that printed 25 % after 10 s needs about 30 s more.
    assert task_time_left(task_row(progress=25), NOW) == 30
    # A transfer whose speed is not sampled yet goes by its progress too.
    assert task_time_left(task_row(size=1_000, bytes_done=500, progress=50), NOW) == 10


@pytest.mark.parametrize(
    "row",
    [
        task_row(),  # nothing reported yet
        task_row(progress=100),
        task_row(started=None, progress=50),
        task_row(status="QUEUED", size=1_000, speed=5.0),
        task_row(status="DONE", progress=100, size=1_000),
    ],
    ids=["nothing reported", "at 100", "never started", "queued", "done"],
)
def test_time_left_is_unknown_when_nothing_tells_it(row):
    assert task_time_left(row, NOW) is None


def test_elapsed_is_the_running_attempts_time_or_the_last_ones():
    assert task_elapsed(task_row(), NOW) == 10
    assert task_elapsed(task_row(status="DONE", time=4_321), NOW) == 4
    assert task_elapsed(task_row(status="QUEUED", started=None), NOW) is None


def test_a_job_adds_up_its_tasks():
    job = {"status": "RUNNING", "remaining": 9_000_000, "speed": 3.0, "progress": 10, "started": NOW}
    assert job_time_left(job, NOW) == 3
    unknown_sizes = {**job, "remaining": -1, "progress": 20, "started": NOW - timedelta(seconds=60)}
    assert job_time_left(unknown_sizes, NOW) == 240
    assert job_time_left({**job, "status": "PAUSED"}, NOW) is None
    # A row built from the aggregates (a lagging read side) has neither: unknown.
    assert job_time_left({"status": "RUNNING", "speed": 0.0, "progress": 0}, NOW) is None
    assert format_etr(250) == "0h:04m:10s" and format_etr(None) is None


@pytest.mark.parametrize(
    ("line", "percent"),
    [
        ("progress: 42%\n", 42),
        ("PROGRESS: 7.9 %", 7),
        ("  Progress : 100%  ", 100),
        ("progress: 0%", 0),
        ("progress: 101%", None),
        ("progress 42%", None),
        ("render progress: 42%", None),
        ("progress: 42", None),
        ("progress: -3%", None),
    ],
)
def test_a_command_says_its_progress_in_a_line_of_its_own(line, percent):
    assert said_progress(line) == percent


# -- sizes from events, old and new ---------------------------------------------------------


def completed_transfer(ledger: Ledger, result: dict[str, object], **task: object) -> tuple[str, str]:
    """(job id, task id) of a one-task transfer job whose task a worker completed with `result`."""
    job_id = ledger.jobs.create(code="clip", destination="/out", tasks=[{"source": "/in/clip.mov", **task}]).id
    (lease,) = ledger.dispatch.claim("w", list(ledger.load(UUID(str(job_id))).tasks)).ids
    ledger.dispatch.complete(lease, result)
    return str(job_id), lease.split(".", 1)[0]


def test_a_completion_from_before_sizes_were_recorded_still_gives_the_size_on_replay(tmp_path):
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    ledger = Ledger(url)
    job_id, task_id = completed_transfer(ledger, {"bytes": 123_456, "files": 1})
    ledger.close()
    # Make the completion look as it was recorded before it carried a size.
    with sqlite3.connect(tmp_path / "legacy.db") as db:
        (rowid, state), *others = db.execute(
            "SELECT rowid, state FROM stored_events WHERE topic LIKE '%Task.Completed'"
        ).fetchall()
        assert not others
        data = json.loads(state)
        assert data.pop("size") == 123_456
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (json.dumps(data).encode(), rowid))

    ledger = Ledger(url)
    try:
        assert ledger.load(UUID(task_id)).size == 123_456  # the aggregate replays it
        store = open_read_store(ledger.store)
        try:
            runner = ProjectionRunner(ledger, store)
            runner.setup()
            runner.rebuild()
            (task,) = store.read(f"SELECT size, bytes_done FROM {TASKS} WHERE id = ?", (task_id,))
            (job,) = store.read(f"SELECT size FROM {JOBS} WHERE id = ?", (job_id,))
            assert (task["size"], task["bytes_done"], job["size"]) == (123_456, 123_456, 123_456)
        finally:
            store.close()
    finally:
        ledger.close()


def test_a_result_without_bytes_leaves_the_size_unknown_and_a_known_size_stays(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'sizes.db'}")
    try:
        _, unknown = completed_transfer(ledger, {"exit_code": 0})
        assert ledger.load(UUID(unknown)).size == -1
        _, given = completed_transfer(ledger, {"bytes": 99}, size=10)
        task = ledger.load(UUID(given))
        assert isinstance(task, Task) and task.size == 10
    finally:
        ledger.close()
