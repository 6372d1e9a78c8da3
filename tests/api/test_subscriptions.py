"""Subscriptions over real websockets: jobProgress, jobUpdated and events, on both stores.

The client below speaks graphql-transport-ws (and the legacy graphql-ws) by hand
with the `websockets` library, so these tests see exactly the frames a browser
or a worker would. Every receive has a timeout: a subscription that goes quiet
fails the test in seconds instead of hanging it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from domain.ledger import Ledger
from tests.api.conftest import Server, start_server, stop_server

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
WAIT = 8.0  # seconds any single expected message may take (generous: CI machines are slow)
CLOSED = object()

# -- a small graphql-transport-ws / graphql-ws client ---------------------------------------


class Subscription:
    """One operation on a connection: its messages, in order, with their arrival times."""

    def __init__(self, client: GraphQLWS, op_id: str) -> None:
        self.client = client
        self.id = op_id
        self.inbox: asyncio.Queue[Any] = client.inboxes[op_id]
        self.arrivals: list[float] = []  # monotonic arrival time of each message taken

    async def message(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next message of this operation, whatever its type."""
        try:
            item = await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no message for subscription {self.id} within {timeout} s") from None
        if item is CLOSED:
            raise AssertionError(f"the server closed the connection: {self.client.close_reason}")
        arrived, msg = item
        self.arrivals.append(arrived)
        return msg  # type: ignore[no-any-return]

    async def next(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next result's data; fails on an error or the end of the stream."""
        msg = await self.message(timeout)
        assert msg["type"] == self.client.data_type, msg
        assert not msg["payload"].get("errors"), msg
        return msg["payload"]["data"]  # type: ignore[no-any-return]

    async def completed(self, timeout: float = WAIT) -> None:
        msg = await self.message(timeout)
        assert msg == {"id": self.id, "type": "complete"}, msg

    async def quiet(self, seconds: float) -> None:
        """Nothing arrives for `seconds`."""
        try:
            item = await asyncio.wait_for(self.inbox.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing on subscription {self.id}, got {item}")

    async def stop(self) -> None:
        await self.client.send({"id": self.id, "type": self.client.stop_type})


class GraphQLWS:
    """`async with GraphQLWS(url) as ws: sub = await ws.subscribe(query, variables)`.

    A reader task sorts incoming frames by operation id; pings are answered,
    keep-alives skipped. `protocol` is graphql-transport-ws or the legacy graphql-ws.
    """

    def __init__(self, url: str, user: str | None = "tester", protocol: str = TRANSPORT_WS, init: Any = None) -> None:
        self.url = url
        self.protocol = protocol
        self.init_payload = init if init is not None else ({"X-Jobledger-User": user} if user else None)
        self.inboxes: defaultdict[str | None, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self.ack: dict[str, Any] | None = None
        self.close_reason: str | None = None
        self._ids = 0
        self._reader: asyncio.Task[None] | None = None
        self.ws: Any = None

    @property
    def data_type(self) -> str:
        return "next" if self.protocol == TRANSPORT_WS else "data"

    @property
    def stop_type(self) -> str:
        return "complete" if self.protocol == TRANSPORT_WS else "stop"

    async def __aenter__(self) -> GraphQLWS:
        self.ws = await websockets.connect(self.url, subprotocols=[self.protocol], open_timeout=WAIT)
        assert self.ws.subprotocol == self.protocol
        init: dict[str, Any] = {"type": "connection_init"}
        if self.init_payload is not None:
            init["payload"] = self.init_payload
        await self.send(init)
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
            if msg["type"] != "ka":
                break
        assert msg["type"] == "connection_ack", msg
        self.ack = msg
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Close while the reader still drains frames: websockets stops reading the socket when
        # unread messages pile up, and would then not see the server's close frame for 10 s.
        await asyncio.wait_for(self.ws.close(), WAIT)
        if self._reader is not None:
            self._reader.cancel()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> Subscription:
        self._ids += 1
        op_id = str(self._ids)
        payload = {"query": query, "variables": variables or {}}
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        sub = Subscription(self, op_id)
        await self.send({"id": op_id, "type": kind, "payload": payload})
        return sub

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind in ("ka", "pong"):
                    continue
                if kind == "ping":
                    await self.send({"type": "pong"})
                    continue
                self.inboxes[msg.get("id")].put_nowait((time.monotonic(), msg))
        except websockets.ConnectionClosed as exc:
            self.close_reason = f"{exc.rcvd}"
        finally:
            self.close_reason = self.close_reason or "closed"
            for inbox in list(self.inboxes.values()):
                inbox.put_nowait(CLOSED)


# -- HTTP side ---------------------------------------------------------------------------------

CREATE_JOB = """
mutation($input: CreateJobInput!) { createJob(input: $input) { id status queue { code } } }
"""
CREATE_QUEUE = "mutation($input: CreateQueueInput!) { createQueue(input: $input) { id code } }"
UPDATE_JOB = "mutation($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) { id status } }"
CLAIM = "mutation($w: String!, $n: Int) { claimTasks(worker: $w, limit: $n) { id task { id } } }"
HEARTBEAT = "mutation($l: ID!, $p: Int) { heartbeat(leaseId: $l, progress: $p, speed: 2.0) { id } }"
COMPLETE = "mutation($l: ID!) { completeTask(leaseId: $l) { id status } }"

EVENTS = """
subscription($after: Long, $aggregateId: ID, $types: [String!]) {
  events(after: $after, aggregateId: $aggregateId, types: $types) { position aggregateId type data }
}
"""
JOB_PROGRESS = "subscription($id: ID!) { jobProgress(jobId: $id) { jobId status progress speed etr size } }"


class Api:
    """Mutations over HTTP with httpx.AsyncClient, the same way a client would send them."""

    def __init__(self, server: Server, client: httpx.AsyncClient, user: str = "tester") -> None:
        self.server, self.client, self.user = server, client, user

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            self.server.graphql,
            json={"query": query, "variables": variables or {}},
            headers={"X-Jobledger-User": self.user},
            timeout=30,
        )
        answer = response.json()
        assert "errors" not in answer, answer["errors"]
        return answer["data"]  # type: ignore[no-any-return]

    async def job(self, queue: str | None = None, tasks: int = 1, **extra: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "destination": "/out",
            "tasks": [{"source": f"/in/{i}.bin", "size": 1000} for i in range(tasks)],
            **extra,
        }
        if queue:
            spec["queue"] = queue
        return (await self.data(CREATE_JOB, {"input": spec}))["createJob"]  # type: ignore[no-any-return]

    async def queue(self, code: str) -> dict[str, Any]:
        return (await self.data(CREATE_QUEUE, {"input": {"code": code}}))["createQueue"]  # type: ignore[no-any-return]

    async def pause(self, job_id: str) -> dict[str, Any]:
        return (await self.data(UPDATE_JOB, {"id": job_id, "input": {"status": "PAUSED"}}))["updateJob"]  # type: ignore[no-any-return]

    async def head(self) -> int:
        response = await self.client.get(f"{self.server.url}/readyz", timeout=10)
        return int(response.json()["head"])


@pytest.fixture
async def api(server: Server):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as client:
        yield Api(server, client)


async def take_events(
    sub: Subscription, until: Callable[[dict[str, Any]], bool], timeout: float = WAIT
) -> list[dict[str, Any]]:
    """Events of an `events` subscription up to and including the first for which `until` holds."""
    seen: list[dict[str, Any]] = []
    while True:
        event = (await sub.next(timeout))["events"]
        seen.append(event)
        if until(event):
            return seen


def errors_of(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors of a failed operation: an `error` frame's payload (graphql-transport-ws sends a
    list, graphql-ws one error), or the errors of a `next`/`data` frame (execution errors)."""
    if msg["type"] == "error":
        payload = msg["payload"]
        return payload if isinstance(payload, list) else [payload]
    return msg["payload"].get("errors") or []


def assert_gap_free(events: list[dict[str, Any]], first: int) -> None:
    positions = [e["position"] for e in events]
    assert positions == list(range(first, first + len(positions))), (
        f"positions not consecutive from {first}: "
        + ", ".join(f"{a}->{b}" for a, b in itertools.pairwise(positions) if b != a + 1)
    )


# -- jobProgress -------------------------------------------------------------------------------


async def test_job_progress_rises_then_ends_with_done(server: Server, api: Api) -> None:
    job = await api.job(tasks=2)
    async with GraphQLWS(server.ws) as ws:
        sub = await ws.subscribe(JOB_PROGRESS, {"id": job["id"]})
        first = (await sub.next(timeout=3))["jobProgress"]
        assert first == {
            "jobId": job["id"],
            "status": "WAITING",
            "progress": 0,
            "speed": 0.0,
            "etr": None,
            "size": 2000,
        }

        leases = (await api.data(CLAIM, {"w": "w1", "n": 2}))["claimTasks"]
        assert len(leases) == 2
        values: list[dict[str, Any]] = []

        async def listen() -> None:
            while True:
                msg = await sub.message()
                if msg["type"] == "complete":
                    return
                assert msg["type"] == "next" and not msg["payload"].get("errors"), msg
                values.append(msg["payload"]["data"]["jobProgress"])

        listener = asyncio.create_task(listen())
        # Heartbeats are coalesced by the ledger to one event a second per task, so report
        # every 0.4 s for a few seconds: several of them land.
        for step in range(1, 9):
            for lease in leases:
                await api.data(HEARTBEAT, {"l": lease["id"], "p": step * 10})
            await asyncio.sleep(0.4)
        assert not listener.done(), values
        for lease in leases:
            answered = (await api.data(COMPLETE, {"l": lease["id"]}))["completeTask"]
            assert answered["status"] == "DONE"
        done_at = time.monotonic()
        await asyncio.wait_for(listener, WAIT)  # ends at the server's `complete`

    running = [v["progress"] for v in values if v["status"] == "RUNNING"]
    assert values[0]["status"] == "RUNNING"
    assert running == sorted(running), f"progress went down: {running}"
    assert len(set(running)) > 2, f"expected progress to rise in steps, saw {running}"
    assert max(running) < 100
    assert values[-1]["status"] == "DONE" and values[-1]["progress"] == 100
    assert values[-1]["size"] == 2000
    assert [v["status"] for v in values].count("DONE") == 1
    print(f"\njobProgress: DONE arrived {(sub.arrivals[-2] - done_at) * 1000:+.0f} ms after completeTask answered")


async def test_finished_and_unknown_jobs_and_bad_arguments(server: Server, api: Api) -> None:
    job = await api.job(tasks=1)
    (lease,) = (await api.data(CLAIM, {"w": "w1", "n": 1}))["claimTasks"]
    await api.data(COMPLETE, {"l": lease["id"]})
    async with GraphQLWS(server.ws) as ws:
        # A finished job: its value at once, then the end.
        sub = await ws.subscribe(JOB_PROGRESS, {"id": job["id"]})
        value = (await sub.next())["jobProgress"]
        assert (value["status"], value["progress"]) == ("DONE", 100)
        await sub.completed()

        for job_id in ("00000000-0000-0000-0000-000000000000", "no-such-job"):
            sub = await ws.subscribe(JOB_PROGRESS, {"id": job_id})
            msg = await sub.message()
            # The server raises NOT_FOUND inside the resolver: an execution error, so a `next`
            # with errors and no data, then `complete`.
            errors = errors_of(msg)
            assert errors and errors[0]["extensions"]["code"] == "NOT_FOUND", msg
            assert job_id in errors[0]["message"]
            if msg["type"] == "next":
                assert msg["payload"]["data"] is None
                await sub.completed()

        # Bad arguments fail at once with VALIDATION, not at the first change.
        for query, variables, wording in [
            (EVENTS, {"types": ["Job.NoSuchThing"]}, "Job.NoSuchThing"),
            (EVENTS, {"after": -1}, "after"),
            (JOB_UPDATED, {"where": "colour = blue"}, "colour"),
            (JOB_UPDATED, {"where": "status ="}, ""),
        ]:
            sub = await ws.subscribe(query, variables)
            errors = errors_of(await sub.message(timeout=3))
            assert errors and errors[0]["extensions"]["code"] == "VALIDATION", (variables, errors)
            assert wording in errors[0]["message"]

        # The connection is still good for other operations.
        sub = await ws.subscribe(EVENTS, {"after": 0})
        assert (await sub.next())["events"]["position"] == 1
        await sub.stop()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the API layer, whatever the store
async def test_a_bad_subscription_document_is_a_validation_error(server: Server) -> None:
    async with GraphQLWS(server.ws) as ws:
        sub = await ws.subscribe("subscription { jobProgress(jobId: 1) { noSuchField } }")
        msg = await sub.message()
        assert msg["type"] == "error", msg
        assert "noSuchField" in msg["payload"][0]["message"]
        assert msg["payload"][0].get("extensions", {}).get("code") == "VALIDATION", msg


# -- jobUpdated --------------------------------------------------------------------------------

JOB_UPDATED = """
subscription($queue: String, $where: String) {
  jobUpdated(queue: $queue, where: $where) { id status queue { code } }
}
"""


async def test_job_updated_by_queue_and_by_where(server: Server, api: Api) -> None:
    await api.queue("x")
    await api.queue("y")
    async with GraphQLWS(server.ws) as ws:
        in_x = await ws.subscribe(JOB_UPDATED, {"queue": "x"})
        paused = await ws.subscribe(JOB_UPDATED, {"where": "status=paused"})
        await asyncio.sleep(0.3)  # these send nothing at once: let them start listening

        # Warm-up: a job created PAUSED in x matches both; each sees it.
        x0 = await api.job("x", status="PAUSED")
        assert (await in_x.next())["jobUpdated"] == {"id": x0["id"], "status": "PAUSED", "queue": {"code": "x"}}
        assert (await paused.next())["jobUpdated"]["id"] == x0["id"]

        y1 = await api.job("y")  # neither
        created = time.monotonic()
        x1 = await api.job("x")  # in_x only
        answered = time.monotonic()
        await api.pause(y1["id"])  # paused only
        await api.pause(x1["id"])  # both

        seen_x: list[dict[str, Any]] = []
        while not seen_x or seen_x[-1] != {"id": x1["id"], "status": "PAUSED", "queue": {"code": "x"}}:
            seen_x.append((await in_x.next())["jobUpdated"])
        assert {j["id"] for j in seen_x} == {x1["id"]}, seen_x
        assert seen_x[0]["status"] == "WAITING"
        print(
            f"\njobUpdated: createJob answered after {(answered - created) * 1000:.0f} ms; the message came "
            f"{(in_x.arrivals[-len(seen_x)] - answered) * 1000:+.0f} ms after the answer"
        )

        seen_paused = [(await paused.next())["jobUpdated"], (await paused.next())["jobUpdated"]]
        assert seen_paused == [
            {"id": y1["id"], "status": "PAUSED", "queue": {"code": "y"}},
            {"id": x1["id"], "status": "PAUSED", "queue": {"code": "x"}},
        ]
        await in_x.quiet(0.3)
        await paused.quiet(0.1)


JOB_UPDATED_NESTED = """
subscription { jobUpdated(queue: "default") {
  id status progress tasks { nodes { status progress } } queue { activeJobs }
} }
"""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the API layer, whatever the store
async def test_job_updated_nested_fields_are_current(server: Server, api: Api) -> None:
    async with GraphQLWS(server.ws) as ws:
        sub = await ws.subscribe(JOB_UPDATED_NESTED)
        await asyncio.sleep(0.3)
        job = await api.job(tasks=1)
        created = (await sub.next())["jobUpdated"]
        assert created["id"] == job["id"]
        assert created["tasks"]["nodes"] == [{"status": "QUEUED", "progress": 0}]
        (lease,) = (await api.data(CLAIM, {"w": "w1", "n": 1}))["claimTasks"]
        await api.data(COMPLETE, {"l": lease["id"]})
        update = (await sub.next())["jobUpdated"]
        while update["status"] != "DONE":
            update = (await sub.next())["jobUpdated"]
        assert update["progress"] == 100
        assert update["tasks"]["nodes"] == [{"status": "DONE", "progress": 100}], update
        assert update["queue"]["activeJobs"] == created["queue"]["activeJobs"] - 1, update


# -- events ------------------------------------------------------------------------------------


async def test_events_replay_everything_then_go_live_without_gaps(server: Server, api: Api) -> None:
    # A history longer than one replay batch (500): two jobs of 300 tasks each.
    await api.job(tasks=300, code="big-1")
    await api.job(tasks=300, code="big-2")
    history = await api.head()
    assert history > 600  # more than one replay batch

    # Writers while the replay runs: one through the API, and one writing straight into the store
    # from this process (as another instance would), which does not wait on the server at all.
    api_answers: list[float] = []
    direct_commits: list[float] = []

    async def write_through_the_api() -> None:
        for i in range(12):
            await api.job(tasks=2, code=f"api-{i}")
            api_answers.append(time.monotonic())

    def write_into_the_store() -> None:
        ledger = Ledger(server.store_url)
        try:
            for i in range(30):
                ledger.jobs.create(tasks=[f"/direct/{i}"], destination="/o", code=f"direct-{i}", actor="direct")
                direct_commits.append(time.monotonic())
                time.sleep(0.02)
        finally:
            ledger.close()

    async with GraphQLWS(server.ws) as ws:
        writers = asyncio.gather(write_through_the_api(), asyncio.to_thread(write_into_the_store))
        sub = await ws.subscribe(EVENTS, {"after": 0})
        seen = await take_events(sub, lambda e: e["position"] >= history)
        replayed_at = sub.arrivals[-1]
        await asyncio.wait_for(writers, 60)
        head = await api.head()
        assert head > history
        if seen[-1]["position"] < head:
            seen += await take_events(sub, lambda e: e["position"] >= head)

        queue = await api.queue("live")
        answered = time.monotonic()
        live = await take_events(sub, lambda e: e["type"] == "Queue.Created")
        latency = sub.arrivals[-1] - answered
    seen += live
    assert_gap_free(seen, 1)
    assert seen[0]["type"] == "QueueRegistry.Created"
    assert seen[-1]["aggregateId"] == queue["id"] and seen[-1]["data"]["code"] == "live"
    assert sum(e["type"] == "Job.Created" for e in seen) == 2 + 12 + 30
    during_replay = sum(1 for t in api_answers + direct_commits if t < replayed_at)
    print(
        f"\nevents: {len(seen)} events replayed and live; {during_replay} of 42 jobs were written during "
        f"the replay of the first {history}; Queue.Created came {latency * 1000:+.0f} ms after its answer"
    )


async def test_events_from_a_position_mid_stream(server: Server, api: Api) -> None:
    for i in range(4):
        await api.job(tasks=3, code=f"before-{i}")
    head = await api.head()
    middle = head // 2
    async with GraphQLWS(server.ws) as ws:
        sub = await ws.subscribe(EVENTS, {"after": middle})
        replayed = await take_events(sub, lambda e: e["position"] >= head)
        job = await api.job(tasks=2, code="after")
        live = await take_events(sub, lambda e: e["type"] == "Job.TasksAdded" and e["aggregateId"] == job["id"])
    assert replayed[0]["position"] == middle + 1
    assert_gap_free(replayed + live, middle + 1)
    assert live[0]["type"] == "Job.Created" and live[0]["aggregateId"] == job["id"]

    # Subscribing at the head replays nothing: the first event is the next one written.
    async with GraphQLWS(server.ws) as ws:
        now = await api.head()
        sub = await ws.subscribe(EVENTS, {"after": now})
        await sub.quiet(0.4)
        queue = await api.queue("next")
        event = (await sub.next())["events"]
        assert (event["position"], event["type"], event["aggregateId"]) == (now + 1, "Queue.Created", queue["id"])


async def test_events_of_one_aggregate_and_of_given_types(server: Server, api: Api) -> None:
    one = await api.job(tasks=2, code="one")
    other = await api.job(tasks=2, code="other")
    # The query with the same filter: the aggregate's own events (not its tasks', unlike Job.events).
    own = await api.data("query($id: ID) { events(aggregateId: $id) { nodes { position type } } }", {"id": one["id"]})
    own_history = own["events"]["nodes"]
    assert own_history[0]["type"] == "Job.Created"
    head = await api.head()
    async with GraphQLWS(server.ws) as ws:
        of_one = await ws.subscribe(EVENTS, {"after": 0, "aggregateId": one["id"]})
        changes = await ws.subscribe(EVENTS, {"after": head, "types": ["Job.StatusChanged"]})
        replayed = [(await of_one.next())["events"] for _ in own_history]
        assert [{"position": e["position"], "type": e["type"]} for e in replayed] == own_history
        await of_one.quiet(0.3)

        await api.pause(other["id"])
        await api.pause(one["id"])
        live = (await of_one.next())["events"]
        assert (live["aggregateId"], live["type"], live["data"]["status"]) == (one["id"], "Job.StatusChanged", "PAUSED")
        assert live["position"] > replayed[-1]["position"]

        got = [(await changes.next())["events"], (await changes.next())["events"]]
        assert [(e["aggregateId"], e["type"]) for e in got] == [
            (other["id"], "Job.StatusChanged"),
            (one["id"], "Job.StatusChanged"),
        ]
        assert got[1]["position"] == live["position"]
        await api.queue("unrelated")  # neither of its events matches either subscription
        await of_one.quiet(0.5)
        await changes.quiet(0.1)


# -- connections and protocols -----------------------------------------------------------------


async def test_connections_users_stopping_and_the_legacy_protocol(server: Server, api: Api) -> None:
    # Subscriptions write nothing, so the user named in connection_init only has to be accepted.
    for init in ({"X-Jobledger-User": "ws-user"}, {"x-jobledger-user": "lower-case"}, {}):
        async with GraphQLWS(server.ws, init=init) as ws:
            assert ws.ack is not None and ws.ack["type"] == "connection_ack"
            sub = await ws.subscribe(EVENTS, {"after": 1})
            assert (await sub.next())["events"]["position"] == 2

    # A client that stops a subscription hears nothing more of it.
    async with GraphQLWS(server.ws) as ws:
        sub = await ws.subscribe(EVENTS, {"after": 0})
        assert (await sub.next())["events"]["position"] == 1
        await sub.stop()
        await asyncio.sleep(0.3)
        while not sub.inbox.empty():  # what was already under way may still arrive
            sub.inbox.get_nowait()
        await api.queue("after-stop")
        await sub.quiet(0.6)

    # The legacy graphql-ws protocol: connection_init, start, data, stop, complete.
    head = await api.head()
    async with GraphQLWS(server.ws, protocol=LEGACY_WS) as ws:
        sub = await ws.subscribe(EVENTS, {"after": head - 2})
        replayed = [(await sub.next())["events"] for _ in range(2)]
        queue = await api.queue("legacy")
        live = (await sub.next())["events"]
        assert [e["position"] for e in [*replayed, live]] == [head - 1, head, head + 1]
        assert (live["type"], live["aggregateId"]) == ("Queue.Created", queue["id"])
        await sub.stop()
        msg = await sub.message()
        while msg["type"] == "data":  # the rest of createQueue's events may be under way
            msg = await sub.message()
        assert msg == {"id": sub.id, "type": "complete"}

        missing = await ws.subscribe(JOB_PROGRESS, {"id": "no-such-job"})
        errors = errors_of(await missing.message())
        assert errors and errors[0]["extensions"]["code"] == "NOT_FOUND", errors
        await missing.completed()


# -- two servers on one store ------------------------------------------------------------------


# An SQLite file is owned by one process (its read store "always leads"; nothing carries a batch
# to another process), so only PostgreSQL, whose NOTIFY reaches every instance, promises this.
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_subscriber_on_one_server_hears_writes_through_another(
    server: Server, api: Api, store_url: str, tmp_path
) -> None:
    # The second instance starts once the first has set the store up: two instances starting at
    # once on an empty PostgreSQL store can race on CREATE TABLE IF NOT EXISTS, and one then exits.
    other = await asyncio.to_thread(start_server, store_url, str(tmp_path / "server-b.log"))
    try:
        async with httpx.AsyncClient() as client, GraphQLWS(other.ws) as ws:
            api_b = Api(other, client)
            head = await api.head()
            updated = await ws.subscribe(JOB_UPDATED, {"queue": "default"})
            events = await ws.subscribe(EVENTS, {"after": head})
            await asyncio.sleep(0.3)

            job = await api.job(tasks=1)  # written through A
            answered = time.monotonic()
            seen = (await updated.next())["jobUpdated"]
            latency = updated.arrivals[-1] - answered
            assert seen == {"id": job["id"], "status": "WAITING", "queue": {"code": "default"}}
            live = await take_events(events, lambda e: e["type"] == "Job.StatusChanged")
            assert_gap_free(live, head + 1)
            assert live[0]["type"] == "Job.Created" and live[0]["aggregateId"] == job["id"]

            # Progress on B of a job worked through A, to the end.
            progress = await ws.subscribe(JOB_PROGRESS, {"id": job["id"]})
            assert (await progress.next())["jobProgress"]["status"] == "WAITING"
            (lease,) = (await api.data(CLAIM, {"w": "wa", "n": 1}))["claimTasks"]
            await api.data(COMPLETE, {"l": lease["id"]})
            value = (await progress.next())["jobProgress"]
            while value["status"] != "DONE":
                value = (await progress.next())["jobProgress"]
            assert value["progress"] == 100
            await progress.completed()

            # And the other way round: written through B, heard on A.
            async with GraphQLWS(server.ws) as ws_a:
                on_a = await ws_a.subscribe(EVENTS, {"after": await api_b.head()})
                await asyncio.sleep(0.2)
                queue = await api_b.queue("from-b")
                event = (await take_events(on_a, lambda e: e["type"] == "Queue.Created"))[-1]
                assert event["aggregateId"] == queue["id"]
        print(f"\ntwo servers: jobUpdated on B came {latency * 1000:+.0f} ms after createJob on A answered")
    finally:
        await asyncio.to_thread(stop_server, other)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_stores_in_two_schemas_of_one_database_do_not_hear_each_other(
    server: Server, api: Api, store_url: str, tmp_path
) -> None:
    database = store_url.split("?", 1)[0]
    neighbour_schema = f"neighbour_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{neighbour_schema}"')
    neighbour = await asyncio.to_thread(
        start_server, f"{database}?schema={neighbour_schema}", str(tmp_path / "neighbour.log")
    )
    try:
        async with httpx.AsyncClient() as client, GraphQLWS(server.ws) as ws:
            updated = await ws.subscribe(JOB_UPDATED, {"queue": "default"})
            await asyncio.sleep(0.3)
            # The neighbour's store runs far ahead of ours...
            await Api(neighbour, client).job(tasks=60, code="neighbour")
            await asyncio.sleep(0.3)  # its announcement reaches our server too
            # ...and then a job is created in ours: the mutation must answer with it (read-your-
            # writes) and its subscriber must hear of it.
            response = await client.post(
                server.graphql,
                json={"query": CREATE_JOB, "variables": {"input": {"code": "ours", "destination": "/out"}}},
                headers={"X-Jobledger-User": "tester"},
            )
            answer = response.json()
            errors = answer.get("errors")
            job_id = errors[0]["extensions"].get("key") if errors else answer["data"]["createJob"]["id"]
            try:
                heard = (await updated.next(timeout=2))["jobUpdated"]["id"]
            except AssertionError as exc:
                heard = f"nothing ({exc})"
            assert (errors, heard) == (None, job_id)
    finally:
        await asyncio.to_thread(stop_server, neighbour)
