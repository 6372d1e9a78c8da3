"""Subscriptions, fed by the projections' change feed, and what keeps them affordable.

A change names the jobs it touched; all subscribers of one job share one read
per change (SharedReads), however many there are. History replays (`events`)
go through Replays: paged, read only as fast as the consumer takes them, and
all of them together taking about one client's share of the server. Slots
bounds the operations running at once on one websocket and on the instance.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info

from api.context import Context, Services, caller, new_loaders, services, visible_job
from api.errors import guarded
from api.types import Event, Job, JobProgress, Long
from domain.errors import NotFoundError, ValidationError
from domain.history import History, Record
from domain.job import FINISHED
from projections.feed import Change
from projections.query import ReadModels
from projections.stores import Row

_PROGRESS_FIELDS = ("status", "progress", "speed", "etr", "size")
REPLAY_PAGE = 50  # events a replay reads at a time, and so holds at most
REPLAY_CHUNK = 10  # events a replay sends per turn before letting others run
REPLAY_READERS = 1  # page reads of all replays at once, in the shared command pool
REPLAY_POLL_S = 1.0  # a live replay re-reads the log this often even when no change is announced

ReadPage = Callable[[int, int], list[Record]]  # (after position, limit) -> records, oldest first


class Replays:
    """What every history replay of this instance shares, so that a flood of them costs other
    clients little: at most REPLAY_READERS page reads at once in the command pool (commands
    keep the rest), and one chunk of REPLAY_CHUNK events sent per turn, turns taken in order,
    so that however many replays run, together they take about one task's share of the loop."""

    def __init__(self, services: Services, page: int = REPLAY_PAGE, chunk: int = REPLAY_CHUNK) -> None:
        self.services = services
        self.page = page
        self.chunk = chunk
        self._readers = asyncio.Semaphore(REPLAY_READERS)
        self._turns = asyncio.Lock()  # FIFO: waiting replays take turns in arrival order
        self.pages_read = 0  # for tests and diagnostics

    async def turn(self) -> None:
        """Wait until it is this replay's turn; it holds the turn only across one pass of the loop."""
        async with self._turns:
            await asyncio.sleep(0)

    async def records(self, read: ReadPage, after: int) -> AsyncGenerator[Record, None]:
        """Records after `after` that are in the store now, a page at a time. The next page is read
        only when the consumer has taken every record of this one: a consumer that stops reading
        (its websocket sends block) stops the reads, and the replay holds one page, never more."""
        while True:
            async with self._readers:
                page = await self.services.call(read, after, self.page)
            self.pages_read += 1
            for n, record in enumerate(page):
                if n % self.chunk == 0:
                    await self.turn()
                yield record
                after = record.position
            if len(page) < self.page:
                return


class Slots:
    """Operations (subscriptions, and queries sent over a websocket) running at once: at most
    `per_connection` on one websocket and `total` on this instance. A refusal is a VALIDATION
    error that says the limit."""

    def __init__(self, per_connection: int, total: int) -> None:
        self.per_connection = per_connection
        self.total = total
        self.used = 0

    def take(self, on_connection: int) -> None:
        """Count one more operation, beside the `on_connection` already running on its websocket."""
        if on_connection >= self.per_connection:
            raise ValidationError(
                "subscriptions",
                f"at most {self.per_connection} operations may run at once on one connection; "
                "stop one (complete/stop) or open another connection",
            )
        if self.used >= self.total:
            raise ValidationError(
                "subscriptions",
                f"this server runs at most {self.total} operations at once for all its clients; "
                "try again later or use another instance",
            )
        self.used += 1

    def give_back(self) -> None:
        self.used = max(0, self.used - 1)


class PerEventExecution(StrawberryGraphQLCoreExecutionContext):
    """graphql-core 3.3 memoises the subfields it collects by the identity of a list it builds
    afresh for every subscription event, in a dict that all the events of one subscription
    share: every event sent added an entry that lived as long as the subscription (150 replays
    of 20,000 events held millions). Here each event's executor gets a memo of its own."""

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor


class SharedReads:
    """Memoises reads per (what, position) so N subscribers cost one query per change."""

    def __init__(self, read: ReadModels, keep: int = 2000) -> None:
        self.read = read
        self.keep = keep
        self._futures: OrderedDict[tuple[Any, ...], asyncio.Future[Any]] = OrderedDict()

    async def _shared(self, key: tuple[Any, ...], make: Any) -> Any:
        future = self._futures.get(key)
        if future is None:
            future = asyncio.ensure_future(make())
            self._futures[key] = future
            while len(self._futures) > self.keep:
                self._futures.popitem(last=False)
        return await asyncio.shield(future)

    async def job(self, job_id: str, position: int) -> Row | None:
        return await self._shared(("job", job_id, position), lambda: self.read.job(job_id))  # type: ignore[no-any-return]

    async def jobs(self, ids: frozenset[str], position: int) -> dict[str, Row]:
        return await self._shared(("jobs", ids, position), lambda: self.read.jobs_by_id(sorted(ids)))  # type: ignore[no-any-return]


