"""Queries the dashboard adds beyond the contract: the workers (who runs what, when each
was last heard of, how fast it goes) and throughput per minute, both read from the
activity read models (`projections.workers`) and limited to the queues the caller reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry
from strawberry.types import Info

from api.context import Context, caller
from api.types import Task
from domain.errors import ValidationError
from projections.workers import MAX_MINUTES, MAX_WORKERS, MinutePoint, WorkerActivity, throughput, worker_activity


@strawberry.type(description="A worker as the log knows it: from its claims, heartbeats and results.")
class Worker:
    name: str
    last_heartbeat: datetime = strawberry.field(
        description="when it last claimed, reported on or finished a task of the queues you read"
    )
    speed: float = strawberry.field(description="MB/s, the sum of the tasks it runs now")
    holding: int = strawberry.field(description="how many tasks it holds a lease on now")
    tasks: list[Task] = strawberry.field(description="the tasks it runs now (BOOTING or EXECUTING), oldest claim first")
    claimed: int = strawberry.field(description="tasks it claimed, ever")
    done: int = strawberry.field(description="tasks it completed, ever")
    failed: int = strawberry.field(description="attempts it failed or whose lease expired, ever")

    @classmethod
    def of(cls, activity: WorkerActivity) -> Worker:
        return cls(
            name=activity.name,
            last_heartbeat=activity.last_seen,
            speed=activity.speed,
            holding=activity.holding,
            tasks=[Task.from_row(row) for row in activity.running],
            claimed=activity.claimed,
            done=activity.done,
            failed=activity.failed,
        )


@strawberry.type(description="One minute of throughput.")
class ThroughputPoint:
    minute: datetime = strawberry.field(description="the minute's start, UTC")
    done: int = strawberry.field(description="tasks that became DONE in it")
    failed: int = strawberry.field(description="tasks that became FAILED in it")
    queued: int = strawberry.field(description="tasks QUEUED at its end (the queue depth)")

    @classmethod
    def of(cls, point: MinutePoint) -> ThroughputPoint:
        return cls(minute=point.minute, done=point.done, failed=point.failed, queued=point.queued)


def _bounded(field: str, value: int | None, default: int, most: int) -> int:
    chosen = default if value is None else value
    if not 1 <= chosen <= most:
        raise ValidationError(field, f"must be from 1 to {most}, not {chosen}")
    return chosen


@strawberry.type
class DashboardQuery:
    @strawberry.field(description="Workers seen in the queues you read, most recently heard of first.")
    async def workers(self, info: Info[Context, Any], first: int | None = 50) -> list[Worker]:
        size = _bounded("first", first, 50, MAX_WORKERS)
        found = await worker_activity(info.context["read"].store, caller(info).readable(), size)
        return [Worker.of(activity) for activity in found]

    @strawberry.field(
        description="Tasks done and failed per minute, and the tasks QUEUED at each minute's end, over the"
        " last `minutes` (1 to 1440), oldest first; of the queues you read, or of one queue (code or id)."
    )
    async def throughput(
        self, info: Info[Context, Any], minutes: int | None = 60, queue: str | None = strawberry.UNSET
    ) -> list[ThroughputPoint]:
        span = _bounded("minutes", minutes, 60, MAX_MINUTES)
        points = await throughput(
            info.context["read"].store, caller(info).readable(), span, datetime.now(UTC), queue or None
        )
        return [ThroughputPoint.of(p) for p in points]
