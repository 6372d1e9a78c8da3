"""Jobs and tasks say why they wait, and every queue names the group that owns it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.conftest import Server
from tests.api.test_http import KeptAlive, code, create_job, create_queue, kept_alive

REASONS = "id status reason tasks { nodes { uri status reason } }"


@pytest.fixture
def server(server: Server) -> Iterator[KeptAlive]:
    yield from kept_alive(server)


def job(server: KeptAlive, job_id: str) -> dict:
    return server.data(f"query($id: ID!) {{ job(id: $id) {{ {REASONS} }} }}", {"id": job_id})["job"]


def test_a_transfer_job_without_destination_says_it_waits_for_one(server: KeptAlive):
    created = create_job(server, tasks=[{"source": "/in/a.mov"}])
    seen = job(server, created["id"])
    assert seen["status"] == "PENDING"
    assert "destination" in seen["reason"]
    assert "destination" in seen["tasks"]["nodes"][0]["reason"]


def test_a_paused_job_names_who_paused_it_and_its_tasks_point_at_it(server: KeptAlive):
    created = create_job(server, destination="/out", tasks=[{"source": "/in/a.mov"}])
    server.data(
        "mutation($id: ID!) { updateJob(id: $id, input: {status: PAUSED}) { id } }", {"id": created["id"]}, "alice"
    )
    seen = job(server, created["id"])
    assert seen["reason"].startswith("paused by alice")
    assert "paused" in seen["tasks"]["nodes"][0]["reason"]


def test_a_job_in_a_disabled_queue_says_so(server: KeptAlive):
    create_queue(server, code="night", status="DISABLED")
    created = create_job(server, queue="night", destination="/out", tasks=[{"source": "/in/a.mov"}])
    seen = job(server, created["id"])
    assert "queue night is disabled" in seen["reason"]
    assert "queue night is disabled" in seen["tasks"]["nodes"][0]["reason"]


def test_a_job_held_by_max_concurrency_says_so(server: KeptAlive):
    create_queue(server, code="one", maxConcurrency=1)
    first = create_job(server, queue="one", destination="/out", tasks=[{"source": "/in/a.mov"}])
    second = create_job(server, queue="one", destination="/out", tasks=[{"source": "/in/b.mov"}])
    claimed = server.data('mutation { claimTasks(worker: "w1", queues: ["one"], limit: 1) { id } }')["claimTasks"]
    assert len(claimed) == 1
    assert job(server, first["id"])["reason"] is None  # running: nothing to explain
    assert "max concurrency" in job(server, second["id"])["reason"]


def test_a_failed_attempt_queued_again_says_it_will_be_retried(server: KeptAlive):
    created = create_job(server, destination="/out", tasks=[{"source": "/in/a.mov"}])
    lease = server.data('mutation { claimTasks(worker: "w1", limit: 1) { id } }')["claimTasks"][0]["id"]
    server.data('mutation($l: ID!) { failTask(leaseId: $l, error: "disk full\\nmore") { id } }', {"l": lease})
    task = job(server, created["id"])["tasks"]["nodes"][0]
    assert task["status"] == "QUEUED"
    assert "retry" in task["reason"] and "disk full" in task["reason"] and "more" not in task["reason"]


def test_finished_jobs_and_tasks_have_no_reason(server: KeptAlive):
    created = create_job(server, destination="/out", tasks=[{"source": "/in/a.mov"}])
    lease = server.data('mutation { claimTasks(worker: "w1", limit: 1) { id } }')["claimTasks"][0]["id"]
    server.data("mutation($l: ID!) { completeTask(leaseId: $l) { id } }", {"l": lease})
    seen = job(server, created["id"])
    assert seen["status"] == "DONE"
    assert seen["reason"] is None and seen["tasks"]["nodes"][0]["reason"] is None


def test_queues_belong_to_the_admins_group_unless_told(server: KeptAlive):
    """With authentication off: the default queue and a queue created without a group are
    the admins'; a group that does not exist is NOT_FOUND, and nothing is created."""
    create_queue(server, code="mine")
    queues = server.data("{ queues { nodes { code group } } }")["queues"]["nodes"]
    assert {q["code"]: q["group"] for q in queues} == {"default": "admins", "mine": "admins"}
    error = server.error('mutation { createQueue(input: {code: "x", group: "nosuch"}) { id } }')
    assert code(error) == "NOT_FOUND"
    assert server.data('{ queue(code: "x") { id } }')["queue"] is None
