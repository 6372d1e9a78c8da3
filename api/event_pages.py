"""Reading a page of the event history for the `events` fields (the query and `Job.events`)."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from api.context import Context, caller, services
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
    who = caller(info)
    if not (aggregate_id or job_id):
        if who.unrestricted:
            return await services(info).call(history.read, after, first + 1, types)
        return await _visible_page(info, history, after, first + 1, types)
    history.topics_for(types)  # validates the names
    if not who.unrestricted and not await readable(info, [aggregate_id or job_id or ""]):
        return []  # a hidden aggregate's history: none, as a missing one's
    if job_id:
        records = await services(info).call(history.of_job, job_id)
    else:
        records = await services(info).call(history.of_aggregate, aggregate_id)
    return [r for r in records if r.position > after and (not types or r.type in types)][: first + 1]


async def readable(info: Info[Context, Any], aggregate_ids: list[str]) -> set[str]:
    """Those of `aggregate_ids` (queues, jobs, tasks) whose group the caller reads."""
    groups = caller(info).readable()
    owners = await info.context["read"].owners(aggregate_ids)
    return {i for i, owner in owners.items() if groups is None or owner in groups}


async def visible_records(info: Info[Context, Any], records: list[Record]) -> list[Record]:
    """The records the caller may read: events of the queues, jobs and tasks of their
    groups (a site admin's: all; anyone else's never the users', groups' and tokens')."""
    if caller(info).unrestricted:
        return records
    shown = await readable(info, [r.aggregate_id for r in records])
    return [r for r in records if r.aggregate_id in shown]


async def _visible_page(
    info: Info[Context, Any], history: History, after: int, wanted: int, types: list[str] | None
) -> list[Record]:
    """Up to `wanted` events after `after` that the caller may read, reading on through
    the log past those they may not."""
    found: list[Record] = []
    batch = max(wanted, 500)
    while len(found) < wanted:
        records = await services(info).call(history.read, after, batch, types)
        found += await visible_records(info, records)
        if len(records) < batch:
            break
        after = records[-1].position
    return found[:wanted]
