"""The read models against an independent reference: a pure fold of the event log.

A seeded, realistic workload (nested, tagged, updated, sealed, deleted and
terminated queues; ~30 jobs with tasks moving through most of their statuses;
workers claiming, completing and failing tasks; the clock retiring and archiving
jobs) is written through the Ledger's commands. The fold below then reads the
History oldest first and works out, from the meaning of each event alone, which
rows jl_queues, jl_jobs and jl_tasks should hold. It never calls a projection
handler: queue counts, effective job priorities, job sizes and progress are
derived from the folded end state, so a count that was applied twice, a priority
that missed its queue's change or a roll-up that missed a task all show up.

Then: a rebuild gives identical rows, a crash between applying a batch and
committing it leaves no trace, a fresh runner resumes where another stopped,
and the change feed announces the position it reached.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.errors import ConflictError
from domain.history import History, Record
from domain.job import ALLOWED as JOB_ALLOWED
from domain.job import FINISHED
from domain.job import USER_SETTABLE as JOB_USER_SETTABLE
from domain.ledger import Ledger
from domain.task import ALLOWED as TASK_ALLOWED
from domain.task import USER_SETTABLE as TASK_USER_SETTABLE
from projections.runner import ProjectionRunner, RunnerConflict
from projections.schema import JOBS, QUEUES, TASKS, TRACKING
from projections.stores import ReadStore, open_read_store
from tests.helpers import default_queue, job, task

SEED = 20240611
ACTORS = ("alice@post.example", "bob", "ops", "lars@edit.com")
WORKERS = ("worker-1", "worker-2")


# =============================================================================
# The workload
# =============================================================================


@dataclass
class Workload:
    """Drives a ledger through a realistic, seeded (so repeatable) mix of commands.

    Choices are random but always valid: the next status of a job or task is drawn
    from what the domain allows from its current status, read from the aggregate.
    """

    ledger: Ledger
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    queues: dict[str, str] = field(default_factory=dict)  # code -> id
    closed: set[str] = field(default_factory=set)  # sealed or deleted: take no jobs
    jobs: list[str] = field(default_factory=list)  # live job ids, in creation order
    specs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # job id -> task inputs
    deletions_left: int = 3

    def run(self) -> Workload:
        self.first_half()
        self.second_half()
        return self

    def first_half(self) -> None:
        self.create_queues()
        self.submit_jobs(30)
        self.scripted_outcomes("early")  # churned later
        self.churn(30)

    def second_half(self) -> None:
        self.reshape_queues()
        self.churn(20)
        self.retire_and_archive()
        self.churn(15)
        self.resend_part_of_a_done_job()
        self.scripted_outcomes("late")  # so the end state surely has DONE and FAILED jobs

    # -- helpers ----------------------------------------------------------------

    def actor(self) -> str:
        return self.rng.choice(ACTORS)

    def open_queue_codes(self) -> list[str]:
        return [code for code in self.queues if code not in self.closed]

    def status_of(self, job_id: str) -> str:
        return str(job(self.ledger, job_id).status)

    def task_ids(self, job_id: str) -> list[str]:
        return list(job(self.ledger, job_id).tasks)

    # -- queues -----------------------------------------------------------------

    def create_queues(self) -> None:
        """Six queues beside the default one, each with a different fate later on."""
        led = self.ledger
        self.queues["default"] = str(default_queue(led).id)
        self.queues["ingest"] = led.queues.create(
            "ingest",
            priority=700,
            tags={"team": "post", "site": "oslo"},
            max_concurrency=3,
            description="Camera cards",
            actor="alice@post.example",
        ).id
        self.queues["ingest-hd"] = led.queues.create(
            "ingest-hd",
            parent="ingest",
            priority=650,
            metadata={"resolution": "4k"},
            actor="alice@post.example",
        ).id
        self.queues["renders"] = led.queues.create(
            "renders", execution_mode="FIFO", idle_timeout_s=30, max_attempts=2, actor="bob"
        ).id
        self.queues["archive-2023"] = led.queues.create("archive-2023", priority=100, actor="ops").id
        self.queues["scratch"] = led.queues.create("scratch", priority=300, actor="bob").id
        self.queues["overnight"] = led.queues.create("overnight", priority=200, actor="ops").id

    def reshape_queues(self) -> None:
        """Tags, updates, a default swap, a seal, a delete, a terminate, a reopen."""
        led, q = self.ledger, self.queues
        led.queues.add_tags(q["ingest"], {"owner": "lars", "team": "color"}, actor="lars@edit.com")
        led.queues.remove_tags(q["ingest"], ["site", "absent"], actor="ops")
        led.queues.update(
            q["renders"],
            priority=900,
            description="GPU farm",
            metadata={"gpu": "a100", "rack": 4},
            max_concurrency=5,
            execution_mode="LIFO",
            idle_timeout_s=0,
            actor="bob",
        )
        stays_in_scratch = self.finish_one_job_in("scratch")
        finished_in_scratch = self.finish_one_job_in("scratch", besides=stays_in_scratch)
        led.queues.update(q["renders"], default=True, actor="ops")
        self.churn(10)
        led.queues.seal(q["archive-2023"], actor="ops")
        self.closed.add("archive-2023")
        led.queues.delete(q["scratch"], actor="bob")  # unfinished jobs move to renders
        self.closed.add("scratch")
        if finished_in_scratch is not None:  # reopened after its queue went: lands in the default
            led.jobs.update(finished_in_scratch, status="WAITING", actor="lars@edit.com")
        late = led.jobs.create(
            queue="overnight", code="late-render", tasks=[{"source": {"kind": "command", "command": "make"}}],
            actor="bob",
        ).id  # fmt: skip
        self.jobs.append(late)
        self.specs[late] = [{"source": {"kind": "command", "command": "make"}}]
        led.queues.terminate(q["overnight"], actor="ops")  # aborts the unfinished jobs
        led.queues.update(q["ingest"], priority=400, actor="alice@post.example")
        led.queues.update(q["ingest-hd"], status="DISABLED", actor="ops")
        led.queues.update(q["default"], default=True, priority=550, actor="ops")

    def finish_one_job_in(self, code: str, besides: str | None = None) -> str | None:
        """Mark one unfinished job of the queue DONE, so the queue keeps a finished job."""
        for job_id in self.jobs:
            j = job(self.ledger, job_id)
            if job_id != besides and j.queue_id == self.queues[code] and "DONE" in JOB_ALLOWED[j.status]:
                self.ledger.jobs.update(job_id, status="DONE", actor=self.actor())
                return job_id
        return None

    # -- jobs -------------------------------------------------------------------

    def submit_jobs(self, count: int) -> None:
        """Jobs in every queue, with 1-5 tasks of known and unknown sizes; some without
        a destination (their transfer tasks wait in PENDING), some command tasks, some
        paused, a couple without tasks at all."""
        codes = list(self.queues)
        for i in range(count):
            code = codes[i % len(codes)]
            destination = None if self.rng.random() < 0.3 else f"/out/j{i:02d}"
            kwargs: dict[str, Any] = {
                "queue": None if code == "default" and i % 2 else code,
                "destination": destination,
                "priority": self.rng.choice([None, None, None, 100, 800]),
                "metadata": {"project": self.rng.choice(["film", "ad", "doc"]), "n": i}
                if self.rng.random() < 0.5
                else None,
                "status": "PAUSED" if self.rng.random() < 0.1 else None,
            }
            if i in (5, 17):  # no tasks: named after its source, stays INIT
                kwargs.update(source=f"share=projects/j{i}/reel.mov", status=None)
                specs: list[dict[str, Any]] = []
            else:
                specs = [self.new_task_spec(i, k) for k in range(self.rng.randint(1, 5))]
                kwargs["tasks"] = specs
                if self.rng.random() < 0.3:
                    kwargs["code"] = f"job-{i:02d}"
            job_id = self.ledger.jobs.create(**kwargs, actor=self.actor()).id
            self.jobs.append(job_id)
            self.specs[job_id] = list(specs)

    def new_task_spec(self, i: int, k: int) -> dict[str, Any]:
        rng = self.rng
        if rng.random() < 0.2:
            spec: dict[str, Any] = {"source": {"kind": "command", "command": ["render", f"shot{i}_{k}"]}}
        else:
            spec = {"source": f"/cards/j{i:02d}/clip{k}.mov"}
            if rng.random() < 0.25:
                spec["destination"] = f"/edit/j{i:02d}/clip{k}.mov"
        size = rng.choice([None, None, 0, 1_000, 123_456, 5_000_000])
        if size is not None:
            spec["size"] = size
        if rng.random() < 0.2:
            spec["priority"] = rng.choice([10, 999])
        if rng.random() < 0.2:
            spec["metadata"] = {"camera": rng.choice(["A", "B"])}
        return spec

    def scripted_outcomes(self, name: str) -> None:
        """A job a worker completes (RUNNING -> DONE) and one whose only task fails for
        good (RUNNING -> FAILED)."""
        job_id = self.ledger.jobs.create(
            code=f"smooth-{name}", tasks=["/cards/a.mov", "/cards/b.mov"], destination="/out", actor="bob"
        ).id
        self.jobs.append(job_id)
        self.specs[job_id] = [{"source": "/cards/a.mov"}, {"source": "/cards/b.mov"}]
        leases = self.ledger.dispatch.claim("worker-2", self.task_ids(job_id), limit=2, actor="worker-2").ids
        self.ledger.dispatch.complete_many([(lease, None) for lease in leases], actor="worker-2")
        assert self.status_of(job_id) == "DONE"

        job_id = self.ledger.jobs.create(
            code=f"doomed-{name}",
            tasks=[{"source": "/cards/doomed.mov", "size": 42}],
            destination="/out",
            actor="bob",
        ).id
        self.jobs.append(job_id)
        self.specs[job_id] = [{"source": "/cards/doomed.mov", "size": 42}]
        (task_id,) = self.task_ids(job_id)
        (lease,) = self.ledger.dispatch.claim("worker-1", [task_id], actor="worker-1").ids
        self.ledger.dispatch.fail(lease, "checksum mismatch", retry=False, actor="worker-1")
        assert self.status_of(job_id) == "FAILED"

    def resend_part_of_a_done_job(self) -> None:
        """Completed tasks of 1,000 and 3,000 bytes; the small one is sent again (its
        duplicate retries it), so the job is WAITING at 75 % by size."""
        specs = [{"source": "/cards/small.mov", "size": 1_000}, {"source": "/cards/big.mov", "size": 3_000}]
        job_id = self.ledger.jobs.create(code="resent", tasks=specs, destination="/out", actor="lars@edit.com").id
        self.jobs.append(job_id)
        self.specs[job_id] = specs
        leases = self.ledger.dispatch.claim("worker-1", self.task_ids(job_id), limit=2, actor="worker-1").ids
        self.ledger.dispatch.complete_many([(lease, {"ok": True}) for lease in leases], actor="worker-1")
        self.ledger.jobs.add_tasks(job_id, [specs[0]], actor="lars@edit.com")
        assert self.status_of(job_id) == "WAITING"

    def churn(self, rounds: int) -> None:
        """Random valid changes to random live jobs."""
        actions: dict[str, Callable[[str], None]] = {
            "tasks": self.change_tasks,
            "status": self.change_status,
            "retry": self.add_duplicate,
            "more": self.add_more_tasks,
            "priority": self.change_priority,
            "metadata": self.change_metadata,
            "move": self.move,
            "destination": self.give_destination,
            "work": self.work,
            "delete": self.delete,
            "finish": self.finish_tasks,
        }
        weights = [6, 4, 2, 1, 2, 1, 2, 1, 5, 1, 2]
        for _ in range(rounds):
            name = self.rng.choices(list(actions), weights)[0]
            actions[name](self.rng.choice(self.jobs))

    def change_tasks(self, job_id: str) -> None:
        ids = self.task_ids(job_id)
        if not ids:
            return
        updates = []
        for task_id in self.rng.sample(ids, min(len(ids), self.rng.randint(1, 2))):
            current = task(self.ledger, task_id).status
            update: dict[str, Any] = {"id": task_id}
            choices = sorted((TASK_ALLOWED[current] & TASK_USER_SETTABLE) - {current})
            if choices:
                update["status"] = self.rng.choice(choices)
            if self.rng.random() < 0.2:
                update["priority"] = self.rng.randint(0, 1000)
            if self.rng.random() < 0.2:
                update["metadata"] = {"note": f"checked by {self.actor()}"}
            updates.append(update)
        self.ledger.jobs.update_tasks(job_id, updates, actor=self.actor())

    def finish_tasks(self, job_id: str) -> None:
        """A user marks every task that may be DONE as DONE (the job follows if all are)."""
        updates = [
            {"id": task_id, "status": "DONE"}
            for task_id in self.task_ids(job_id)
            if "DONE" in TASK_ALLOWED[task(self.ledger, task_id).status] - {task(self.ledger, task_id).status}
        ]
        if updates:
            self.ledger.jobs.update_tasks(job_id, updates, actor=self.actor())

    def change_status(self, job_id: str) -> None:
        current = job(self.ledger, job_id).status
        choices = sorted((JOB_ALLOWED[current] & JOB_USER_SETTABLE) - {current})
        if choices:
            self.ledger.jobs.update(job_id, status=self.rng.choice(choices), actor=self.actor())

    def add_duplicate(self, job_id: str) -> None:
        """Adding a task equal to an existing one retries it."""
        if self.specs[job_id] and self.status_of(job_id) != "ABORTED":
            spec = self.rng.choice(self.specs[job_id])
            self.ledger.jobs.add_tasks(job_id, [spec], actor=self.actor())

    def add_more_tasks(self, job_id: str) -> None:
        if self.status_of(job_id) == "ABORTED":
            return
        i = self.jobs.index(job_id)
        spec = self.new_task_spec(100 + i, len(self.specs[job_id]))
        self.ledger.jobs.add_tasks(job_id, [spec], actor=self.actor())
        self.specs[job_id].append(spec)

    def change_priority(self, job_id: str) -> None:
        self.ledger.jobs.update(job_id, priority=self.rng.choice([None, 50, 950]), actor=self.actor())

    def change_metadata(self, job_id: str) -> None:
        self.ledger.jobs.update(job_id, metadata={"reviewed": self.rng.random() < 0.5}, actor=self.actor())

    def move(self, job_id: str) -> None:
        target = self.rng.choice(self.open_queue_codes())
        with contextlib.suppress(ConflictError):  # running, and the target is full: nothing written
            self.ledger.jobs.update(job_id, queue=target, actor=self.actor())

    def give_destination(self, job_id: str) -> None:
        if job(self.ledger, job_id).destination is None:
            self.ledger.jobs.update(job_id, destination="/out/late", actor=self.actor())

    def work(self, job_id: str) -> None:
        """A worker claims a queued task and completes it, fails it (for good or for
        a retry), or is still at it."""
        queued = [t for t in self.task_ids(job_id) if task(self.ledger, t).status == "QUEUED"]
        if not queued:
            return
        worker = self.rng.choice(WORKERS)
        leases = self.ledger.dispatch.claim(worker, [self.rng.choice(queued)], lease_seconds=600, actor=worker).ids
        if not leases:  # job not dispatchable, queue disabled or full
            return
        outcome = self.rng.choice(["complete", "complete", "fail", "retry", "busy"])
        if outcome == "complete":
            self.ledger.dispatch.complete(leases[0], result={"sha256": "ab" * 8}, actor=worker)
        elif outcome in ("fail", "retry"):
            self.ledger.dispatch.fail(leases[0], "disk full", retry=outcome == "retry", actor=worker)

    def delete(self, job_id: str) -> None:
        if self.deletions_left > 0:
            self.deletions_left -= 1
            self.ledger.jobs.delete(job_id, actor=self.actor())
            self.jobs.remove(job_id)

    def retire_and_archive(self) -> None:
        """The clock's moves: finished jobs retire, some are archived, one is reopened."""
        finished = [j for j in self.jobs if self.status_of(j) in FINISHED]
        now = datetime.now(UTC)
        retired = self.ledger.jobs.retire(finished[:6], now, actor="jobledger-clock").ids
        self.ledger.jobs.archive(retired[:3], now, actor="jobledger-clock")
        if retired:
            self.ledger.jobs.update(retired[-1], status="WAITING", actor="lars@edit.com")