async def changed_job_ids(info: Info[Context, Any], change: Change) -> frozenset[str]:
    """The jobs a change touched; when the announcement was capped, read them off the log."""
    if not change.more:
        return change.jobs
    history = History(services(info).ledger)
    records = await services(info).call(history.read, change.first - 1, change.position - change.first + 1)
    ids = {r.aggregate_id for r in records if r.aggregate_type == "Job"}
    task_ids = [r.aggregate_id for r in records if r.aggregate_type == "Task"]
    tasks = await info.context["read"].tasks_by_id(task_ids)
    return frozenset(ids | {t["job_id"] for t in tasks.values()})


@strawberry.type
class Subscription:
    @strawberry.subscription(description="current value at once, then each change, until the job finishes")
    @guarded
    async def job_progress(self, info: Info[Context, None], job_id: strawberry.ID) -> AsyncGenerator[JobProgress, None]:
        read_side = services(info).read_side
        shared: SharedReads = info.context["shared"]
        caller(info).require()
        row = await visible_job(info, await info.context["read"].job(str(job_id)))
        if row is None:
            raise NotFoundError("Job", job_id)
        yield JobProgress.from_row(row)
        last = tuple(row[f] for f in _PROGRESS_FIELDS)
        if row["status"] in FINISHED:
            return
        async for change in read_side.feed.subscribe():
            if not change.jobs and not change.more:
                continue  # a heartbeat tick
            if str(job_id) not in await changed_job_ids(info, change):
                continue
            await still_signed_in(info)
            row = await shared.job(str(job_id), change.position)
            if row is None:
                return  # deleted
            now = tuple(row[f] for f in _PROGRESS_FIELDS)
            if now != last:
                last = now
                yield JobProgress.from_row(row)
            if row["status"] in FINISHED:
                return

    @strawberry.subscription(description="every change to a matching job")
    @guarded
    async def job_updated(
        self,
        info: Info[Context, None],
        queue: str | None = strawberry.UNSET,
        where: str | None = strawberry.UNSET,
    ) -> AsyncGenerator[Job, None]:
        read: ReadModels = info.context["read"]
        shared: SharedReads = info.context["shared"]
        queue, where = queue or None, where or None
        groups = caller(info).readable()
        if where:
            await read.jobs(where=where, first=0)  # a bad expression fails now, not at the first change
        async for change in services(info).read_side.feed.subscribe():
            if not change.jobs and not change.more:
                continue
            ids = await changed_job_ids(info, change)
            if not ids:
                continue
            await still_signed_in(info)
            groups = caller(info).readable()
            if where or queue or groups is not None:
                page = await read.jobs(where=where, queue=queue, phase=None, ids=sorted(ids), first=500, groups=groups)
                rows = page.nodes
            else:
                rows = list((await shared.jobs(ids, change.position)).values())
            info.context["loaders"] = new_loaders(read)  # nested fields read fresh each time
            for row in sorted(rows, key=lambda r: r["id"]):
                yield Job.from_row(row)

    @strawberry.subscription(description="replay from `after`, then live; no gap, no duplicate")
    @guarded
    async def events(
        self,
        info: Info[Context, None],
        after: Long | None = strawberry.UNSET,  # type: ignore[valid-type]
        aggregate_id: strawberry.ID | None = strawberry.UNSET,
        types: list[str] | None = strawberry.UNSET,
    ) -> AsyncGenerator[Event, None]:
        svc = services(info)
        caller(info).require()
        replays: Replays = info.context["replays"]
        history = History(svc.ledger)
        wanted = types or None
        history.topics_for(wanted)  # unknown type names fail at once
        last = after if isinstance(after, int) else await svc.call(svc.ledger.position)
        if last < 0:
            raise ValidationError("after", "must be a position, 0 or more")
        read = _aggregate_reader(history, str(aggregate_id), wanted) if aggregate_id else _log_reader(history, wanted)
        feed = svc.read_side.feed
        known: dict[str, bool] = {}  # aggregate id -> whether the caller may read its events

        async def shown(record: Record) -> bool:
            if caller(info).unrestricted:
                return True
            if record.aggregate_id not in known:
                owner = (await info.context["read"].owners([record.aggregate_id])).get(record.aggregate_id)
                groups = caller(info).readable()
                if owner is None:
                    return False  # not a queue, job or task (or not in the read models yet)
                known[record.aggregate_id] = groups is None or owner in groups
            return known[record.aggregate_id]

        while True:
            # Everything up to `seen` is in the store before the read below starts, so waiting
            # for the feed to pass `seen` afterwards can miss nothing (no gap, no duplicate).
            seen = feed.position
            async with aclosing(replays.records(read, last)) as records:
                async for record in records:
                    last = record.position
                    await still_signed_in(info)
                    if await shown(record):
                        yield Event.from_record(record)
            await feed.wait_for_async(seen + 1, REPLAY_POLL_S)


def _log_reader(history: History, types: list[str] | None) -> ReadPage:
    return lambda after, limit: history.read(after, limit, types)


def _aggregate_reader(history: History, aggregate_id: str, types: list[str] | None) -> ReadPage:
    def read(after: int, limit: int) -> list[Record]:
        found = history.of_aggregate(aggregate_id)
        return [r for r in found if r.position > after and (not types or r.type in types)][:limit]

    return read


async def still_signed_in(info: Info[Context, Any]) -> None:
    """UNAUTHENTICATED once the caller's token is revoked or expired (read again every few
    seconds), so that a subscription stops with it."""
    await info.context["request"].app.state.authenticator.refresh(caller(info))
    caller(info).require()
