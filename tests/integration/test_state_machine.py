"""Random sequences of commands against a real store; after every one, the ledger still
makes sense.

Hypothesis drives a `RuleBasedStateMachine` that creates, changes, seals, terminates
and deletes queues; submits, moves, re-prioritises and deletes jobs; adds tasks (new
ones and duplicates) and changes their statuses; and plays a worker that claims,
completes, fails and gives back tasks, and a clock that expires leases. Inputs mix
valid and invalid values, so refusals are common. A refusal is fine if it is a
`LedgerError` (what users see as an error code) and it wrote nothing; any other
exception fails the test.

After every step the invariants (the `@invariant` methods below, each saying what it
means to a user) are checked on what the store holds. Each example gets an empty store
of its own: a new SQLite file, or a new PostgreSQL schema. The ledger under test
snapshots every 4 events instead of every 200, so that loading from snapshots is
checked too.

Choices made here, where the ledger allows something a stricter rule would not:

- "A job whose tasks are all DONE is finished" is not checked for a job whose status a
  user set last (`jobs.update(status=...)`): that status stands until the next command
  that lets the tasks decide. (So resuming an ABORTED job whose tasks are all DONE
  leaves it WAITING with nothing to run, until e.g. its priority is changed.)
- A deleted job's task summary may keep an old task status: a lease on one of its
  tasks can still end (expire, be given back) after the delete, and the ledger then
  changes the task but leaves the deleted job alone.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from eventsourcing.application import Repository
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain.commands import Written
from domain.dispatch import task_id_of
from domain.errors import LedgerError
from domain.history import History, Record
from domain.job import FINISHED, Job, JobStatus
from domain.ledger import Ledger
from domain.queue import Queue, QueueRegistry, QueueState
from domain.rules import UNSET
from domain.task import Task, TaskStatus

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
ACTOR = "state-machine"
NOT_AN_ID = "00000000-0000-4000-8000-000000000000"

# -- inputs -----------------------------------------------------------------------------


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], one_in: int = 8) -> st.SearchStrategy[Any]:
    """`usual`, but one time in `one_in` `odd` (an unusual or invalid value)."""
    return st.integers(1, one_in).flatmap(lambda n: odd if n == one_in else usual)


# Few codes, so duplicates are common; some are invalid (empty, spaces, capitals, too long).
VALID_QUEUE_CODES = st.sampled_from(["ingest", "render", "archive-1", "a_b", "default"])
QUEUE_CODES = mostly(VALID_QUEUE_CODES, st.sampled_from(["", "has space", "UPPER", "x" * 101, 7]), one_in=4)
# Few paths, so the same task (same source and destination) is often sent twice;
# "/in/a.mov" and {"path": "/in/a.mov"} are the same location.
PATHS = ["/in/a.mov", "share=projects/film/b.mov"]
LOCATIONS = st.one_of(
    st.sampled_from(PATHS),
    st.sampled_from(PATHS).map(lambda p: {"path": p}),
    st.just({"kind": "command", "command": ["echo", "hi"]}),
)
VALID_TASKS = mostly(
    st.fixed_dictionaries(
        {"source": LOCATIONS, "size": st.sampled_from([7, 1024, 0, None, -1])},
        optional={"destination": st.sampled_from([None, "/out", {"path": "/out"}])},
    ),
    st.sampled_from(PATHS),
    3,
)
INVALID_TASKS = st.sampled_from(
    [
        "",
        {"source": ""},
        {"source": "/in/a.mov", "size": -2},
        {"source": "/in/a.mov", "size": True},
        {"source": "/in/a.mov", "colour": "red"},
        {"source": {"kind": "command"}},
        {"size": 3},
        42,
    ]
)
# Mostly valid lists; else empty, or valid tasks followed by an invalid one (refused whole).
TASK_LISTS = mostly(
    st.lists(VALID_TASKS, min_size=1, max_size=3),
    st.one_of(st.just([]), st.tuples(st.lists(VALID_TASKS, max_size=2), INVALID_TASKS).map(lambda t: [*t[0], t[1]])),
)

CREATE_STATUSES = mostly(
    st.sampled_from([None, None, "INIT", "pending", "WAITING", "PAUSED"]),
    st.sampled_from(["RUNNING", "DONE", "nope", 3]),
    16,
)
# What users may set a task to, mostly; else what only workers set, or nothing, or nonsense.
TASK_UPDATE_STATUSES = mostly(
    st.sampled_from(["DONE", "QUEUED", "FAILED", "ONHOLD", "EXCLUDED", "done"]),
    st.sampled_from(["PENDING", "BOOTING", "EXECUTING", None, "nope"]),
    4,
)
# What users may set a job to, mostly (not always allowed from where the job is); else
# what only the ledger sets, or nonsense.
UPDATE_STATUSES = mostly(
    st.sampled_from([UNSET, UNSET, "PENDING", "WAITING", "PAUSED", "ABORTED", "DONE", "waiting"]),
    st.sampled_from(["INIT", "RUNNING", "FAILED", "bogus", None]),
    6,
)
QUEUE_PRIORITIES = mostly(st.sampled_from([UNSET, UNSET, 0, 500, 1000]), st.sampled_from([1001, -1, "high", None]), 16)
JOB_PRIORITIES = mostly(st.sampled_from([UNSET, UNSET, None, 0, 1000]), st.sampled_from([1001, "high"]), 16)


# -- what the store holds ------------------------------------------------------------------


@dataclass
class World:
    """Everything in the store after one step: the log, and every aggregate it names
    as the live ledger sees it (through its aggregate cache)."""

    records: list[Record]
    registry: QueueRegistry
    queues: dict[str, Queue]
    jobs: dict[str, Job]
    tasks: dict[str, Task]

    def tasks_of(self, job: Job) -> list[Task]:
        return [self.tasks[task_id] for task_id in job.tasks]

    def aggregates(self) -> dict[str, Any]:
        return {str(self.registry.id): self.registry, **self.queues, **self.jobs, **self.tasks}


def fresh_stores(store_url: str) -> Callable[[], str]:
    """Makes an empty store like `store_url` each call: an SQLite file beside it, or a
    new schema in its PostgreSQL database."""
    counter = itertools.count(1)
    if store_url.startswith("sqlite:///"):
        directory = Path(store_url[len("sqlite:///") :]).parent

        def new_sqlite() -> str:
            return f"sqlite:///{directory / f'machine-{next(counter)}.db'}"

        return new_sqlite
    database = store_url.partition("?")[0]

    def new_schema() -> str:
        schema = f"machine{next(counter)}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return f"{database}?schema={schema}"

    return new_schema


def members(ledger: Ledger, queue: Queue) -> tuple[set[str], set[str]]:
    """A queue's unfinished jobs and its RUNNING jobs, as the ledger knows them (from the
    queue's events); the counts the queue keeps must agree."""
    open_jobs, running = ledger.open_jobs(str(queue.id)), ledger.running_jobs(str(queue.id))
    assert len(set(open_jobs)) == len(open_jobs) == queue.open_count, f"queue {queue.code}: {open_jobs}"
    assert len(set(running)) == len(running) == queue.running_count, f"queue {queue.code}: {running}"
    return set(open_jobs), set(running)


