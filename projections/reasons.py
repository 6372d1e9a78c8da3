"""Why a job or task is waiting or held, in words, from what the read models know.

Pure functions of read-model rows: the API shows them as `Job.reason` and
`Task.reason`; a job or task that is running or finished has no reason (None).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.job import DEFAULT_MAX_ATTEMPTS

Row = dict[str, Any]


def job_reason(job: Row, queue: Row | None, running_in_queue: int | None = None) -> str | None:
    """Why `job` is not running. `running_in_queue` is the number of RUNNING jobs of its
    queue, needed only to tell a job held by the queue's max concurrency."""
    status = job["status"]
    if status == "INIT":
        return "it has no tasks yet: add tasks to start it"
    if status == "PENDING":
        return "no destination: set the job's destination, or give each transfer task one"
    if status == "PAUSED":
        who = job.get("modifier")
        return f"paused by {who}: resume it to run again" if who else "paused: resume it to run again"
    if status not in ("WAITING", "RUNNING") or queue is None:
        return None
    if queue["status"] == "DISABLED":
        return f"queue {queue['code']} is disabled: no new tasks start until it is enabled"
    if status != "WAITING":
        return None
    limit = queue.get("max_concurrency")
    if limit is not None and running_in_queue is not None and running_in_queue >= limit:
        return f"held by max concurrency: queue {queue['code']} runs at most {limit} job(s) at once"
    return "waiting for a worker to claim its tasks"


def task_reason(task: Row, job: Row | None, queue: Row | None = None, now: datetime | None = None) -> str | None:
    """Why `task` is not running (at `now`, by default the present); the job's own reason
    when it is the job that waits."""
    status = task["status"]
    if status == "PENDING":
        return "no destination: give the task or its job a destination"
    if status == "ONHOLD":
        return "on hold: set it QUEUED to run it"
    if status == "EXCLUDED":
        return "excluded from its job: it will not run unless set QUEUED again"
    if status != "QUEUED":
        return None
    if job is not None and job["status"] in ("PAUSED", "INIT", "PENDING"):
        return f"its job is {str(job['status']).lower()}: {job_reason(job, queue)}"
    if queue is not None and queue["status"] == "DISABLED":
        return f"queue {queue['code']} is disabled: no new tasks start until it is enabled"
    if task.get("attempts") and task.get("error"):
        return _retry_reason(task, job, queue, now or datetime.now(UTC))
    return "waiting for a worker to claim it"


def _retry_reason(task: Row, job: Row | None, queue: Row | None, now: datetime) -> str:
    """`retry at 20:15:04 UTC (attempt 2 of 3) after: disk full` while the retry waits;
    once its time has come, that it waits for a worker."""
    attempt = f"attempt {int(task['attempts']) + 1} of {_max_attempts(job, queue)}"
    error = _first_line(task["error"])
    retry_at = task.get("retry_at")
    if retry_at is None or retry_at <= now:
        return f"queued to retry ({attempt}), waiting for a worker to claim it; it failed: {error}"
    shown = retry_at.astimezone(UTC)
    when = shown.strftime("%H:%M:%S" if shown.date() == now.astimezone(UTC).date() else "%Y-%m-%d %H:%M:%S")
    return f"retry at {when} UTC ({attempt}) after: {error}"


def _max_attempts(job: Row | None, queue: Row | None) -> int:
    """The job's maxAttempts, else its queue's, else the default (as `domain.lifecycle`)."""
    for owner in (job, queue):
        if owner is not None and owner.get("max_attempts"):
            return int(owner["max_attempts"])
    return DEFAULT_MAX_ATTEMPTS


def _first_line(text: str, limit: int = 200) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
