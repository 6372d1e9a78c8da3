"""The Python client (jobledger_client) against a real `jobledger serve`, on both stores.

Every verb of the three shapes (plain, accsyn, Anyscale, Dioptra), every error
code mapped to its exception, `watch` ending when the job finishes, `events`
following from the history into live events without a gap, and lists fetched
lazily a page at a time; a job whose first attempt is spoilt on the way (an
UNAVAILABLE answer, a dropped connection, OUTCOME_UNKNOWN) sent again with its
Idempotency-Key and made once. The last tests need no server: they check what the
client sends (headers, variables) and how it maps codes, through httpx's
MockTransport (the retry policy itself: tests/unit/test_client_retries.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from jobledger_client import (
    AsyncClient,
    Client,
    Conflict,
    Event,
    Forbidden,
    Internal,
    InvalidTransition,
    Job,
    JobledgerError,
    JobProgress,
    NotFound,
    OutcomeUnknown,
    Queue,
    RetryPolicy,
    Task,
    TaskLease,
    Unauthenticated,
    Unavailable,
    Validation,
)
from jobledger_client.credentials import find_token, missing_token_advice, token_file_path, write_token_file
from tests.api.conftest import Server, free_port, start_server, stop_server

WAIT = 15.0  # seconds a live stream may take to deliver what a test expects
TOKEN = "jl_0123456789ab_s3cr3t"


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch, tmp_path) -> None:
    """Neither $JOBLEDGER_TOKEN nor a token file of whoever runs the tests: each test gives its own."""
    monkeypatch.delenv("JOBLEDGER_TOKEN", raising=False)
    monkeypatch.setenv("JOBLEDGER_TOKEN_FILE", str(tmp_path / "no-token-here"))


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """Run `work` in a daemon thread; fail (instead of hanging) when it takes too long."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"no result within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def counting_client(server: Server, user: str = "tester") -> tuple[Client, list[httpx.Request]]:
    """A client that records every HTTP request it sends."""
    sent: list[httpx.Request] = []
    client = Client(server.graphql, user=user, httpx_options={"event_hooks": {"request": [sent.append]}})
    return client, sent


@pytest.fixture
def fast_clock_server(store_url: str, tmp_path) -> Iterator[Server]:
    """A server whose finished jobs leave the ACTIVE list at once (JOBLEDGER_FINISHED_GRACE=0)."""
    running = start_server(store_url, str(tmp_path / "server.log"), JOBLEDGER_FINISHED_GRACE="0")
    yield running
    stop_server(running)


# -- queues: plain, Anyscale, Dioptra --------------------------------------------------


