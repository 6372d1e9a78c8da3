"""/metrics as Prometheus scrapes it: a real server on each store, parsed by prometheus_client's
own parser, and the numbers an operator would alert on checked against what was done."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Server, start_server, stop_server
from tests.api.test_subscriptions import GraphQLWS
from tests.conftest import fresh_schema

USER = {"X-Jobledger-User": "ops"}
CREATE_QUEUE = "mutation($i: CreateQueueInput!) { createQueue(input: $i) { id code } }"
CREATE_JOB = "mutation($i: CreateJobInput!) { createJob(input: $i) { id } }"
CLAIM = """mutation($q: [String!], $n: Int, $s: Int) {
  claimTasks(worker: "w1", queues: $q, limit: $n, leaseSeconds: $s) { id task { id } } }"""
FAIL = 'mutation($l: ID!) { failTask(leaseId: $l, error: "disk full", retry: true) { id status attempts } }'
MISSING_JOB = 'mutation { updateJob(id: "00000000-0000-0000-0000-000000000000", input: {priority: 5}) { id } }'
JOB_PROGRESS = "subscription($id: ID!) { jobProgress(jobId: $id) { jobId status } }"
METRICS_TOKEN = "scrape-me-7c1f0a9e2b4d"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: Server, headers: dict[str, str] | None = None) -> Samples:
    """GET /metrics (a fresh connection, as Prometheus makes) parsed into {(name, labels): value}."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/metrics", headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have: {sorted(n for n, _ in samples if n == name)}"
    return samples[key]


