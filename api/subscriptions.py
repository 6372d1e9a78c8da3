"""Subscriptions, fed by the projections' change feed.

A change names the jobs it touched; all subscribers of one job share one read
per change (SharedReads), however many there are.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.types import Info

from api.context import Context, new_loaders, services
from api.errors import guarded
from api.types import Event, Job, JobProgress, Long
from domain.errors import NotFoundError
from domain.history import History
from domain.job import FINISHED
from projections.feed import Change
from projections.query import ReadModels
from projections.stores import Row

_PROGRESS_FIELDS = ("status", "progress", "speed", "etr", "size")


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
        row = await info.context["read"].job(str(job_id))
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
        if where:
            await read.jobs(where=where, first=0)  # a bad expression fails now, not at the first change
        async for change in services(info).read_side.feed.subscribe():
            if not change.jobs and not change.more:
                continue
            ids = await changed_job_ids(info, change)
            if not ids:
                continue
            if where or queue:
                page = await read.jobs(where=where, queue=queue, phase=None, ids=sorted(ids), first=500)
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
        history = History(svc.ledger)
        types = types or None
        history.topics_for(types)  # unknown type names fail at once
        last = after if isinstance(after, int) else await svc.call(svc.ledger.position)
        changes = svc.read_side.feed.subscribe(heartbeat=0.25)
        try:
            while True:
                if aggregate_id:
                    found = await svc.call(history.of_aggregate, str(aggregate_id))
                    records = [r for r in found if r.position > last and (not types or r.type in types)]
                else:
                    records = await svc.call(history.read, last, 500, types)
                for count, record in enumerate(records, start=1):
                    yield Event.from_record(record)
                    last = record.position
                    if count % 50 == 0:
                        await asyncio.sleep(0)  # a long replay must not hold up other requests
                if len(records) == 500:
                    continue
                await changes.__anext__()  # wait for the next batch (or a tick)
        finally:
            await changes.aclose()