def test_queue_verbs_in_every_shape_with_lazy_pages(server):
    client, sent = counting_client(server, user="lars@edit.com")
    with client:
        # Plain API.
        ingest = client.create_queue(
            "ingest",
            priority=700,
            description="incoming",
            tags={"team": "post"},
            max_concurrency=2,
            execution_mode="fifo",
        )
        assert isinstance(ingest, Queue) and (ingest.code, ingest.priority, ingest.execution_mode) == (
            "ingest",
            700,
            "FIFO",
        )
        assert ingest.tags == {"team": "post"} and ingest.max_concurrency == 2 and ingest.user == "lars@edit.com"
        assert isinstance(ingest.created, datetime) and ingest.created.tzinfo is not None
        assert ingest.state == "ACTIVE" and not ingest.archived and ingest.name == "ingest"
        assert client.queue(ingest.id) == client.queue(code="ingest") == client.queue("ingest") == ingest
        assert client.queue(code="nope") is None

        changed = client.update_queue("ingest", status="disabled", max_concurrency=None, description="in")
        assert (changed.status, changed.max_concurrency, changed.description, changed.priority) == (
            "DISABLED",
            None,
            "in",
            700,
        )
        assert client.add_queue_tags(ingest.id, {"site": "hq"}).tags == {"team": "post", "site": "hq"}
        assert client.remove_queue_tags("ingest", ["team"]).tags == {"site": "hq"}

        for n in range(7):
            client.create_queue(f"q{n}", priority=100 + n, tags={"tier": "gold" if n % 2 else "silver"})

        # Lazy pages: nothing is fetched before the first item, then one page at a time.
        before = len(sent)
        listing = client.queues(order_by="code", first=3)
        assert len(sent) == before and listing.pages == 0 and listing.total_count is None
        first = next(listing)
        assert len(sent) == before + 1 and listing.pages == 1 and listing.total_count == 9
        rest = [next(listing) for _ in range(2)]
        assert len(sent) == before + 1  # still the first page
        fourth = next(listing)
        assert len(sent) == before + 2
        codes = [q.code for q in (first, *rest, fourth, *listing)]
        assert codes == sorted(codes) and len(codes) == 9 and listing.pages == 3 and len(sent) == before + 3

        before = len(sent)
        top = client.queues(where="priority<200", order_by=["-priority"], first=2, max_items=3)
        assert [q.code for q in top] == ["q6", "q5", "q4"] and len(sent) == before + 2
        assert [q.code for q in client.queues(where="status=disabled")] == ["ingest"]

        # Anyscale's job_queue verbs.
        jq = client.job_queue
        newest = list(jq.list(sorting_directives=["-created"], page_size=2, max_items=5))
        assert len(newest) == 5 and [q.created for q in newest] == sorted((q.created for q in newest), reverse=True)
        by_name = list(jq.list(sorting_directives=[{"sort_field": "NAME", "sort_order": "DESC"}], page_size=4))
        assert [q.code for q in by_name] == sorted((q.code for q in by_name), reverse=True) and len(by_name) == 9
        assert [q.code for q in jq.list(tags_filter={"tier": ["gold"]}, sorting_directives=["name"])] == [
            "q1",
            "q3",
            "q5",
        ]
        assert [q.code for q in jq.list(tags_filter=["tier:silver"], sorting_directives="name")] == [
            "q0",
            "q2",
            "q4",
            "q6",
        ]
        assert [q.code for q in jq.list(name="q3")] == ["q3"]
        q3 = client.queue(code="q3")
        assert [q.id for q in jq.list(job_queue_id=q3.id)] == [q3.id]
        assert len(list(jq.list(creator_id="lars@edit.com"))) == 8  # not the default queue

        q1 = jq.status(name="q1")
        assert q1 == jq.status(job_queue_id=q1.id) and (q1.total_jobs, q1.active_jobs, q1.failed_jobs) == (0, 0, 0)
        updated = jq.update(job_queue_id=q1.id, max_concurrency=5, idle_timeout_s=300)
        assert (updated.max_concurrency, updated.idle_timeout_s) == (5, 300)
        assert jq.update(job_queue_name="q1", max_concurrency=None).max_concurrency is None
        assert jq.add_tags(name="q1", tags={"owner": "mlops"}) == {"tier": "gold", "owner": "mlops"}
        assert jq.remove_tags(job_queue_id=q1.id, keys=["owner"]) == {"tier": "gold"}
        assert jq.list_tags(name="q1") == {"tier": "gold"}

        q2 = client.queue(code="q2")
        waiting = client.create_job(queue="q2", tasks=["/a"], destination="/o", status="paused")
        assert jq.terminate(name="q2") == q2.id
        assert client.job(waiting.id).status == "ABORTED"
        assert jq.archive(name="q2") == q2.id
        with pytest.raises(NotFound):
            jq.status(name="q2")  # archived: found by name only with include_archived
        assert jq.status(name="q2", include_archived=True).state == "SEALED"
        assert "q2" not in {q.code for q in jq.list()} and "q2" in {q.code for q in jq.list(include_archived=True)}
        with pytest.raises(NotFound):
            jq.delete(name="q2")
        assert jq.delete(name="q2", include_archived=True) == q2.id
        assert client.queue(code="q2") is None

        # The plain archive / terminate / delete.
        assert client.archive_queue("q3").state == "SEALED"
        assert client.terminate_queue(q3.id).id == q3.id
        assert client.delete_queue("q3") == q3.id

        # Dioptra's queues.
        qc = client.queues_collection
        cpu = qc.create("cpu", "CPU workers")
        assert (cpu.name, cpu.description) == ("cpu", "CPU workers")
        assert qc.get_by_id(cpu.id) == cpu
        assert "cpu" in {q.code for q in qc.get()}
        assert qc.modify_by_id(cpu.id, description="CPUs").description == "CPUs"
        submitted = client.submit("cpu", tasks=["/x"], destination="/o", code="exp-1")
        assert submitted.queue_code == "cpu" and submitted.status == "WAITING"
        assert [j.id for j in client.queue_jobs("cpu")] == [submitted.id]
        assert [j.id for j in client.queue_jobs(cpu.id, status=["waiting"])] == [submitted.id]
        assert list(client.queue_jobs("cpu", status="paused")) == []
        assert qc.delete_by_id(cpu.id) == cpu.id
        assert client.job(submitted.id).queue_code == "default"  # its unfinished job moved


# -- jobs, tasks and accsyn's session verbs ------------------------------------------------


