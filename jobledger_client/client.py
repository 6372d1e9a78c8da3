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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from gql import Client as GqlClient
from gql.graphql_request import GraphQLRequest
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport, HTTPXTransport
from gql.transport.websockets import WebsocketsTransport

from jobledger_client import _plans as plans
from jobledger_client import documents as doc
from jobledger_client._plans import UNSET, Call, Emit, Listing, Next, Open, Plan
from jobledger_client.errors import JobledgerError, Unavailable, Validation, error_from
from jobledger_client.models import Event, Job, JobProgress, Queue, Task, TaskLease

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000/graphql"
USER_HEADER = "X-Jobledger-User"


def _graphql_url(url: str | None) -> str:
    """The /graphql URL: given, or $JOBLEDGER_URL, or the local default; a bare host gets /graphql."""
    url = url or os.environ.get("JOBLEDGER_URL") or DEFAULT_URL
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/graphql")
    return urlunsplit(parts)


def _ws_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme))


def _transport_failure(url: str, exc: BaseException) -> Unavailable:
    status = getattr(exc, "code", None)
    details = {"url": url, **({"status": status} if isinstance(status, int) else {})}
    return Unavailable(f"no GraphQL answer from {url}: {exc}", details=details)


# -- results that arrive lazily -----------------------------------------------------------


