"""Events of many megabytes commit on PostgreSQL, instead of deadlocking the store.

eventsourcing ends its insert's pipeline with `Pipeline.sync()`; with psycopg 3.3 that
left the tail of a large INSERT in libpq's output buffer and then waited for an answer,
while PostgreSQL, holding the events table's EXCLUSIVE lock, waited for the rest of
the INSERT: every writer hung for good (a 6 MB task path, or 10,000 tasks of 4 KB paths
in one createJob, 45 MB). Each scenario runs in a subprocess with a deadline, so that a
regression fails here instead of hanging the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from tests.conftest import fresh_schema

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 240

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """A fresh schema in the session's PostgreSQL database (these tests are about PostgreSQL)."""
    return fresh_schema(request.getfixturevalue("postgres_database"), "big")


def run_isolated(script: str, *args: str) -> dict:
    """Run `script` in a fresh interpreter (the project on its path); its last line of
    output is JSON. Killed, and the test failed, if it takes longer than DEADLINE_S."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the write hung for {DEADLINE_S} s (deadlock?); output so far: {exc.stdout!r} {exc.stderr!r}")
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def stuck_sessions(url: str) -> list[tuple]:
    """Sessions of this test's schema still in the middle of a statement, waiting for the client."""
    database = url.split("?", 1)[0]
    with psycopg.connect(database, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, wait_event, left(query, 60) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'active' AND wait_event = 'ClientRead'"
        ).fetchall()


EIGHT_MB_TASK = """
    import json, sys, time, uuid
    from eventsourcing.persistence import StoredEvent
    from domain.history import History
    from domain.ledger import Ledger
    from projections.service import ReadSide

    url, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ledger = Ledger(url)
    written = ledger.jobs.create(destination="/out", tasks=["/in/small.mov"])
    # A task's Created event like any other, but with a path of `size` characters: the
    # domain's limits refuse that through the commands, the store must still cope.
    created = [
        n for n in ledger.recorder.select_notifications(start=1, limit=100) if n.topic.endswith(":Task.Created")
    ][-1]
    state = ledger.mapper.transcoder.decode(created.state)
    paths = [f"/in/{uri}/" + "x" * (size - 6) for uri in range(1, count + 1)]
    events = []
    for uri, path in enumerate(paths, start=1):  # after the job's first task (a job's uris are unique)
        state.update(source=path, uri=str(uri))
        events.append(StoredEvent(uuid.uuid4(), 1, created.topic, ledger.mapper.transcoder.encode(state)))
    task_id, big_path = events[0].originator_id, paths[0]
    started = time.monotonic()
    positions = ledger.recorder.insert_events(events)  # in one transaction
    insert_s = time.monotonic() - started

    task = ledger.repository.get(task_id)  # read back through the application
    history = History(ledger).of_aggregate(task_id)
    after = ledger.jobs.create(destination="/out", tasks=["/in/after.mov"])  # writers are not blocked

    read_side = ReadSide(ledger)
    read_side.runner.setup()
    read_side.runner.catch_up()
    rows = read_side.store.read("SELECT source_path FROM jl_tasks WHERE id = ?", (str(task_id),))
    projected = read_side.store.read(
        "SELECT COUNT(*) AS n FROM jl_tasks WHERE job_id = ? AND length(source_path) = ?", (written.id, len(big_path))
    )
    status = read_side.runner.status()
    read_side.stop()
    ledger.close()
    print(json.dumps({
        "positions": positions,
        "first_job_position": written.position,
        "insert_s": insert_s,
        "read_back": task.source == big_path,
        "history": [(r.position, r.type, len(json.dumps(r.data))) for r in history],
        "after_position": after.position,
        "projected_path_length": len(rows[0]["source_path"]) if rows else None,
        "projected_big_tasks": projected[0]["n"],
        "projected_to": status.position,
        "head": status.head,
        "set_aside": status.set_aside,
    }))
"""


