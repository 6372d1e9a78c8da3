"""The activity read models: what each worker did (jl_workers) and, per queue and minute,
how many tasks became DONE and FAILED and how many were QUEUED (jl_throughput).

Both are sums over the log, so a batch is applied as one tally: the state it needs
(each touched task's worker, status and queue) is read once when the batch starts, the
batch's events are folded in memory, and a few upserts write the sums. The result does not
depend on where batches begin and end, so a rebuild gives the same rows.

A minute is an epoch minute; an event stamped earlier than one already counted for its
queue (clocks of concurrent writers) counts in that later minute, so the newest row of a
queue always holds its queued tasks now.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.history import Record
from domain.task import IN_FLIGHT, TaskStatus
from projections.claims import owned_by
from projections.schema import JOBS, QUEUES, TASKS, THROUGHPUT, WORKERS
from projections.stores import ReadStore, Row, Tx, iter_chunks

QUEUED, DONE, FAILED = TaskStatus.QUEUED.value, TaskStatus.DONE.value, TaskStatus.FAILED.value
# The status a task event leaves the task in, when its data does not say.
_IMPLIED_STATUS = {"Task.Claimed": TaskStatus.BOOTING.value, "Task.Completed": DONE}
# Events a worker sends (a claim, a heartbeat, a result): when it was last heard of.
_FROM_WORKER = frozenset(
    {"Task.Claimed", "Task.LeaseRenewed", "Task.Completed", "Task.AttemptFailed", "Task.LeaseReleased"}
)
_JOB_EVENTS = frozenset({"Job.Created", "Job.Moved", "Job.Deleted"})


def _newest(column: str, condition: str, queue_alias: str = "q") -> str:
    """`column` of the queue's newest throughput row (meeting `condition`): one step back on
    the (queue_id, minute) index."""
    return (
        f"(SELECT {column} FROM {THROUGHPUT} h WHERE h.queue_id = {queue_alias}.id{condition}"
        " ORDER BY h.minute DESC LIMIT 1)"
    )


def epoch_minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class _TaskState:
    job_id: str
    status: str | None
    worker: str | None


@dataclass
class _WorkerSums:
    last_seen: int = 0
    claimed: int = 0
    done: int = 0
    failed: int = 0


@dataclass
class _MinuteSums:
    done: int = 0
    failed: int = 0
    queued: int = 0  # after the minute's last event


@dataclass
class _Tally:
    """What a batch adds up to, and the state it starts from."""

    tasks: dict[str, _TaskState] = field(default_factory=dict)
    queue_of: dict[str, str] = field(default_factory=dict)  # job id -> queue id
    deleted: set[str] = field(default_factory=set)  # jobs deleted in the batch
    queued_at_start: dict[str, int] = field(default_factory=dict)  # job id -> its QUEUED tasks
    queued_change: dict[str, int] = field(default_factory=dict)  # job id -> change in the batch
    depth: dict[str, int] = field(default_factory=dict)  # queue id -> QUEUED tasks now
    latest: dict[str, int] = field(default_factory=dict)  # queue id -> its newest minute
    workers: dict[tuple[str, str], _WorkerSums] = field(default_factory=dict)
    minutes: dict[tuple[str, int], _MinuteSums] = field(default_factory=dict)

    def minute(self, queue_id: str, r: Record) -> _MinuteSums:
        minute = max(epoch_minute(r.timestamp), self.latest.get(queue_id, 0))
        self.latest[queue_id] = minute
        sums = self.minutes.get((queue_id, minute))
        if sums is None:
            sums = self.minutes[(queue_id, minute)] = _MinuteSums(queued=self.depth.get(queue_id, 0))
        return sums

    def add_queued(self, queue_id: str, job_id: str | None, change: int, r: Record) -> None:
        self.depth[queue_id] = self.depth.get(queue_id, 0) + change
        self.minute(queue_id, r).queued = self.depth[queue_id]
        if job_id is not None:
            self.queued_change[job_id] = self.queued_change.get(job_id, 0) + change

    def worker(self, name: str, queue_id: str) -> _WorkerSums:
        sums = self.workers.get((name, queue_id))
        if sums is None:
            sums = self.workers[(name, queue_id)] = _WorkerSums()
        return sums


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" * len(items))


def _read_state(tx: Tx, records: list[Record]) -> _Tally:
    """The state the batch starts from: its tasks (worker, status, job and queue), the jobs
    it moves or deletes (their QUEUED tasks), and each queue's QUEUED tasks and newest minute."""
    t = _Tally()
    created_jobs = {r.aggregate_id for r in records if r.type == "Job.Created"}
    created_tasks = {r.aggregate_id for r in records if r.type == "Task.Created"}
    task_ids = sorted({r.aggregate_id for r in records if r.type.startswith("Task.")} - created_tasks)
    for chunk in iter_chunks(task_ids, 500):
        for row in tx.all(
            f"SELECT t.id, t.job_id, t.status, t.worker, j.queue_id FROM {TASKS} t"
            f" JOIN {JOBS} j ON j.id = t.job_id WHERE t.id IN ({_marks(chunk)})",
            chunk,
        ):
            t.tasks[row["id"]] = _TaskState(row["job_id"], row["status"], row["worker"])
            t.queue_of[row["job_id"]] = row["queue_id"]
    wanted_jobs = {r.data.get("job_id") for r in records if r.type == "Task.Created"}
    wanted_jobs |= {r.aggregate_id for r in records if r.type in ("Job.Moved", "Job.Deleted")}
    jobs = sorted(j for j in wanted_jobs - created_jobs - set(t.queue_of) if isinstance(j, str))
    for chunk in iter_chunks(jobs, 500):
        for row in tx.all(f"SELECT id, queue_id FROM {JOBS} WHERE id IN ({_marks(chunk)})", chunk):
            t.queue_of[row["id"]] = row["queue_id"]
    regrouped = sorted({r.aggregate_id for r in records if r.type in ("Job.Moved", "Job.Deleted")} - created_jobs)
    for chunk in iter_chunks(regrouped, 500):
        for row in tx.all(
            f"SELECT job_id, COUNT(*) AS n FROM {TASKS} WHERE job_id IN ({_marks(chunk)}) AND status = ?"
            " GROUP BY job_id",
            [*chunk, QUEUED],
        ):
            t.queued_at_start[row["job_id"]] = int(row["n"])
    named = {r.data.get("queue_id") for r in records if r.type == "Job.Created"}
    named |= {r.data.get("to_queue_id") for r in records if r.type == "Job.Moved"}
    queues = sorted(set(t.queue_of.values()) | {q for q in named if isinstance(q, str)})
    for chunk in iter_chunks(queues, 500):
        for row in tx.all(
            f"SELECT q.id, {_newest('h.minute', '')} AS minute, {_newest('h.queued', '')} AS queued"
            f" FROM {QUEUES} q WHERE q.id IN ({_marks(chunk)})",
            chunk,
        ):
            if row["minute"] is not None:
                t.depth[row["id"]] = int(row["queued"])
                t.latest[row["id"]] = int(row["minute"])
    return t