class ResultIterator(Iterator[T]):
    """The results of a listing, fetched a page at a time as you iterate (and, for
    `watch` and `events(follow=True)`, as they happen).

    `total_count` is the size of the whole list once the first page has arrived
    (None for lists that do not count); `pages` is how many requests were made.
    Use `close()` (or a `with` block) to stop early and free a subscription."""

    def __init__(self, results: Generator[T, None, None], listing: Listing) -> None:
        self._results = results
        self._listing = listing

    @property
    def total_count(self) -> int | None:
        """How many items the whole list holds (known once the first page has arrived)."""
        return self._listing.total_count

    @property
    def pages(self) -> int:
        """How many requests (pages) have been made so far."""
        return self._listing.pages

    def __iter__(self) -> ResultIterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._results)

    def close(self) -> None:
        """Stop: no more requests; an open subscription is closed."""
        self._results.close()

    def __enter__(self) -> ResultIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncResultIterator(AsyncIterator[T]):
    """`ResultIterator` for `AsyncClient`: `async for item in ...`; `await it.aclose()` to stop."""

    def __init__(self, results: Any, listing: Listing) -> None:
        self._results = results
        self._listing = listing

    @property
    def total_count(self) -> int | None:
        """How many items the whole list holds (known once the first page has arrived)."""
        return self._listing.total_count

    @property
    def pages(self) -> int:
        """How many requests (pages) have been made so far."""
        return self._listing.pages

    def __aiter__(self) -> AsyncResultIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._results.__anext__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Stop: no more requests; an open subscription is closed."""
        await self._results.aclose()

    async def __aenter__(self) -> AsyncResultIterator[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# -- one subscription over graphql-transport-ws ------------------------------------------


class _Stream:
    """A subscription on its own websocket connection (gql's WebsocketsTransport)."""

    def __init__(self, settings: _Settings, document: str, variables: dict[str, Any]) -> None:
        self.settings = settings
        self.request = GraphQLRequest(doc.parsed(document), variable_values=variables)
        self.client: GqlClient | None = None
        self.results: Any = None

    async def open(self) -> _Stream:
        s = self.settings
        transport = WebsocketsTransport(
            url=s.ws_url,
            headers=s.headers,
            init_payload=s.init_payload,
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
            connect_timeout=s.timeout,
            ack_timeout=s.timeout,
            close_timeout=5,
        )
        self.client = GqlClient(transport=transport, execute_timeout=None)
        try:
            session = await self.client.connect_async()
        except TransportQueryError as exc:
            raise error_from(exc.errors or [{"message": str(exc)}]) from None
        except (TransportError, OSError, TimeoutError) as exc:
            raise _transport_failure(s.ws_url, exc) from exc
        self.results = session.subscribe(self.request)
        return self

    async def next(self) -> dict[str, Any] | None:
        """The next result's data; None when the server ended the subscription."""
        try:
            return await self.results.__anext__()  # type: ignore[no-any-return]
        except StopAsyncIteration:
            return None
        except TransportQueryError as exc:
            raise error_from(exc.errors or [{"message": str(exc)}]) from None
        except (TransportError, OSError) as exc:
            raise _transport_failure(self.settings.ws_url, exc) from exc

    async def close(self) -> None:
        if self.results is not None:
            with contextlib.suppress(Exception):
                await self.results.aclose()
        if self.client is not None and getattr(self.client, "session", None) is not None:
            with contextlib.suppress(Exception):
                await self.client.close_async()


class _LoopThread:
    """An event loop in a daemon thread, for the blocking client's subscriptions."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="jobledger-client-ws", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class _Settings:
    def __init__(self, url: str | None, user: str | None, timeout: float, headers: Mapping[str, str] | None) -> None:
        self.url = _graphql_url(url)
        self.ws_url = _ws_url(self.url)
        self.user = user if user is not None else os.environ.get("JOBLEDGER_USER") or None
        self.timeout = timeout
        self.headers: dict[str, str] = dict(headers or {})
        if self.user:
            self.headers[USER_HEADER] = self.user
        self.init_payload: dict[str, Any] = {USER_HEADER: self.user} if self.user else {}


# -- the verbs, shared by both clients -----------------------------------------------------


class _Verbs:
    """Every verb, once. `_run` drives a plan to its result and `_iter` to its results;
    the blocking and the asyncio client implement them."""

    _settings: _Settings

    def _run(self, plan: Plan[Any]) -> Any:  # pragma: no cover - implemented by the clients
        raise NotImplementedError

    def _iter(self, plan: Plan[Any], listing: Listing) -> Any:  # pragma: no cover
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The /graphql URL this client talks to."""
        return self._settings.url

    @property
    def user(self) -> str | None:
        """Who the client acts as (sent as X-Jobledger-User; recorded as the events' actor)."""
        return self._settings.user

    # -- queues ---------------------------------------------------------------------

    def queues(
        self,
        where: str | None = None,
        include_archived: bool = False,
        order_by: Any = None,
        first: int = 50,
        max_items: int | None = None,
    ) -> ResultIterator[Queue]:
        """Queues matching `where` (e.g. ``"priority>=500 AND status=waiting"``), sorted by
        `order_by` (``"-created"``, ``["priority", "-code"]``, ``{"field": "code", "order":
        "DESC"}``...), `first` per page, pages fetched as you iterate. Archived (sealed) queues
        only with include_archived=True."""
        listing = Listing()
        return self._iter(plans.queues(listing, where, include_archived, order_by, first, max_items), listing)

    def queue(self, id: str | None = None, *, code: str | None = None) -> Queue | None:
        """A queue by id or by code (``client.queue(code="ingest")``; a code given as `id` works
        too); None when there is none."""
        return self._run(plans.queue(id, code))  # type: ignore[no-any-return]

    def create_queue(
        self,
        code: str,
        *,
        priority: int | None = None,
        status: str | None = None,
        default: bool | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        max_concurrency: int | None = None,
        idle_timeout_s: int | None = None,
        execution_mode: str | None = None,
        parent: str | None = None,
        max_attempts: int | None = None,
    ) -> Queue:
        """Create a queue. `status` is "waiting" or "disabled", `execution_mode` "fifo", "lifo"
        or "priority" (any case); `parent` is the code of a parent queue. Raises Conflict when
        the code is taken, Validation for bad values."""
        fields = plans.given(
            code=code,
            priority=priority,
            status=status,
            default=default,
            description=description,
            metadata=metadata,
            tags=tags,
            max_concurrency=max_concurrency,
            idle_timeout_s=idle_timeout_s,
            execution_mode=execution_mode,
            parent=parent,
            max_attempts=max_attempts,
        )
        return self._run(plans.create_queue(fields))  # type: ignore[no-any-return]

    def update_queue(
        self,
        queue: str,
        *,
        priority: int = UNSET,
        status: str = UNSET,
        default: bool = UNSET,
        description: str = UNSET,
        metadata: dict[str, Any] = UNSET,
        max_concurrency: int | None = UNSET,
        idle_timeout_s: int | None = UNSET,
        execution_mode: str = UNSET,
        max_attempts: int | None = UNSET,
    ) -> Queue:
        """Change a queue (by id or code). Only the arguments given change; None clears
        max_concurrency (unlimited), idle_timeout_s and max_attempts."""
        changes = {
            "priority": priority,
            "status": status,
            "default": default,
            "description": description,
            "metadata": metadata,
            "max_concurrency": max_concurrency,
            "idle_timeout_s": idle_timeout_s,
            "execution_mode": execution_mode,
            "max_attempts": max_attempts,
        }
        return self._run(plans.update_queue(queue, changes))  # type: ignore[no-any-return]

    def archive_queue(self, queue: str) -> Queue:
        """Seal a queue (by id or code): it accepts no new jobs; those it has run on."""
        return self._run(plans.queue_mutation(doc.ARCHIVE_QUEUE, "archiveQueue", queue))  # type: ignore[no-any-return]

    def terminate_queue(self, queue: str) -> Queue:
        """Abort every unfinished job of a queue (by id or code)."""
        return self._run(plans.queue_mutation(doc.TERMINATE_QUEUE, "terminateQueue", queue))  # type: ignore[no-any-return]

    def delete_queue(self, queue: str) -> str:
        """Delete a queue (by id or code); its unfinished jobs move to the default queue.
        Returns its id. The default queue cannot be deleted."""
        return self._run(plans.delete_queue(queue))  # type: ignore[no-any-return]

    def add_queue_tags(self, queue: str, tags: Mapping[str, Any]) -> Queue:
        """Add or replace tags ``{key: value}`` of a queue (by id or code)."""
        return self._run(  # type: ignore[no-any-return]
            plans.queue_mutation(doc.ADD_QUEUE_TAGS, "addQueueTags", queue, tags=dict(tags))
        )

    def remove_queue_tags(self, queue: str, keys: Iterable[str]) -> Queue:
        """Remove tags of a queue (by id or code) by key."""
        return self._run(  # type: ignore[no-any-return]
            plans.queue_mutation(doc.REMOVE_QUEUE_TAGS, "removeQueueTags", queue, keys=list(keys))
        )

    # -- jobs -----------------------------------------------------------------------

    def jobs(
        self,
        where: str | None = None,
        phase: str | None = "ACTIVE",
        queue: str | None = None,
        order_by: Any = None,
        first: int = 50,
        max_items: int | None = None,
    ) -> ResultIterator[Job]:
        """Jobs matching `where` (e.g. ``'status=paused AND user="lars@edit.com"'``) in `phase`
        ("ACTIVE", "FINISHED", "ARCHIVED"; None: every phase), in `queue` (id or code), sorted by
        `order_by`, `first` per page, pages fetched as you iterate."""
        listing = Listing()
        return self._iter(plans.jobs(listing, where, phase, queue, order_by, first, max_items), listing)

    def job(self, id: str) -> Job | None:
        """A job by id; None when there is none."""
        return self._run(plans.job(id))  # type: ignore[no-any-return]

    def create_job(
        self,
        *,
        queue: str | None = None,
        tasks: Iterable[Any] | None = None,
        code: str | None = None,
        source: str | None = None,
        destination: str | None = None,
        status: str | None = None,
        priority: int | None = None,
        metadata: dict[str, Any] | None = None,
        max_attempts: int | None = None,
    ) -> Job:
        """Submit a job to `queue` (id or code; the default queue when None). `tasks` are paths
        or dicts with source (and destination, size, priority, metadata). `status` may be
        "init" (the default), "pending", "waiting" or "paused"."""
        fields = plans.given(
            queue=queue,
            tasks=list(tasks) if tasks is not None else None,
            code=code,
            source=source,
            destination=destination,
            status=status,
            priority=priority,
            metadata=metadata,
            max_attempts=max_attempts,
        )
        return self._run(plans.create_job(fields))  # type: ignore[no-any-return]

    def update_job(
        self,
        id: str,
        *,
        status: str = UNSET,
        priority: int = UNSET,
        metadata: dict[str, Any] = UNSET,
        queue: str = UNSET,
        destination: str = UNSET,
        max_attempts: int | None = UNSET,
    ) -> Job:
        """Change a job: status ("pending", "waiting", "paused", "aborted", "done"), priority,
        metadata, queue (move it), destination. Raises InvalidTransition for a status it may
        not take from its current one."""
        changes = {
            "status": status,
            "priority": priority,
            "metadata": metadata,
            "queue": queue,
            "destination": destination,
            "max_attempts": max_attempts,
        }
        return self._run(plans.update_job(id, changes))  # type: ignore[no-any-return]

    def pause_job(self, id: str) -> Job:
        """Put a job on hold (PAUSED)."""
        return self.update_job(id, status="PAUSED")

    def resume_job(self, id: str) -> Job:
        """Let a paused (or aborted, failed, done) job run again (WAITING)."""
        return self.update_job(id, status="WAITING")

    def abort_job(self, id: str) -> Job:
        """Abort a job (ABORTED)."""
        return self.update_job(id, status="ABORTED")

    def delete_job(self, id: str) -> str:
        """Delete a job; returns its id."""
        return self._run(plans.delete_job(id))  # type: ignore[no-any-return]

    # -- tasks ----------------------------------------------------------------------

    def tasks(
        self, job_id: str, where: str | None = None, first: int = 100, max_items: int | None = None
    ) -> ResultIterator[Task]:
        """A job's tasks in order, matching `where` (e.g. ``"status<>executing"``), `first` per
        page, pages fetched as you iterate."""
        listing = Listing()
        return self._iter(plans.tasks(listing, job_id, where, first, max_items), listing)

    def task(self, id: str) -> Task | None:
        """A task by id; None when there is none."""
        return self._run(plans.task(id))  # type: ignore[no-any-return]

    def add_tasks(self, job_id: str, tasks: Iterable[Any], allow_duplicates: bool = True) -> list[Task]:
        """Add tasks (paths, or dicts with source, destination, size, priority, metadata) to a job.
        A task equal to an existing one (same source and destination) retries that one, or is
        refused with Conflict when allow_duplicates is False."""
        return self._run(plans.add_tasks(job_id, tasks, allow_duplicates))  # type: ignore[no-any-return]

    def update_tasks(self, job_id: str, updates: Iterable[Mapping[str, Any]]) -> list[Task]:
        """Change tasks of a job: ``[{"id": ..., "status": "excluded"}, {"id": ..., "priority": 5}]``.
        Writeable statuses: queued, failed, onhold, excluded, done."""
        return self._run(plans.update_tasks(job_id, updates))  # type: ignore[no-any-return]

    def exclude_tasks(self, job_id: str, task_ids: Iterable[str]) -> list[Task]:
        """Exclude tasks of a job from execution (tasks are never deleted)."""
        return self.update_tasks(job_id, [{"id": t, "status": "EXCLUDED"} for t in task_ids])

    # -- history and progress -------------------------------------------------------

    def events(
        self,
        after: int = 0,
        aggregate_id: str | None = None,
        types: Sequence[str] | None = None,
        follow: bool = False,
        first: int = 100,
    ) -> ResultIterator[Event]:
        """The event history after position `after`, oldest first, optionally of one aggregate
        and of some types ("Job.StatusChanged", ...). With follow=True it goes on with live
        events from the events subscription, without gap or repeat, until you stop."""
        listing = Listing()
        return self._iter(plans.events(listing, after, aggregate_id, types, follow, first), listing)

    def job_events(self, job_id: str, after: int = 0, first: int = 100) -> ResultIterator[Event]:
        """A job's history and its tasks', oldest first: who did what, when."""
        listing = Listing()
        return self._iter(plans.job_events(listing, job_id, after, first), listing)

    def watch(self, job_id: str) -> ResultIterator[JobProgress]:
        """A job's progress, live: its current value at once, then each change; the iteration
        ends when the job is finished (DONE, FAILED or ABORTED) or deleted. Raises NotFound for
        a job that does not exist."""
        listing = Listing()
        return self._iter(plans.watch(job_id), listing)

    # -- workers --------------------------------------------------------------------

    def claim(
        self, worker: str, queues: Sequence[str] | None = None, limit: int = 1, lease_seconds: int = 60
    ) -> list[TaskLease]:
        """Lease up to `limit` queued tasks for `worker` (from `queues`, ids or codes, or all)."""
        return self._run(plans.claim(worker, queues, limit, lease_seconds))  # type: ignore[no-any-return]

    def heartbeat(
        self, lease_id: str, progress: int | None = None, bytes_done: int | None = None, speed: float | None = None
    ) -> TaskLease:
        """Renew a lease and report progress (0..100), bytes done and speed (MB/s). Raises
        Conflict when the lease is over."""
        return self._run(plans.heartbeat(lease_id, progress, bytes_done, speed))  # type: ignore[no-any-return]

    def complete(self, lease_id: str, result: Any = None) -> Task:
        """Finish a leased task successfully, with an optional JSON result."""
        variables = plans.given(leaseId=str(lease_id), result=result)
        return self._run(plans.call(doc.COMPLETE, variables, "completeTask", Task.parse))  # type: ignore[no-any-return]

    def fail(self, lease_id: str, error: str, retry: bool = True) -> Task:
        """Report a leased task failed; it is queued again while attempts remain and retry is True."""
        variables = {"leaseId": str(lease_id), "error": error, "retry": retry}
        return self._run(plans.call(doc.FAIL, variables, "failTask", Task.parse))  # type: ignore[no-any-return]

    def release(self, lease_id: str) -> Task:
        """Give a leased task back unworked (not counted as an attempt)."""
        return self._run(plans.call(doc.RELEASE, {"leaseId": str(lease_id)}, "releaseTask", Task.parse))  # type: ignore[no-any-return]

    # -- accsyn's session verbs ---------------------------------------------------------

    def find(self, query: str, finished: bool = False, archived: bool = False) -> list[Any]:
        """accsyn's find: every match of ``"<entity> [where <expression>]"`` as a list, e.g.
        ``find("Job where status=aborted")``, ``find("Queue")``,
        ``find("task WHERE job.id=<id> AND status<>executing")``. finished=True looks among
        finished jobs, archived=True among archived jobs (or includes archived queues)."""
        listing = Listing()
        return self._run(plans.collect(plans.find(listing, query, finished, archived)))  # type: ignore[no-any-return]

    def find_one(self, query: str, finished: bool = False, archived: bool = False) -> Any:
        """accsyn's find_one: the first match of `query` (see find), or None."""
        listing = Listing()
        return self._run(plans.first_of(plans.find(listing, query, finished, archived, max_items=1)))

    def create(self, entity: str, data: Any, entity_id: str | None = None, allow_duplicates: bool = True) -> Any:
        """accsyn's create: ``create("queue", {"code": "high_prio", "priority": 999})``,
        ``create("job", {"source": ..., "destination": ..., "status": "paused", "tasks": [...]})``
        or ``create("task", {"tasks": [path or {...}, ...]}, job_id)``. Keys in snake_case,
        statuses in lower case. Returns the Queue, the Job, or the list of Tasks."""
        return self._run(plans.create_entity(entity, data, entity_id, allow_duplicates))

    def update(self, entity: str, entity_id: str, data: Mapping[str, Any]) -> Any:
        """accsyn's update: ``update("job", id, {"status": "paused"})``,
        ``update("queue", id, {"status": "disabled"})``, ``update("task", id, {"status": "onhold"})``.
        Returns the changed Queue, Job or Task."""
        return self._run(plans.update_entity(entity, entity_id, data))

    def update_many(
        self,
        entity: str,
        entity_id: str | Sequence[Mapping[str, Any]] | None,
        data: Sequence[Mapping[str, Any]] | None = None,
        entityid: str | None = None,
    ) -> list[Task]:
        """accsyn's update_many for tasks of a job:
        ``update_many("task", job_id, [{"id": ..., "status": "excluded"}])`` or
        ``update_many("task", [{...}], entityid=job_id)``. Returns the changed tasks."""
        if plans.entity_of(entity) != "Task":
            raise Validation.of("entity", "update_many changes the tasks of a job: update_many('task', ...)")
        job_id: str | None
        if isinstance(entity_id, str) or entity_id is None:
            job_id = entity_id or entityid
        else:  # the seeds' other form: update_many("task", [...], entityid=job_id)
            job_id, data = entityid, entity_id
        if not job_id or data is None:
            raise Validation.of("entityid", "name the job: update_many('task', job_id, [...])")
        return self.update_tasks(job_id, data)

    def delete_one(self, entity: str, entity_id: str) -> str:
        """accsyn's delete_one: ``delete_one("job", id)`` or ``delete_one("queue", id)``. Returns the id."""
        return self._run(plans.delete_entity(entity, entity_id))  # type: ignore[no-any-return]

    # -- Dioptra ----------------------------------------------------------------------

    def submit(self, queue: str, tasks: Iterable[Any] | None = None, **fields: Any) -> Job:
        """Dioptra's job submission: a new job in `queue` (id or code), with `tasks` and any
        other field of create_job (code, destination, status, priority, metadata...)."""
        return self.create_job(queue=queue, tasks=tasks, **fields)

    def queue_jobs(
        self, queue: str, status: Any = None, first: int = 50, max_items: int | None = None
    ) -> ResultIterator[Job]:
        """The jobs of a queue (id or code) in every phase, optionally only those in `status`
        (one or a list), pages fetched as you iterate. Raises NotFound for no such queue."""
        listing = Listing()
        return self._iter(plans.queue_jobs(listing, queue, status, first, max_items), listing)


class JobQueues:
    """Anyscale's job queue verbs: ``client.job_queue.list(...)``, ``status``, ``update``,
    ``archive``, ``terminate``, ``delete``, ``add_tags``, ``remove_tags``, ``list_tags``.
    A queue is named by ``job_queue_id`` or by ``name`` (its code)."""

    def __init__(self, client: _Verbs) -> None:
        self._client = client

    def list(
        self,
        job_queue_id: str | None = None,
        name: str | None = None,
        creator_id: str | None = None,
        tags_filter: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
        page_size: int | None = None,
        max_items: int | None = None,
        sorting_directives: Any = None,
        include_archived: bool = False,
    ) -> ResultIterator[Queue]:
        """Job queues, fetched lazily `page_size` at a time, at most `max_items`: one by id, or
        filtered by name, creator and tags ({key: [values]} or ["key:value"]), sorted by
        sorting_directives (["-created", "name"] or [{"sort_field": "CREATED_AT",
        "sort_order": "DESC"}]). Archived queues only with include_archived=True."""
        listing = Listing()
        plan = plans.job_queue_list(
            listing,
            job_queue_id,
            name,
            creator_id,
            tags_filter,
            page_size,
            max_items,
            sorting_directives,
            include_archived,
        )
        return self._client._iter(plan, listing)  # type: ignore[no-any-return]

    def status(self, job_queue_id: str | None = None, name: str | None = None, include_archived: bool = False) -> Queue:
        """A job queue's state and counts (total, successful, failed, active jobs). Raises NotFound."""
        return self._client._run(plans.resolve_queue(job_queue_id, name, include_archived))  # type: ignore[no-any-return]

    def update(
        self,
        job_queue_id: str | None = None,
        job_queue_name: str | None = None,
        max_concurrency: int | None = UNSET,
        idle_timeout_s: int | None = UNSET,
        *,
        name: str | None = None,
        **changes: Any,
    ) -> Queue:
        """Change max_concurrency and idle_timeout_s (None clears them), or any other field of
        update_queue (priority, status, description...)."""

        def plan() -> Plan[Queue]:
            qid = yield from plans.ref_id(job_queue_id, job_queue_name or name)
            fields = {"max_concurrency": max_concurrency, "idle_timeout_s": idle_timeout_s, **changes}
            return (yield from plans.update_queue(qid, fields))

        return self._client._run(plan())  # type: ignore[no-any-return]

    def _mutation(self, document: str, key: str, job_queue_id: Any, name: Any, include_archived: bool, **v: Any) -> Any:
        def plan() -> Plan[Queue]:
            qid = yield from plans.ref_id(job_queue_id, name, include_archived)
            return (yield from plans.call(document, {"id": qid, **v}, key, Queue.parse))

        return self._client._run(plan())

    def archive(self, job_queue_id: str | None = None, name: str | None = None) -> str:
        """Seal a job queue: no new jobs. Returns its id."""
        result = self._mutation(doc.ARCHIVE_QUEUE, "archiveQueue", job_queue_id, name, True)
        return _then(result, lambda q: q.id)

    def terminate(
        self, job_queue_id: str | None = None, name: str | None = None, include_archived: bool = False
    ) -> str:
        """Abort every unfinished job of a job queue. Returns its id."""
        result = self._mutation(doc.TERMINATE_QUEUE, "terminateQueue", job_queue_id, name, include_archived)
        return _then(result, lambda q: q.id)

    def delete(self, job_queue_id: str | None = None, name: str | None = None, include_archived: bool = False) -> str:
        """Delete a job queue (its unfinished jobs move to the default queue). Returns its id."""

        def plan() -> Plan[str]:
            qid = yield from plans.ref_id(job_queue_id, name, include_archived)
            return (yield from plans.delete_queue(qid))

        return self._client._run(plan())  # type: ignore[no-any-return]

    def add_tags(
        self, job_queue_id: str | None = None, name: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Upsert tags {key: value}; returns the queue's tags after."""
        result = self._mutation(doc.ADD_QUEUE_TAGS, "addQueueTags", job_queue_id, name, True, tags=dict(tags or {}))
        return _then(result, lambda q: dict(q.tags))

    def remove_tags(
        self, job_queue_id: str | None = None, name: str | None = None, keys: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Remove tags by key; returns the queue's tags after."""
        result = self._mutation(doc.REMOVE_QUEUE_TAGS, "removeQueueTags", job_queue_id, name, True, keys=list(keys))
        return _then(result, lambda q: dict(q.tags))

    def list_tags(self, job_queue_id: str | None = None, name: str | None = None) -> dict[str, Any]:
        """A job queue's tags as {key: value}."""
        return _then(self.status(job_queue_id, name, include_archived=True), lambda q: dict(q.tags))


class QueuesCollection:
    """Dioptra's queues: ``client.queues_collection.create(name, description)`` and friends."""

    def __init__(self, client: _Verbs) -> None:
        self._client = client

    def create(self, name: str, description: str = "", **fields: Any) -> Queue:
        """Create a queue called `name` (its code) with a description (and any create_queue field)."""
        return self._client.create_queue(name, description=description, **fields)

    def get(self, search: str | None = None, page_size: int = 50) -> ResultIterator[Queue]:
        """The queues, optionally those whose `where` expression matches `search`."""
        return self._client.queues(where=search, first=page_size)

    def get_by_id(self, queue_id: str) -> Queue:
        """A queue by id; raises NotFound."""
        return self._client._run(plans.resolve_queue(queue_id, None))  # type: ignore[no-any-return]

    def modify_by_id(self, queue_id: str, description: str = UNSET, **changes: Any) -> Queue:
        """Change a queue's description (or any update_queue field)."""
        return self._client.update_queue(queue_id, description=description, **changes)

    def delete_by_id(self, queue_id: str) -> str:
        """Delete a queue; returns its id."""
        return self._client.delete_queue(queue_id)


def _then(result: Any, fn: Any) -> Any:
    """fn(result), also when result is still to be awaited (AsyncClient)."""
    if asyncio.iscoroutine(result):

        async def after() -> Any:
            return fn(await result)

        return after()
    return fn(result)


# -- the blocking client ------------------------------------------------------------------


class Client(_Verbs):
    """The blocking client.

        from jobledger_client import Client
        with Client("http://127.0.0.1:8000/graphql", user="ann@example.com") as client:
            job = client.create_job(queue="default", tasks=["/media/a.mov"], destination="/out")
            for progress in client.watch(job.id):
                print(progress.progress, progress.etr)

    `url` defaults to $JOBLEDGER_URL or http://127.0.0.1:8000/graphql, `user` to
    $JOBLEDGER_USER; it is sent as the X-Jobledger-User header (and in the websocket's
    connection_init). `httpx_options` go to the httpx.Client (e.g. ``verify``,
    ``transport``, ``event_hooks``). Safe to share between threads."""

    def __init__(
        self,
        url: str | None = None,
        user: str | None = None,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        httpx_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._settings = _Settings(url, user, timeout, headers)
        transport = HTTPXTransport(
            url=self._settings.url, headers=self._settings.headers, timeout=timeout, **dict(httpx_options or {})
        )
        self._gql = GqlClient(transport=transport)
        self._session: Any = None
        self._lock = threading.Lock()
        self._loop: _LoopThread | None = None
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

    def execute(self, document: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send any GraphQL document; returns its data, raises the JobledgerError for its errors."""
        with self._lock:
            if self._session is None:
                self._session = self._gql.connect_sync()
            session = self._session
        request = GraphQLRequest(doc.parsed(document), variable_values=dict(variables or {}))
        try:
            return session.execute(request)  # type: ignore[no-any-return]
        except TransportQueryError as exc:
            raise error_from(exc.errors or [{"message": str(exc)}]) from None
        except (TransportError, httpx.HTTPError, OSError) as exc:
            raise _transport_failure(self.url, exc) from exc

    def _background(self) -> _LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = _LoopThread()
            return self._loop

    def _step(self, step: Any, streams: list[_Stream]) -> Any:
        if isinstance(step, Call):
            return self.execute(step.document, step.variables)
        if isinstance(step, Open):
            stream = _Stream(self._settings, step.document, step.variables)
            streams.append(stream)
            return self._background().run(stream.open())
        if isinstance(step, Next):
            return self._background().run(step.stream.next())
        raise TypeError(f"unexpected step {step!r}")

    def _run(self, plan: Plan[Any]) -> Any:
        streams: list[_Stream] = []
        reply = None
        try:
            while True:
                try:
                    step = plan.send(reply)
                except StopIteration as stop:
                    return stop.value
                if isinstance(step, Emit):
                    raise TypeError("a listing plan cannot be run for one result")
                reply = self._step(step, streams)
        finally:
            plan.close()
            self._close_streams(streams)

    def _results(self, plan: Plan[Any]) -> Generator[Any, None, None]:
        streams: list[_Stream] = []
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
                    reply = self._step(step, streams)
        finally:
            plan.close()
            self._close_streams(streams)

    def _close_streams(self, streams: list[_Stream]) -> None:
        for stream in streams:
            with contextlib.suppress(Exception):
                self._background().run(stream.close())

    def _iter(self, plan: Plan[Any], listing: Listing) -> ResultIterator[Any]:
        return ResultIterator(self._results(plan), listing)


# -- the asyncio client -------------------------------------------------------------------


class AsyncClient(_Verbs):
    """The asyncio client: the same verbs as Client, awaited; listings, `watch` and
    `events` are async iterators.

        async with AsyncClient(url, user="ann@example.com") as client:
            job = await client.create_job(tasks=["/media/a.mov"], destination="/out")
            async for progress in client.watch(job.id):
                print(progress.progress)
    """

    def __init__(
        self,
        url: str | None = None,
        user: str | None = None,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        httpx_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._settings = _Settings(url, user, timeout, headers)
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

    async def execute(self, document: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send any GraphQL document; returns its data, raises the JobledgerError for its errors."""
        if self._session is None:
            if self._connecting is None:
                self._connecting = asyncio.Lock()
            async with self._connecting:
                if self._session is None:
                    self._session = await self._gql.connect_async()
        request = GraphQLRequest(doc.parsed(document), variable_values=dict(variables or {}))
        try:
            return await self._session.execute(request)  # type: ignore[no-any-return]
        except TransportQueryError as exc:
            raise error_from(exc.errors or [{"message": str(exc)}]) from None
        except (TransportError, httpx.HTTPError, OSError, TimeoutError) as exc:
            raise _transport_failure(self.url, exc) from exc

    async def _step(self, step: Any, streams: list[_Stream]) -> Any:
        if isinstance(step, Call):
            return await self.execute(step.document, step.variables)
        if isinstance(step, Open):
            stream = _Stream(self._settings, step.document, step.variables)
            streams.append(stream)
            return await stream.open()
        if isinstance(step, Next):
            return await step.stream.next()
        raise TypeError(f"unexpected step {step!r}")

    async def _run(self, plan: Plan[Any]) -> Any:  # type: ignore[override]
        streams: list[_Stream] = []
        reply = None
        try:
            while True:
                try:
                    step = plan.send(reply)
                except StopIteration as stop:
                    return stop.value
                if isinstance(step, Emit):
                    raise TypeError("a listing plan cannot be run for one result")
                reply = await self._step(step, streams)
        finally:
            plan.close()
            for stream in streams:
                await stream.close()

    async def _results(self, plan: Plan[Any]) -> Any:
        streams: list[_Stream] = []
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
                    reply = await self._step(step, streams)
        finally:
            plan.close()
            for stream in streams:
                await stream.close()

    def _iter(self, plan: Plan[Any], listing: Listing) -> AsyncResultIterator[Any]:
        return AsyncResultIterator(self._results(plan), listing)


__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncResultIterator",
    "Client",
    "JobQueues",
    "JobledgerError",
    "QueuesCollection",
    "ResultIterator",
]
