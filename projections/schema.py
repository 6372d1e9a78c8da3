"""The read-model tables, written once for both backends.

`{ts}` is the dialect's timestamp type and `{big}` its 64-bit integer; everything
else is shared. Ids are text (UUID strings), JSON is text.
"""

from __future__ import annotations

TRACKING = "jl_tracking"
QUEUES = "jl_queues"
JOBS = "jl_jobs"
TASKS = "jl_tasks"
TABLES = (TASKS, JOBS, QUEUES, TRACKING)
RUNNER_NAME = "projections"

DDL = [
    f"""CREATE TABLE IF NOT EXISTS {TRACKING} (
        name TEXT PRIMARY KEY,
        position {{big}} NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {QUEUES} (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL,
        priority INTEGER NOT NULL,
        status TEXT NOT NULL,
        state TEXT NOT NULL,
        is_default BOOLEAN NOT NULL,
        uri TEXT NOT NULL,
        description TEXT NOT NULL,
        metadata TEXT NOT NULL,
        tags TEXT NOT NULL,
        max_concurrency INTEGER,
        idle_timeout_s INTEGER,
        execution_mode TEXT NOT NULL,
        max_attempts INTEGER,
        parent_id TEXT,
        total_jobs INTEGER NOT NULL DEFAULT 0,
        successful_jobs INTEGER NOT NULL DEFAULT 0,
        failed_jobs INTEGER NOT NULL DEFAULT 0,
        active_jobs INTEGER NOT NULL DEFAULT 0,
        created {{ts}} NOT NULL,
        modified {{ts}} NOT NULL,
        "user" TEXT,
        modifier TEXT,
        deleted BOOLEAN NOT NULL DEFAULT FALSE
    )""",
    f"CREATE INDEX IF NOT EXISTS jl_queues_code ON {QUEUES} (code)",
    f"""CREATE TABLE IF NOT EXISTS {JOBS} (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL,
        queue_id TEXT NOT NULL,
        phase TEXT NOT NULL,
        status TEXT NOT NULL,
        own_priority INTEGER,
        priority INTEGER NOT NULL,
        source TEXT,
        destination TEXT,
        progress INTEGER NOT NULL DEFAULT 0,
        size {{big}} NOT NULL DEFAULT -1,
        speed DOUBLE PRECISION NOT NULL DEFAULT 0,
        etr TEXT,
        metadata TEXT NOT NULL,
        max_attempts INTEGER,
        created {{ts}} NOT NULL,
        modified {{ts}} NOT NULL,
        finished {{ts}},
        "user" TEXT,
        modifier TEXT
    )""",
    # Listing a phase by status and priority, by queue, and by time: the common pages.
    f"CREATE INDEX IF NOT EXISTS jl_jobs_phase_status_priority ON {JOBS} (phase, status, priority, id)",
    f"CREATE INDEX IF NOT EXISTS jl_jobs_phase_queue ON {JOBS} (phase, queue_id, status)",
    f"CREATE INDEX IF NOT EXISTS jl_jobs_phase_created ON {JOBS} (phase, created, id)",
    f"CREATE INDEX IF NOT EXISTS jl_jobs_phase_finished ON {JOBS} (phase, finished)",
    f"CREATE INDEX IF NOT EXISTS jl_jobs_queue ON {JOBS} (queue_id, own_priority)",
    f"""CREATE TABLE IF NOT EXISTS {TASKS} (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        uri TEXT NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL,
        source TEXT NOT NULL,
        destination TEXT,
        source_path TEXT,
        destination_path TEXT,
        size {{big}} NOT NULL,
        progress INTEGER NOT NULL DEFAULT 0,
        bytes_done {{big}} NOT NULL DEFAULT 0,
        speed DOUBLE PRECISION NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        worker TEXT,
        lease_id TEXT,
        lease_expires {{ts}},
        error TEXT,
        result TEXT,
        metadata TEXT NOT NULL,
        created {{ts}} NOT NULL,
        modified {{ts}} NOT NULL,
        started {{ts}},
        finished {{ts}},
        time {{big}}
    )""",
    f"CREATE UNIQUE INDEX IF NOT EXISTS jl_tasks_job_seq ON {TASKS} (job_id, seq)",
    # A job's tasks by status in task order (a claim reads a job's first queued tasks).
    "DROP INDEX IF EXISTS jl_tasks_job_status",
    f"CREATE INDEX IF NOT EXISTS jl_tasks_job_status_seq ON {TASKS} (job_id, status, seq)",
    # Queued work in hand-out order, and live leases by deadline (for the clock).
    f"CREATE INDEX IF NOT EXISTS jl_tasks_status_priority ON {TASKS} (status, priority, job_id, seq)",
    f"CREATE INDEX IF NOT EXISTS jl_tasks_lease_expires ON {TASKS} (lease_expires)",
]