def realistic_workload(ledger: Ledger) -> Workload:
    return Workload(ledger).run()


# =============================================================================
# The pure fold: what the read models should hold, from the events alone
# =============================================================================

Row = dict[str, Any]


@dataclass
class Folded:
    """Entity state after folding a prefix of the log (before derived columns)."""

    queues: dict[str, Row] = field(default_factory=dict)
    jobs: dict[str, Row] = field(default_factory=dict)
    tasks: dict[str, Row] = field(default_factory=dict)
    position: int = 0


def touch(row: Row, r: Record, **values: Any) -> None:
    """Set fields, and record when and by whom the row was last changed."""
    row.update(values)
    row["modified"] = r.timestamp
    row["modifier"] = r.actor


# -- queues -------------------------------------------------------------------

QUEUE_FIELDS = (
    "code", "uri", "priority", "status", "description", "metadata", "tags",
    "max_concurrency", "idle_timeout_s", "execution_mode", "max_attempts", "parent_id",
)  # fmt: skip


def queue_created(s: Folded, r: Record) -> None:
    """A new, active, undeleted queue; its creator is both its user and modifier."""
    s.queues[r.aggregate_id] = {
        **{name: r.data[name] for name in QUEUE_FIELDS},
        "state": "ACTIVE",
        "is_default": r.data["default"],
        "deleted": False,
        "created": r.timestamp,
        "modified": r.timestamp,
        "user": r.actor,
        "modifier": r.actor,
    }


