"""The worker mutations: claim, heartbeat, complete, fail, release (and completing in bulk)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.context import Context, actor, services
from api.types import Long, Task, TaskLease
from domain.dispatch import check_claim, task_id_of
from domain.errors import ConflictError

CLAIM_ROUNDS = 3


@strawberry.input
class Completion:
    lease_id: strawberry.ID
    result: JSON | None = strawberry.UNSET


async def _task_rows(info: Info[Context, Any], task_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = await info.context["read"].tasks_by_id(task_ids)
    return rows


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
        limit = 1 if limit is None else limit
        lease_seconds = 60 if lease_seconds is None else lease_seconds
        check_claim(worker, limit, lease_seconds)  # also when no task is there to claim
        leases: list[str] = []
        for _ in range(CLAIM_ROUNDS):  # candidates others took first cost another round
            wanted = limit - len(leases)
            candidates = await info.context["read"].claim_candidates(queues or None, wanted * 4 + 16)
            if not candidates:
                break
            written = await svc.run(
                svc.ledger.claim_tasks,
                worker,
                candidates,
                limit=wanted,
                lease_seconds=lease_seconds,
                actor=actor(info) or worker,
            )
            leases += written.ids
            if len(leases) >= limit or len(candidates) < wanted * 4 + 16:
                break
        rows = await _task_rows(info, [task_id_of(lease) for lease in leases])
        return [TaskLease.from_row(lease, rows[task_id_of(lease)]) for lease in leases if task_id_of(lease) in rows]

    @strawberry.mutation(description="Renew a lease and report progress; CONFLICT when it is over.")
    async def heartbeat(
        self,
        info: Info[Context, None],
        lease_id: strawberry.ID,
        progress: int | None = strawberry.UNSET,
        bytes_done: Long | None = strawberry.UNSET,  # type: ignore[valid-type]
        speed: float | None = strawberry.UNSET,
    ) -> TaskLease:
        svc = services(info)
        await svc.run(
            svc.ledger.heartbeat,
            str(lease_id),
            progress=progress or (0 if progress == 0 else None),
            bytes_done=bytes_done if isinstance(bytes_done, int) else None,
            speed=speed if isinstance(speed, float | int) else None,
            actor=actor(info),
        )
        task_id = task_id_of(str(lease_id))
        row = (await _task_rows(info, [task_id])).get(task_id)
        if row is None or row["lease_id"] != str(lease_id):
            raise ConflictError(f"lease {lease_id} is over")
        return TaskLease.from_row(str(lease_id), row)

    @strawberry.mutation
    async def complete_task(
        self, info: Info[Context, None], lease_id: strawberry.ID, result: JSON | None = strawberry.UNSET
    ) -> Task:
        svc = services(info)
        written = await svc.run(
            svc.ledger.complete_task,
            str(lease_id),
            None if result is strawberry.UNSET else result,
            actor=actor(info),
        )
        return Task.from_row((await _task_rows(info, written.ids))[written.id])

    @strawberry.mutation(description="Complete many leases at once; all or none.")
    async def complete_tasks(self, info: Info[Context, None], completions: list[Completion]) -> list[Task]:
        svc = services(info)
        pairs = [(str(c.lease_id), None if c.result is strawberry.UNSET else c.result) for c in completions]
        written = await svc.run(svc.ledger.complete_tasks, pairs, actor=actor(info))
        rows = await _task_rows(info, written.ids)
        return [Task.from_row(rows[i]) for i in written.ids]

    @strawberry.mutation
    async def fail_task(
        self, info: Info[Context, None], lease_id: strawberry.ID, error: str, retry: bool | None = True
    ) -> Task:
        svc = services(info)
        written = await svc.run(svc.ledger.fail_task, str(lease_id), error, retry=retry is not False, actor=actor(info))
        return Task.from_row((await _task_rows(info, written.ids))[written.id])

    @strawberry.mutation(description="Give a leased task back unworked (e.g. on shutdown); not an attempt.")
    async def release_task(self, info: Info[Context, None], lease_id: strawberry.ID) -> Task:
        svc = services(info)
        written = await svc.run(svc.ledger.release_task, str(lease_id), actor=actor(info))
        return Task.from_row((await _task_rows(info, written.ids))[written.id])
