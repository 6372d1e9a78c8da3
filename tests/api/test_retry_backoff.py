"""A failed task waits before it runs again: exponential backoff with jitter, set on a
queue and overridden by a job, with the time of the next attempt in `Task.retryAt` and
its reason; a real server on each store. Waits are short here (a second or two)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.api.conftest import Server, start_server, stop_server
from tests.api.test_http import KeptAlive, code, create_job, create_queue, kept_alive

TASK = "id status attempts error retryAt reason"
POLICY = "retryDelay retryBackoff retryMaxDelay retryJitter"
CLAIM = 'mutation($q: [String!], $s: Int) { claimTasks(worker: "w1", queues: $q, limit: 1, leaseSeconds: $s) { id } }'
FAIL = "mutation($l: ID!, $e: String!) { failTask(leaseId: $l, error: $e) { " + TASK + " } }"
EVENTS = "query($id: ID!, $t: [String!]) { events(aggregateId: $id, types: $t) { nodes { type timestamp data } } }"
ENDS = ["Task.AttemptFailed", "Task.LeaseExpired"]


@pytest.fixture
def server(server: Server) -> Iterator[KeptAlive]:
    yield from kept_alive(server)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def task(server: Server, task_id: str) -> dict[str, Any]:
    return server.data(f"query($id: ID!) {{ task(id: $id) {{ {TASK} }} }}", {"id": task_id})["task"]


def one_task_job(server: Server, **fields: Any) -> str:
    job = create_job(server, destination="/out", tasks=[{"source": f"/in/{time.monotonic_ns()}.mov"}], **fields)
    found = server.data("query($id: ID!) { job(id: $id) { tasks { nodes { id } } } }", {"id": job["id"]})
    return str(found["job"]["tasks"]["nodes"][0]["id"])


def claim(server: Server, queue: str, lease_seconds: int = 60) -> list[str]:
    """Lease ids (`<task id>.<random>`) of what a claim on `queue` hands out now."""
    return [lease["id"] for lease in server.data(CLAIM, {"q": [queue], "s": lease_seconds})["claimTasks"]]


def wait_for(check: Callable[[], Any], what: str, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def events(server: Server, task_id: str, types: list[str]) -> list[dict[str, Any]]:
    return server.data(EVENTS, {"id": task_id, "t": types})["events"]["nodes"]  # type: ignore[no-any-return]


def waited(event: dict[str, Any]) -> float:
    """Seconds from the failure to the retry time its event recorded (the command drew the
    time a moment before the event's timestamp, so a little less than the wait)."""
    return (when(event["data"]["retry_at"]) - when(event["timestamp"])).total_seconds()


def test_a_failed_task_is_handed_out_again_only_from_its_retry_time_and_each_wait_is_longer(server: KeptAlive):
    create_queue(server, code="flaky", retryDelay=1.0, retryBackoff=2, retryMaxDelay=30, retryJitter=0.2)
    task_id = one_task_job(server, queue="flaky", maxAttempts=3)
    (lease,) = claim(server, "flaky")

    waits = []
    for attempt in (1, 2):
        failed = server.data(FAIL, {"l": lease, "e": "disk full\nsecond line"})["failTask"]
        event = events(server, task_id, ENDS)[-1]
        waits.append(waited(event))
        nominal = 2.0 ** (attempt - 1)
        assert 0.8 * nominal - 0.05 <= waits[-1] <= nominal, waits  # within the jitter's bounds
        retry_at = when(event["data"]["retry_at"])
        assert (failed["status"], when(failed["retryAt"])) == ("QUEUED", retry_at)

        seen = task(server, task_id)
        assert when(seen["retryAt"]) == retry_at
        shown = retry_at.astimezone(UTC).strftime("%H:%M:%S")
        assert seen["reason"] == f"retry at {shown} UTC (attempt {attempt + 1} of 3) after: disk full", seen
        assert claim(server, "flaky") == []
        assert datetime.now(UTC) < retry_at  # so the claim above was refused before its time

        wait_for(lambda: datetime.now(UTC) >= retry_at, "the retry time")  # noqa: B023
        ready = task(server, task_id)["reason"]
        assert "waiting for a worker" in ready and f"attempt {attempt + 1} of 3" in ready, ready
        (lease,) = wait_for(lambda: claim(server, "flaky"), "the retry's claim")
        claimed = events(server, task_id, ["Task.Claimed"])[-1]
        assert when(claimed["timestamp"]) >= retry_at
    assert waits[1] > waits[0]

    # The last attempt fails for good: no retry time, nothing to wait for.
    failed = server.data(FAIL, {"l": lease, "e": "disk full"})["failTask"]
    assert (failed["status"], failed["attempts"], failed["retryAt"], failed["reason"]) == ("FAILED", 3, None, None)


def test_a_jobs_own_policy_overrides_its_queues(server: KeptAlive):
    queue = create_queue(server, code="patient", retryDelay=600, retryJitter=0)
    shown = server.data(f'{{ queue(code: "patient") {{ {POLICY} }} }}')["queue"]
    assert shown == {"retryDelay": 600.0, "retryBackoff": None, "retryMaxDelay": None, "retryJitter": 0.0}
    hurried = one_task_job(server, queue="patient", retryDelay=0.5, maxAttempts=5)
    patient = one_task_job(server, queue="patient")
    leases = claim(server, "patient") + claim(server, "patient")
    assert sorted(lease.split(".")[0] for lease in leases) == sorted([hurried, patient])
    for lease in leases:
        server.data(FAIL, {"l": lease, "e": "busy"})

    assert waited(events(server, hurried, ENDS)[-1]) == pytest.approx(0.5, abs=0.05)
    assert waited(events(server, patient, ENDS)[-1]) == pytest.approx(600, abs=0.05)  # the queue's
    (again,) = wait_for(lambda: claim(server, "patient"), "the hurried job's retry")
    assert again.startswith(hurried)
    assert claim(server, "patient") == []  # the other waits its ten minutes
    assert task(server, patient)["reason"].startswith("retry at ")

    # Changed on the queue, the policy counts from the next failure on.
    server.data(
        "mutation($id: ID!) { updateQueue(id: $id, input: {retryDelay: 0.25, retryBackoff: 1}) { id } }",
        {"id": queue["id"]},
    )
    server.data(FAIL, {"l": again, "e": "busy"})
    assert waited(events(server, hurried, ENDS)[-1]) == pytest.approx(0.5, abs=0.05)  # the job's own still
    job_id = server.data("query($id: ID!) { task(id: $id) { job { id } } }", {"id": hurried})["task"]["job"]["id"]
    updated = server.data(
        f"mutation($id: ID!) {{ updateJob(id: $id, input: {{retryDelay: null}}) {{ {POLICY} }} }}", {"id": job_id}
    )["updateJob"]
    assert updated["retryDelay"] is None
    (lease,) = wait_for(lambda: claim(server, "patient"), "the hurried job's second retry")
    server.data(FAIL, {"l": lease, "e": "busy"})
    assert waited(events(server, hurried, ENDS)[-1]) == pytest.approx(0.25, abs=0.05)  # now the queue's


def test_a_policy_out_of_bounds_is_refused_with_the_fields_name(server: KeptAlive):
    for given, field in (({"retryJitter": 1.5}, "retryJitter"), ({"retryBackoff": 0.5}, "retryBackoff")):
        error = server.error(
            "mutation($i: CreateQueueInput!) { createQueue(input: $i) { id } }", {"i": {"code": "x", **given}}
        )
        assert code(error) == "VALIDATION" and field in error["message"], error
    error = server.error(
        'mutation { createJob(input: {destination: "/o", tasks: [{source: "/a"}], retryDelay: -1}) { id } }'
    )
    assert code(error) == "VALIDATION" and "retryDelay" in error["message"], error


def test_an_expired_lease_backs_off_too(server: KeptAlive):
    create_queue(server, code="leases", retryDelay=2, retryJitter=0)
    task_id = one_task_job(server, queue="leases")
    assert claim(server, "leases", lease_seconds=1)
    expired = wait_for(lambda: events(server, task_id, ["Task.LeaseExpired"]), "the lease's expiry")[-1]
    assert 1.5 <= waited(expired) <= 2  # from when the clock found it expired, a moment before the event
    retry_at = when(expired["data"]["retry_at"])
    seen = wait_for(lambda: (found := task(server, task_id))["retryAt"] and found, "the read model's catching up")
    assert (seen["status"], when(seen["retryAt"])) == ("QUEUED", retry_at)
    assert "expired" in seen["reason"] and seen["reason"].startswith("retry at "), seen
    assert claim(server, "leases") == [] and datetime.now(UTC) < retry_at
    assert wait_for(lambda: claim(server, "leases"), "the claim after the wait")


def rebuild(store_url: str, tmp_path: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "projections", "rebuild", "--database-url", store_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_replaying_the_events_gives_the_same_retry_times(store_url: str, tmp_path):
    """The retry time was drawn at random once, when the failure was recorded: rebuilt
    from the log, the read models show the same one."""
    running = start_server(store_url, str(tmp_path / "server.log"))
    try:
        for server in kept_alive(running):
            create_queue(server, code="drawn", retryDelay=300, retryJitter=1)  # full jitter: anywhere in 0..300 s
            tasks = [one_task_job(server, queue="drawn") for _ in range(3)]
            for _ in tasks:
                (lease,) = claim(server, "drawn")
                server.data(FAIL, {"l": lease, "e": "flaky"})
            before = {task_id: task(server, task_id) for task_id in tasks}
            assert len({seen["retryAt"] for seen in before.values()}) == 3  # three draws
    finally:
        stop_server(running)
    rebuild(store_url, tmp_path)
    running = start_server(store_url, str(tmp_path / "server.log"))
    try:
        for server in kept_alive(running):
            after = {task_id: task(server, task_id) for task_id in tasks}
            assert {i: when(t["retryAt"]) for i, t in after.items()} == {
                i: when(t["retryAt"]) for i, t in before.items()
            }
            assert claim(server, "drawn") == []
    finally:
        stop_server(running)