def test_job_and_task_verbs_and_accsyn_style(fast_clock_server):
    server = fast_clock_server
    with Client(server.graphql, user="ann") as client:
        client.create_queue("edit", priority=600)
        job = client.create_job(
            queue="edit",
            code="x and y.png",
            destination="/out",
            metadata={"client": "acme"},
            status="paused",
            tasks=["/in/a.mov", {"source": {"path": "/in/b.mov", "take": 2}, "size": 3000, "priority": 10}],
        )
        assert isinstance(job, Job)
        assert (job.status, job.phase, job.queue_code, job.uri, job.priority) == (
            "PAUSED",
            "ACTIVE",
            "edit",
            "edit",
            600,
        )
        assert (job.user, job.modifier, job.metadata, job.finished) == ("ann", "ann", {"client": "acme"}, None)
        assert client.job(job.id) == job and client.job(str(uuid.uuid4())) is None

        tasks = list(client.tasks(job.id))
        assert all(isinstance(t, Task) and t.job_id == job.id for t in tasks)
        assert [(t.uri, t.source, t.size, t.priority) for t in tasks] == [
            ("0", "/in/a.mov", -1, 500),
            ("1", {"path": "/in/b.mov", "take": 2}, 3000, 10),
        ]
        assert client.task(tasks[0].id) == tasks[0] and client.task(str(uuid.uuid4())) is None
        (added,) = client.add_tasks(job.id, ["/in/c.mov"])
        assert added.uri == "2" and added.source == "/in/c.mov"
        assert client.update_tasks(job.id, [{"id": added.id, "priority": 5}])[0].priority == 5
        assert client.exclude_tasks(job.id, [added.id])[0].status == "EXCLUDED"
        assert [t.uri for t in client.tasks(job.id, where="status<>excluded")] == ["0", "1"]
        assert [t.uri for t in client.tasks(job.id, first=1, max_items=2)] == ["0", "1"]

        changed = client.update_job(job.id, priority=42, metadata={"v": 2})
        assert (changed.priority, changed.metadata, changed.status) == (42, {"v": 2}, "PAUSED")
        assert client.resume_job(job.id).status == "WAITING"
        assert client.pause_job(job.id).status == "PAUSED"
        assert client.update_job(job.id, queue="default").queue_code == "default"
        client.update_job(job.id, queue="edit")

        other = client.create_job(code="other", status="paused")
        assert other.queue_code == "default"
        assert [j.code for j in client.jobs(order_by="code")] == ["other", "x and y.png"]
        assert [j.code for j in client.jobs(order_by=[("code", "desc")], first=1)] == ["x and y.png", "other"]
        assert [j.code for j in client.jobs(queue="edit")] == ["x and y.png"]
        assert [j.code for j in client.jobs(where='code="x and y.png" AND priority=42')] == ["x and y.png"]

        # accsyn: find, find_one.
        assert [j.id for j in client.find('Job where code="x and y.png"')] == [job.id]
        assert client.find_one('Job where code="x and y.png"') == client.job(job.id)
        assert client.find_one('job WHERE code="nothing"') is None
        assert {q.code for q in client.find("Queue")} == {"default", "edit"}
        assert len(client.find("Job")) == 2
        found = client.find(f"task WHERE job.id={job.id} AND status<>excluded")
        assert [t.uri for t in found] == ["0", "1"]
        assert client.find_one(f'Task where job.id="{job.id}" and uri=2').id == added.id

        # accsyn: create.
        high = client.create(
            "Queue", {"code": "high_prio", "priority": 999, "status": "disabled", "execution_mode": "lifo"}
        )
        assert (high.priority, high.status, high.execution_mode) == (999, "DISABLED", "LIFO")
        sent = client.create(
            "Job",
            {
                "source": "share=projects/thefilm/latest_edit.mov",
                "destination": "lars@edit.com",
                "status": "paused",
                "queue": "high_prio",
                "tasks": ["/projects/thefilm/latest_edit.mov"],
            },
        )
        assert (sent.status, sent.source, sent.destination, sent.queue_code) == (
            "PAUSED",
            "share=projects/thefilm/latest_edit.mov",
            "lars@edit.com",
            "high_prio",
        )
        more = client.create(
            "task",
            {"tasks": ["/Volumes/reel.mov", {"source": "share=projects/_REF/a.mov", "destination": "share=tmp/a.mov"}]},
            sent.id,
        )
        assert [t.uri for t in more] == ["1", "2"] and more[1].destination == "share=tmp/a.mov"
        with pytest.raises(Conflict):
            client.create("task", {"tasks": ["/Volumes/reel.mov"], "allow_duplicates": False}, sent.id)

        # accsyn: update, update_many (both of the seeds' call forms).
        assert client.update("job", sent.id, {"status": "waiting"}).status == "WAITING"
        assert client.update("Queue", high.id, {"status": "waiting", "max_concurrency": 3}).max_concurrency == 3
        assert client.update("task", more[0].id, {"status": "onhold"}).status == "ONHOLD"
        excluded = client.update_many("task", sent.id, [{"id": more[0].id, "status": "excluded"}])
        assert [(t.id, t.status) for t in excluded] == [(more[0].id, "EXCLUDED")]
        held = client.update_many("task", [{"id": more[1].id, "status": "onhold"}], entityid=sent.id)
        assert held[0].status == "ONHOLD"

        # Aborted jobs leave the ACTIVE list (grace 0 on this server): finished=True finds them.
        assert client.update("job", sent.id, {"status": "aborted"}).status == "ABORTED"
        assert client.abort_job(other.id).finished is not None
        assert eventually(lambda: len(client.find("Job where status=aborted", finished=True)) == 2)
        assert client.find("Job where status=aborted") == []
        assert {j.phase for j in client.jobs(phase=None)} == {"ACTIVE", "FINISHED"}
        assert [j.id for j in client.jobs(phase="finished", where="queue.code=high_prio")] == [sent.id]
        assert client.find("Job", archived=True) == []  # not before JOBLEDGER_ARCHIVE_AFTER

        # accsyn: delete_one; the plain delete_job.
        assert client.delete_one("job", sent.id) == sent.id
        assert client.job(sent.id) is None
        assert client.delete_one("Queue", high.id) == high.id
        assert client.delete_job(other.id) == other.id
        assert [j.id for j in client.jobs(phase=None)] == [job.id]


# -- errors ------------------------------------------------------------------------------


