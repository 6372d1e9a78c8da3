"""`jobledger serve --workers 2`: two processes behind one port, on PostgreSQL.

The API tests imported below run here again, against a two-process server (their
`server` fixture is this module's): requests and websockets land on either process, and
every answer, subscription and read-your-write holds. Beside them: exactly one projection
runner and one clock among the processes, and SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import Server, start_server, stop_server
from tests.api.test_http import (  # noqa: F401 - collected here, against two processes
    test_a_job_is_created_paused_resumed_moved_aborted_and_deleted,
    test_a_queue_is_created_changed_tagged_sealed_terminated_and_deleted,
    test_tasks_are_added_retried_excluded_and_listed,
)
from tests.api.test_smoke import test_health_readiness_and_a_first_query  # noqa: F401
from tests.api.test_subscriptions import (  # noqa: F401
    api,
    test_events_replay_everything_then_go_live_without_gaps,
    test_job_progress_rises_then_ends_with_done,
    test_job_updated_by_queue_and_by_where,
)
from tests.conftest import fresh_schema

CREATE = 'mutation($c: String!) { createJob(input: {code: $c, destination: "/o", tasks: [{source: "/a"}]}) { id } }'


@pytest.fixture
def store_url(postgres_database: str) -> str:
    """PostgreSQL only: an SQLite store is served by one process."""
    return fresh_schema(postgres_database, "procs")


@pytest.fixture
def server(store_url: str, tmp_path) -> Iterator[Server]:
    running = start_server(store_url, str(tmp_path / "server.log"), JOBLEDGER_WORKERS="2")
    yield running
    stop_server(running)


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_two_processes_share_one_runner_and_read_each_others_writes(server: Server, tmp_path):
    assert len(children(server.process.pid)) >= 2
    # A write through one connection (one process) is read at once through fresh ones.
    for n in range(20):
        with httpx.Client() as first:
            job_id = first.post(server.graphql, json={"query": CREATE, "variables": {"c": f"j{n}"}}).json()["data"][
                "createJob"
            ]["id"]
        with httpx.Client() as other:
            seen = other.post(server.graphql, json={"query": f'{{ job(id: "{job_id}") {{ code }} }}'}).json()
        assert seen["data"]["job"] == {"code": f"j{n}"}, seen
    log = (tmp_path / "server.log").read_text()
    assert log.count("leading the projections") == 1, log[-3000:]
    assert log.count("leading the clock") == 1


def test_sigterm_stops_every_process(store_url: str, tmp_path):
    running = start_server(store_url, str(tmp_path / "server.log"), JOBLEDGER_WORKERS="2")
    workers = children(running.process.pid)
    assert len(workers) >= 2
    running.process.send_signal(signal.SIGTERM)
    running.process.wait(20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if os.path.exists(f"/proc/{p}")], "a serving process outlived SIGTERM"
    assert "Finished server process" in (tmp_path / "server.log").read_text()
