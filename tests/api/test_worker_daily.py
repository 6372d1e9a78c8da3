"""What a worker shows the people who use it every day, against real servers: a transfer's
size from the moment it starts, its speed and time left while it runs; a command's elapsed
time and the progress it prints; a warning for a queue that does not exist; an HTTP error
named as one.

Every worker is a real `jobledger worker` subprocess (started as tests/api/test_workers.py
starts them) moving real files or running real commands."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jobledger_client import AsyncClient
from tests.api.conftest import Server
from tests.api.test_workers import CREATE_JOB, start_worker, stop_worker, wait_until, workers
from worker.watch import QueueCheck

JOB = """query($id: ID!) { job(id: $id) {
  status size speed progress etr timeLeft
  tasks { nodes { id status size progress speed bytesDone timeLeft elapsed result } }
} }"""
TASK_EVENTS = """query($id: ID!) { events(aggregateId: $id, first: 500) { nodes { type data } } }"""
CLAIM = 'mutation { claimTasks(worker: "w1", leaseSeconds: 60) { id task { id } } }'
HEARTBEAT = "mutation($l: ID!, $size: Long) { heartbeat(leaseId: $l, progress: 1, size: $size) { id } }"
SIZE = 6_000_000


def job_now(server: Server, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job and its only task, as a client sees them now."""
    job = server.data(JOB, {"id": job_id})["job"]
    return job, job["tasks"]["nodes"][0]


def log_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# -- size, speed, time left ---------------------------------------------------------------


def test_a_transfer_shows_its_size_from_the_start_and_its_speed_and_time_left_while_it_runs(server, tmp_path):
    root = tmp_path / "data"
    (root / "in").mkdir(parents=True)
    source = root / "in" / "clip.mov"
    source.write_bytes(os.urandom(SIZE))
    job_id = server.data(
        CREATE_JOB, {"i": {"code": "clip", "destination": str(root / "out"), "tasks": [{"source": str(source)}]}}
    )["createJob"]["id"]
    assert job_now(server, job_id)[1]["size"] == -1  # nobody said it: unknown until a worker looks

    # At most 1.5 MB/s: about 4 s, long enough to be seen running.
    with workers(server, tmp_path, "mover", roots=[root], options=["--max-rate", "1.5"]):

        def moving() -> tuple[dict[str, Any], dict[str, Any]] | None:
            job, task = job_now(server, job_id)
            running = task["status"] == "EXECUTING" and task["speed"] > 0 and task["timeLeft"] is not None
            return (job, task) if running and job["timeLeft"] == task["timeLeft"] else None

        job, task = wait_until("the transfer runs with a speed and a time left", moving, 20)
        assert task["size"] == SIZE and job["size"] == SIZE
        assert 0 < task["bytesDone"] < SIZE and 0 < job["progress"] < 100
        assert 0 < task["speed"] <= 3  # 1.5 MB/s, sampled a chunk of 1 MiB at a time
        assert task["timeLeft"] == math.ceil((SIZE - task["bytesDone"]) / (task["speed"] * 1_000_000))
        assert job["speed"] == task["speed"] and job["status"] == "RUNNING"
        hours, minutes, seconds = (int(part[:-1]) for part in job["etr"].split(":"))
        assert hours * 3600 + minutes * 60 + seconds == job["timeLeft"]
        assert task["elapsed"] >= 1

        wait_until("the transfer is done", lambda: job_now(server, job_id)[0]["status"] == "DONE", 30)

    job, task = job_now(server, job_id)
    assert (task["size"], task["bytesDone"], job["size"]) == (SIZE, SIZE, SIZE)
    assert task["result"]["bytes"] == SIZE and (root / "out" / "clip.mov").read_bytes() == source.read_bytes()
    assert task["timeLeft"] is None and job["timeLeft"] is None and job["etr"] is None and job["speed"] == 0
    assert task["elapsed"] >= 3  # 6 MB at 1.5 MB/s
    # The size is an event of the task: recorded once, by the heartbeat that brought it.
    events = server.data(TASK_EVENTS, {"id": task["id"]})["events"]["nodes"]
    sized = [e for e in events if e["type"] == "Task.LeaseRenewed" and e["data"].get("size") is not None]
    assert [e["data"]["size"] for e in sized] == [SIZE]


def test_a_heartbeat_records_a_new_size_at_once_and_refuses_a_bad_one(server):
    job_id = server.data(CREATE_JOB, {"i": {"destination": "/out", "tasks": [{"source": "/in/a.mov"}]}})["createJob"][
        "id"
    ]
    lease = server.data(CLAIM)["claimTasks"][0]
    task_id = lease["task"]["id"]
    server.data(HEARTBEAT, {"l": lease["id"]})
    # Within the second in which heartbeats are coalesced, a size the task did not have is kept.
    server.data(HEARTBEAT, {"l": lease["id"], "size": 4_096})
    server.data(HEARTBEAT, {"l": lease["id"], "size": 4_096})  # nothing new: coalesced
    types = [e["type"] for e in server.data(TASK_EVENTS, {"id": task_id})["events"]["nodes"]]
    assert types.count("Task.LeaseRenewed") == 2, types
    wait_until("the job's size", lambda: job_now(server, job_id)[0]["size"] == 4_096, 10)

    error = server.error(HEARTBEAT, {"l": lease["id"], "size": -5})
    assert error["extensions"]["code"] == "VALIDATION" and error["extensions"]["field"] == "size"