def queue_updated(s: Folded, r: Record) -> None:
    """`changes` holds the new values of the changed attributes, named as the columns."""
    touch(s.queues[r.aggregate_id], r, **r.data["changes"])


def queue_tags_added(s: Folded, r: Record) -> None:
    q = s.queues[r.aggregate_id]
    touch(q, r, tags={**q["tags"], **r.data["tags"]})


def queue_tags_removed(s: Folded, r: Record) -> None:
    q = s.queues[r.aggregate_id]
    touch(q, r, tags={k: v for k, v in q["tags"].items() if k not in r.data["keys"]})


def queue_setter(**values: Any) -> Callable[[Folded, Record], None]:
    """Events that set fixed values (DefaultSet, Sealed, Deleted, ...)."""

    def apply(s: Folded, r: Record) -> None:
        touch(s.queues[r.aggregate_id], r, **values)

    return apply


# -- jobs ---------------------------------------------------------------------


def job_created(s: Folded, r: Record) -> None:
    d = r.data
    s.jobs[r.aggregate_id] = {
        "code": d["code"],
        "queue_id": d["queue_id"],
        "phase": "ACTIVE",
        "status": d["status"],
        "own_priority": d["priority"],
        "source": d["source"],
        "destination": d["destination"],
        "metadata": d["metadata"],
        "max_attempts": d["max_attempts"],
        "created": r.timestamp,
        "modified": r.timestamp,
        "finished": None,
        "user": r.actor,
        "modifier": r.actor,
    }