def _task_event(t: _Tally, r: Record) -> None:
    if r.type == "Task.Created":
        job_id = r.data.get("job_id")
        if not isinstance(job_id, str) or job_id in t.deleted:
            return
        state = t.tasks[r.aggregate_id] = _TaskState(job_id, None, None)
    else:
        found = t.tasks.get(r.aggregate_id)
        if found is None or found.job_id in t.deleted:
            return  # its job is gone: nothing of it is shown any more
        state = found
    queue_id = t.queue_of.get(state.job_id)
    if queue_id is None:
        return
    if r.type == "Task.Claimed":
        state.worker = r.data.get("worker")
    if state.worker and r.type in _FROM_WORKER:
        did = t.worker(state.worker, queue_id)
        did.last_seen = max(did.last_seen, epoch_ms(r.timestamp))
        did.claimed += r.type == "Task.Claimed"
        did.done += r.type == "Task.Completed"
        did.failed += r.type == "Task.AttemptFailed"
    if state.worker and r.type == "Task.LeaseExpired":
        t.worker(state.worker, queue_id).failed += 1
    status = _IMPLIED_STATUS.get(r.type, r.data.get("status"))
    if not isinstance(status, str) or status == state.status:
        return
    previous, state.status = state.status, status
    change = (status == QUEUED) - (previous == QUEUED)
    if change:
        t.add_queued(queue_id, state.job_id, change, r)
    if status in (DONE, FAILED):
        sums = t.minute(queue_id, r)
        sums.done += status == DONE
        sums.failed += status == FAILED