async def test_every_server_error_maps_to_its_exception(server):
    client = Client(server.graphql, user="tester")
    missing = str(uuid.uuid4())
    paused = client.create_job(code="held", status="paused")

    with pytest.raises(NotFound) as not_found:
        client.update_job(missing, status="paused")
    assert (not_found.value.code, not_found.value.kind, not_found.value.key) == ("NOT_FOUND", "Job", missing)
    assert missing in not_found.value.message
    with pytest.raises(NotFound):
        client.delete_queue(missing)
    with pytest.raises(NotFound):
        client.archive_queue("no-such-queue")  # a code the client looks up
    with pytest.raises(NotFound):
        client.job_queue.status(name="no-such-queue")
    with pytest.raises(NotFound):
        list(client.queue_jobs("no-such-queue"))
    with pytest.raises(NotFound):
        list(client.job_events(missing))
    with pytest.raises(NotFound) as unwatchable:
        within(WAIT, lambda: list(client.watch(missing)))  # an error on the websocket
    assert unwatchable.value.kind == "Job"

    with pytest.raises(Validation) as bad_code:
        client.create_queue("Bad Code!")
    assert (bad_code.value.field, bad_code.value.code) == (
        "code",
        "VALIDATION",
    ) and "lowercase" in bad_code.value.reason
    with pytest.raises(Validation) as bad_where:
        client.find("Job where colour=red")
    assert bad_where.value.field == "where" and "colour" in bad_where.value.message
    with pytest.raises(Validation) as bad_sort:
        next(client.queues(order_by="bogus"))
    assert bad_sort.value.field == "orderBy"
    with pytest.raises(Validation) as bad_type:
        list(client.events(types=["Bogus"]))
    assert bad_type.value.field == "types"
    with pytest.raises(Validation):
        client.create_queue("fine", status="sleeping")  # not a QueueStatus: refused by the schema
    with pytest.raises(Validation):
        client.execute("{ nope }")
    # Found wrong by the client itself, shaped the same way.
    with pytest.raises(Validation) as too_big:
        next(client.jobs(first=501))
    assert too_big.value.field == "first"
    with pytest.raises(Validation) as no_entity:
        client.find("Nonsense where x=1")
    assert no_entity.value.field == "entity"
    with pytest.raises(Validation) as no_job:
        client.find("task where status=done")
    assert no_job.value.field == "query"
    with pytest.raises(Validation):
        client.delete_one("task", missing)

    with pytest.raises(Conflict) as taken:
        client.create_queue("default")
    assert "already exists" in taken.value.message
    with pytest.raises(Conflict):
        client.delete_queue("default")

    with pytest.raises(InvalidTransition) as refused:
        client.update_job(paused.id, status="running")
    assert (refused.value.from_, refused.value.to) == ("PAUSED", "RUNNING")
    assert "WAITING" in refused.value.allowed and "RUNNING" not in refused.value.allowed
    assert isinstance(refused.value, JobledgerError) and refused.value.code == "INVALID_TRANSITION"

    with pytest.raises(Unavailable) as unreachable:
        Client(f"http://127.0.0.1:{free_port()}/graphql", retry=RetryPolicy(give_up_after=0)).queue(code="default")
    assert unreachable.value.code == "UNAVAILABLE"

    # The asyncio client maps the same way, over HTTP and websockets.
    async with AsyncClient(server.graphql, user="tester") as aclient:
        with pytest.raises(InvalidTransition):
            await aclient.update_job(paused.id, status="running")
        with pytest.raises(NotFound):
            await aclient.delete_job(missing)
        with pytest.raises(Conflict):
            await aclient.create_queue("default")
        with pytest.raises(Validation):
            await aclient.find("Job where status=sleeping")
        with pytest.raises(NotFound):
            async with asyncio.timeout(WAIT):
                async for _ in aclient.watch(missing):
                    pass
    client.close()


# -- live progress and the worker verbs ----------------------------------------------------


async def test_watch_follows_a_job_until_it_finishes_sync_and_async(server):
    client = Client(server.graphql, user="ops")
    client.update_queue("default", retry_delay=0)  # a failed task runs again at once here
    job = client.create_job(
        code="transfer", destination="/out", tasks=[{"source": "/a", "size": 100}, {"source": "/b", "size": 100}]
    )

    with client.watch(job.id) as progress:
        first = within(WAIT, lambda: next(progress))
        assert isinstance(first, JobProgress) and (first.job_id, first.status, first.finished) == (
            job.id,
            "WAITING",
            False,
        )

        leases = client.claim("w1", limit=2, lease_seconds=30)
        assert len(leases) == 2 and all(isinstance(lease, TaskLease) and lease.worker == "w1" for lease in leases)
        a, b = sorted(leases, key=lambda lease: lease.task.uri)
        beat = client.heartbeat(a.id, progress=50, bytes_done=50, speed=1.5)
        assert beat.id == a.id and beat.expires >= a.expires and beat.task.progress == 50
        retried = client.fail(b.id, "disk full", retry=True)
        assert (retried.status, retried.attempts, retried.error) == ("QUEUED", 1, "disk full")
        done = client.complete(a.id, {"sha256": "abc"})
        assert (done.status, done.result) == ("DONE", {"sha256": "abc"})
        with pytest.raises(Conflict):
            client.complete(a.id)  # a finished lease
        (again,) = client.claim("w2", queues=["default"])
        assert again.task.id == b.task.id
        assert client.release(again.id).status == "QUEUED"
        (last,) = client.claim("w2")
        client.complete(last.id)

        rest = within(WAIT, lambda: list(progress))  # ends by itself: the job is DONE
    assert rest and rest[-1].status == "DONE" and rest[-1].progress == 100 and rest[-1].finished
    assert "RUNNING" in {p.status for p in rest}
    assert [p.progress for p in rest] == sorted(p.progress for p in rest)
    assert client.job(job.id).status == "DONE"

    # A finished job's watch gives its final value and ends at once.
    assert [p.status for p in within(WAIT, lambda: list(client.watch(job.id)))] == ["DONE"]
    client.close()

    # The asyncio client: an async iterator that ends when the job is aborted.
    async with AsyncClient(server.graphql, user="ops") as aclient:
        long_job = await aclient.create_job(code="long", destination="/out", tasks=["/a", "/b"])
        reports: list[JobProgress] = []
        async with asyncio.timeout(WAIT):
            watching = aclient.watch(long_job.id)
            reports.append(await anext(watching))
            assert reports[0].status == "WAITING"
            (lease,) = await aclient.claim("w1")
            await aclient.heartbeat(lease.id, progress=40)
            assert (await aclient.abort_job(long_job.id)).status == "ABORTED"
            async for progress in watching:
                reports.append(progress)
        assert reports[-1].status == "ABORTED" and reports[-1].finished
        assert [p.status for p in reports if p.status not in ("WAITING", "RUNNING")] == ["ABORTED"]