def job_status_changed(s: Folded, r: Record) -> None:
    """Finished (DONE, FAILED, ABORTED) stamps `finished`; anything else clears it
    and brings the job back to the ACTIVE list."""
    status = r.data["status"]
    values: Row = {"status": status, "finished": r.timestamp if status in FINISHED else None}
    if status not in FINISHED:
        values["phase"] = "ACTIVE"
    touch(s.jobs[r.aggregate_id], r, **values)


def job_updated(s: Folded, r: Record) -> None:
    """priority (None: follow the queue), metadata, destination, max_attempts."""
    changes = dict(r.data["changes"])
    if "priority" in changes:
        changes["own_priority"] = changes.pop("priority")
    touch(s.jobs[r.aggregate_id], r, **changes)


def job_moved(s: Folded, r: Record) -> None:
    touch(s.jobs[r.aggregate_id], r, queue_id=r.data["to_queue_id"])


def job_deleted(s: Folded, r: Record) -> None:
    """Gone from the read model, with its tasks (see `derive`)."""
    del s.jobs[r.aggregate_id]


def job_phase(phase: str) -> Callable[[Folded, Record], None]:
    """The clock's Retired/Archived: a bookkeeping move, not a change by a user,
    so (as the projection does) `modified` stays."""

    def apply(s: Folded, r: Record) -> None:
        s.jobs[r.aggregate_id]["phase"] = phase

    return apply