def replay_log(ledger: Ledger) -> dict[str, Any]:
    """Every aggregate rebuilt from the stored log alone (no cache, no snapshots), by
    folding each one's events in log order."""
    rebuilt: dict[str, Any] = {}
    for notification in ledger.recorder.select_notifications(start=None, limit=10**9):
        event: Any = ledger.mapper.to_domain_event(notification)
        key = str(event.originator_id)
        rebuilt[key] = event.mutate(rebuilt.get(key))
    return rebuilt


class OftenSnapshottingLedger(Ledger):
    """The ledger, snapshotting its aggregates every few events instead of every 200,
    so that loading from a snapshot (as a busy queue does in production) happens in
    every example and is checked against the log."""

    snapshotting_intervals = dict.fromkeys(Ledger.snapshotting_intervals, 4)


class LedgerMachine(RuleBasedStateMachine):
    """A user, an admin and a worker giving random commands to one ledger."""

    new_store: ClassVar[Callable[[], str]]

    queues = Bundle("queues")

    def __init__(self) -> None:
        super().__init__()
        url = type(self).new_store()
        self.ledger = OftenSnapshottingLedger(url)
        # Loads without a cache: the newest snapshot, then the events after it.
        self.uncached = Repository(self.ledger.events, snapshot_store=self.ledger.snapshots)
        self.steps = 0
        self._world: tuple[int, World] | None = None
        self.leases: list[str] = []
        self.last_job: str | None = None
        # Jobs whose status a user set in the last command that touched them.
        self.user_set_status: set[str] = set()

    def teardown(self) -> None:
        self.ledger.close()

    # -- helpers ---------------------------------------------------------------------

    def attempt(self, command: str, *args: Any, **kwargs: Any) -> Written | None:
        """Run a command; a LedgerError is an allowed answer, but then nothing may be written."""
        self.steps += 1
        before = self.ledger.position()
        try:
            written = attrgetter(command)(self.ledger)(*args, actor=ACTOR, **kwargs)
        except LedgerError:
            after = self.ledger.position()
            assert after == before, f"{command} was refused but wrote events {before + 1}..{after}"
            return None
        assert isinstance(written, Written)
        assert written.position == self.ledger.position() >= before
        return written

    def world(self) -> World:
        """What the store holds now. Aggregates come from the live ledger (through its
        cache); one whose version has not moved since the last look is not asked again."""
        if self._world is not None and self._world[0] == self.steps:
            return self._world[1]
        previous = self._world[1] if self._world is not None else None
        if previous is not None and len(previous.records) == self.ledger.position():
            self._world = (self.steps, previous)  # nothing was written
            return previous
        records = History(self.ledger).read(0, 1_000_000)
        kinds: dict[str, str] = {}
        versions: dict[str, int] = {}
        for record in records:
            kinds.setdefault(record.aggregate_id, record.aggregate_type)
            versions[record.aggregate_id] = record.version
        known = previous.aggregates() if previous is not None else {}
        loaded = {
            aid: known[aid] if aid in known and known[aid].version == version else self.ledger.repository.get(UUID(aid))
            for aid, version in versions.items()
        }

        def of(kind: str) -> dict[str, Any]:
            return {aid: agg for aid, agg in loaded.items() if kinds[aid] == kind}

        registries = list(of("QueueRegistry").values())
        assert len(registries) == 1, "the store has exactly one queue registry"
        world = World(records, registries[0], of("Queue"), of("Job"), of("Task"))
        self._world = (self.steps, world)
        return world

    def settled_by_tasks(self, *job_ids: str) -> None:
        """These jobs' statuses were just left to their tasks again."""
        self.user_set_status.difference_update(job_ids)

    # -- queues ----------------------------------------------------------------------

    @initialize(target=queues)
    def the_default_queue(self) -> str:
        """Every store starts with its default queue."""
        registry = self.ledger.registry()
        assert registry is not None and registry.default_queue_id
        return registry.default_queue_id

    @initialize(target=queues, code=st.sampled_from(["ingest", "render"]), max_concurrency=st.sampled_from([None, 1]))
    def a_second_queue(self, code: str, max_concurrency: int | None) -> str:
        """Start with a queue besides the default, so sealing and deleting have a target."""
        written = self.attempt("queues.create", code, max_concurrency=max_concurrency)
        assert written is not None
        return written.id

    @initialize(
        submissions=st.lists(
            st.tuples(
                st.lists(VALID_TASKS, min_size=1, max_size=2),
                st.sampled_from(["/out", "/out", None]),
                st.sampled_from([None, None, "PAUSED"]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def some_jobs(self, submissions: list[tuple[list[Any], str | None, str | None]]) -> None:
        """Start with a few jobs in the default queue, so job and task commands have a target."""
        for tasks, destination, status in submissions:
            written = self.attempt("jobs.create", tasks=tasks, destination=destination, status=status)
            assert written is not None

    @rule(
        target=queues,
        code=QUEUE_CODES,
        default=mostly(st.sampled_from([False, False, True]), st.just("yes")),
        parent=mostly(st.one_of(st.none(), st.none(), queues), st.just(NOT_AN_ID)),
        max_concurrency=mostly(st.sampled_from([None, None, 1, 2]), st.just(0)),
    )
    def create_queue(self, code: Any, default: Any, parent: str | None, max_concurrency: Any) -> Any:
        """Create a queue: codes often taken or invalid; sometimes nested, the new default,
        or limited to 1 or 2 running jobs."""
        written = self.attempt("queues.create", code, default=default, parent=parent, max_concurrency=max_concurrency)
        if written is None:
            return multiple()
        registry = self.ledger.registry()
        assert registry is not None and registry.codes[code] == written.id
        if default is True:
            assert registry.default_queue_id == written.id
        return written.id

    @rule(
        queue=queues,
        default=mostly(st.sampled_from([UNSET, UNSET, True, False, None]), st.just(1), 16),
        max_concurrency=mostly(st.sampled_from([UNSET, UNSET, None, 1, 3]), st.just(-1), 16),
        priority=QUEUE_PRIORITIES,
        status=mostly(st.sampled_from([UNSET, UNSET, "WAITING", "disabled"]), st.just("SLEEPY"), 16),
    )
    def update_queue(self, queue: str, default: Any, max_concurrency: Any, priority: Any, status: Any) -> None:
        """Change a queue: make it the default (or try to stop it being one), change its
        limit, priority or status."""
        changes = {"default": default, "max_concurrency": max_concurrency, "priority": priority, "status": status}
        written = self.attempt("queues.update", queue, **{k: v for k, v in changes.items() if v is not UNSET})
        if written is not None and default is True:
            registry = self.ledger.registry()
            assert registry is not None and registry.default_queue_id == queue

    @rule(data=st.data(), action=st.sampled_from(["seal", "terminate", "delete"]))
    def end_queue(self, data: st.DataObject, action: str) -> None:
        """Seal (archive), terminate (abort its jobs) or delete a queue: usually an
        existing queue other than the default, which refuses to be sealed or deleted."""
        world = self.world()
        others = [qid for qid, q in world.queues.items() if not q.deleted and not q.default]
        anything = st.sampled_from([*world.queues, NOT_AN_ID])
        queue = data.draw(mostly(st.sampled_from(others), anything, one_in=4) if others else anything, label="queue")
        if self.attempt(f"queues.{action}", queue) is None:
            return
        ended = self.world().queues[queue]
        if action == "seal":
            assert ended.state == QueueState.SEALED
        elif action == "terminate":
            assert not members(self.ledger, ended)[0]
        else:
            assert ended.deleted

    @rule(
        queue=queues,
        tags=st.sampled_from([{"team": "post"}, {"team": "vfx", "site": "oslo"}, {"": "x"}, {"k": 1}]),
        keys=st.sampled_from([None, None, ["team"], ["site", "nope"], [], "team"]),
    )
    def tag_queue(self, queue: str, tags: dict[str, Any], keys: Any) -> None:
        """Add tags, or (when `keys` are given) remove them."""
        if keys is None:
            self.attempt("queues.add_tags", queue, tags)
        else:
            self.attempt("queues.remove_tags", queue, keys)

    # -- jobs ------------------------------------------------------------------------

    def pick_job(self, data: st.DataObject) -> str:
        """Usually an existing job: often the one picked last time (as a user works on one
        job for a while), else any, more often an unfinished one. Sometimes a deleted job
        or one that never was."""
        world = self.world()
        live = [jid for jid, job in world.jobs.items() if not job.deleted]
        unfinished = [jid for jid in live if world.jobs[jid].status not in FINISHED]
        anything = st.sampled_from([*world.jobs, NOT_AN_ID])
        usual = st.sampled_from([*unfinished, *live])
        if self.last_job in live:
            usual = st.one_of(st.just(self.last_job), usual)
        self.last_job = data.draw(mostly(usual, anything) if live else anything, label="job")
        return self.last_job

    @rule(
        queue=mostly(st.one_of(st.none(), queues, VALID_QUEUE_CODES), st.sampled_from([NOT_AN_ID, "", "UPPER"]), 16),
        code=mostly(st.sampled_from([None, "job-1"]), st.sampled_from(["", 5]), 16),
        destination=st.sampled_from(["/out", None]),
        status=CREATE_STATUSES,
        tasks=mostly(TASK_LISTS, st.none(), 16),
    )
    def create_job(self, queue: Any, code: Any, destination: Any, status: Any, tasks: Any) -> None:
        """Submit a job, to the default queue or one named by id or code, with or without
        a destination (without one, its transfers wait as PENDING)."""
        written = self.attempt(
            "jobs.create", queue=queue, code=code, destination=destination, status=status, tasks=tasks
        )
        if written is not None:
            assert written.id in self.world().jobs

    @precondition(lambda self: self.world().jobs)
    @rule(
        data=st.data(),
        status=UPDATE_STATUSES,
        queue=mostly(st.just(UNSET), st.one_of(queues, queues, VALID_QUEUE_CODES), one_in=3),
        destination=mostly(st.just(UNSET), st.sampled_from(["/out", "/out", None, 5]), one_in=4),
        priority=JOB_PRIORITIES,
    )
    def update_job(self, data: st.DataObject, status: Any, queue: Any, destination: Any, priority: Any) -> None:
        """Set a job's status (pause, resume, abort, mark done, ...), move it to another
        queue, give it a destination or a priority; any of these together."""
        job = self.pick_job(data)
        changes = {"status": status, "queue": queue, "destination": destination, "priority": priority}
        written = self.attempt("jobs.update", job, **{k: v for k, v in changes.items() if v is not UNSET})
        if written is None:
            return
        if status is UNSET:
            self.settled_by_tasks(job)
        else:
            self.user_set_status.add(job)
            assert self.world().jobs[job].status == str(status).upper(), "the status a user sets stands"

    @precondition(lambda self: self.world().jobs)
    @rule(data=st.data())
    def delete_job(self, data: st.DataObject) -> None:
        """Delete a job, whatever its status (a running one too)."""
        job = self.pick_job(data)
        if self.attempt("jobs.delete", job) is not None:
            assert self.world().jobs[job].deleted

    # -- tasks -----------------------------------------------------------------------

    @precondition(lambda self: self.world().jobs)
    @rule(data=st.data(), tasks=TASK_LISTS, allow_duplicates=mostly(st.booleans(), st.just("yes")))
    def add_tasks(self, data: st.DataObject, tasks: list[Any], allow_duplicates: Any) -> None:
        """Add new tasks, or (half the time) send again some the job already has, which
        retries them (or is refused when duplicates are not allowed)."""
        job = self.pick_job(data)
        world = self.world()
        sent_before = [
            {"source": t.source, "destination": t.destination} for t in world.tasks.values() if t.job_id == job
        ]
        send_again: bool = bool(sent_before) and data.draw(st.booleans(), label="send again")
        if send_again:
            tasks = data.draw(st.lists(st.sampled_from(sent_before), min_size=1, max_size=2), label="again")
        written = self.attempt("jobs.add_tasks", job, tasks, allow_duplicates=allow_duplicates)
        if written is not None:
            self.settled_by_tasks(job)
            assert set(written.ids) <= set(self.world().jobs[job].tasks)

    @precondition(lambda self: self.world().jobs)
    @rule(data=st.data())
    def update_tasks(self, data: st.DataObject) -> None:
        """Change the status (and maybe priority) of some of a job's tasks, often all to
        one status, as a user marking work done or excluded would; sometimes with tasks
        of another job, unknown ids or malformed updates."""
        job = self.pick_job(data)
        world = self.world()
        own = list(world.jobs[job].tasks) if job in world.jobs else []
        strangers = st.lists(st.sampled_from([*world.tasks, NOT_AN_ID, "not-an-id"]), min_size=1, max_size=2)
        mine = st.lists(st.sampled_from(own), min_size=1, max_size=len(own), unique=True) if own else strangers
        task_ids = data.draw(mostly(mine, strangers, 10), label="task ids")
        if data.draw(st.booleans(), label="one status for all"):
            status = data.draw(TASK_UPDATE_STATUSES, label="status")
            updates: list[Any] = [{"id": task_id, "status": status} for task_id in task_ids]
        else:
            updates = [
                {"id": task_id, "status": data.draw(TASK_UPDATE_STATUSES, label="status")} for task_id in task_ids
            ]
        if data.draw(st.booleans(), label="with priority"):
            updates[0]["priority"] = data.draw(
                mostly(st.sampled_from([None, 0, 1000]), st.sampled_from([1001, "high"])), label="priority"
            )
        odd = st.sampled_from([{"status": "DONE"}, {"id": task_ids[0], "size": 3}, "DONE", updates[0]])
        updates += data.draw(mostly(st.just([]), st.lists(odd, min_size=1, max_size=1), 12), label="odd update")
        if self.attempt("jobs.update_tasks", job, updates) is not None:
            self.settled_by_tasks(job)

    # -- a worker --------------------------------------------------------------------

    @precondition(lambda self: self.world().tasks)
    @rule(data=st.data())
    def claim_task(self, data: st.DataObject) -> None:
        """Claim one task: usually one that can run now (QUEUED, in a WAITING or RUNNING job)."""
        world = self.world()
        ready = [
            tid
            for tid, task in world.tasks.items()
            if task.status == TaskStatus.QUEUED
            and world.jobs[task.job_id].status in (JobStatus.WAITING, JobStatus.RUNNING)
        ]
        anything = st.sampled_from(list(world.tasks))
        task_id = data.draw(mostly(st.sampled_from(ready), anything, one_in=4) if ready else anything, label="task")
        written = self.attempt("dispatch.claim", "worker-1", [task_id], limit=1, lease_seconds=600)
        if written is not None:
            self.leases.extend(written.ids)

    def live_leases(self) -> list[str]:
        """Leases the worker still holds: their task has not moved on."""
        world = self.world()
        return [lease for lease in self.leases if world.tasks[task_id_of(lease)].lease_id == lease]

    @precondition(lambda self: self.leases)
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["complete", "complete", "fail", "fail for good", "release", "expire"]),
    )
    def end_lease(self, data: st.DataObject, outcome: str) -> None:
        """Complete, fail (to be retried, or for good) or give back a task, usually one
        whose lease is live, sometimes one whose lease is over; or let the clock, an
        hour from now, expire every lease."""
        world = self.world()
        if outcome == "expire":
            later = datetime.now(UTC) + timedelta(hours=1)
            written = self.attempt("dispatch.expire_leases", list(world.tasks), now=later)
            if written is not None:
                self.settled_by_tasks(*(world.tasks[task_id].job_id for task_id in written.ids))
            return
        live, anything = self.live_leases(), st.sampled_from(self.leases)
        lease = data.draw(mostly(st.sampled_from(live), anything, one_in=4) if live else anything, label="lease")
        if outcome == "complete":
            written = self.attempt("dispatch.complete", lease, result={"ok": True})
        elif outcome == "release":
            written = self.attempt("dispatch.release", lease)
        else:
            written = self.attempt("dispatch.fail", lease, "boom", retry=outcome == "fail")
        if written is not None and outcome != "release":
            self.settled_by_tasks(world.tasks[task_id_of(lease)].job_id)

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def the_log_is_numbered_1_to_n_without_gaps(self) -> None:
        """Audit tools read the log as positions 1, 2, 3, ... with nothing missing, and
        each aggregate's events appear in it in version order, 1, 2, 3, ..."""
        records = self.world().records
        assert [r.position for r in records] == list(range(1, len(records) + 1))
        assert len(records) == self.ledger.position()
        versions: dict[str, int] = defaultdict(int)
        for record in records:
            assert record.version == versions[record.aggregate_id] + 1, (
                f"{record.type} of {record.aggregate_id} at {record.position} has version "
                f"{record.version} after {versions[record.aggregate_id]}"
            )
            versions[record.aggregate_id] = record.version

    @invariant()
    def there_is_exactly_one_default_queue(self) -> None:
        """Jobs sent without a queue go somewhere: exactly one existing queue is the
        default, the registry names that one, and it is not sealed."""
        world = self.world()
        defaults = [qid for qid, q in world.queues.items() if q.default and not q.deleted]
        assert defaults == [world.registry.default_queue_id]
        assert world.queues[defaults[0]].state != QueueState.SEALED

    @invariant()
    def queue_codes_are_unique_and_registered(self) -> None:
        """A code names at most one existing queue, and the registry that looks codes
        up knows exactly the existing queues."""
        world = self.world()
        existing = [(q.code, qid) for qid, q in world.queues.items() if not q.deleted]
        assert len({code for code, _ in existing}) == len(existing)
        assert world.registry.codes == dict(existing)

    @invariant()
    def nested_queues_are_listed_by_their_parent(self) -> None:
        """A queue's children are exactly the existing queues that name it as parent,
        and a nested queue's uri is its parent's uri and its own code."""
        world = self.world()
        for qid, queue in world.queues.items():
            if queue.deleted:
                continue
            children = [cid for cid, c in world.queues.items() if c.parent_id == qid and not c.deleted]
            assert sorted(queue.children) == sorted(children)
            if queue.parent_id:
                parent = world.queues[queue.parent_id]
                assert not parent.deleted
                assert queue.uri == f"{parent.uri}/{queue.code}"

    @invariant()
    def queues_list_exactly_their_unfinished_jobs(self) -> None:
        """A queue's open jobs (what terminate and delete act on) are exactly the
        existing, unfinished jobs in it; its running jobs exactly those RUNNING. An
        unfinished job is never left in a deleted queue."""
        world = self.world()
        open_by_queue: dict[str, set[str]] = defaultdict(set)
        running_by_queue: dict[str, set[str]] = defaultdict(set)
        for jid, job in world.jobs.items():
            if job.deleted or job.status in FINISHED:
                continue
            assert not world.queues[job.queue_id].deleted, f"unfinished job {jid} is in a deleted queue"
            open_by_queue[job.queue_id].add(jid)
            if job.status == JobStatus.RUNNING:
                running_by_queue[job.queue_id].add(jid)
        for qid, queue in world.queues.items():
            if queue.deleted:
                assert members(self.ledger, queue) == (set(), set())
                continue
            open_jobs, running = members(self.ledger, queue)
            assert open_jobs == open_by_queue[qid], f"queue {queue.code} lists {open_jobs} as its open jobs"
            assert running == running_by_queue[qid], f"queue {queue.code} lists {running} as running"

    @invariant()
    def a_jobs_task_tally_matches_its_tasks(self) -> None:
        """The job's own summary of its tasks (which its status and size follow) agrees
        with the tasks: same status, key and size, uris 0, 1, 2, ... in order; and
        every task belongs to the job that lists it.

        A deleted job's summary keeps the statuses it had: a worker that still held one
        of its tasks may end the lease afterwards (expired, given back), and the ledger
        then changes the task but leaves the deleted job alone."""
        world = self.world()
        listed: set[str] = set()
        for jid, job in world.jobs.items():
            for index, (task_id, tally) in enumerate(job.tasks.items()):
                task = world.tasks[task_id]
                assert task.job_id == jid
                actual = {"uri": str(index), "key": task.key, "size": task.size, "status": task.status}
                if job.deleted:
                    actual["status"] = tally["status"]
                assert tally == actual, f"job {jid} tallies task {task_id} as {tally}; it is {actual}"
                assert task.uri == str(index)
                listed.add(task_id)
        assert listed == set(world.tasks), "every task is listed by its job"

    @invariant()
    def a_jobs_size_is_the_sum_of_its_tasks(self) -> None:
        """A job's size is the bytes of the tasks that will run (not EXCLUDED), or -1
        while any of them is unknown, or when there are none."""
        world = self.world()
        for job in world.jobs.values():
            sizes = [t.size for t in world.tasks_of(job) if t.status != TaskStatus.EXCLUDED]
            expected = -1 if not sizes or any(s < 0 for s in sizes) else sum(sizes)
            assert job.size == expected

    @invariant()
    def a_job_whose_tasks_are_all_done_is_finished(self) -> None:
        """When every task that will run is DONE, the job is not left waiting or
        running (unless a user set its status last; see the module docstring)."""
        world = self.world()
        for jid, job in world.jobs.items():
            if job.deleted or jid in self.user_set_status:
                continue
            active = [t.status for t in world.tasks_of(job) if t.status != TaskStatus.EXCLUDED]
            if active and all(s == TaskStatus.DONE for s in active):
                assert job.status in FINISHED, f"job {jid} is {job.status} with all tasks DONE"

    @invariant()
    def replaying_the_log_gives_the_same_aggregates(self) -> None:
        """What the service holds in memory is what its events say: every aggregate,
        rebuilt by folding its stored events, has the same facts as the live one (kept
        up to date in the ledger's cache), and so has the one loaded without a cache
        from its newest snapshot and the events after it."""
        live = self.world().aggregates()
        rebuilt_all = replay_log(self.ledger)
        assert set(rebuilt_all) == set(live)
        for aid, aggregate in live.items():
            rebuilt = rebuilt_all[aid]
            kind = type(aggregate).__name__
            assert type(rebuilt) is type(aggregate)
            assert rebuilt.facts == aggregate.facts, f"{kind} {aid} differs after replay"
            assert self.uncached.get(UUID(aid)).facts == rebuilt.facts, f"{kind} {aid} differs from its snapshot"


def test_random_commands_keep_the_ledger_consistent(store_url: str) -> None:
    """Each example runs on a fresh store of the same kind as `store_url`."""
    machine = type("LedgerMachineOnStore", (LedgerMachine,), {"new_store": staticmethod(fresh_stores(store_url))})
    run_state_machine_as_test(machine, settings=SETTINGS)