# -- the history, then live ---------------------------------------------------------------


async def test_events_follow_from_the_history_into_live_events_without_a_gap(server):
    client = Client(server.graphql, user="auditor")
    queue = client.create_queue("audit")
    job = client.create_job(code="audited", status="paused", tasks=["/a", "/b"], queue="audit")
    client.resume_job(job.id)

    history = list(client.events())
    positions = [e.position for e in history]
    assert all(isinstance(e, Event) for e in history)
    assert positions == list(range(1, len(history) + 1))  # global, gap-free
    assert history[-1].actor == "auditor" and history[-1].timestamp.tzinfo is not None

    paged = client.events(after=positions[2], first=4)
    assert [e.position for e in paged] == positions[3:] and paged.pages == -(-len(positions[3:]) // 4)

    mine = list(client.events(aggregate_id=job.id))
    assert mine and {e.aggregate_id for e in mine} == {job.id} and mine[0].type == "Job.Created"
    assert {e.type for e in client.events(types=["Job.StatusChanged"])} == {"Job.StatusChanged"}
    of_job = list(client.job_events(job.id))
    assert {e.aggregate_type for e in of_job} == {"Job", "Task"} and len(of_job) > len(mine)
    assert queue.id in {e.aggregate_id for e in history}

    start = positions[len(positions) // 2]
    head = positions[-1]

    def follow() -> list[Event]:
        seen: list[Event] = []
        with client.events(after=start, follow=True, first=3) as following:
            for event in following:
                seen.append(event)
                if event.position == head:
                    # Between the history and the subscription: must not be lost.
                    client.create_job(code="between", status="paused")
                elif event.type == "Job.Created" and event.data.get("code") == "between":
                    # Now live.
                    client.create_job(code="live", status="paused")
                elif event.type == "Job.Created" and event.data.get("code") == "live":
                    return seen
        raise AssertionError("the events stream ended")

    seen = within(WAIT, follow)
    got = [e.position for e in seen]
    assert got == list(range(start + 1, got[-1] + 1))  # no gap, no repeat
    assert [e.actor for e in seen if e.type == "Job.Created"][-2:] == ["auditor", "auditor"]
    assert list(client.events(after=start))[: len(seen)] == seen  # live events equal their history
    client.close()

    # The asyncio client: history, then events written while it listens.
    async with AsyncClient(server.graphql, user="auditor") as aclient:
        live_head = [e.position async for e in aclient.events()][-1]
        live: list[Event] = []

        async def later() -> None:
            await asyncio.sleep(0.5)  # the subscription is open by then
            await aclient.create_queue("live-one")

        async with asyncio.timeout(WAIT):
            writer = asyncio.create_task(later())
            async with aclient.events(after=live_head, follow=True) as following:
                async for event in following:
                    live.append(event)
                    if event.type == "Queue.Created":
                        break
            await writer
        assert [e.position for e in live] == list(range(live_head + 1, live_head + 1 + len(live)))
        assert live[-1].actor == "auditor" and live[-1].data["code"] == "live-one"


# -- without a server: what is sent, and codes the server does not produce yet ----------------


class Recorder:
    """An httpx MockTransport handler: records requests, answers with `answer`."""

    def __init__(self, answer: Any = None, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.answer = answer if answer is not None else {"data": None, "errors": [{"message": "stop"}]}
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        self.headers.append(request.headers)
        if isinstance(self.answer, str):
            return httpx.Response(self.status, text=self.answer)
        return httpx.Response(self.status, json=self.answer)

    def client(self, cls: Any = Client, user: str | None = "u@example.com") -> Any:
        """A client on this recorder that sends each request once (retries: tests/unit/test_client_retries.py)."""
        return cls(
            "http://jobledger.test/graphql",
            user=user,
            retry=RetryPolicy(give_up_after=0),
            httpx_options={"transport": httpx.MockTransport(self)},
        )


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("NOT_FOUND", NotFound),
        ("VALIDATION", Validation),
        ("CONFLICT", Conflict),
        ("INVALID_TRANSITION", InvalidTransition),
        ("FORBIDDEN", Forbidden),
        ("UNAUTHENTICATED", Unauthenticated),
        ("INTERNAL", Internal),
        ("UNAVAILABLE", Unavailable),
        ("OUTCOME_UNKNOWN", OutcomeUnknown),
        ("SOMETHING_NEW", JobledgerError),
    ],
)
async def test_each_code_raises_its_class_sync_and_async(code, cls):
    answer = {"data": None, "errors": [{"message": "said so", "path": ["job"], "extensions": {"code": code, "n": 1}}]}
    recorder = Recorder(answer)
    for attempt in range(2):
        with pytest.raises(JobledgerError) as raised:
            if attempt == 0:
                recorder.client().job("x")
            else:
                async with recorder.client(AsyncClient) as aclient:
                    await aclient.job("x")
        assert type(raised.value) is cls
        said = "said so" if cls is not Unauthenticated else f"said so ({missing_token_advice()})"
        assert (raised.value.code, raised.value.message, raised.value.details) == (code, said, {"n": 1})
        assert raised.value.path == ["job"] and raised.value.errors == answer["errors"]


def test_a_non_graphql_answer_is_unavailable_and_the_user_header_is_sent():
    recorder = Recorder("<html>bad gateway</html>", status=502)
    with pytest.raises(Unavailable) as raised:
        recorder.client(user="ann@example.com").queue(code="x")
    assert raised.value.details["status"] == 502
    assert recorder.headers[0]["X-Jobledger-User"] == "ann@example.com"
    anonymous = Recorder()
    with pytest.raises(JobledgerError):
        anonymous.client(user=None).queue(code="x")
    assert "X-Jobledger-User" not in anonymous.headers[0]
    assert Client("http://h:1/graphql", user="z")._settings.init_payload == {"X-Jobledger-User": "z"}
    assert Client("http://h:1").url == "http://h:1/graphql"


def test_what_the_seeds_shapes_send():
    recorder = Recorder()
    client = recorder.client()

    def sent(call: Callable[[], Any]) -> dict[str, Any]:
        with pytest.raises(JobledgerError):
            result = call()
            if hasattr(result, "__next__"):
                next(result)
        return recorder.requests[-1]["variables"]  # type: ignore[no-any-return]

    assert sent(lambda: client.find("Job where status=done", archived=True)) == {
        "where": "status=done",
        "phase": "ARCHIVED",
        "first": 500,
    }
    assert sent(lambda: client.find("Job where status=aborted", finished=True))["phase"] == "FINISHED"
    assert sent(lambda: client.find("jobs"))["phase"] == "ACTIVE"
    assert sent(lambda: client.find("Queue", archived=True)) == {"includeArchived": True, "first": 500}
    assert sent(lambda: client.find_one("queue WHERE code=x"))["first"] == 1
    task_query = sent(lambda: client.find('task WHERE job.id="j-1" AND status<>executing'))
    assert task_query == {"jobId": "j-1", "where": 'job.id="j-1" AND status<>executing', "first": 500}
    assert sent(
        lambda: client.job_queue.list(
            name='my "q"',
            sorting_directives=["-created", {"sort_field": "NAME", "sort_order": "asc"}, "priority desc"],
            page_size=7,
        )
    ) == {
        "where": 'code="my \\"q\\""',
        "includeArchived": False,
        "orderBy": [
            {"field": "created", "order": "DESC"},
            {"field": "NAME", "order": "ASC"},
            {"field": "priority", "order": "DESC"},
        ],
        "first": 7,
    }
    assert sent(lambda: client.jobs(phase=None))["phase"] is None  # null: every phase
    assert sent(
        lambda: client.create(
            "queue", {"code": "q", "execution_mode": "lifo", "idle_timeout_s": 5, "max_concurrency": None}
        )
    ) == {"input": {"code": "q", "executionMode": "LIFO", "idleTimeoutS": 5, "maxConcurrency": None}}
    assert sent(lambda: client.create("job", {"status": "paused", "tasks": ["/a", {"source": "/b", "size": 3}]})) == {
        "input": {"status": "PAUSED", "tasks": [{"source": "/a"}, {"source": "/b", "size": 3}]}
    }
    assert sent(lambda: client.update("job", "j-1", {"status": "waiting"})) == {
        "id": "j-1",
        "input": {"status": "WAITING"},
    }
    assert sent(lambda: client.update_many("task", "j-1", [{"id": "t-1", "status": "excluded"}])) == {
        "jobId": "j-1",
        "tasks": [{"id": "t-1", "status": "EXCLUDED"}],
    }
    assert sent(lambda: client.update_job("j-1", priority=3)) == {"id": "j-1", "input": {"priority": 3}}
    with pytest.raises(Validation):
        next(client.queues(order_by=[{"field": "code", "order": "sideways"}]))


class Outage:
    """An httpx MockTransport handler: refuses `down` connections, then answers `answer`."""

    def __init__(self, down: int, answer: dict[str, Any]) -> None:
        self.down = down
        self.answer = answer
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=self.answer)


