"""Reading a page of the event history for the `events` fields (the query and `Job.events`)."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from api.context import Context, services
from domain.errors import ValidationError
from domain.history import History, Record
from projections.query import check_first


async def read_events(
    info: Info[Context, Any],
    *,
    aggregate_id: str | None = None,
    job_id: str | None = None,
    types: list[str] | None = None,
    after: int = 0,
    first: int = 100,
) -> list[Record]:
    """Up to `first` + 1 events after position `after`, oldest first (the extra one tells
    the caller that a next page exists): of one aggregate, of a job and its tasks, or all."""
    check_first(first)
    if after < 0:
        raise ValidationError("after", "must be a position, 0 or more")
    history = History(services(info).ledger)
    if not (aggregate_id or job_id):
        return await services(info).call(history.read, after, first + 1, types)
    history.topics_for(types)  # validates the names
    if job_id:
        records = await services(info).call(history.of_job, job_id)
    else:
        records = await services(info).call(history.of_aggregate, aggregate_id)
    return [r for r in records if r.position > after and (not types or r.type in types)][: first + 1]