async def post(client: httpx.AsyncClient, server: Server, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = await client.post(server.graphql, json={"query": query, "variables": variables or {}}, headers=USER)
    return response.json()


async def data(client: httpx.AsyncClient, server: Server, query: str, variables: dict[str, Any] | None = None) -> Any:
    answer = await post(client, server, query, variables)
    assert "errors" not in answer, answer
    return answer["data"]


async def eventually(server: Server, check: Any, seconds: float = 15.0) -> Samples:
    """Scrape until `check(samples)` holds (the clock and websocket closes take their time)."""
    deadline = time.monotonic() + seconds
    while True:
        samples = await scrape(server)
        if check(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.2)


async def test_an_operator_sees_depth_leases_retries_requests_and_subscribers(server: Server):
    async with httpx.AsyncClient(timeout=30) as client:
        await data(client, server, CREATE_QUEUE, {"i": {"code": "render"}})
        tasks = [{"source": f"/in/{n}.exr"} for n in range(3)]
        job = (
            await data(client, server, CREATE_JOB, {"i": {"queue": "render", "destination": "/out", "tasks": tasks}})
        )["createJob"]
        leases = (await data(client, server, CLAIM, {"q": ["render"], "n": 2, "s": 300}))["claimTasks"]
        assert len(leases) == 2
        retried = (await data(client, server, FAIL, {"l": leases[0]["id"]}))["failTask"]
        assert (retried["status"], retried["attempts"]) == ("QUEUED", 1)
        error = (await post(client, server, MISSING_JOB))["errors"][0]
        assert error["extensions"]["code"] == "NOT_FOUND"
        assert (await post(client, server, "{ queues { totalCount "))["errors"][0]["extensions"]["code"] == "VALIDATION"

    samples = await scrape(server)
    # Work in the queue by status: one task untouched and one queued again, one held.
    depth = {
        status: value(samples, "jobledger_queue_tasks", queue="render", status=status)
        for status in ("QUEUED", "BOOTING", "EXECUTING", "FAILED", "DONE")
    }
    assert depth == {"QUEUED": 2, "BOOTING": 1, "EXECUTING": 0, "FAILED": 0, "DONE": 0}
    assert value(samples, "jobledger_queue_jobs", queue="render", status="RUNNING") == 1
    assert value(samples, "jobledger_queue_tasks", queue="default", status="QUEUED") == 0  # every queue is listed
    assert value(samples, "jobledger_leases_active", queue="render") == 1
    assert value(samples, "jobledger_leases_overdue", queue="render") == 0
    assert value(samples, "jobledger_task_retries_total", cause="failed") == 1
    assert value(samples, "jobledger_task_retries_total", cause="expired") == 0
    # Requests by operation (type and root field) and code, the bad ones with theirs.
    requests = "jobledger_graphql_requests_total"
    assert value(samples, requests, operation="mutation", field="createJob", code="OK") == 1
    assert value(samples, requests, operation="mutation", field="claimTasks", code="OK") == 1
    assert value(samples, requests, operation="mutation", field="failTask", code="OK") == 1
    assert value(samples, requests, operation="mutation", field="updateJob", code="NOT_FOUND") == 1
    assert value(samples, requests, operation="unknown", field="(invalid)", code="VALIDATION") == 1
    duration = "jobledger_graphql_request_duration_seconds"
    assert value(samples, f"{duration}_count", operation="mutation", field="createJob") == 1
    assert 0 < value(samples, f"{duration}_sum", operation="mutation", field="createJob") < 30
    assert value(samples, f"{duration}_bucket", operation="mutation", field="createJob", le="+Inf") == 1
    # Events appended by type; the store's count and the projections' place agree.
    events = "jobledger_events_appended_total"
    assert value(samples, events, aggregate="Task", event="Claimed") == 2
    assert value(samples, events, aggregate="Task", event="AttemptFailed") == 1
    assert value(samples, events, aggregate="Job", event="Created") == 1
    assert value(samples, "jobledger_store_reachable") == 1
    assert value(samples, "jobledger_projection_lag_events") == 0
    assert value(samples, "jobledger_projection_lag_seconds") == 0
    assert value(samples, "jobledger_projection_stalled") == 0
    head = value(samples, "jobledger_store_events_total")
    assert head >= sum(v for (name, _), v in samples.items() if name == events)  # and the first start's own
    assert value(samples, "jobledger_projection_position") == head

    # A subscriber counts while connected, and no longer once gone.
    async with GraphQLWS(server.ws, user="ops") as ws:
        progress = await ws.subscribe(JOB_PROGRESS, {"id": job["id"]})
        assert (await progress.next())["jobProgress"]["status"] == "RUNNING"
        samples = await scrape(server)
        assert value(samples, "jobledger_subscriptions", field="jobProgress") == 1
        assert value(samples, requests, operation="subscription", field="jobProgress", code="OK") == 1
    samples = await eventually(
        server, lambda s: s.get(("jobledger_subscriptions", frozenset({("field", "jobProgress")}))) == 0
    )
    assert value(samples, "jobledger_subscriptions", field="jobProgress") == 0


async def test_an_expired_lease_is_counted_and_its_task_retried(server: Server):
    async with httpx.AsyncClient(timeout=30) as client:
        await data(client, server, CREATE_QUEUE, {"i": {"code": "quick"}})
        await data(
            client, server, CREATE_JOB, {"i": {"queue": "quick", "destination": "/o", "tasks": [{"source": "/a"}]}}
        )
        assert len((await data(client, server, CLAIM, {"q": ["quick"], "n": 1, "s": 1}))["claimTasks"]) == 1

    def expired(samples: Samples) -> bool:
        return samples.get(("jobledger_leases_expired_total", frozenset())) == 1

    samples = await eventually(server, expired)
    assert value(samples, "jobledger_leases_expired_total") == 1
    assert value(samples, "jobledger_task_retries_total", cause="expired") == 1
    assert value(samples, "jobledger_events_appended_total", aggregate="Task", event="LeaseExpired") == 1
    # The lease is over, and its task waits in the queue for another attempt.
    samples = await eventually(
        server, lambda s: s.get(("jobledger_leases_active", frozenset({("queue", "quick")}))) == 0
    )
    assert value(samples, "jobledger_leases_active", queue="quick") == 0
    assert value(samples, "jobledger_queue_tasks", queue="quick", status="QUEUED") == 1


# -- who may scrape ------------------------------------------------------------------------------


def refusal(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == code, error
    return str(error["message"])


@pytest.mark.postgres_only
def test_with_a_metrics_token_only_its_bearer_may_scrape(postgres_database: str, tmp_path: Path):
    store_url = fresh_schema(postgres_database, "metrics")
    token_file = tmp_path / "admin.token"
    server = start_server(
        store_url,
        str(tmp_path / "server.log"),
        JOBLEDGER_AUTH="on",
        JOBLEDGER_TOKEN_FILE=str(token_file),
        JOBLEDGER_METRICS_TOKEN=METRICS_TOKEN,
    )
    try:
        url = f"{server.url}/metrics"
        message = refusal(httpx.get(url, timeout=30), 401, "UNAUTHENTICATED")
        assert "JOBLEDGER_METRICS_TOKEN" in message and "Authorization: Bearer" in message
        assert httpx.get(url, timeout=30).headers["www-authenticate"].startswith("Bearer")
        wrong = {"Authorization": f"Bearer {METRICS_TOKEN}x"}
        refusal(httpx.get(url, headers=wrong, timeout=30), 401, "UNAUTHENTICATED")
        # A user's token, even the first admin's, is not the metrics token.
        admin = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        assert "user tokens are not accepted" in refusal(
            httpx.get(url, headers=admin, timeout=30), 401, "UNAUTHENTICATED"
        )
        samples = asyncio.run(scrape(server, {"Authorization": f"Bearer {METRICS_TOKEN}"}))
        assert value(samples, "jobledger_queue_tasks", queue="default", status="QUEUED") == 0
        assert value(samples, "jobledger_store_reachable") == 1
    finally:
        stop_server(server)


@pytest.mark.postgres_only
def test_without_a_metrics_token_only_loopback_callers_may_scrape(postgres_database: str, tmp_path: Path):
    store_url = fresh_schema(postgres_database, "metrics")
    server = start_server(
        store_url, str(tmp_path / "server.log"), JOBLEDGER_AUTH="on", JOBLEDGER_TOKEN_FILE=str(tmp_path / "t")
    )
    try:
        assert value(asyncio.run(scrape(server)), "jobledger_store_reachable") == 1  # from 127.0.0.1
        # Through a reverse proxy on this machine, a scrape from elsewhere is refused.
        relayed = httpx.get(f"{server.url}/metrics", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=30)
        message = refusal(relayed, 403, "FORBIDDEN")
        assert "203.0.113.7" in message and "JOBLEDGER_METRICS_TOKEN" in message
    finally:
        stop_server(server)


def test_a_short_metrics_token_is_refused_at_start(tmp_path: Path):
    environment = {
        **os.environ,
        "JOBLEDGER_METRICS_TOKEN": "short",
        "JOBLEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/j.db",
    }
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", "1"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "JOBLEDGER_METRICS_TOKEN must be at least 16 characters" in done.stderr
    assert not (tmp_path / "j.db").exists()  # refused before the store was opened


# -- several processes behind one port ----------------------------------------------------------


@pytest.mark.postgres_only
async def test_every_process_counts_in_every_scrape(postgres_database: str, tmp_path: Path):
    """`serve --workers 2`: requests land on either process, and whichever answers a scrape
    adds up both processes' counts; its metrics folder is gone once the server stops."""
    log_path = tmp_path / "server.log"
    folder = None
    # The folder of an earlier run whose parent was killed outright: removed at this start.
    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    orphan = Path(tempfile.gettempdir()) / f"jobledger-metrics-{gone.pid}-test"
    orphan.mkdir(exist_ok=True)
    server = start_server(fresh_schema(postgres_database, "metrics"), str(log_path), JOBLEDGER_WORKERS="2")
    try:
        found = re.search(r"keep their metrics in (\S+)", log_path.read_text())
        assert found, log_path.read_text()
        folder = Path(found.group(1))
        assert not orphan.exists(), "the folder of a run killed earlier is still there"
        for _ in range(30):  # a fresh connection each: the kernel hands them to either process
            async with httpx.AsyncClient(timeout=30) as client:
                await data(client, server, "{ queues { totalCount } }")
        async with httpx.AsyncClient(timeout=30) as client:
            job = (await data(client, server, CREATE_JOB, {"i": {"destination": "/o", "tasks": [{"source": "/a"}]}}))[
                "createJob"
            ]
        writers = {m.group(1) for f in folder.iterdir() if (m := re.match(r"counter_(\d+)\.db$", f.name))}
        assert len(writers) >= 2, sorted(f.name for f in folder.iterdir())  # more if one was restarted
        for _ in range(6):
            samples = await scrape(server)
            ok = frozenset({("operation", "query"), ("field", "queues"), ("code", "OK")})
            assert samples[("jobledger_graphql_requests_total", ok)] == 30
        async with GraphQLWS(server.ws, user="ops") as ws:
            progress = await ws.subscribe(JOB_PROGRESS, {"id": job["id"]})
            await progress.next()
            for _ in range(6):
                assert value(await scrape(server), "jobledger_subscriptions", field="jobProgress") == 1
        samples = await eventually(
            server, lambda s: s.get(("jobledger_subscriptions", frozenset({("field", "jobProgress")}))) == 0
        )
        assert value(samples, "jobledger_subscriptions", field="jobProgress") == 0
        assert folder.is_dir()
    finally:
        stop_server(server)
        shutil.rmtree(orphan, ignore_errors=True)
    assert folder is not None and not folder.exists(), "the metrics folder outlived the server"