async def test_a_retry_policy_waits_out_an_outage_and_tells_it_once_each_way(caplog):
    log = logging.getLogger("test.retry")
    found = {"data": {"queue": None}}
    for cls in (Client, AsyncClient):
        caplog.clear()
        outage = Outage(3, found)
        client = cls(
            "http://jobledger.test/graphql",
            retry=RetryPolicy(first_wait=0.01, log=log),
            httpx_options={"transport": httpx.MockTransport(outage)},
        )
        with caplog.at_level(logging.INFO, logger="test.retry"):
            answer = client.queue(code="x")
            assert (await answer if cls is AsyncClient else answer) is None
        assert outage.calls == 4
        said = [record.getMessage() for record in caplog.records]
        assert len(said) == 2 and said[0].startswith("server unreachable (no GraphQL answer from http://jobledger.test")
        assert said[1] == "server reachable again"

    refused = Outage(1, {"data": None, "errors": [{"message": "no", "extensions": {"code": "NOT_FOUND"}}]})
    client = Client(retry=RetryPolicy(first_wait=0.01), httpx_options={"transport": httpx.MockTransport(refused)})
    with pytest.raises(NotFound):  # a refusal is an answer: not retried
        client.job("x")
    assert refused.calls == 2
    gone = Outage(1000, found)
    patient_for_a_while = RetryPolicy(first_wait=0.01, give_up_after=0.2)
    client = Client(retry=patient_for_a_while, httpx_options={"transport": httpx.MockTransport(gone)})
    with pytest.raises(Unavailable):
        client.job("x")
    assert 3 <= gone.calls < 1000