def _job_event(t: _Tally, r: Record) -> None:
    job_id = r.aggregate_id
    if r.type == "Job.Created":
        queue_id = r.data.get("queue_id")
        if isinstance(queue_id, str):
            t.queue_of[job_id] = queue_id
        return
    queue_id = t.queue_of.get(job_id)
    if queue_id is None or job_id in t.deleted:
        return
    queued = t.queued_at_start.get(job_id, 0) + t.queued_change.get(job_id, 0)
    if r.type == "Job.Deleted":
        t.deleted.add(job_id)
        if queued:
            t.add_queued(queue_id, None, -queued, r)
        return
    target = r.data.get("to_queue_id")
    if not isinstance(target, str):
        return
    t.queue_of[job_id] = target
    if queued:
        t.add_queued(queue_id, None, -queued, r)
        t.add_queued(target, None, queued, r)


_UPSERT_WORKER = (
    f"INSERT INTO {WORKERS} (worker, queue_id, last_seen, claimed, done, failed) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (worker, queue_id) DO UPDATE SET"
    f" last_seen = CASE WHEN excluded.last_seen > {WORKERS}.last_seen THEN excluded.last_seen"
    f" ELSE {WORKERS}.last_seen END,"
    f" claimed = {WORKERS}.claimed + excluded.claimed, done = {WORKERS}.done + excluded.done,"
    f" failed = {WORKERS}.failed + excluded.failed"
)
_UPSERT_MINUTE = (
    f"INSERT INTO {THROUGHPUT} (queue_id, minute, done, failed, queued) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (queue_id, minute) DO UPDATE SET"
    f" done = {THROUGHPUT}.done + excluded.done, failed = {THROUGHPUT}.failed + excluded.failed,"
    " queued = excluded.queued"
)


def tally(tx: Tx, records: list[Record]) -> None:
    """Apply a batch to jl_workers and jl_throughput. Called by the runner before the other
    handlers, so that what it reads is the state the batch starts from."""
    relevant = [r for r in records if r.type.startswith("Task.") or r.type in _JOB_EVENTS]
    if not relevant:
        return
    t = _read_state(tx, relevant)
    for r in relevant:
        if r.type.startswith("Task."):
            _task_event(t, r)
        else:
            _job_event(t, r)
    for (worker, queue_id), w in sorted(t.workers.items()):
        tx.later(_UPSERT_WORKER, (worker, queue_id, w.last_seen, w.claimed, w.done, w.failed))
    for (queue_id, minute), m in sorted(t.minutes.items()):
        tx.later(_UPSERT_MINUTE, (queue_id, minute, m.done, m.failed, m.queued))


# -- reading ---------------------------------------------------------------------------

MAX_MINUTES = 1440  # a day of minutes, the longest throughput series
MAX_WORKERS = 500
RUNNING_PER_WORKER = 50  # tasks listed per worker (its speed counts them all)


@dataclass
class WorkerActivity:
    name: str
    last_seen: datetime
    claimed: int
    done: int
    failed: int
    speed: float  # MB/s, the sum of its running tasks'
    running: list[Row]  # task rows, the first RUNNING_PER_WORKER in claim order
    holding: int  # how many tasks it holds now


@dataclass(frozen=True)
class MinutePoint:
    minute: datetime
    done: int
    failed: int
    queued: int


def _owned(groups: Collection[str] | None, queue_column: str, queue: str | None = None) -> tuple[str, list[Any]]:
    """A condition on `queue_column`: a queue of `groups` (None: of any group), and the one
    named by code or id, when `queue` is given."""
    conditions: list[str] = []
    params: list[Any] = []
    if groups is not None:
        owned, codes = owned_by("q.owner", groups)
        conditions.append(f"{queue_column} IN (SELECT q.id FROM {QUEUES} q WHERE {owned})")
        params += codes
    if queue is not None:
        conditions.append(f"{queue_column} IN (SELECT n.id FROM {QUEUES} n WHERE n.code = ? OR n.id = ?)")
        params += [queue, queue]
    return " AND ".join(conditions) or "1 = 1", params


