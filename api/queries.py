"""Query resolvers: reads from the projections, never from the write side."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types import Info

from api.context import Context, caller, loaders, visible_job
from api.dashboard import DashboardQuery
from api.event_pages import read_events
from api.identity import IdentityQuery
from api.types import (
    EventConnection,
    Job,
    JobConnection,
    JobPhase,
    Long,
    Queue,
    QueueConnection,
    SortDirective,
    SortOrder,
    Task,
    TaskConnection,
    connection,
    job_connection,
)
from domain.job import JobPhase as DomainJobPhase
from projections.query import Sort


def wants_total(info: Info[Context, Any]) -> bool:
    """Whether the query asks for totalCount (a COUNT is only run for those that do)."""
    for selected in info.selected_fields:
        for child in selected.selections:
            name = getattr(child, "name", None)
            if name is None or name == "totalCount":  # fragments: assume yes
                return True
    return False


def sorts(order_by: list[SortDirective] | None) -> list[Sort] | None:
    if not order_by:
        return None
    return [Sort(d.field, descending=d.order == SortOrder.DESC) for d in order_by]


def _opt(value: Any) -> Any:
    """strawberry.UNSET and None both mean 'not given' for optional query arguments."""
    return value if value else None


@strawberry.type
class Query(IdentityQuery, DashboardQuery):
    @strawberry.field
    async def queue(
        self,
        info: Info[Context, None],
        id: strawberry.ID | None = strawberry.UNSET,
        code: str | None = strawberry.UNSET,
    ) -> Queue | None:
        caller(info).require()
        row = await info.context["read"].queue(id=_opt(id), code=_opt(code))
        return Queue.from_row(row) if row and caller(info).sees(row["owner"]) else None

    @strawberry.field
    async def queues(
        self,
        info: Info[Context, None],
        where: str | None = strawberry.UNSET,
        include_archived: bool | None = False,
        order_by: list[SortDirective] | None = strawberry.UNSET,
        first: int | None = 50,
        after: str | None = strawberry.UNSET,
    ) -> QueueConnection:
        page = await info.context["read"].queues(
            where=_opt(where),
            include_archived=bool(include_archived),
            order_by=sorts(_opt(order_by)),
            first=50 if first is None else first,
            after=_opt(after),
            with_total=wants_total(info),
            groups=caller(info).readable(),
        )
        return connection(page, Queue.from_row)

    @strawberry.field
    async def job(self, info: Info[Context, None], id: strawberry.ID) -> Job | None:
        caller(info).require()
        row = await visible_job(info, await info.context["read"].job(str(id)))
        return Job.from_row(row) if row else None

    @strawberry.field
    async def jobs(
        self,
        info: Info[Context, None],
        where: str | None = strawberry.UNSET,
        phase: JobPhase | None = DomainJobPhase.ACTIVE,  # type: ignore[valid-type]
        queue: str | None = strawberry.UNSET,
        order_by: list[SortDirective] | None = strawberry.UNSET,
        first: int | None = 50,
        after: str | None = strawberry.UNSET,
    ) -> JobConnection:
        page = await info.context["read"].jobs(
            where=_opt(where),
            phase=str(phase) if phase else None,
            queue=_opt(queue),
            order_by=sorts(_opt(order_by)),
            first=50 if first is None else first,
            after=_opt(after),
            with_total=wants_total(info),
            groups=caller(info).readable(),
        )
        return await job_connection(info, page)

    @strawberry.field
    async def task(self, info: Info[Context, None], id: strawberry.ID) -> Task | None:
        caller(info).require()
        row = await info.context["read"].task(str(id))
        if row is None or await visible_job(info, await loaders(info).job.load(row["job_id"])) is None:
            return None
        return Task.from_row(row)

    @strawberry.field
    async def tasks(
        self,
        info: Info[Context, None],
        job_id: strawberry.ID,
        where: str | None = strawberry.UNSET,
        first: int | None = 100,
        after: str | None = strawberry.UNSET,
    ) -> TaskConnection:
        caller(info).require()
        if await visible_job(info, await loaders(info).job.load(str(job_id))) is None:
            job_id = strawberry.ID("")  # a hidden job's tasks: none, as a missing job's
        page = await info.context["read"].tasks(
            str(job_id),
            where=_opt(where),
            first=100 if first is None else first,
            after=_opt(after),
            with_total=wants_total(info),
        )
        return connection(page, Task.from_row)

    @strawberry.field
    async def events(
        self,
        info: Info[Context, None],
        aggregate_id: strawberry.ID | None = strawberry.UNSET,
        types: list[str] | None = strawberry.UNSET,
        after: Long | None = strawberry.UNSET,  # type: ignore[valid-type]
        first: int | None = 100,
    ) -> EventConnection:
        size = 100 if first is None else first
        records = await read_events(
            info, aggregate_id=_opt(aggregate_id), types=_opt(types), after=after or 0, first=size
        )
        return EventConnection.of(records, size)