# -- retries through a stand-in that spoils the first attempt -------------------------------


@dataclass
class Post:
    key: str | None  # the Idempotency-Key it came with
    body: bytes
    answer: dict[str, Any] | None = None  # the real server's, when it was forwarded


class FlakyProxy:
    """A stand-in in front of a real server: it spoils the first POST in the way `first`
    names, then forwards every POST as it is. "unavailable": answers UNAVAILABLE without
    forwarding; "dropped": forwards it, then closes the connection without an answer;
    "outcome unknown": forwards it, then answers OUTCOME_UNKNOWN instead of the server's
    answer. `posts` is what it received."""

    def __init__(self, target: str, first: str) -> None:
        self.target = target
        self.first = first
        self.posts: list[Post] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                post = Post(self.headers.get("Idempotency-Key"), body)
                proxy.posts.append(post)
                spoilt = proxy.first if len(proxy.posts) == 1 else None
                if spoilt != "unavailable":
                    post.answer = proxy.forward(self.headers, body)
                if spoilt == "dropped":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                code = {"unavailable": "UNAVAILABLE", "outcome unknown": "OUTCOME_UNKNOWN"}.get(spoilt or "")
                said = {"data": None, "errors": [{"message": "spoilt", "extensions": {"code": code, "retry": True}}]}
                self.reply(said if code else post.answer)

            def reply(self, answer: Any) -> None:
                text = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: object) -> None:
                pass

        self.listener = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.listener.server_address[1]}/graphql"

    def forward(self, headers: Any, body: bytes) -> dict[str, Any]:
        passed = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        return httpx.post(self.target, content=body, headers=passed, timeout=30).json()  # type: ignore[no-any-return]

    def __enter__(self) -> FlakyProxy:
        threading.Thread(target=self.listener.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.shutdown()
        self.listener.server_close()


@pytest.mark.parametrize("first", ["unavailable", "dropped", "outcome unknown"])
async def test_a_job_whose_first_attempt_fails_is_sent_again_with_its_key_and_made_once(server, first):
    for cls in (Client, AsyncClient):
        code = f"once-{first.replace(' ', '-')}-{cls.__name__.lower()}"
        with FlakyProxy(server.graphql, first) as proxy:
            client = cls(proxy.url, user="tester", retry=RetryPolicy(first_wait=0.05))
            made = client.create_job(code=code, tasks=["/media/a.mov"])
            job = await made if cls is AsyncClient else made
            closing = client.close()
            if cls is AsyncClient:
                await closing

        first_post, second_post = proxy.posts  # one failed attempt, one retry
        assert first_post.key and first_post.key == second_post.key and first_post.body == second_post.body
        assert uuid.UUID(first_post.key).version == 4
        if first != "unavailable":  # the first attempt did make the job: the retry is answered with it
            assert first_post.answer is not None and first_post.answer["data"]["createJob"]["id"] == job.id
        with Client(server.graphql, user="tester") as look:
            assert [j.id for j in look.jobs(where=f'code="{code}"', phase=None)] == [job.id]


# -- tokens: where they come from, how they are sent, what a refusal says -----------------------


def test_a_token_goes_as_a_bearer_on_http_and_in_the_websockets_connection_init():
    recorder = Recorder()
    with pytest.raises(JobledgerError):
        Client(
            "http://jobledger.test/graphql", token=TOKEN, httpx_options={"transport": httpx.MockTransport(recorder)}
        ).job("x")
    assert recorder.headers[0]["Authorization"] == f"Bearer {TOKEN}"
    assert "X-Jobledger-User" not in recorder.headers[0]
    both = Client("http://h:1/graphql", user="ann", token=TOKEN)
    assert both._settings.init_payload == {"Authorization": f"Bearer {TOKEN}", "X-Jobledger-User": "ann"}
    assert both.token_prefix == "jl_0123456789ab" and TOKEN not in repr(both)
    assert Client("http://h:1/graphql")._settings.init_payload == {}  # no token anywhere: none sent


def test_the_token_is_the_one_given_else_jobledger_token_else_the_token_files_first_line(monkeypatch, tmp_path):
    file = tmp_path / "token"
    monkeypatch.setenv("JOBLEDGER_TOKEN_FILE", str(file))
    assert find_token(None) is None
    file.write_text("jl_fromthefile_x\nanything after the first line\n")
    assert find_token(None) == "jl_fromthefile_x"
    monkeypatch.setenv("JOBLEDGER_TOKEN", "jl_fromtheenv_x")
    assert find_token(None) == "jl_fromtheenv_x"
    assert find_token("jl_given_x") == "jl_given_x"
    assert AsyncClient("http://h:1/graphql")._settings.headers["Authorization"] == "Bearer jl_fromtheenv_x"


def test_the_token_file_is_jobledger_token_file_else_under_the_config_home(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBLEDGER_TOKEN_FILE", str(tmp_path / "mine"))
    assert token_file_path() == tmp_path / "mine"
    monkeypatch.delenv("JOBLEDGER_TOKEN_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert token_file_path() == tmp_path / "config" / "jobledger" / "token"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert token_file_path() == tmp_path / "home" / ".config" / "jobledger" / "token"


def test_the_token_file_is_written_for_its_owner_only_whatever_the_umask(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBLEDGER_TOKEN_FILE", str(tmp_path / "a" / "b" / "token"))
    before = os.umask(0)  # the widest: nothing may depend on the umask
    try:
        written = write_token_file(TOKEN)
    finally:
        os.umask(before)
    assert written == tmp_path / "a" / "b" / "token" and written.read_text() == f"{TOKEN}\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert [stat.S_IMODE(d.stat().st_mode) for d in (tmp_path / "a", tmp_path / "a" / "b")] == [0o700, 0o700]

    loose = tmp_path / "loose"
    loose.write_text("old\n")
    loose.chmod(0o644)
    assert write_token_file("jl_new_x", loose) == loose
    assert loose.read_text() == "jl_new_x\n" and stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "loose"]  # no temporary file left


def test_unauthenticated_says_where_a_token_comes_from(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBLEDGER_TOKEN_FILE", str(tmp_path / "admin-token"))
    refusal = {"data": None, "errors": [{"message": "a token is required", "extensions": {"code": "UNAUTHENTICATED"}}]}
    with pytest.raises(Unauthenticated) as raised:
        Recorder(refusal).client(user=None).queue(code="x")
    assert raised.value.message == (
        "a token is required (pass --token or set JOBLEDGER_TOKEN; "
        f"the server's first admin token is in {tmp_path / 'admin-token'})"
    )


async def test_a_websocket_refused_at_connection_init_is_unauthenticated():
    import websockets

    received: list[dict[str, Any]] = []

    async def refuse(connection: Any) -> None:
        received.append(json.loads(await connection.recv()))
        await connection.close(4403, "Forbidden")

    async with websockets.serve(refuse, "127.0.0.1", 0, subprotocols=["graphql-transport-ws"]) as listener:
        port = listener.sockets[0].getsockname()[1]
        async with AsyncClient(f"http://127.0.0.1:{port}/graphql", token=TOKEN) as client:
            with pytest.raises(Unauthenticated) as raised:
                async for _ in client.watch("j-1"):
                    pass
    assert received == [{"type": "connection_init", "payload": {"Authorization": f"Bearer {TOKEN}"}}]
    assert raised.value.message.startswith("the server refused the websocket (4403 Forbidden) (pass --token")


def test_a_client_on_the_servers_machine_finds_the_first_admins_token(store_url, tmp_path, monkeypatch):
    admin_file = tmp_path / "admin-token"
    guarded = start_server(
        store_url, str(tmp_path / "server.log"), JOBLEDGER_AUTH="on", JOBLEDGER_TOKEN_FILE=str(admin_file)
    )
    try:
        monkeypatch.setenv("JOBLEDGER_TOKEN_FILE", str(admin_file))
        with Client(guarded.graphql) as client:
            assert client.token_prefix is not None and admin_file.read_text().startswith(client.token_prefix + "_")
            job = client.create_job(tasks=["/media/a.mov"], destination="/out")
            assert job.user == "admin"
            watched = client.watch(job.id)  # the websocket signs in with the token too
            assert within(WAIT, lambda: next(watched)).job_id == job.id
            watched.close()

        monkeypatch.setenv("JOBLEDGER_TOKEN_FILE", str(tmp_path / "none"))
        with Client(guarded.graphql) as anonymous:
            with pytest.raises(Unauthenticated) as raised:
                anonymous.queue(code="default")
            assert raised.value.message.endswith(f"the server's first admin token is in {tmp_path / 'none'})")
            with pytest.raises(Unauthenticated):
                within(WAIT, lambda: next(anonymous.watch(job.id)))
        with Client(guarded.graphql, token=TOKEN) as stranger, pytest.raises(Unauthenticated):
            stranger.queue(code="default")
    finally:
        stop_server(guarded)