def job_touched(s: Folded, r: Record) -> None:
    """Tasks added to the job, or one changing status: the job was modified (by that actor)."""
    if r.aggregate_id in s.jobs:
        touch(s.jobs[r.aggregate_id], r)


# -- tasks --------------------------------------------------------------------


def task_created(s: Folded, r: Record) -> None:
    d = r.data
    s.tasks[r.aggregate_id] = {
        "job_id": d["job_id"],
        "uri": d["uri"],
        "status": d["status"],
        "priority": d["priority"],
        "size": d["size"],
        "source": d["source"],
        "destination": d["destination"],
        "metadata": d["metadata"],
        "progress": 0,
        "attempts": 0,
        "finished": None,
    }


def task_status_changed(s: Folded, r: Record) -> None:
    """Task.Queued, Task.Done, ...: DONE means 100 %; DONE and FAILED stamp
    `finished`; queued again after FAILED, DONE or EXCLUDED starts from scratch."""
    t = s.tasks[r.aggregate_id]
    status, previous = r.data["status"], r.data["previous"]
    t["status"] = status
    t["finished"] = r.timestamp if status in ("DONE", "FAILED") else None
    if status == "DONE":
        t["progress"] = 100
    if status == "QUEUED" and previous in ("FAILED", "DONE", "EXCLUDED"):
        t.update(attempts=0, progress=0)


def task_retried(s: Folded, r: Record) -> None:
    """A duplicate was added: the task runs again from scratch."""
    s.tasks[r.aggregate_id].update(status=r.data["status"], attempts=0, progress=0, finished=None)


def task_updated(s: Folded, r: Record) -> None:
    s.tasks[r.aggregate_id].update(r.data["changes"])


def task_claimed(s: Folded, r: Record) -> None:
    """A worker took the task: one more attempt, starting at 0 %."""
    t = s.tasks[r.aggregate_id]
    t.update(status="BOOTING", attempts=t["attempts"] + 1, progress=0, finished=None)


def task_lease_renewed(s: Folded, r: Record) -> None:
    if r.data.get("progress") is not None:
        s.tasks[r.aggregate_id]["progress"] = r.data["progress"]


def task_completed(s: Folded, r: Record) -> None:
    s.tasks[r.aggregate_id].update(status="DONE", progress=100, finished=r.timestamp)


def task_attempt_ended(s: Folded, r: Record) -> None:
    """Failed, expired or released: QUEUED again, or FAILED for good (finished)."""
    t = s.tasks[r.aggregate_id]
    status = r.data["status"]
    t.update(status=status, finished=r.timestamp if status == "FAILED" else None)
    if r.type == "Task.LeaseReleased":  # given back unworked: not an attempt
        t["attempts"] -= 1


FOLDS: dict[str, Callable[[Folded, Record], None]] = {
    "Queue.Created": queue_created,
    "Queue.Updated": queue_updated,
    "Queue.TagsAdded": queue_tags_added,
    "Queue.TagsRemoved": queue_tags_removed,
    "Queue.DefaultSet": queue_setter(is_default=True),
    "Queue.DefaultUnset": queue_setter(is_default=False),
    "Queue.Sealed": queue_setter(state="SEALED"),
    "Queue.Unsealed": queue_setter(state="ACTIVE"),
    "Queue.Terminated": queue_setter(),  # its jobs' own StatusChanged events abort them
    "Queue.Deleted": queue_setter(deleted=True, is_default=False),  # its jobs' Moved events move them
    "Job.Created": job_created,
    "Job.StatusChanged": job_status_changed,
    "Job.Updated": job_updated,
    "Job.Moved": job_moved,
    "Job.Deleted": job_deleted,
    "Job.Retired": job_phase("FINISHED"),
    "Job.Archived": job_phase("ARCHIVED"),
    "Job.TasksAdded": job_touched,
    "Job.TaskStatusChanged": job_touched,
    "Job.TaskStatusesChanged": job_touched,
    "Task.Created": task_created,
    **{
        f"Task.{name}": task_status_changed
        for name in ("Pending", "Queued", "Booting", "Executing", "Failed", "PutOnHold", "Excluded", "Done")
    },
    "Task.Retried": task_retried,
    "Task.Updated": task_updated,
    "Task.Claimed": task_claimed,
    "Task.LeaseRenewed": task_lease_renewed,
    "Task.Completed": task_completed,
    "Task.AttemptFailed": task_attempt_ended,
    "Task.LeaseExpired": task_attempt_ended,
    "Task.LeaseReleased": task_attempt_ended,
}
# Events that change nothing the read models show: the queue's own job and child
# lists (the counts are derived from the jobs instead), the job's tally of its
# tasks (derived from the tasks instead), and the registry of codes.
NOT_SHOWN = frozenset(
    {
        "Queue.JobAdded", "Queue.JobRemoved", "Queue.JobStarted", "Queue.JobStopped",
        "Queue.ChildAdded", "Queue.ChildRemoved",
        "QueueRegistry.Created", "QueueRegistry.CodeReserved", "QueueRegistry.CodeReleased",
        "QueueRegistry.DefaultChanged",
    }
)  # fmt: skip


