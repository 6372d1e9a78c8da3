"""The worker through jobledger_client's AsyncClient, against a service that is down at
first (an httpx MockTransport): it waits with backoff, says so once, says once that the
service is back, then claims, runs and completes a task."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from jobledger_client import AsyncClient, RetryPolicy
from worker.policy import Policy
from worker.runner import Worker

TASK = {
    "id": "t-1",
    "uri": "0",
    "job": {"id": "j-1", "code": "render", "destination": None, "queue": {"code": "default", "allowCommands": True}},
    "status": "BOOTING",
    "priority": 0,
    "source": {"kind": "command", "command": "true"},
    "destination": None,
    "size": 0,
    "progress": 0,
    "attempts": 1,
    "worker": "w1",
    "error": None,
    "result": None,
    "metadata": {},
    "created": "2026-11-30T12:00:00Z",
    "finished": None,
    "time": None,
}
LEASE = {"id": "lease-1", "worker": "w1", "expires": "2026-11-30T12:01:00Z", "task": TASK}


class Service:
    """Down for the first `down` requests; then hands out one lease and takes its report."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.requests: list[dict[str, Any]] = []
        self.leased = False
        self.worker: Worker | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if len(self.requests) < self.down:
            self.requests.append({})
            raise httpx.ConnectError("connection refused", request=request)
        sent = json.loads(request.content)
        self.requests.append(sent)
        if "claimTasks" in sent["query"]:
            leases = [] if self.leased else [LEASE]
            self.leased = True
            return httpx.Response(200, json={"data": {"claimTasks": leases}})
        if "completeTask" in sent["query"]:
            assert self.worker is not None
            self.worker.stopping.set()
            return httpx.Response(200, json={"data": {"completeTask": {**TASK, "status": "DONE"}}})
        return httpx.Response(200, json={"data": None, "errors": [{"message": "unexpected"}]})


async def test_a_worker_waits_out_an_unreachable_service_and_tells_it_once_each_way(caplog):
    service = Service(down=4)
    client = AsyncClient(
        "http://jobledger.test/graphql",
        "w1",
        retry=RetryPolicy(first_wait=0.01, log=logging.getLogger("jobledger.worker")),
        httpx_options={"transport": httpx.MockTransport(service)},
    )
    worker = Worker(
        "http://jobledger.test/graphql",
        "w1",
        client=client,
        poll_interval=0.05,
        live_view=False,
        policy=Policy(allow_commands=True),
    )
    service.worker = worker
    with caplog.at_level(logging.INFO, logger="jobledger.worker"):
        await worker.run()

    said = [record.getMessage() for record in caplog.records]
    assert sum(line.startswith("server unreachable") for line in said) == 1, said
    assert said.count("server reachable again") == 1, said
    assert "done render #0" in said and worker.finished == 1
    claim, *_, complete = [sent for sent in service.requests if sent]
    assert claim["variables"] == {"worker": "w1", "limit": 1, "leaseSeconds": 60}
    assert complete["variables"] == {"leaseId": "lease-1", "result": {"exit_code": 0, "output": []}}
