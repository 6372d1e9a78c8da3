"""The read-model tables, written once for both backends.

`{ts}` is the dialect's timestamp type and `{big}` its 64-bit integer; everything
else is shared. Ids are text (UUID strings), JSON is text. The columns of the fields
callers set come from `domain.catalogue` (type and nullability), the others are listed
here; `nullable` reads which columns may be NULL off these definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from domain.catalogue import JOB, QUEUE, TASK, Catalogue, Field, Json, Long
from projections.batch import as_json

TRACKING = "jl_tracking"
QUEUES = "jl_queues"
JOBS = "jl_jobs"
TASKS = "jl_tasks"
GROUPS = "jl_groups"
FAILURES = "jl_projection_failures"
WORKERS = "jl_workers"  # what each worker did per queue (projections/workers.py)
THROUGHPUT = "jl_throughput"  # tasks done and failed, and queued, per queue and minute (projections/workers.py)
TABLES = (TASKS, JOBS, QUEUES, GROUPS, FAILURES, TRACKING, WORKERS, THROUGHPUT)
# Columns the newest tables have, one per change of the tables (a change adds its own
# line); a store whose tables lack any of them is rebuilt from the log.
NEWEST_COLUMNS = (
    (THROUGHPUT, "queued"),
    (TASKS, "retry_at"),  # retries wait (domain.retry)
    (JOBS, "remaining"),  # time left from the bytes still to move (projections/timeleft.py)
)
RUNNER_NAME = "projections"

Column = tuple[str, str]  # name, SQL type and constraints


def _sql_type(f: Field) -> str:
    if f.type is bool:
        return "BOOLEAN"
    if f.type is Long:
        return "{big}"
    if f.type is float:
        return "DOUBLE PRECISION"
    return "INTEGER" if f.type is int else "TEXT"  # text, enums and JSON


def catalogue_columns(catalogue: Catalogue) -> list[Column]:
    """A column for each field of the catalogue, NOT NULL unless the field may be null."""
    return [(f.column, _sql_type(f) + ("" if f.nullable else " NOT NULL")) for f in catalogue]


def column_names(catalogue: Catalogue) -> tuple[str, ...]:
    return tuple(f.column for f in catalogue)


COLUMNS: dict[str, list[Column]] = {
    QUEUES: [
        ("id", "TEXT PRIMARY KEY"),
        *catalogue_columns(QUEUE),
        ("state", "TEXT NOT NULL"),
        ("uri", "TEXT NOT NULL"),
        ("parent_id", "TEXT"),
        ("owner", "TEXT NOT NULL"),  # the group's code
        ("total_jobs", "INTEGER NOT NULL DEFAULT 0"),
        ("successful_jobs", "INTEGER NOT NULL DEFAULT 0"),
        ("failed_jobs", "INTEGER NOT NULL DEFAULT 0"),
        ("active_jobs", "INTEGER NOT NULL DEFAULT 0"),
        ("created", "{ts} NOT NULL"),
        ("modified", "{ts} NOT NULL"),
        ('"user"', "TEXT"),
        ("modifier", "TEXT"),
        ("deleted", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ],
    JOBS: [
        ("id", "TEXT PRIMARY KEY"),
        *catalogue_columns(JOB),
        ("queue_id", "TEXT NOT NULL"),
        ("phase", "TEXT NOT NULL"),
        ("priority", "INTEGER NOT NULL"),  # its own, or its queue's
        ("progress", "INTEGER NOT NULL DEFAULT 0"),
        ("size", "{big} NOT NULL DEFAULT -1"),
        ("speed", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
        ("etr", "TEXT"),
        ("remaining", "{big} NOT NULL DEFAULT -1"),  # bytes its unfinished tasks still move; -1: unknown
        ("started", "{ts}"),  # when the first of its tasks' current attempts started
        ("created", "{ts} NOT NULL"),
        ("modified", "{ts} NOT NULL"),
        ("finished", "{ts}"),
        ('"user"', "TEXT"),
        ("modifier", "TEXT"),
    ],
    TASKS: [
        ("id", "TEXT PRIMARY KEY"),
        *catalogue_columns(TASK),
        ("job_id", "TEXT NOT NULL"),
        ("seq", "INTEGER NOT NULL"),
        ("uri", "TEXT NOT NULL"),
        ("source_path", "TEXT"),
        ("destination_path", "TEXT"),
        ("progress", "INTEGER NOT NULL DEFAULT 0"),
        ("bytes_done", "{big} NOT NULL DEFAULT 0"),
        ("speed", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
        ("attempts", "INTEGER NOT NULL DEFAULT 0"),
        ("worker", "TEXT"),
        ("lease_id", "TEXT"),
        ("lease_expires", "{ts}"),
        ("retry_at", "{ts}"),  # queued to retry after a failed attempt: not claimed before
        ("error", "TEXT"),
        ("result", "TEXT"),
        ("created", "{ts} NOT NULL"),
        ("modified", "{ts} NOT NULL"),
        ("started", "{ts}"),
        ("finished", "{ts}"),
        ("time", "{big}"),
    ],
}


def table(name: str) -> str:
    columns = ",\n        ".join(f"{column} {definition}" for column, definition in COLUMNS[name])
    return f"CREATE TABLE IF NOT EXISTS {name} (\n        {columns}\n    )"


def nullable(name: str) -> frozenset[str]:
    """The columns of table `name` that may hold NULL."""
    return frozenset(
        column
        for column, definition in COLUMNS[name]
        if "NOT NULL" not in definition and "PRIMARY KEY" not in definition
    )


def stored(f: Field, value: Any) -> Any:
    """A field's value as its column keeps it: JSON as text, an enum as its name."""
    return _keeper(f)(value)


