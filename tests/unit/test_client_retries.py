"""The clients' one retry policy, against an httpx MockTransport: which failures are sent
again and which are raised at once, the same Idempotency-Key in every attempt of a
mutation (and a fresh one per call), a bounded total time, and a stop that cuts waits and
unanswered attempts short."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from jobledger_client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    Internal,
    JobledgerError,
    NotFound,
    OutcomeUnknown,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
    Validation,
)
from jobledger_client import documents as doc
from jobledger_client.idempotency import Keys
from jobledger_client.retry import DEFAULT_GIVE_UP_AFTER

URL = "http://jobledger.test/graphql"
QUICK = {"first_wait": 0.01, "max_wait": 0.05}
NO_JOB = {"data": {"job": None}}
JOB = {
    "id": "j-1",
    "code": "render",
    "queue": {"id": "q-1", "code": "default"},
    "status": "INIT",
    "priority": 500,
    "user": "u",
    "source": None,
    "destination": None,
    "metadata": {},
    "progress": 0,
    "size": 0,
    "etr": None,
    "speed": 0,
    "counts": None,
    "maxAttempts": None,
    "created": "2026-11-30T12:00:00Z",
    "modified": "2026-11-30T12:00:00Z",
    "finished": None,
}

Failure = Callable[[httpx.Request], httpx.Response]


def raising(error: type[httpx.TransportError]) -> Failure:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("failed", request=request)

    return fail


def status(code: int, text: str = "<html>busy</html>") -> Failure:
    return lambda request: httpx.Response(code, text=text)


def coded(code: str, **extensions: Any) -> Failure:
    errors = [{"message": f"said {code}", "extensions": {"code": code, **extensions}}]
    return lambda request: httpx.Response(200, json={"data": None, "errors": errors})


class Flaky:
    """Fails the first `times` requests with `failure`, then answers `answer`; keeps what was sent."""

    def __init__(self, failure: Failure, times: int = 1, answer: dict[str, Any] | None = None) -> None:
        self.failure = failure
        self.times = times
        self.answer = answer or NO_JOB
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) <= self.times:
            return self.failure(request)
        return httpx.Response(200, json=self.answer)

    @property
    def keys(self) -> list[str | None]:
        return [request.headers.get("Idempotency-Key") for request in self.requests]

    def client(self, cls: Any = Client, **policy: Any) -> Any:
        retry = RetryPolicy(**{**QUICK, **policy})
        return cls(URL, user="u", retry=retry, httpx_options={"transport": httpx.MockTransport(self)})


async def ask_job(service: Flaky, cls: Any, **policy: Any) -> Any:
    answer = service.client(cls, **policy).job("j-1")
    return await answer if cls is AsyncClient else answer


SENT_AGAIN = {
    "refused": raising(httpx.ConnectError),
    "connect timeout": raising(httpx.ConnectTimeout),
    "read timeout": raising(httpx.ReadTimeout),
    "dropped": raising(httpx.RemoteProtocolError),
    "reset while reading": raising(httpx.ReadError),
    "502": status(502),
    "503": status(503),
    "504": status(504),
    "UNAVAILABLE": coded("UNAVAILABLE", retry=True),
    "OUTCOME_UNKNOWN": coded("OUTCOME_UNKNOWN", retry=True),
}
RAISED_AT_ONCE = {
    "500": (status(500), Unavailable),
    "404": (status(404), Unavailable),
    "a web page": (status(200, "<html>hello</html>"), Unavailable),
    "another scheme": (raising(httpx.UnsupportedProtocol), Unavailable),
    "NOT_FOUND": (coded("NOT_FOUND"), NotFound),
    "CONFLICT": (coded("CONFLICT"), Conflict),
    "VALIDATION": (coded("VALIDATION"), Validation),
    "FORBIDDEN": (coded("FORBIDDEN"), Forbidden),
    "UNAUTHENTICATED": (coded("UNAUTHENTICATED"), Unauthenticated),
    "INTERNAL": (coded("INTERNAL"), Internal),
    "SOMETHING_NEW": (coded("SOMETHING_NEW"), JobledgerError),
}


@pytest.mark.parametrize("cls", [Client, AsyncClient])
@pytest.mark.parametrize("failure", SENT_AGAIN.values(), ids=SENT_AGAIN.keys())
async def test_a_passing_failure_is_sent_again(failure, cls):
    service = Flaky(failure, times=2)
    assert await ask_job(service, cls) is None
    assert len(service.requests) == 3


@pytest.mark.parametrize("cls", [Client, AsyncClient])
@pytest.mark.parametrize(("failure", "raised"), RAISED_AT_ONCE.values(), ids=RAISED_AT_ONCE.keys())
async def test_an_answer_that_will_not_change_is_raised_at_once(failure, raised, cls):
    service = Flaky(failure)
    with pytest.raises(JobledgerError) as error:
        await ask_job(service, cls)
    assert type(error.value) is raised
    assert len(service.requests) == 1


def test_what_is_raised_says_whether_it_was_carried_out():
    for failure, raised in [
        (raising(httpx.ConnectError), Unavailable),  # never left
        (raising(httpx.ReadTimeout), OutcomeUnknown),  # left; no answer
        (raising(httpx.RemoteProtocolError), OutcomeUnknown),
        (coded("UNAVAILABLE", retry=True), Unavailable),  # the service's own word: nothing written
        (coded("OUTCOME_UNKNOWN", retry=True), OutcomeUnknown),
    ]:
        service = Flaky(failure, times=100)
        with pytest.raises(Unavailable) as error:
            service.client(give_up_after=0).create_job(tasks=["/a"])
        assert type(error.value) is raised and error.value.retryable
        assert error.value.idempotency_key == service.keys[0]


# -- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Client, AsyncClient])
async def test_every_attempt_of_a_mutation_goes_with_the_same_key_and_each_call_with_its_own(cls):
    failures = iter([raising(httpx.ConnectError), coded("UNAVAILABLE", retry=True), raising(httpx.ReadTimeout)])
    service = Flaky(lambda request: next(failures)(request), times=3, answer={"data": {"createJob": JOB, "job": None}})
    client = service.client(cls)

    async def create(**key: Any) -> Any:
        made = client.create_job(tasks=["/a"], **key)
        return await made if cls is AsyncClient else made

    assert (await create()).id == "j-1"
    first = service.keys
    assert len(first) == 4 and len(set(first)) == 1
    assert uuid.UUID(str(first[0])).version == 4

    await create()
    assert service.keys[4] not in (None, first[0])  # another call, another key
    await create(idempotency_key="order-1234")
    assert service.keys[5] == "order-1234"  # the caller's, as it is

    job = client.job("j-1")
    await job if cls is AsyncClient else job
    with pytest.raises(KeyError):  # the canned answer is not a lease: only what was sent matters here
        heartbeat = client.heartbeat("lease-1", progress=5)
        await heartbeat if cls is AsyncClient else heartbeat
    assert service.keys[6:] == [None, None]  # a query, and a heartbeat: no key


def test_execute_keys_mutations_given_or_fresh_and_not_queries():
    service = Flaky(raising(httpx.ConnectError), times=0, answer={"data": {}})
    client = service.client()
    client.execute("mutation { releaseTask(leaseId: 1) { id } }")
    client.execute("mutation { releaseTask(leaseId: 1) { id } }", idempotency_key="mine")
    client.execute("query { queues { totalCount } }")
    fresh, mine, query = service.keys
    assert fresh and fresh != "mine" and mine == "mine" and query is None


def test_a_call_that_sends_several_mutations_gives_each_a_key_derived_from_the_callers():
    keys = Keys("order-1234")
    sent = [keys.for_document(d) for d in (doc.JOB_BY, doc.CREATE_JOB, doc.HEARTBEAT, doc.ADD_TASKS, doc.RELEASE)]
    assert sent == [None, "order-1234", None, "order-1234.2", "order-1234.3"]
    fresh = Keys()
    assert fresh.for_document(doc.CREATE_JOB) != fresh.for_document(doc.CREATE_JOB)


# -- time -------------------------------------------------------------------------------


def test_retries_end_after_give_up_after_seconds_with_the_last_failure():
    assert RetryPolicy().give_up_after == DEFAULT_GIVE_UP_AFTER == 30
    assert Client(URL).retry.give_up_after == 30  # retries are on by default, and bounded

    service = Flaky(raising(httpx.ConnectError), times=10_000)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        service.client(first_wait=0.2, max_wait=10, give_up_after=1.0).job("j-1")
    took = time.monotonic() - started
    assert 0.9 < took < 1.4, took  # the last wait ends on the deadline, not past it
    assert 3 <= len(service.requests) <= 6

    once = Flaky(raising(httpx.ConnectError), times=10_000)
    with pytest.raises(Unavailable):
        once.client(give_up_after=0).job("j-1")
    assert len(once.requests) == 1


async def test_a_stop_cuts_a_wait_short_and_abandons_an_unanswered_attempt():
    # Waiting 5 s before the next attempt: stop() ends it at once, with the failure last met.
    service = Flaky(raising(httpx.ConnectError), times=10_000)
    client = service.client(AsyncClient, first_wait=5, max_wait=10, give_up_after=None)
    asking = asyncio.ensure_future(client.job("j-1"))
    await asyncio.sleep(0.3)
    stopped = time.monotonic()
    client.retry.stop()
    with pytest.raises(Unavailable):
        await asking
    assert time.monotonic() - stopped < 0.5 and len(service.requests) == 1

    # An attempt without an answer: abandoned when the cutoff passes; its outcome is unknown.
    async def silent(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("never answered")

    client = AsyncClient(
        URL, retry=RetryPolicy(give_up_after=None), httpx_options={"transport": httpx.MockTransport(silent)}
    )
    asking = asyncio.ensure_future(client.create_job(tasks=["/a"]))
    await asyncio.sleep(0.2)
    stopped = time.monotonic()
    client.retry.stop(within=0.3)
    with pytest.raises(OutcomeUnknown) as error:
        await asking
    assert 0.25 < time.monotonic() - stopped < 0.8
    assert error.value.idempotency_key

    # Within the grace it goes on trying, and a service back in time is heard.
    back = Flaky(raising(httpx.ConnectError), times=5)
    client = back.client(AsyncClient, first_wait=0.05, max_wait=0.05, give_up_after=None)
    client.retry.stop(within=2)
    assert await client.job("j-1") is None and len(back.requests) == 6


def test_a_stop_from_another_thread_ends_a_blocking_clients_wait():
    service = Flaky(raising(httpx.ConnectError), times=10_000)
    client = service.client(first_wait=5, max_wait=10, give_up_after=None)
    threading.Timer(0.3, client.retry.stop).start()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        client.job("j-1")
    assert time.monotonic() - started < 0.8
