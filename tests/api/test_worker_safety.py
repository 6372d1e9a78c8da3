"""What a real `jobledger worker` refuses to do, against a real server: command tasks
without --allow-commands or in a queue whose group does not allow them, transfers that
read or write outside its --root folders. A refused task is failed at once, without
retry, its error saying why and what to do, and the refusal is an event of its history;
the command never runs and no file is read or written. And on a server with
authentication, a worker claims with its token and stops when it has none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import Server, start_server, stop_server
from tests.api.test_workers import (
    CREATE_JOB,
    REPO,
    get_job,
    job_reaches,
    log_tail,
    start_worker,
    stop_worker,
    task_events,
    wait_until,
    workers,
)

QUEUE_RULE = "query($code: String) { queue(code: $code) { code group allowCommands } }"
JOB_TASKS = "query($id: ID!) { job(id: $id) { status tasks { nodes { id worker } } } }"
TASK_ACTORS = "query($id: ID) { events(aggregateId: $id, first: 500) { nodes { type actor } } }"


def submit(server: Server, code: str, tasks: list[dict[str, Any]], queue: str | None = None) -> str:
    given = {"code": code, "tasks": tasks, **({"queue": queue} if queue else {})}
    return server.data(CREATE_JOB, {"i": given})["createJob"]["id"]  # type: ignore[no-any-return]


def touching(marker: Path) -> dict[str, Any]:
    """A command task that leaves `marker` behind if it ever runs."""
    return {"source": {"kind": "command", "command": f"touch {marker}"}}


def refused_once(server: Server, task: dict[str, Any], worker: str) -> None:
    """Check that the task was claimed once and failed at once, with no retry and before it
    ran (no heartbeat), its refusal recorded in the failure event."""
    assert (task["status"], task["attempts"], task["worker"]) == ("FAILED", 1, worker), task
    assert task["error"].startswith("refused: "), task["error"]
    events = task_events(server, task["id"])
    kinds = [e["type"] for e in events]
    assert kinds.count("Task.Claimed") == 1 and "Task.Executing" not in kinds, kinds
    failure = events[-1]
    assert failure["type"] == "Task.AttemptFailed", kinds
    assert (failure["data"]["status"], failure["data"]["error"]) == ("FAILED", task["error"])


def test_a_worker_started_without_options_runs_no_command_and_touches_no_file(server, tmp_path):
    marker, source = tmp_path / "RAN", tmp_path / "in.txt"
    source.write_text("data")
    command_job = submit(server, "cmd", [touching(marker)])
    transfer_job = submit(server, "copy", [{"source": str(source), "destination": str(tmp_path / "out.txt")}])
    log = tmp_path / "careful.log"

    with workers(server, tmp_path, "careful"):
        ran = job_reaches(server, command_job, "FAILED", 60, [log])
        copied = job_reaches(server, transfer_job, "FAILED", 60, [log])

    assert not marker.exists() and not (tmp_path / "out.txt").exists()
    (command,) = ran["tasks"]["nodes"]
    refused_once(server, command, "careful")
    assert command["error"] == "refused: command tasks need a worker started with --allow-commands"
    (transfer,) = copied["tasks"]["nodes"]
    refused_once(server, transfer, "careful")
    assert transfer["error"].endswith("start it with --root DIR to allow transfers under DIR"), transfer["error"]
    said = log.read_text()
    assert "command tasks: refused (start the worker with --allow-commands to run them)" in said, log_tail(log)
    assert "transfers: refused (start the worker with --root DIR to allow them under DIR)" in said


def test_transfers_that_lead_out_of_the_roots_are_refused_and_those_inside_run(server, tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "in.bin").write_bytes(os.urandom(100_000))
    (outside / "secret").write_text("not yours")
    (data / "innocent").symlink_to(outside / "secret")
    (data / "drop").symlink_to(outside)
    escapes = {
        "a source outside": (outside / "secret", data / "stolen"),
        "a link to outside": (data / "innocent", data / "stolen-by-link"),
        "a climb out": (f"{data}/../outside/secret", data / "stolen-by-climbing"),
        "a destination outside": (data / "in.bin", outside / "planted"),
        "a destination through a link": (data / "in.bin", data / "drop" / "planted-by-link"),
        "a neighbour with the same prefix": (data / "in.bin", f"{data}2/planted"),
    }
    # One job each: a job fails with its first failed task, and its other tasks do not run.
    refused_jobs = {
        escape: submit(server, f"escape{n}", [{"source": str(source), "destination": str(destination)}])
        for n, (escape, (source, destination)) in enumerate(escapes.items())
    }
    good_job = submit(server, "inside", [{"source": str(data / "in.bin"), "destination": str(data / "out/in.bin")}])
    log = tmp_path / "mover.log"

    with workers(server, tmp_path, "mover", roots=[data]):
        job_reaches(server, good_job, "DONE", 60, [log])
        refused = {escape: job_reaches(server, job, "FAILED", 60, [log]) for escape, job in refused_jobs.items()}

    assert (data / "out" / "in.bin").read_bytes() == (data / "in.bin").read_bytes()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert not [p for p in data.iterdir() if p.name.startswith("stolen")] and not Path(f"{data}2").exists()
    real = os.path.realpath(data)
    for escape, job in refused.items():
        (task,) = job["tasks"]["nodes"]
        refused_once(server, task, "mover")
        assert f"is outside the worker's roots ({real})" in task["error"], (escape, task["error"])
    assert f"transfers: under {real} only" in log.read_text(), log_tail(log)


def test_commands_run_only_with_allow_commands_and_in_queues_whose_group_allows_them(server, tmp_path):
    server.data('mutation { createGroup(code: "team", allowCommands: true) { code } }')
    server.data('mutation { createQueue(input: {code: "team-q", group: "team"}) { id } }')
    allowed, forbidden = tmp_path / "ALLOWED", tmp_path / "FORBIDDEN"
    allowed_job = submit(server, "allowed", [touching(allowed)])
    forbidden_job = submit(server, "forbidden", [touching(forbidden)], queue="team-q")
    # The group changes its mind after the job was accepted: its queued command must not run.
    server.data('mutation { updateGroup(code: "team", allowCommands: false) { code } }')
    assert server.data(QUEUE_RULE, {"code": "default"})["queue"]["allowCommands"] is True  # the admins' group
    assert server.data(QUEUE_RULE, {"code": "team-q"})["queue"] == {
        "code": "team-q",
        "group": "team",
        "allowCommands": False,
    }
    log = tmp_path / "runner.log"

    with workers(server, tmp_path, "runner", allow_commands=True):
        job_reaches(server, allowed_job, "DONE", 60, [log])
        job = job_reaches(server, forbidden_job, "FAILED", 60, [log])

    assert allowed.exists() and not forbidden.exists()
    (task,) = job["tasks"]["nodes"]
    refused_once(server, task, "runner")
    assert task["error"] == (
        "refused: queue team-q does not allow command tasks: ask a site admin to allow them for its group,"
        " or submit the job to a queue that does"
    )
    assert "command tasks: allowed, for queues whose group allows them" in log.read_text(), log_tail(log)
    assert get_job(server, allowed_job)["tasks"]["nodes"][0]["status"] == "DONE"


def test_a_root_that_is_not_a_folder_stops_the_worker_before_it_claims(server, tmp_path):
    missing = tmp_path / "nowhere"
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "worker", "--url", server.graphql, "--root", str(missing)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == f"jobledger: --root {missing} is not an existing folder: give folders that exist\n"


# -- a server with authentication on ---------------------------------------------------------


def as_admin(server: Server, token: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = httpx.post(
        server.graphql,
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    assert "errors" not in answer, answer["errors"]
    return answer["data"]  # type: ignore[no-any-return]


def worker_token(server: Server, user: str) -> str:
    """A token of the worker role in the admins' group (which owns the default queue), minted
    by the operator's `jobledger token create` on the store."""
    made = subprocess.run(
        [sys.executable, "-m", "api.cli", "token", "create", "--user", user, "--group", "admins", "--role", "worker"],
        env={**os.environ, "JOBLEDGER_DATABASE_URL": server.store_url},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return made.stdout.strip()


def test_a_worker_claims_with_its_token_and_stops_when_the_service_refuses_it(store_url, tmp_path):
    admin_file = tmp_path / "admin-token"
    guarded = start_server(
        store_url, str(tmp_path / "server.log"), JOBLEDGER_AUTH="on", JOBLEDGER_TOKEN_FILE=str(admin_file)
    )
    try:
        admin = admin_file.read_text().strip()
        token = worker_token(guarded, "render-box")
        marker = tmp_path / "RAN"
        job_id = as_admin(guarded, admin, CREATE_JOB, {"i": {"code": "cmd", "tasks": [touching(marker)]}})["createJob"][
            "id"
        ]
        logs = [tmp_path / "box.log", tmp_path / "stranger.log"]

        # No token anywhere: refused at its first claim, it says what to do and stops by itself.
        stranger = start_worker(
            guarded, logs[1], "stranger", env={"JOBLEDGER_TOKEN": "", "JOBLEDGER_TOKEN_FILE": str(tmp_path / "none")}
        )
        try:
            assert wait_until("the worker without a token to stop", lambda: stranger.poll() is not None, 30) is not None
        finally:
            stop_worker(stranger)
        assert stranger.returncode == 2, log_tail(logs[1])
        said = logs[1].read_text()
        assert "the service refused this worker, stopping:" in said and "pass --token or set JOBLEDGER_TOKEN" in said

        with workers(guarded, tmp_path, "box", allow_commands=True, options=["--token", token]):
            wait_until("the job to be done", lambda: job_status(guarded, admin, job_id) == "DONE", 60)
        assert marker.exists()
        (task,) = as_admin(guarded, admin, JOB_TASKS, {"id": job_id})["job"]["tasks"]["nodes"]
        assert task["worker"] == "box"
        actors = {e["actor"] for e in as_admin(guarded, admin, TASK_ACTORS, {"id": task["id"]})["events"]["nodes"]}
        assert actors == {"admin", "render-box"}  # the token's user, not the worker's name
    finally:
        stop_server(guarded)


def job_status(server: Server, token: str, job_id: str) -> str:
    return as_admin(server, token, JOB_TASKS, {"id": job_id})["job"]["status"]  # type: ignore[no-any-return]