async def worker_activity(store: ReadStore, groups: Collection[str] | None, first: int = 50) -> list[WorkerActivity]:
    """The workers seen in the queues of `groups`, most recently heard of first: what they
    did there, and the tasks of those queues they hold now."""
    owned, params = _owned(groups, "w.queue_id")
    rows = await store.fetch(
        "SELECT w.worker, MAX(w.last_seen) AS last_seen, SUM(w.claimed) AS claimed, SUM(w.done) AS done,"
        f" SUM(w.failed) AS failed FROM {WORKERS} w WHERE {owned}"
        f" GROUP BY w.worker ORDER BY MAX(w.last_seen) DESC, w.worker LIMIT {int(first)}",
        params,
    )
    if not rows:
        return []
    names = [str(r["worker"]) for r in rows]
    held, held_params = _owned(groups, "j.queue_id")
    in_flight = sorted(s.value for s in IN_FLIGHT)
    tasks = await store.fetch(
        f"SELECT t.* FROM {TASKS} t JOIN {JOBS} j ON j.id = t.job_id"
        f" WHERE t.status IN ({_marks(in_flight)}) AND t.worker IN ({_marks(names)}) AND {held}"
        " ORDER BY t.started, t.id",
        [*in_flight, *names, *held_params],
    )
    running: dict[str, list[Row]] = {name: [] for name in names}
    for task in tasks:
        running[str(task["worker"])].append(task)
    return [
        WorkerActivity(
            name=name,
            last_seen=datetime.fromtimestamp(int(r["last_seen"]) / 1000, UTC),
            claimed=int(r["claimed"]),
            done=int(r["done"]),
            failed=int(r["failed"]),
            speed=round(sum(float(task["speed"] or 0) for task in running[name]), 3),
            running=running[name][:RUNNING_PER_WORKER],
            holding=len(running[name]),
        )
        for name, r in zip(names, rows, strict=True)
    ]


async def throughput(
    store: ReadStore, groups: Collection[str] | None, minutes: int, now: datetime, queue: str | None = None
) -> list[MinutePoint]:
    """One point per minute of the last `minutes` up to `now`'s, oldest first: tasks that
    became DONE and FAILED in it, and the QUEUED tasks at its end, summed over the queues
    of `groups` (or the one queue named by code or id)."""
    last = epoch_minute(now)
    first = last - minutes + 1
    owned, params = _owned(groups, "h.queue_id", queue)
    rows = await store.fetch(
        f"SELECT h.queue_id, h.minute, h.done, h.failed, h.queued FROM {THROUGHPUT} h"
        f" WHERE h.minute >= ? AND h.minute <= ? AND {owned} ORDER BY h.minute",
        [first, last, *params],
    )
    # Each queue's QUEUED tasks when the series starts: its newest minute before it.
    scope, scope_params = _owned(groups, "s.id", queue)
    before = await store.fetch(
        f"SELECT s.id, {_newest('h.queued', ' AND h.minute < ?', 's')} AS queued FROM {QUEUES} s WHERE {scope}",
        [first, *scope_params],
    )
    depth = {str(r["id"]): int(r["queued"]) for r in before if r["queued"] is not None}
    return list(_series(first, last, depth, rows))


def _series(first: int, last: int, depth: dict[str, int], rows: Iterable[Row]) -> Iterable[MinutePoint]:
    by_minute: dict[int, list[Row]] = {}
    for row in rows:
        by_minute.setdefault(int(row["minute"]), []).append(row)
    for minute in range(first, last + 1):
        done = failed = 0
        for row in by_minute.get(minute, ()):
            done += int(row["done"])
            failed += int(row["failed"])
            depth[str(row["queue_id"])] = int(row["queued"])
        yield MinutePoint(datetime.fromtimestamp(minute * 60, UTC), done, failed, sum(depth.values()))
