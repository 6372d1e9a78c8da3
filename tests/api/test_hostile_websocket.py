"""The websocket edge against hostile or careless clients, over real websockets, on SQLite and
PostgreSQL, in both protocols; and the replay machinery that keeps a flood of subscriptions from
holding memory or the event loop.

graphql-transport-ws closes the socket with its own codes (4400 for an invalid message, 4401,
4409, 4429) and 1009 for a message over the size limit. The legacy graphql-ws has no close codes:
the server says what was wrong in a `connection_error` (or an `error` for the operation's id)
carrying a coded error, then closes with 4400 (1009 for size). Operations over the limits are
refused with a coded `error` and the connection stays open. Nothing leaves a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
import websockets
from graphql.execution.collect_fields import CollectedFields
from starlette.applications import Starlette

from api.app import LedgerGraphQL
from api.settings import Settings
from api.subscriptions import PerEventExecution, Replays, Slots
from domain.errors import ValidationError
from domain.history import Record
from tests.api.conftest import stop_server
from tests.api.test_hostile_http import Edge, start_edge

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
WAIT = 8.0  # seconds any single expected frame may take
PER_CONNECTION = 5
MESSAGE_LIMIT = 4096  # uvicorn's own limit is twice that: between the two, the app answers
EVENTS = "subscription($after: Long) { events(after: $after) { position type } }"
QUIET = 'subscription { jobUpdated(queue: "nothing-happens-here") { id } }'


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def edge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    running = start_edge(
        request,
        tmp_path_factory.mktemp("ws-edge"),
        JOBLEDGER_MAX_SUBSCRIPTIONS_PER_CONNECTION=str(PER_CONNECTION),
        JOBLEDGER_MAX_WS_MESSAGE_BYTES=str(MESSAGE_LIMIT),
    )
    yield running
    stop_server(running.server)


class Socket:
    """A websocket speaking one protocol by hand: frames in, frames out, and how it closed."""

    def __init__(self, url: str, protocol: str) -> None:
        self.url, self.protocol = url, protocol
        self.ws: Any = None

    async def __aenter__(self) -> Socket:
        self.ws = await websockets.connect(self.url, subprotocols=[self.protocol], open_timeout=WAIT, max_size=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.wait_for(self.ws.close(), WAIT)

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    async def init(self) -> None:
        await self.send({"type": "connection_init", "payload": {"X-Jobledger-User": "tester"}})
        assert (await self.frame())["type"] == "connection_ack"

    async def frame(self) -> dict[str, Any]:
        """The next frame, keep-alives skipped."""
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
            if message.get("type") != "ka":
                return message  # type: ignore[no-any-return]

    async def frame_of(self, op_id: str) -> dict[str, Any]:
        """The next frame of one operation, those of others skipped."""
        while (frame := await self.frame()).get("id") != op_id:
            pass
        return frame

    async def closed(self) -> tuple[int, str, list[dict[str, Any]]]:
        """Reads until the server closes: (close code, reason, the frames before)."""
        frames = []
        try:
            while True:
                frames.append(await self.frame())
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None, "the connection ended without a close frame"
            return exc.rcvd.code, exc.rcvd.reason, frames

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send({"id": op_id, "type": kind, "payload": {"query": query, "variables": variables or {}}})

    async def stop(self, op_id: str) -> None:
        await self.send({"id": op_id, "type": "complete" if self.protocol == TRANSPORT_WS else "stop"})


def ws_url(edge: Edge) -> str:
    return edge.server.graphql.replace("http://", "ws://")


def codes_of(frame: dict[str, Any]) -> list[str]:
    payload = frame["payload"]
    errors = payload if isinstance(payload, list) else payload.get("errors") or [payload]
    return [e.get("extensions", {}).get("code") for e in errors]


# -- protocol errors -------------------------------------------------------------------------------

SUBSCRIBE = {"id": "1", "type": "subscribe", "payload": {"query": EVENTS}}
MALFORMED_TRANSPORT = {
    "subscribe payload is a list": {**SUBSCRIBE, "payload": [1, 2]},
    "not JSON": "{ this is not json",
    "a JSON list": [SUBSCRIBE],
    "no type": {"id": "1", "payload": {"query": EVENTS}},
    "no id": {"type": "subscribe", "payload": {"query": EVENTS}},
    "id not a string": {**SUBSCRIBE, "id": 7},
    "empty id": {**SUBSCRIBE, "id": ""},
    "query not a string": {**SUBSCRIBE, "payload": {"query": ["subscription"]}},
    "variables a list": {**SUBSCRIBE, "payload": {"query": EVENTS, "variables": [1]}},
    "operationName a number": {**SUBSCRIBE, "payload": {"query": EVENTS, "operationName": 3}},
    "complete without id": {"type": "complete"},
    "unknown type": {"type": "start", "id": "1", "payload": {"query": EVENTS}},
    "binary frame": b"\x00\x01binary",
    "JSON nested 1500 deep": "[" * 1500 + "]" * 1500,
}


@pytest.mark.parametrize("message", MALFORMED_TRANSPORT.values(), ids=MALFORMED_TRANSPORT.keys())
async def test_a_malformed_graphql_transport_ws_message_closes_with_4400(edge: Edge, message: Any) -> None:
    async with Socket(ws_url(edge), TRANSPORT_WS) as ws:
        await ws.init()
        await ws.send(message)
        code, reason, _ = await ws.closed()
    assert code == 4400, (code, reason)
    assert reason
    assert edge.tracebacks() == 0


async def test_graphql_transport_ws_state_errors_close_with_the_protocols_codes(edge: Edge) -> None:
    async with Socket(ws_url(edge), TRANSPORT_WS) as ws:  # subscribe before connection_ack
        await ws.send(SUBSCRIBE)
        assert (await ws.closed())[0] == 4401
    async with Socket(ws_url(edge), TRANSPORT_WS) as ws:  # a second connection_init
        await ws.init()
        await ws.send({"type": "connection_init"})
        assert (await ws.closed())[0] == 4429
    async with Socket(ws_url(edge), TRANSPORT_WS) as ws:  # an id already running
        await ws.init()
        await ws.subscribe("same", QUIET)
        await ws.subscribe("same", QUIET)
        assert (await ws.closed())[0] == 4409
    async with Socket(ws_url(edge), TRANSPORT_WS) as ws:  # connection_init with a null payload is allowed
        await ws.send({"type": "connection_init", "payload": None})
        assert (await ws.frame())["type"] == "connection_ack"
    assert edge.tracebacks() == 0


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_message_over_the_size_limit_closes_with_1009(edge: Edge, protocol: str) -> None:
    padding = "x" * (MESSAGE_LIMIT + 100)  # the app's limit, under uvicorn's
    async with Socket(ws_url(edge), protocol) as ws:
        await ws.init()
        await ws.subscribe("1", EVENTS + " " * len(padding))
        code, reason, frames = await ws.closed()
    assert code == 1009 and f"{MESSAGE_LIMIT:,}" in reason, (code, reason)
    if protocol == LEGACY_WS:
        assert frames[-1]["type"] == "connection_error" and codes_of(frames[-1]) == ["VALIDATION"], frames

    async with Socket(ws_url(edge), protocol) as ws:  # far over: uvicorn closes before the app reads it
        await ws.init()
        await ws.send("x" * (MESSAGE_LIMIT * 4))
        assert (await ws.closed())[0] == 1009
    assert edge.tracebacks() == 0


MALFORMED_LEGACY = {
    "start payload is a list": ({"id": "1", "type": "start", "payload": [1]}, "error"),
    "start without id": ({"type": "start", "payload": {"query": EVENTS}}, "connection_error"),
    "start without payload": ({"id": "1", "type": "start"}, "error"),
    "query not a string": ({"id": "1", "type": "start", "payload": {"query": 5}}, "error"),
    "variables a string": ({"id": "1", "type": "start", "payload": {"query": EVENTS, "variables": "{}"}}, "error"),
    "stop without id": ({"type": "stop"}, "connection_error"),
    "not JSON": ("{ this is not json", "connection_error"),
    "a JSON list": ([{"type": "start"}], "connection_error"),
    "binary frame": (b"\x00binary", "connection_error"),
    "JSON nested 1500 deep": ("[" * 1500 + "]" * 1500, "connection_error"),
}


@pytest.mark.parametrize(("message", "answer"), MALFORMED_LEGACY.values(), ids=MALFORMED_LEGACY.keys())
async def test_a_malformed_legacy_message_is_answered_with_a_coded_error_then_closed(
    edge: Edge, message: Any, answer: str
) -> None:
    async with Socket(ws_url(edge), LEGACY_WS) as ws:
        await ws.init()
        await ws.send(message)
        code, _, frames = await ws.closed()
    assert code == 4400
    assert frames[-1]["type"] == answer, frames
    assert codes_of(frames[-1]) == ["VALIDATION"]
    if answer == "error":
        assert frames[-1]["id"] == "1"
    assert edge.tracebacks() == 0


async def test_a_legacy_connection_init_that_is_not_an_object_is_a_connection_error(edge: Edge) -> None:
    async with Socket(ws_url(edge), LEGACY_WS) as ws:
        await ws.send({"type": "connection_init", "payload": ["user"]})
        code, _, frames = await ws.closed()
    assert code == 4400 and frames[-1]["type"] == "connection_error", frames
    assert edge.tracebacks() == 0


# -- documents the server cannot run: answered, the connection stays --------------------------------


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_bad_documents_and_variables_get_a_coded_error_and_the_connection_stays(
    edge: Edge, protocol: str
) -> None:
    async with Socket(ws_url(edge), protocol) as ws:
        await ws.init()
        for n, (query, variables) in enumerate(
            [
                ("subscription { events(after: 0) { position }", {}),  # does not parse
                ("subscription { " + "x" * 400, {}),  # does not parse, and says so at length
                (EVENTS, {"after": "soon"}),  # a variable of the wrong type
                ("subscription { events { noSuchField } }", {}),  # does not validate
            ]
        ):
            await ws.subscribe(str(n), query, variables)
            frame = await ws.frame()
            assert frame["type"] == "error" and frame["id"] == str(n), frame
            assert codes_of(frame) == ["VALIDATION"], frame
        await ws.subscribe("ok", EVENTS, {"after": 0})
        frame = await ws.frame()
        assert frame["id"] == "ok" and frame["payload"]["data"]["events"]["position"] == 1, frame
    assert edge.tracebacks() == 0


# -- limits on operations ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_the_subscription_over_the_per_connection_limit_is_refused_with_a_code(edge: Edge, protocol: str) -> None:
    async with Socket(ws_url(edge), protocol) as ws:
        await ws.init()
        for n in range(PER_CONNECTION):
            await ws.subscribe(str(n), QUIET)
        await ws.subscribe("one too many", QUIET)
        refusal = await ws.frame()
        assert refusal["type"] == "error" and refusal["id"] == "one too many", refusal
        error = refusal["payload"][0] if isinstance(refusal["payload"], list) else refusal["payload"]
        assert error["extensions"]["code"] == "VALIDATION", error
        assert error["extensions"]["field"] == "subscriptions"
        assert f"at most {PER_CONNECTION}" in error["message"], error

        # The connection stays usable: stopping one makes room for another.
        await ws.stop("0")
        if protocol == LEGACY_WS:
            assert (await ws.frame()) == {"type": "complete", "id": "0"}
        await ws.subscribe("room again", EVENTS, {"after": 0})
        frame = await ws.frame()
        assert frame["id"] == "room again" and "errors" not in frame["payload"], frame
    assert edge.tracebacks() == 0


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the API layer, whatever the store
async def test_the_server_wide_subscription_limit_is_refused_with_a_code(store_url: str, tmp_path: Path) -> None:
    from tests.api.conftest import start_server

    server = start_server(
        store_url,
        str(tmp_path / "server.log"),
        JOBLEDGER_MAX_SUBSCRIPTIONS_PER_CONNECTION="3",
        JOBLEDGER_MAX_SUBSCRIPTIONS="4",
    )
    url = server.graphql.replace("http://", "ws://")
    try:
        async with Socket(url, TRANSPORT_WS) as first, Socket(url, LEGACY_WS) as second:
            await first.init()
            await second.init()
            # Each takes its slot before the next is sent: the first event of each arrives.
            for n in range(3):
                await first.subscribe(str(n), EVENTS, {"after": 0})
                await first.frame_of(str(n))
            await second.subscribe("a", EVENTS, {"after": 0})
            await second.frame_of("a")
            await second.subscribe("b", QUIET)
            refusal = await second.frame_of("b")
            assert refusal["type"] == "error" and refusal["id"] == "b", refusal
            assert refusal["payload"]["extensions"]["code"] == "VALIDATION"
            assert "at most 4" in refusal["payload"]["message"]
    finally:
        stop_server(server)


def test_slots_count_per_connection_and_per_server() -> None:
    slots = Slots(per_connection=2, total=3)
    slots.take(0)
    slots.take(1)
    with pytest.raises(ValidationError, match="at most 2 operations"):
        slots.take(2)
    slots.take(0)  # another connection
    with pytest.raises(ValidationError, match="at most 3 operations"):
        slots.take(0)
    slots.give_back()
    slots.take(1)
    assert slots.used == 3


# -- replays: paged, with backpressure, fair, bounded ---------------------------------------------------


class Pool:
    """Services.call without threads: runs the read at once."""

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


def log_of(size: int) -> Any:
    """A read function over an in-memory log of `size` records; counts the reads."""
    reads: list[tuple[int, int]] = []

    def read(after: int, limit: int) -> list[Record]:
        reads.append((after, limit))
        return [
            Record(p, "id", "Job", 1, "Job.Created", None, None, {})  # type: ignore[arg-type]
            for p in range(after + 1, min(after + limit, size) + 1)
        ]

    read.reads = reads  # type: ignore[attr-defined]
    return read


async def test_a_replay_reads_the_next_page_only_when_the_consumer_has_taken_the_last() -> None:
    replays = Replays(Pool(), page=10, chunk=3)  # type: ignore[arg-type]
    read = log_of(10_000)
    records = replays.records(read, 0)
    taken = [await anext(records) for _ in range(10)]
    assert [r.position for r in taken] == list(range(1, 11))
    assert read.reads == [(0, 10)]  # one page, held; a consumer that stops here costs one page
    await anext(records)
    assert read.reads == [(0, 10), (10, 10)]
    await records.aclose()

    # To the end: every record once, in order, and no read past the end.
    read = log_of(25)
    positions = [r.position async for r in replays.records(read, 0)]
    assert positions == list(range(1, 26))
    assert read.reads == [(0, 10), (10, 10), (20, 10)]


async def test_replays_take_turns_a_chunk_at_a_time() -> None:
    replays = Replays(Pool(), page=100, chunk=4)  # type: ignore[arg-type]
    order: list[str] = []

    async def consume(name: str) -> None:
        async for _ in replays.records(log_of(12), 0):
            order.append(name)

    async def bystander() -> None:
        for _ in range(6):
            order.append("other")
            await asyncio.sleep(0)

    await asyncio.gather(consume("a"), consume("b"), consume("c"), bystander())
    replayed = [name for name in order if name != "other"]
    runs = [replayed[i : i + 4] for i in range(0, len(replayed), 4)]
    assert all(len(set(run)) == 1 for run in runs), runs  # whole chunks, one replay at a time
    assert [run[0] for run in runs[:3]] == ["a", "b", "c"]  # in turn
    first_other = order.index("other")
    assert first_other <= 4, order  # the bystander is not kept waiting behind whole replays
    assert order.count("other") == 6


# A small schema whose subscription sends many events, each with a nested object.


@strawberry.type
class Inner:
    value: int


@strawberry.type
class Outer:
    n: int

    @strawberry.field
    def inner(self) -> Inner:
        return Inner(value=self.n)


@strawberry.type
class TickQuery:
    ok: bool = True


@strawberry.type
class TickSubscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[Outer, None]:
        for n in range(10_000):
            yield Outer(n=n)


async def test_a_long_subscription_holds_no_memory_per_event_it_sent() -> None:
    """graphql-core memoises per event in a dict that lives as long as the subscription; the
    schema's PerEventExecution gives each event its own, so memory stays flat however long."""

    schema = strawberry.Schema(query=TickQuery, subscription=TickSubscription)
    schema.execution_context_class = PerEventExecution

    def memoised() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, CollectedFields))

    results = await schema.subscribe("subscription { ticks { n inner { value } } }")
    counts = []
    async for result in results:  # type: ignore[union-attr]
        n = result.data["ticks"]["n"]
        if n in (100, 9_999):
            counts.append(memoised())
    assert counts[1] <= counts[0] + 2, counts
    # ... and the service's schema runs that way.
    view = LedgerGraphQL(Starlette(), Settings())
    assert view.schema.execution_context_class is PerEventExecution  # type: ignore[attr-defined]


async def test_a_slow_reader_gets_the_whole_history_in_order(edge: Edge) -> None:
    """A consumer that reads slowly is served page by page: everything, in order, no gap."""
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(4):
            tasks = [{"source": f"/in/slow/{n}/{t}", "size": 1} for t in range(30)]
            answer = await http.post(
                edge.server.graphql,
                json={
                    "query": 'mutation($t: [TaskInput!]!) { createJob(input: {destination: "/o", tasks: $t}) { id } }',
                    "variables": {"t": tasks},
                },
                headers={"X-Jobledger-User": "tester"},
            )
            assert "errors" not in answer.json(), answer.text
        head = int((await http.get(f"{edge.server.url}/readyz")).json()["head"])
    assert head > 120
    async with Socket(ws_url(edge), TRANSPORT_WS) as ws:
        await ws.init()
        await ws.subscribe("slow", EVENTS, {"after": 0})
        positions = []
        while len(positions) < head:
            frame = await ws.frame()
            positions.append(frame["payload"]["data"]["events"]["position"])
            if len(positions) % 25 == 0:
                await asyncio.sleep(0.05)  # a reader that keeps the server waiting now and then
    assert positions == list(range(1, head + 1))
    assert edge.tracebacks() == 0
