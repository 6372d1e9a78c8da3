"""The worker mutations: claim, heartbeat, complete, fail, release (and completing in bulk)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.context import Context, acting, run_command, services, task_rows, writing
from api.types import Long, Task, TaskLease
from domain.access import Right
from domain.dispatch import Candidates, task_id_of
from domain.errors import ConflictError, ForbiddenError


@strawberry.input
class Completion:
    lease_id: strawberry.ID
    result: JSON | None = strawberry.UNSET


def _worker_acting(info: Info[Context, Any], worker: str) -> dict[str, Any]:
    """A claim's actor and principal; with authentication off and no user named, the worker."""
    acting_as = writing(info)
    if acting_as["principal"] is None and not acting_as["actor"]:
        acting_as["actor"] = worker
    return acting_as


def _candidates(info: Info[Context, Any], queues: list[str] | None) -> Candidates:
    """The read model's claim candidates, for a claim running in the command thread pool:
    each ask is answered on this event loop. Only tasks of the groups the caller works for."""
    loop = asyncio.get_running_loop()
    svc = services(info)
    principal = acting(info)["principal"]
    groups = principal.groups_with(Right.WORK) if principal is not None else None
    if groups is not None and not groups:
        raise ForbiddenError("only a worker's token may claim tasks: you are a worker in no group")

    async def read(count: int, seen: int) -> list[str]:
        if seen:
            await svc.read_side.wait_for(seen, svc.wait_timeout)
        found: list[str] = await info.context["read"].claim_candidates(queues, count, groups)
        return found

    def ask(count: int, seen: int) -> list[str]:
        # Bounded, so that a claim never waits for ever on a loop that has stopped.
        return asyncio.run_coroutine_threadsafe(read(count, seen), loop).result(timeout=2 * svc.wait_timeout + 10)

    return ask


@strawberry.type
class WorkMutation:
    @strawberry.mutation(description="Lease up to `limit` queued tasks, in scheduling order.")
    async def claim_tasks(
        self,
        info: Info[Context, None],
        worker: str,
        queues: list[str] | None = strawberry.UNSET,
        limit: int | None = 1,
        lease_seconds: int | None = 60,
    ) -> list[TaskLease]:
        svc = services(info)
        written = await run_command(
            info,
            svc.ledger.dispatch.claim,
            worker,
            _candidates(info, queues or None),
            limit=1 if limit is None else limit,
            lease_seconds=60 if lease_seconds is None else lease_seconds,
            **_worker_acting(info, worker),
        )
        rows = await task_rows(info, [task_id_of(lease) for lease in written.ids])
        return [
            TaskLease.from_row(lease, rows[task_id_of(lease)]) for lease in written.ids if task_id_of(lease) in rows
        ]

    @strawberry.mutation(description="Renew a lease and report progress; CONFLICT when it is over.")
    async def heartbeat(
        self,
        info: Info[Context, None],
        lease_id: strawberry.ID,
        progress: int | None = strawberry.UNSET,
        bytes_done: Long | None = strawberry.UNSET,  # type: ignore[valid-type]
        speed: float | None = strawberry.UNSET,
        size: Annotated[  # type: ignore[valid-type]
            Long | None, strawberry.argument(description="bytes of the source (a file, or a folder's files)")
        ] = strawberry.UNSET,
    ) -> TaskLease:
        svc = services(info)
        await run_command(
            info,
            svc.ledger.dispatch.heartbeat,
            str(lease_id),
            progress=progress or (0 if progress == 0 else None),
            bytes_done=bytes_done if isinstance(bytes_done, int) else None,
            speed=speed if isinstance(speed, float | int) else None,
            size=size if isinstance(size, int) else None,
            **writing(info),
        )
        task_id = task_id_of(str(lease_id))
        row = (await task_rows(info, [task_id])).get(task_id)
        if row is None or row["lease_id"] != str(lease_id):
            raise ConflictError(f"lease {lease_id} is over")
        return TaskLease.from_row(str(lease_id), row)

    @strawberry.mutation
    async def complete_task(
        self, info: Info[Context, None], lease_id: strawberry.ID, result: JSON | None = strawberry.UNSET
    ) -> Task:
        svc = services(info)
        written = await run_command(
            info,
            svc.ledger.dispatch.complete,
            str(lease_id),
            None if result is strawberry.UNSET else result,
            **writing(info),
        )
        return Task.from_row((await task_rows(info, written.ids))[written.id])

    @strawberry.mutation(description="Complete many leases at once; all or none.")
    async def complete_tasks(self, info: Info[Context, None], completions: list[Completion]) -> list[Task]:
        svc = services(info)
        pairs = [(str(c.lease_id), None if c.result is strawberry.UNSET else c.result) for c in completions]
        written = await run_command(info, svc.ledger.dispatch.complete_many, pairs, **writing(info))
        rows = await task_rows(info, written.ids)
        return [Task.from_row(rows[i]) for i in written.ids]

    @strawberry.mutation
    async def fail_task(
        self, info: Info[Context, None], lease_id: strawberry.ID, error: str, retry: bool | None = True
    ) -> Task:
        svc = services(info)
        written = await run_command(
            info, svc.ledger.dispatch.fail, str(lease_id), error, retry=retry is not False, **writing(info)
        )
        return Task.from_row((await task_rows(info, written.ids))[written.id])

    @strawberry.mutation(description="Give a leased task back unworked (e.g. on shutdown); not an attempt.")
    async def release_task(self, info: Info[Context, None], lease_id: strawberry.ID) -> Task:
        svc = services(info)
        written = await run_command(info, svc.ledger.dispatch.release, str(lease_id), **writing(info))
        return Task.from_row((await task_rows(info, written.ids))[written.id])
