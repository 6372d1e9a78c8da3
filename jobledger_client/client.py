"""`Client` (blocking) and `AsyncClient` (asyncio) for jobledger's GraphQL API.

Both speak HTTP through gql's HTTPX transports and subscriptions through gql's
WebsocketsTransport (graphql-transport-ws), and offer the same verbs in three
shapes side by side:

* the plain API: `queues()`, `create_job()`, `watch()`, `events()`, ...
* accsyn's session verbs: `find("Job where status=aborted")`, `find_one`,
  `create`, `update`, `update_many`, `delete_one`
* Anyscale's job queue verbs on `client.job_queue`, and Dioptra's
  `client.queues_collection`, `client.submit()`, `client.queue_jobs()`.

On `AsyncClient` every verb is awaited (`await client.job(id)`) and every
listing is an async iterator (`async for job in client.jobs(): ...`).

Both send each mutation with an Idempotency-Key (the caller's `idempotency_key=`, else a
fresh one; see `jobledger_client.idempotency`) and send a request again while it fails
for a passing reason, the same key each time (`retry=`, a `RetryPolicy`: for up to 30 s
unless told otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Generator, Mapping
from typing import Any

import httpx
from gql import Client as GqlClient
from gql.graphql_request import GraphQLRequest
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport, HTTPXTransport

from jobledger_client import documents as doc
from jobledger_client._anyscale import JobQueues
from jobledger_client._dioptra import QueuesCollection
from jobledger_client._plans import Answer, Call, Emit, Listing, Next, Open, Plan
from jobledger_client._results import AsyncResultIterator, ResultIterator
from jobledger_client._transport import DEFAULT_URL, LoopThread, Settings, Stream, transport_failure
from jobledger_client._verbs import Verbs
from jobledger_client.errors import JobledgerError, error_from
from jobledger_client.idempotency import HEADER, Keys
from jobledger_client.retry import RetryPolicy

# -- the blocking client ------------------------------------------------------------------


class Client(Verbs):
    """The blocking client.

        from jobledger_client import Client
        with Client("http://127.0.0.1:8000/graphql") as client:  # token: $JOBLEDGER_TOKEN or the file
            job = client.create_job(queue="default", tasks=["/media/a.mov"], destination="/out")
            for progress in client.watch(job.id):
                print(progress.progress, progress.etr)

    `url` defaults to $JOBLEDGER_URL or http://127.0.0.1:8000/graphql. `token` (default
    $JOBLEDGER_TOKEN, else the token file `jobledger serve` writes, see
    `jobledger_client.credentials`) is sent as `Authorization: Bearer <token>` (and in the
    websocket's connection_init); without a valid one the server raises `Unauthenticated`.
    `user` (default $JOBLEDGER_USER) is sent as the X-Jobledger-User header, which only a
    server run with JOBLEDGER_AUTH=off reads. `httpx_options` go to the httpx.Client (e.g. ``verify``,
    ``transport``, ``event_hooks``). `retry` says how long a request that failed for a passing
    reason (no service, HTTP 502/503/504, UNAVAILABLE, OUTCOME_UNKNOWN) is sent again: by
    default `RetryPolicy()`, up to 30 s; `RetryPolicy(give_up_after=0)` sends each request
    once. Safe to share between threads."""

    def __init__(
        self,
        url: str | None = None,
        user: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        httpx_options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = Settings(url, user, timeout, headers, token)
        self.retry = retry or RetryPolicy()
        transport = HTTPXTransport(
            url=self._settings.url, headers=self._settings.headers, timeout=timeout, **dict(httpx_options or {})
        )
        self._gql = GqlClient(transport=transport)
        self._session: Any = None
        self._lock = threading.Lock()
        self._loop: LoopThread | None = None
        self.job_queue = JobQueues(self)
        self.queues_collection = QueuesCollection(self)

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, user={self.user!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections and the subscriptions' event loop."""
        with self._lock:
            if self._session is not None:
                self._gql.close_sync()
                self._session = None
            if self._loop is not None:
                self._loop.stop()
                self._loop = None

    def execute(
        self, document: str, variables: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Send any GraphQL document; returns its data, raises the JobledgerError for its errors.
        A mutation goes with `idempotency_key`, else a fresh key, the same in every attempt."""
        return self._execute(document, variables, idempotency_key or Keys().for_document(document))

    def _execute(
        self, document: str, variables: Mapping[str, Any] | None, key: str | None, extensions: bool = False
    ) -> Any:
        """The answer's data (an `Answer` of its data and extensions when `extensions`)."""
        try:
            return self.retry.call(self._send, document, variables, key, extensions)
        except JobledgerError as exc:
            exc.idempotency_key = key
            raise

    def _send(self, document: str, variables: Mapping[str, Any] | None, key: str | None, extensions: bool) -> Any:
        with self._lock:
            if self._session is None:
                self._session = self._gql.connect_sync()
            session = self._session
        request = GraphQLRequest(doc.parsed(document), variable_values=dict(variables or {}))
        try:
            return answered(session.execute(request, get_execution_result=True, **keyed(key)), extensions)
        except TransportQueryError as exc:
            raise error_from(exc.errors or [{"message": str(exc)}]) from None
        except (TransportError, httpx.HTTPError, OSError) as exc:
            raise transport_failure(self.url, exc) from exc

    def _background(self) -> LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread()
            return self._loop

    def _step(self, step: Any, streams: list[Stream], keys: Keys) -> Any:
        if isinstance(step, Call):
            return self._execute(step.document, step.variables, keys.for_document(step.document), step.extensions)
        if isinstance(step, Open):
            stream = Stream(self._settings, step.document, step.variables)
            streams.append(stream)
            return self._background().run(stream.open())
        if isinstance(step, Next):
            return self._background().run(step.stream.next())
        raise TypeError(f"unexpected step {step!r}")

    def _run(self, plan: Plan[Any], idempotency_key: str | None = None) -> Any:
        streams: list[Stream] = []
        keys = Keys(idempotency_key)
        reply = None
        try:
            while True:
                try:
                    step = plan.send(reply)
                except StopIteration as stop:
                    return stop.value
                if isinstance(step, Emit):
                    raise TypeError("a listing plan cannot be run for one result")
                reply = self._step(step, streams, keys)
        finally:
            plan.close()
            self._close_streams(streams)

    def _results(self, plan: Plan[Any]) -> Generator[Any, None, None]:
        streams: list[Stream] = []
        keys = Keys()
        reply = None
        try:
            while True:
                try:
                    step = plan.send(reply)
                except StopIteration:
                    return
                reply = None
                if isinstance(step, Emit):
                    yield step.value
                else:
                    reply = self._step(step, streams, keys)
        finally:
            plan.close()
            self._close_streams(streams)

    def _close_streams(self, streams: list[Stream]) -> None:
        for stream in streams:
            with contextlib.suppress(Exception):
                self._background().run(stream.close())

    def _iter(self, plan: Plan[Any], listing: Listing) -> ResultIterator[Any]:
        return ResultIterator(self._results(plan), listing)


# -- the asyncio client -------------------------------------------------------------------


class AsyncClient(Verbs):
    """The asyncio client: the same verbs as Client, awaited; listings, `watch` and
    `events` are async iterators.

        async with AsyncClient(url, token=token) as client:
            job = await client.create_job(tasks=["/media/a.mov"], destination="/out")
            async for progress in client.watch(job.id):
                print(progress.progress)

    The options are Client's."""

    def __init__(
        self,
        url: str | None = None,
        user: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        httpx_options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = Settings(url, user, timeout, headers, token)
        self.retry = retry or RetryPolicy()
        transport = HTTPXAsyncTransport(
            url=self._settings.url, headers=self._settings.headers, timeout=timeout, **dict(httpx_options or {})
        )
        self._gql = GqlClient(transport=transport, execute_timeout=timeout)
        self._session: Any = None
        self._connecting: asyncio.Lock | None = None
        self.job_queue = JobQueues(self)
        self.queues_collection = QueuesCollection(self)

    def __repr__(self) -> str:
        return f"AsyncClient(url={self.url!r}, user={self.user!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._session is not None:
            self._session = None
            await self._gql.close_async()

    async def execute(
        self, document: str, variables: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Send any GraphQL document; returns its data, raises the JobledgerError for its errors.
        A mutation goes with `idempotency_key`, else a fresh key, the same in every attempt."""
        return await self._execute(document, variables, idempotency_key or Keys().for_document(document))

    async def _execute(
        self, document: str, variables: Mapping[str, Any] | None, key: str | None, extensions: bool = False
    ) -> Any:
        """The answer's data (an `Answer` of its data and extensions when `extensions`)."""
        try:
            return await self.retry.acall(self._send, document, variables, key, extensions)
        except JobledgerError as exc:
            exc.idempotency_key = key
            raise

    async def _send(self, document: str, variables: Mapping[str, Any] | None, key: str | None, extensions: bool) -> Any:
        if self._session is None:
            if self._connecting is None:
                self._connecting = asyncio.Lock()
            async with self._connecting:
                if self._session is None:
                    self._session = await self._gql.connect_async()
        request = GraphQLRequest(doc.parsed(document), variable_values=dict(variables or {}))
        try:
            return answered(await self._session.execute(request, get_execution_result=True, **keyed(key)), extensions)
        except TransportQueryError as exc:
            raise error_from(exc.errors or [{"message": str(exc)}]) from None
        except (TransportError, httpx.HTTPError, OSError, TimeoutError) as exc:
            raise transport_failure(self.url, exc) from exc

    async def _step(self, step: Any, streams: list[Stream], keys: Keys) -> Any:
        if isinstance(step, Call):
            return await self._execute(step.document, step.variables, keys.for_document(step.document), step.extensions)
        if isinstance(step, Open):
            stream = Stream(self._settings, step.document, step.variables)
            streams.append(stream)
            return await stream.open()
        if isinstance(step, Next):
            return await step.stream.next()
        raise TypeError(f"unexpected step {step!r}")

    async def _run(self, plan: Plan[Any], idempotency_key: str | None = None) -> Any:  # type: ignore[override]
        streams: list[Stream] = []
        keys = Keys(idempotency_key)
        reply = None
        try:
            while True:
                try:
                    step = plan.send(reply)
                except StopIteration as stop:
                    return stop.value
                if isinstance(step, Emit):
                    raise TypeError("a listing plan cannot be run for one result")
                reply = await self._step(step, streams, keys)
        finally:
            plan.close()
            for stream in streams:
                await stream.close()

    async def _results(self, plan: Plan[Any]) -> Any:
        streams: list[Stream] = []
        keys = Keys()
        reply = None
        try:
            while True:
                try:
                    step = plan.send(reply)
                except StopIteration:
                    return
                reply = None
                if isinstance(step, Emit):
                    yield step.value
                else:
                    reply = await self._step(step, streams, keys)
        finally:
            plan.close()
            for stream in streams:
                await stream.close()

    def _iter(self, plan: Plan[Any], listing: Listing) -> AsyncResultIterator[Any]:
        return AsyncResultIterator(self._results(plan), listing)


def answered(result: Any, extensions: bool) -> Any:
    """gql's ExecutionResult as a plan wants it: the data, or an `Answer` with the extensions."""
    data = result.data or {}
    return Answer(data, dict(result.extensions or {})) if extensions else data


def keyed(key: str | None) -> dict[str, Any]:
    """gql's execute arguments that send `key` as the Idempotency-Key header (none for None)."""
    return {"extra_args": {"headers": {HEADER: key}}} if key else {}


__all__ = ["DEFAULT_URL", "AsyncClient", "Client"]