def _keeper(f: Field) -> Callable[[Any], Any]:
    if f.type is Json:
        return as_json
    if f.is_enum:
        return lambda value: None if value is None else str(value)
    if f.type is bool:
        return lambda value: None if value is None else bool(value)
    return lambda value: value


def insert(name: str, columns: Sequence[str]) -> str:
    """`INSERT INTO name (columns) VALUES (?, ...)`."""
    return f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def catalogue_row(catalogue: Catalogue, data: Mapping[str, Any]) -> list[Any]:
    """The values of the catalogue's columns (in `column_names` order) in an event's
    `data`. A field the event lacks (recorded before the field was added) takes its
    default, if it has one its column can hold; else KeyError, as for any event a handler
    cannot use."""
    return [
        keep(data[name] if name in data else _default(catalogue[name])) for name, keep in _KEEPERS[catalogue.entity]
    ]


# Per catalogue, made once (a job adds thousands of tasks at a time): each field's name
# and how its column keeps its value.
_KEEPERS = {c.entity: [(f.name, _keeper(f)) for f in c] for c in (QUEUE, JOB, TASK)}


def _default(f: Field) -> Any:
    if f.required or (f.default is None and not f.nullable):
        raise KeyError(f.name)
    return f.default


DDL = [
    f"""CREATE TABLE IF NOT EXISTS {TRACKING} (
        name TEXT PRIMARY KEY,
        position {{big}} NOT NULL
    )""",
    # Events the runner could not apply: the one it is retrying now (status 'retrying', at
    # most one, just above the position), and those it set aside after its attempts ran out
    # ('set_aside', then 'acknowledged' once an operator accepted the gap). Derived like the
    # rest: a rebuild drops them and retries every event in its place.
    f"""CREATE TABLE IF NOT EXISTS {FAILURES} (
        position {{big}} PRIMARY KEY,
        aggregate_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        first_failed TEXT NOT NULL,
        last_failed TEXT NOT NULL
    )""",
    table(QUEUES),
    f"CREATE INDEX IF NOT EXISTS jl_queues_code ON {QUEUES} (code)",
    f"CREATE INDEX IF NOT EXISTS jl_queues_owner ON {QUEUES} (owner, id)",
    f"""CREATE TABLE IF NOT EXISTS {GROUPS} (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL,
        allow_commands BOOLEAN NOT NULL
    )""",
    table(JOBS),
    # Listing a phase by status and priority, by queue, and by time: the common pages.
    f"CREATE INDEX IF NOT EXISTS jl_jobs_phase_status_priority ON {JOBS} (phase, status, priority, id)",
    f"CREATE INDEX IF NOT EXISTS jl_jobs_phase_queue ON {JOBS} (phase, queue_id, status)",
    f"CREATE INDEX IF NOT EXISTS jl_jobs_phase_created ON {JOBS} (phase, created, id)",
    f"CREATE INDEX IF NOT EXISTS jl_jobs_phase_finished ON {JOBS} (phase, finished)",
    f"CREATE INDEX IF NOT EXISTS jl_jobs_queue ON {JOBS} (queue_id, own_priority)",
    table(TASKS),
    f"CREATE UNIQUE INDEX IF NOT EXISTS jl_tasks_job_seq ON {TASKS} (job_id, seq)",
    # A job's tasks by status in task order (a claim reads a job's first queued tasks).
    "DROP INDEX IF EXISTS jl_tasks_job_status",
    f"CREATE INDEX IF NOT EXISTS jl_tasks_job_status_seq ON {TASKS} (job_id, status, seq)",
    # Queued work in hand-out order, and live leases by deadline (for the clock).
    f"CREATE INDEX IF NOT EXISTS jl_tasks_status_priority ON {TASKS} (status, priority, job_id, seq)",
    f"CREATE INDEX IF NOT EXISTS jl_tasks_lease_expires ON {TASKS} (lease_expires)",
    # Per worker and queue: when it last reported (epoch ms) and what it did, summed over time.
    f"""CREATE TABLE IF NOT EXISTS {WORKERS} (
        worker TEXT NOT NULL,
        queue_id TEXT NOT NULL,
        last_seen {{big}} NOT NULL,
        claimed INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0
    )""",
    f"CREATE UNIQUE INDEX IF NOT EXISTS jl_workers_key ON {WORKERS} (worker, queue_id)",
    # Per queue and minute (epoch minutes): tasks that became DONE and FAILED in it, and the
    # QUEUED tasks after its last event (a minute without a row keeps the one before).
    f"""CREATE TABLE IF NOT EXISTS {THROUGHPUT} (
        queue_id TEXT NOT NULL,
        minute {{big}} NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        queued {{big}} NOT NULL DEFAULT 0
    )""",
    f"CREATE UNIQUE INDEX IF NOT EXISTS jl_throughput_key ON {THROUGHPUT} (queue_id, minute)",
    f"CREATE INDEX IF NOT EXISTS jl_throughput_minute ON {THROUGHPUT} (minute)",
]
