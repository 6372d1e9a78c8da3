"""The candidates of a claim: queued tasks of dispatchable jobs in enabled queues, not
waiting to retry, in hand-out order, read from the read models (`ReadModels` inherits
these queries)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from projections.schema import JOBS, QUEUES, TASKS
from projections.stores import ReadStore

MAX_PRIORITY_LEVELS = 8  # task priorities walked one by one before sorting the rest at once
# Jobs of one queue and job priority in hand-out order (as the full sort has always put
# them: LIFO queues newest first, then oldest first, then by id).
JOB_ORDER = "CASE WHEN q.execution_mode = 'LIFO' THEN j.created END DESC, j.created ASC, j.id"


def due(prefix: str = "") -> str:
    """A queued task (`prefix` its table's alias and a dot) that may run at the time given
    as the parameter: not waiting to retry after a failed attempt (`domain.retry`)."""
    return f"({prefix}retry_at IS NULL OR {prefix}retry_at <= ?)"


class ClaimCandidates:
    """The claim-candidate queries, over `self.store`."""

    store: ReadStore
    # Below this many queued tasks a claim's candidates come from one sort of them all
    # (one query); from there on, group by group (a few small queries, whatever the backlog).
    SORT_ALL_BELOW = 5_000

    async def claim_candidates(
        self, queues: Sequence[str] | None, count: int, groups: Collection[str] | None = None
    ) -> list[str]:
        """Queued tasks of dispatchable jobs in enabled queues, whose retry time (if any)
        has come, in hand-out order: queue priority, job priority, then the queue's mode
        (FIFO oldest job first, LIFO newest first, PRIORITY by task priority then oldest),
        then task order.

        One sort of every queued task would cost a claim time in proportion to the backlog
        (144 ms at 200,000 queued tasks). From SORT_ALL_BELOW queued tasks on (counted no
        further on the (status, ...) index), the work goes by groups of equal queue and job
        priority, best first. In a group of FIFO and LIFO queues the order is job
        by job, so jobs are read in order, a few at a time, each giving its first queued
        tasks from the (job, status, seq) index, until there are enough. In a group of
        PRIORITY queues the same is done for each task priority, highest first (the next
        one found on the (status, priority) index); a group mixing both, or one spread
        over many task priorities, is sorted whole (from that priority down)."""
        dispatchable, params = self._dispatchable(queues)
        now = datetime.now(UTC)
        if groups is not None:
            owned, owners = owned_by("q.owner", groups)
            dispatchable, params = f"{dispatchable} AND {owned}", [*params, *owners]
        backlog = await self.store.fetch(
            f"SELECT COUNT(*) AS queued FROM (SELECT 1 FROM {TASKS} WHERE status = 'QUEUED' LIMIT ?) b",
            [self.SORT_ALL_BELOW],
        )
        if int(backlog[0]["queued"]) < self.SORT_ALL_BELOW:
            return await self._sorted_candidates(dispatchable, params, count, now)
        levels = await self.store.fetch(
            f"SELECT q.priority AS queue_priority, j.priority,"
            " MIN(CASE WHEN q.execution_mode = 'PRIORITY' THEN 1 ELSE 0 END) AS all_by_task,"
            " MAX(CASE WHEN q.execution_mode = 'PRIORITY' THEN 1 ELSE 0 END) AS by_task"
            f" FROM {JOBS} j JOIN {QUEUES} q ON q.id = j.queue_id WHERE {dispatchable}"
            f" AND EXISTS (SELECT 1 FROM {TASKS} e WHERE e.job_id = j.id AND e.status = 'QUEUED' AND {due('e.')})"
            " GROUP BY q.priority, j.priority ORDER BY q.priority DESC, j.priority DESC",
            [*params, now],
        )
        found: list[str] = []
        for group in levels:
            if len(found) >= count:
                break
            in_group = f"{dispatchable} AND q.priority = ? AND j.priority = ?"
            group_params = [*params, group["queue_priority"], group["priority"]]
            if not group["by_task"]:
                found += await self._candidates_job_by_job(in_group, group_params, count - len(found), now)
            elif not group["all_by_task"]:
                found += await self._sorted_candidates(in_group, group_params, count - len(found), now)
            else:
                found += await self._candidates_by_task_priority(in_group, group_params, count - len(found), now)
        return found[:count]

    async def _candidates_by_task_priority(
        self, condition: str, params: list[Any], count: int, now: datetime
    ) -> list[str]:
        found: list[str] = []
        below: int | None = None
        for _ in range(MAX_PRIORITY_LEVELS):
            if len(found) >= count:
                return found
            rows = await self.store.fetch(
                f"SELECT MAX(priority) AS level FROM {TASKS} WHERE status = 'QUEUED' AND {due()}"
                + ("" if below is None else " AND priority < ?"),
                [now] if below is None else [now, below],
            )
            if rows[0]["level"] is None:
                return found
            below = int(rows[0]["level"])
            found += await self._candidates_job_by_job(condition, params, count - len(found), now, priority=below)
        # Many distinct task priorities: the rest in one sort.
        rest = await self._sorted_candidates(
            f"{condition} AND t.priority < ?", [*params, below], count - len(found), now
        )
        return found + rest

    def _dispatchable(self, queues: Sequence[str] | None) -> tuple[str, list[Any]]:
        """Jobs whose tasks may be handed out (`j` a job, `q` its queue), and the parameters."""
        condition = (
            "j.status IN ('WAITING', 'RUNNING') AND q.status = 'WAITING' AND q.deleted = ?"
            # A waiting job of a queue at its maxConcurrency cannot start: leave it out, so
            # that it does not hide the work of other queues.
            " AND (j.status = 'RUNNING' OR q.max_concurrency IS NULL OR q.max_concurrency >"
            f" (SELECT COUNT(*) FROM {JOBS} r WHERE r.phase = 'ACTIVE' AND r.queue_id = q.id AND r.status = 'RUNNING'))"
        )
        params: list[Any] = [False]
        if queues:
            marks = ", ".join("?" * len(queues))
            condition += f" AND (q.code IN ({marks}) OR q.id IN ({marks}))"
            params += [*queues, *queues]
        return condition, params

    async def _sorted_candidates(self, condition: str, params: list[Any], count: int, now: datetime) -> list[str]:
        rows = await self.store.fetch(
            f"SELECT t.id FROM {TASKS} t JOIN {JOBS} j ON j.id = t.job_id JOIN {QUEUES} q ON q.id = j.queue_id"
            f" WHERE t.status = 'QUEUED' AND {due('t.')} AND {condition}"
            " ORDER BY q.priority DESC, j.priority DESC,"
            " CASE WHEN q.execution_mode = 'PRIORITY' THEN t.priority ELSE 0 END DESC,"
            f" {JOB_ORDER}, t.seq LIMIT ?",
            [now, *params, count],
        )
        return [r["id"] for r in rows]

    async def _candidates_job_by_job(
        self, condition: str, params: list[Any], count: int, now: datetime, priority: int | None = None
    ) -> list[str]:
        """The first `count` queued tasks of the group's jobs, job by job (only tasks of
        `priority`, if given)."""
        only, only_params = ("", []) if priority is None else (" AND priority = ?", [priority])
        found: list[str] = []
        offset, page = 0, 8
        while len(found) < count:
            jobs = await self.store.fetch(
                f"SELECT j.id FROM {JOBS} j JOIN {QUEUES} q ON q.id = j.queue_id WHERE {condition}"
                f" AND EXISTS (SELECT 1 FROM {TASKS} e WHERE e.job_id = j.id AND e.status = 'QUEUED'"
                f" AND {due('e.')}{only.replace('priority', 'e.priority')})"
                f" ORDER BY {JOB_ORDER} LIMIT ? OFFSET ?",
                [*params, now, *only_params, page, offset],
            )
            if not jobs:
                break
            wanted = count - len(found)
            firsts = " UNION ALL ".join(
                f"SELECT * FROM (SELECT id, job_id, seq FROM {TASKS}"
                f" WHERE job_id = ? AND status = 'QUEUED' AND {due()}{only} ORDER BY seq LIMIT ?) f"
                for _ in jobs
            )
            rows = await self.store.fetch(
                firsts, [value for job in jobs for value in (job["id"], now, *only_params, wanted)]
            )
            rank = {job["id"]: index for index, job in enumerate(jobs)}
            rows.sort(key=lambda row: (rank[row["job_id"]], row["seq"]))
            found += [row["id"] for row in rows[:wanted]]
            offset += len(jobs)
            page *= 4
        return found


def owned_by(column: str, groups: Collection[str]) -> tuple[str, list[Any]]:
    """`column IN (groups)`; no groups match nothing."""
    codes = sorted(groups)
    if not codes:
        return "1 = 0", []
    return f"{column} IN ({', '.join('?' * len(codes))})", codes