def fold(records: Iterable[Record]) -> Folded:
    """Fold records, oldest first, into entity state. Unknown event types fail loudly,
    so a new event cannot slip past this reference unnoticed."""
    state = Folded()
    for r in records:
        assert r.position > state.position, "records must come oldest first"
        if r.type in FOLDS:
            FOLDS[r.type](state, r)
        else:
            assert r.type in NOT_SHOWN, f"the reference fold does not know {r.type}"
        state.position = r.position
    return state


# -- derived columns ----------------------------------------------------------


def is_unfinished(status: str) -> bool:
    return status not in ("DONE", "FAILED", "ABORTED")


def job_counts(jobs: Iterable[Row]) -> Row:
    """A queue's counts, from the jobs (that still exist) it holds now."""
    statuses = [j["status"] for j in jobs]
    return {
        "total_jobs": len(statuses),
        "successful_jobs": statuses.count("DONE"),
        "failed_jobs": statuses.count("FAILED"),
        "active_jobs": sum(is_unfinished(s) for s in statuses),
    }


def job_size(tasks: list[Row]) -> int:
    """Bytes of the tasks that will run (not EXCLUDED); -1 if any is unknown or none."""
    sizes = [t["size"] for t in tasks if t["status"] != "EXCLUDED"]
    if not sizes or any(size < 0 for size in sizes):
        return -1
    return sum(sizes)


def job_progress(status: str, tasks: list[Row]) -> int:
    """100 when the job is DONE; else its counted tasks' progress, weighted by their
    sizes (at least one byte each) when every size is known, otherwise each task
    weighing the same; rounded down, and below 100 until every counted task is DONE."""
    if status == "DONE":
        return 100
    counted = [t for t in tasks if t["status"] != "EXCLUDED"]
    if not counted:
        return 0
    by_size = job_size(counted) >= 0
    weights = [max(t["size"], 1) if by_size else 1 for t in counted]
    progress = sum(w * t["progress"] for w, t in zip(weights, counted, strict=True)) // sum(weights)
    if progress >= 100 and any(t["status"] != "DONE" for t in counted):
        return 99  # not done until every counted task is
    return progress


def derive(state: Folded) -> dict[str, dict[str, Row]]:
    """The expected rows of each table, by id: folded state plus derived columns."""
    tasks = {tid: dict(t) for tid, t in state.tasks.items() if t["job_id"] in state.jobs}
    tasks_of: dict[str, list[Row]] = {job_id: [] for job_id in state.jobs}
    for t in tasks.values():
        tasks_of[t["job_id"]].append(t)
    jobs: dict[str, Row] = {}
    for job_id, j in state.jobs.items():
        queue = state.queues[j["queue_id"]]
        own = j["own_priority"]
        jobs[job_id] = {
            **j,
            "priority": own if own is not None else queue["priority"],
            "size": job_size(tasks_of[job_id]),
            "progress": job_progress(j["status"], tasks_of[job_id]),
        }
    queues = {
        queue_id: {**q, **job_counts(j for j in jobs.values() if j["queue_id"] == queue_id)}
        for queue_id, q in state.queues.items()
    }
    return {QUEUES: queues, JOBS: jobs, TASKS: tasks}


def expected_rows(records: Iterable[Record]) -> dict[str, dict[str, Row]]:
    return derive(fold(records))


# =============================================================================
# Reading the read models and comparing
# =============================================================================

COLUMNS = {
    QUEUES: (
        "code", "priority", "status", "state", "is_default", "uri", "description", "metadata", "tags",
        "max_concurrency", "idle_timeout_s", "execution_mode", "max_attempts", "parent_id",
        "total_jobs", "successful_jobs", "failed_jobs", "active_jobs",
        "created", "modified", "user", "modifier", "deleted",
    ),
    JOBS: (
        "code", "queue_id", "phase", "status", "own_priority", "priority", "source", "destination",
        "progress", "size", "metadata", "max_attempts", "created", "modified", "finished", "user", "modifier",
    ),
    TASKS: (
        "job_id", "uri", "status", "priority", "size", "progress", "attempts", "source", "destination",
        "metadata", "finished",
    ),
}  # fmt: skip
BOOLEAN = frozenset({"is_default", "deleted"})
JSON_TEXT = frozenset({"metadata", "tags"})
JSON_TEXT_OF = {TASKS: frozenset({"metadata", "source", "destination"})}
TIMES = frozenset({"created", "modified", "finished"})