def test_eight_megabyte_events_commit_and_read_back(postgres_url):
    """Four events of 8 MB each in one transaction (the path of a task; hex-encoded on the
    wire, some 64 MB), as a caller who got past the limits, or an old event, would write."""
    size, count = 8_000_000, 4
    result = run_isolated(EIGHT_MB_TASK, postgres_url, str(size), str(count))

    positions = result["positions"]
    position = positions[0]
    assert positions == list(range(result["first_job_position"] + 1, result["first_job_position"] + 1 + count))
    assert result["read_back"], "the aggregate read back differs from what was written"
    [(history_position, event_type, data_length)] = result["history"]
    assert (history_position, event_type) == (position, "Task.Created")
    assert data_length > size
    assert result["after_position"] > positions[-1]  # the next normal write went through
    assert result["projected_path_length"] == size  # and the read models took them
    assert result["projected_big_tasks"] == count
    assert result["projected_to"] == result["head"] == result["after_position"]
    assert result["set_aside"] == 0
    assert stuck_sessions(postgres_url) == []


LARGEST_CREATE_JOB = """
    import json, sys, time
    from domain.ledger import Ledger
    from projections.service import ReadSide

    url, count, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ledger = Ledger(url)
    tasks = [f"/{i:05d}/" + "x" * (length - 7) for i in range(count)]
    assert all(len(path) == length for path in tasks)
    started = time.monotonic()
    written = ledger.jobs.create(destination="/out", tasks=tasks)
    create_s = time.monotonic() - started
    notifications = ledger.recorder.select_notifications(start=1, limit=count + 100)
    after = ledger.jobs.create(destination="/out", tasks=["/after.mov"])

    read_side = ReadSide(ledger)
    read_side.runner.setup()
    read_side.runner.catch_up()
    job_tasks = read_side.store.read("SELECT COUNT(*) AS n FROM jl_tasks WHERE job_id = ?", (written.id,))
    status = read_side.runner.status()
    read_side.stop()
    ledger.close()
    print(json.dumps({
        "create_s": create_s,
        "position": written.position,
        "stored_bytes": sum(len(n.state) for n in notifications),
        "largest_event": max(len(n.state) for n in notifications),
        "after_position": after.position,
        "projected_tasks": job_tasks[0]["n"],
        "projected_to": status.position,
        "head": status.head,
    }))
"""


def test_the_largest_create_job_the_limits_allow_commits(postgres_url):
    """10,000 tasks (the most one createJob takes) of 4,096-character paths (the longest
    path): some 45 MB in one transaction, which deadlocked before the fix."""
    from domain.limits import MAX_PATH, MAX_TASKS_PER_CALL

    result = run_isolated(LARGEST_CREATE_JOB, postgres_url, str(MAX_TASKS_PER_CALL), str(MAX_PATH))

    assert result["stored_bytes"] > 40_000_000
    assert result["after_position"] > result["position"]
    assert result["projected_tasks"] == MAX_TASKS_PER_CALL
    assert result["projected_to"] == result["head"] == result["after_position"]
    assert stuck_sessions(postgres_url) == []


READ_MODEL_WRITES = """
    import json, sys
    from persistence import parse_database_url
    from projections.stores.postgres import PostgresReadStore

    store = PostgresReadStore(parse_database_url(sys.argv[1]))
    with store.transaction() as tx:
        # Two queued writes of 30 MB each, then a statement whose row count is needed: the
        # read models' runner does the same with a batch of large task rows.
        tx.later("SELECT length(?)", ["x" * 30_000_000])
        tx.later("SELECT length(?)", ["y" * 30_000_000])
        count = tx.execute("SELECT 1")
    print(json.dumps({"count": count}))
"""


def test_read_model_writes_of_many_megabytes_commit(postgres_url):
    assert run_isolated(READ_MODEL_WRITES, postgres_url) == {"count": 1}
    assert stuck_sessions(postgres_url) == []
