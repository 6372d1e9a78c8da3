"""Time left, and time spent, of a running task or job: the one place they are computed.

Plain arithmetic on columns every task and job row has, so that a page of them costs no
query more. Two ways, the first that can answer:

- by bytes: what is still to move (a task's size less its bytes done; a job's `remaining`,
  summed over its unfinished tasks once every size is known) at the current speed;
- by progress: the rate its progress rose at since it started (commands that print their
  progress, transfers whose speed is not known yet), carried on to 100 %.

Null when neither can tell (not running, nothing reported yet), and for what is not running.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

RUNNING_TASK = frozenset({"BOOTING", "EXECUTING"})
RUNNING_JOB = "RUNNING"
BYTES_PER_MB = 1_000_000


def seconds_left(remaining: int, speed: float, progress: int, started: datetime | None, now: datetime) -> int | None:
    """Whole seconds (rounded up) until done: `remaining` bytes (-1: unknown) at `speed`
    MB/s, else the rate `progress` (0..100) rose at since `started`; None when neither tells."""
    if remaining >= 0 and speed > 0:
        return math.ceil(remaining / (speed * BYTES_PER_MB))
    if started is not None and 0 < progress < 100:
        elapsed = (now - started).total_seconds()
        if elapsed > 0:
            return math.ceil(elapsed * (100 - progress) / progress)
    return None


def task_time_left(row: Mapping[str, Any], now: datetime) -> int | None:
    """Seconds until a running task is done (see the module's doc); None when it is not running."""
    if row["status"] not in RUNNING_TASK:
        return None
    size = int(row["size"])
    remaining = max(size - int(row.get("bytes_done") or 0), 0) if size >= 0 else -1
    return seconds_left(remaining, float(row.get("speed") or 0), int(row["progress"]), row.get("started"), now)


def task_elapsed(row: Mapping[str, Any], now: datetime) -> int | None:
    """Whole seconds its current attempt has run (while running), or its last one took
    (when it is done: its `time`); None when it never ran."""
    if row["status"] in RUNNING_TASK and row.get("started") is not None:
        return max(0, int((now - row["started"]).total_seconds()))
    if row.get("time") is not None:
        return int(row["time"]) // 1000
    return None


def job_time_left(row: Mapping[str, Any], now: datetime) -> int | None:
    """Seconds until a running job is done, from all its tasks together (their speeds add
    up); None when it is not running."""
    if row["status"] != RUNNING_JOB:
        return None
    remaining = int(row.get("remaining", -1) if row.get("remaining") is not None else -1)
    return seconds_left(remaining, float(row.get("speed") or 0), int(row["progress"]), row.get("started"), now)


def format_etr(seconds: float | None) -> str | None:
    """Time left in the seeds' form, `0h:04m:10s`; None when unknown."""
    if seconds is None:
        return None
    whole = max(0, round(seconds))
    return f"{whole // 3600}h:{whole % 3600 // 60:02d}m:{whole % 60:02d}s"