def normalise(table: str, column: str, value: Any) -> Any:
    """One comparable form for both stores: SQLite's 0/1 booleans, JSON kept as text,
    timestamps as aware UTC datetimes."""
    if value is None:
        return None
    if column in BOOLEAN:
        return bool(value)
    if column in JSON_TEXT_OF.get(table, JSON_TEXT):
        return json.loads(value)
    if column in TIMES:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value


def read_rows(store: ReadStore, table: str) -> dict[str, Row]:
    columns = ", ".join(f'"{c}"' for c in COLUMNS[table])
    rows = store.read(f"SELECT id, {columns} FROM {table}")
    return {row["id"]: {c: normalise(table, c, row[c]) for c in COLUMNS[table]} for row in rows}


def differences(table: str, expected: dict[str, Row], actual: dict[str, Row]) -> list[str]:
    """Every row missing or extra, and every column that differs, in words."""
    found = [f"{table}: row {i} missing" for i in sorted(expected.keys() - actual.keys())]
    found += [f"{table}: row {i} should not exist" for i in sorted(actual.keys() - expected.keys())]
    for row_id in sorted(expected.keys() & actual.keys()):
        for column in COLUMNS[table]:
            want, got = expected[row_id][column], actual[row_id][column]
            if got != want:
                label = expected[row_id].get("code") or expected[row_id].get("uri")
                found.append(f"{table} {row_id} ({label}).{column}: fold {want!r}, read model {got!r}")
    return found


def assert_matches_fold(store: ReadStore, records: list[Record]) -> None:
    expected = expected_rows(records)
    problems = [
        p for table in (QUEUES, JOBS, TASKS) for p in differences(table, expected[table], read_rows(store, table))
    ]
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:60])


def all_records(ledger: Ledger) -> list[Record]:
    return list(History(ledger).follow())


def snapshot(store: ReadStore) -> dict[str, list[Row]]:
    """Every column of every row of the read models, in id order."""
    tables = {table: store.read(f"SELECT * FROM {table} ORDER BY id") for table in (QUEUES, JOBS, TASKS)}
    tables[TRACKING] = store.read(f"SELECT * FROM {TRACKING} ORDER BY name")
    return tables


# =============================================================================
# Fixtures
# =============================================================================


@pytest.fixture
def open_runner(ledger: Ledger) -> Iterator[Callable[..., ProjectionRunner]]:
    """Runners on read stores of their own (as separate processes would have); set up."""
    stores: list[ReadStore] = []

    def make(batch_size: int = 1000) -> ProjectionRunner:
        store = open_read_store(ledger.store)
        stores.append(store)
        runner = ProjectionRunner(ledger, store, batch_size=batch_size)
        runner.setup()
        return runner

    yield make
    for store in stores:
        store.close()


class Crash(Exception):
    """The process died between applying a batch and committing it."""


# =============================================================================
# Tests
# =============================================================================


def assert_workload_covers_the_cases(records: list[Record]) -> None:
    """Guard against a vacuous comparison: the seeded workload must reach every case
    the read models have to get right."""
    types = Counter(r.type for r in records)
    wanted = {
        "Queue.Created", "Queue.Updated", "Queue.DefaultSet", "Queue.DefaultUnset", "Queue.Sealed",
        "Queue.Terminated", "Queue.Deleted", "Queue.TagsAdded", "Queue.TagsRemoved", "Queue.ChildAdded",
        "Job.Created", "Job.StatusChanged", "Job.Updated", "Job.Moved", "Job.Deleted", "Job.Retired",
        "Job.Archived", "Task.Created", "Task.Retried", "Task.Updated", "Task.Queued",
        "Task.Excluded", "Task.Done", "Task.PutOnHold", "Task.Failed", "Task.Claimed", "Task.Completed",
        "Task.AttemptFailed",
    }  # fmt: skip
    assert wanted <= set(types), f"never happened: {sorted(wanted - set(types))}"
    assert len({r.actor for r in records}) >= 6
    (deleted,) = [r for r in records if r.type == "Queue.Deleted"]
    (terminated,) = [r for r in records if r.type == "Queue.Terminated"]
    assert deleted.data["moved_job_ids"] and terminated.data["aborted_job_ids"]
    expected = expected_rows(records)
    jobs, queues = expected[JOBS].values(), expected[QUEUES].values()
    assert 25 <= len(jobs) <= 35
    assert {"PENDING", "DONE", "FAILED", "ABORTED"} <= {j["status"] for j in jobs}
    assert {"FINISHED", "ARCHIVED"} <= {j["phase"] for j in jobs}
    assert any(j["size"] == -1 for j in jobs) and any(j["size"] > 0 for j in jobs)
    assert any(0 < j["progress"] < 100 for j in jobs)
    (resent,) = [j for j in jobs if j["code"] == "resent"]
    assert (resent["status"], resent["size"], resent["progress"]) == ("WAITING", 4_000, 75)
    assert any(j["own_priority"] is None for j in jobs) and any(j["own_priority"] is not None for j in jobs)
    assert any(q["failed_jobs"] for q in queues) and any(q["successful_jobs"] for q in queues)
    task_statuses = {t["status"] for t in expected[TASKS].values()}
    assert task_statuses >= {"PENDING", "QUEUED", "DONE", "EXCLUDED", "ONHOLD", "FAILED"}