# -- commands -----------------------------------------------------------------------------


def test_a_command_shows_its_elapsed_time_and_the_progress_it_prints(server, tmp_path):
    script = 'for p in 10 35 60; do echo "progress: $p%"; sleep 0.5; done; echo "frame 12 of 20"; sleep 4'
    job_id = server.data(
        CREATE_JOB, {"i": {"code": "render", "tasks": [{"source": {"kind": "command", "command": script}}]}}
    )["createJob"]["id"]
    with workers(server, tmp_path, "render", allow_commands=True):

        def at_60() -> tuple[dict[str, Any], dict[str, Any]] | None:
            job, task = job_now(server, job_id)
            return (job, task) if task["status"] == "EXECUTING" and task["progress"] == 60 else None

        job, task = wait_until("the command's printed progress", at_60, 20)
        assert job["progress"] == 60 and task["speed"] == 0 and task["size"] == -1
        assert task["timeLeft"] is not None and task["timeLeft"] > 0  # by its progress rate
        first = task["elapsed"]
        time.sleep(1.5)  # the command sleeps on; its heartbeats go on
        _, later = job_now(server, job_id)
        assert later["status"] == "EXECUTING" and later["elapsed"] > first and later["progress"] == 60
        wait_until("the command is done", lambda: job_now(server, job_id)[0]["status"] == "DONE", 20)
    job, task = job_now(server, job_id)
    assert task["progress"] == 100 and task["elapsed"] >= 5 and task["timeLeft"] is None
    assert task["result"]["output"][-1] == "frame 12 of 20"


# -- what a worker says about its situation ------------------------------------------------


def test_a_worker_says_when_its_queues_do_not_exist(server, tmp_path):
    log = tmp_path / "lost.log"
    worker = start_worker(server, log, "lost", options=["--queue", "nosuch"])
    try:
        said = wait_until("the warning", lambda: "none of this worker's queues exists" in log_of(log), 15)
        assert said
        assert "queue 'nosuch' does not exist (or this worker's token cannot see it)" in log_of(log)
    finally:
        stop_worker(worker)


async def test_a_queue_that_turns_up_is_named_and_one_still_missing_again(server, caplog):
    check = QueueCheck(["default", "later"], every=0.0)
    caplog.set_level(logging.INFO, logger="jobledger.worker")
    async with AsyncClient(server.graphql, user="tester") as client:
        await check.run(client)
        assert check.missing == {"later"}
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warned == [
            "queue 'later' does not exist (or this worker's token cannot see it): nothing is claimed from it; "
            "check --queue, or create the queue"
        ]
        caplog.clear()
        await asyncio.to_thread(server.data, 'mutation { createQueue(input: {code: "later"}) { id } }')
        assert check.due()
        await check.run(client)
        assert check.missing == set()
        assert [r.getMessage() for r in caplog.records] == ["queue 'later' exists now: claiming from it"]


class NotHere(BaseHTTPRequestHandler):
    """A web server that is not jobledger: 404 and a page for everything."""

    def do_POST(self) -> None:
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def other_web_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotHere)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def assert_named_once(log: Path, url: str) -> None:
    """The worker's log names the HTTP status it got from `url` in one warning, although it
    claims every second meanwhile."""
    wait_until("the HTTP error", lambda: f"HTTP 404 Not Found from {url}" in log_of(log), 15)
    time.sleep(3)
    said = [line for line in log_of(log).splitlines() if "WARNING" in line]
    assert len(said) == 1, said
    assert said[0].endswith("is --url the jobledger server's address?"), said
    assert "JSONDecodeError" not in log_of(log) and "unreachable" not in log_of(log)


def test_a_worker_pointed_at_another_web_server_names_its_http_404(tmp_path, other_web_server):
    log = tmp_path / "wrong.log"
    worker = start_worker(Server(other_web_server, None, ""), log, "wrong")  # type: ignore[arg-type]
    try:
        assert_named_once(log, f"{other_web_server}/graphql")
    finally:
        stop_worker(worker)


def test_a_worker_pointed_at_a_path_the_server_does_not_serve_names_the_http_404(server, tmp_path):
    log = tmp_path / "wrong.log"
    worker = start_worker(Server(f"{server.url}/api", server.process, server.store_url), log, "wrong")
    try:
        assert_named_once(log, f"{server.url}/api/graphql")
        assert "there is nothing at /api/graphql" in log_of(log)  # and the server's own words
    finally:
        stop_worker(worker)