def test_the_read_models_equal_a_pure_fold_of_the_history(ledger, open_runner):
    realistic_workload(ledger)
    records = all_records(ledger)
    assert_workload_covers_the_cases(records)
    runner = open_runner()
    runner.catch_up()
    assert runner.position() == ledger.position() == records[-1].position
    assert_matches_fold(runner.store, records)


def test_rebuilding_gives_identical_rows(ledger, open_runner):
    realistic_workload(ledger)
    runner = open_runner()
    runner.catch_up()
    before = snapshot(runner.store)
    runner.rebuild()
    assert snapshot(runner.store) == before


def test_a_crash_between_applying_and_committing_leaves_no_trace(ledger, open_runner):
    realistic_workload(ledger)
    records = all_records(ledger)
    runner = open_runner(batch_size=7)
    batches = 0

    def crash_on_the_fifth(_batch: object) -> None:
        nonlocal batches
        batches += 1
        if batches == 5:
            raise Crash

    runner.before_commit = crash_on_the_fifth
    with pytest.raises(Crash):
        runner.catch_up()
    committed = records[: 4 * 7]
    assert runner.position() == committed[-1].position
    assert_matches_fold(runner.store, committed)  # the fifth batch left nothing behind

    recovered = open_runner(batch_size=7)  # a new process on the same tables
    recovered.catch_up()
    assert recovered.position() == ledger.position()
    assert_matches_fold(recovered.store, records)  # nothing skipped, nothing counted twice


def test_a_fresh_runner_resumes_where_another_stopped(ledger, open_runner):
    workload = Workload(ledger)
    workload.first_half()
    first = open_runner(batch_size=25)
    for _ in range(3):
        assert first.run_batch() == 25
    applied = all_records(ledger)[:75]
    assert_matches_fold(first.store, applied)

    workload.second_half()
    fresh = open_runner(batch_size=25)
    assert fresh.position() == applied[-1].position
    fresh.catch_up()
    assert fresh.position() == ledger.position()
    assert_matches_fold(fresh.store, all_records(ledger))


def test_the_feed_announces_the_position_the_runner_reached(ledger, open_runner):
    workload = Workload(ledger)  # a smaller one: the feed does not care what changed
    workload.create_queues()
    workload.submit_jobs(10)
    runner = open_runner(batch_size=20)
    head = ledger.position()
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(runner.feed.wait_for(head, timeout=10)))
    waiter.start()
    runner.catch_up()
    waiter.join(10)
    assert woken == [True]
    assert runner.feed.position == head == runner.position()
    assert runner.feed.wait_for(head, timeout=1) is True
    assert runner.feed.wait_for(head + 1000, timeout=0.2) is False

    later = ledger.jobs.create(code="late", tasks=["/late.mov"], destination="/out", actor="bob").position
    assert runner.feed.wait_for(later, timeout=0.2) is False  # written, not yet projected
    runner.catch_up()
    assert runner.feed.wait_for(later, timeout=1) is True
    assert runner.feed.position == ledger.position()


def test_two_runners_taking_turns_give_the_rows_a_rebuild_gives(ledger, open_runner):
    """A runner remembers each task's job and start between its batches; when another
    runner applied events in between, what it remembers may be stale and must not be used
    (here: a task started again while the other runner was applying)."""
    import time

    def step(runner: ProjectionRunner) -> int:
        while True:
            try:
                return runner.run_batch()
            except RunnerConflict:  # the other one moved on since this one's last batch
                continue

    realistic_workload(ledger)
    first, second = open_runner(batch_size=9), open_runner(batch_size=9)
    while step(first) + step(second):
        pass
    assert first.position() == ledger.position()
    job_id = ledger.jobs.create(
        code="twice",
        tasks=[{"source": {"kind": "command", "command": "true"}}],
        retry_delay=0,  # again at once
    ).id
    (task_id,) = job(ledger, job_id).tasks
    lease = ledger.dispatch.claim("w", [task_id]).ids[0]
    first.catch_up()  # the first runner sees attempt 1 start
    time.sleep(0.2)
    ledger.dispatch.fail(lease, "flaky")
    lease = ledger.dispatch.claim("w", [task_id]).ids[0]
    second.catch_up()  # the second sees attempt 2 start
    time.sleep(0.05)
    ledger.dispatch.complete(lease)
    first.catch_up()  # the first applies the completion: attempt 2 took ~50 ms, not ~250
    (row,) = first.store.read(f"SELECT time FROM {TASKS} WHERE id = ?", (task_id,))
    assert 40 <= row["time"] < 200, row
    before = snapshot(first.store)
    first.rebuild()
    assert snapshot(first.store) == before
