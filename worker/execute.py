"""Running one task: a file transfer or a command line, within the worker's `Policy`.

A task says its kind in its source object: `{"kind": "command", "command": "..."}`
runs a command; anything else (a path string, or `{"path": ...}`) is a transfer
of that file or directory to the task's destination, or into the job's
destination folder under the same name.

The policy is checked before anything runs or is read or written: a command needs the
worker's and the queue's consent, and every file a transfer reads and every file it
writes must resolve to a place under the worker's roots (a folder's files one by one,
so that a link inside it cannot lead out). Otherwise `policy.Refused` is raised.

A command runs in a process group of its own, so that the worker can stop all of it
(`halt.Halt`); a task stopped that way raises `halt.Interrupted`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobledger_client import TaskLease
from worker.halt import Halt, Interrupted
from worker.policy import Policy

CHUNK = 1024 * 1024
OUTPUT_LINES = 20
DEFAULT_TIMEOUT_S = 3600

Report = Callable[[int, int], None]  # (bytes done, bytes total)
Measured = Callable[[int], None]  # the source's size in bytes, known before the first byte moves
Said = Callable[[int], None]  # a command's own progress, 0..100, as it printed it

# A line a command prints (on stdout or stderr, alone on its line) to say how far it is:
# `progress: 42%` (a whole or decimal percentage, any case, spaces allowed around).
PROGRESS_LINE = re.compile(r"\s*progress\s*:\s*(\d{1,3}(?:\.\d+)?)\s*%\s*", re.IGNORECASE)
THROTTLE_NAP = 0.2  # seconds a throttled transfer sleeps at a time, checking for a stop between


class TaskFailed(Exception):
    """The task ran and failed; the message says why (and, for commands, the output)."""


@dataclass(frozen=True)
class Work:
    """What a claimed task asks for: its kind, source and destination, and its queue's say
    on commands."""

    kind: str
    source: Any
    destination: str | None
    queue: str | None = None
    queue_allows_commands: bool = False

    @classmethod
    def of(cls, lease: TaskLease) -> Work:
        source = lease.task.source
        kind = source.get("kind", "transfer") if isinstance(source, dict) else "transfer"
        destination = target_path(source, lease.task.destination, lease.job_destination)
        return cls(kind, source, destination, lease.queue_code, lease.queue_allows_commands)


def path_of(location: Any) -> str | None:
    if location is None:
        return None
    return location if isinstance(location, str) else location.get("path")


def target_path(source: Any, destination: Any, job_destination: str | None) -> str | None:
    """The task's own destination, else the job's destination folder plus the source's name."""
    own = path_of(destination)
    if own:
        return own
    path = path_of(source)
    if job_destination and path:
        return str(Path(job_destination) / Path(path.rstrip("/")).name)
    return None


def run(
    work: Work,
    policy: Policy,
    report: Report,
    halt: Halt | None = None,
    *,
    measured: Measured | None = None,
    said: Said | None = None,
    max_rate: float | None = None,
) -> dict[str, Any]:
    """Run the task if the policy allows it (else raise Refused); its result. Raises
    Interrupted when `halt` stopped it first. A transfer tells `measured` its size before it
    copies and moves at most `max_rate` MB/s (None: as fast as it can); a command tells
    `said` the progress it prints (`PROGRESS_LINE`)."""
    halt = halt or Halt()
    halt.check()  # stopped before it began
    if work.kind == "command":
        policy.check_command(work.queue, work.queue_allows_commands)
        return run_command(work.source, report, halt, said)

    def report_unless_halted(done: int, total: int) -> None:
        if done < total:  # the last chunk is let through: a transfer that got there is done
            halt.check()
        report(done, total)

    throttle = Throttle(max_rate, halt) if max_rate else None
    return transfer(work, policy, report_unless_halted, measured, throttle)


class Throttle:
    """Keeps a transfer at `rate` MB/s at most: after each chunk it sleeps until the bytes
    so far are due, in naps short enough for a stop (`halt`) to cut it short."""

    def __init__(self, rate: float, halt: Halt) -> None:
        self.rate = rate * 1_000_000  # bytes per second
        self.halt = halt
        self.began = time.monotonic()

    def moved(self, done: int, total: int) -> None:
        if done >= total:
            return  # the last chunk: nothing follows it to hold back
        while (due := self.began + done / self.rate - time.monotonic()) > 0:
            self.halt.check()
            time.sleep(min(due, THROTTLE_NAP))


def transfer(
    work: Work, policy: Policy, report: Report, measured: Measured | None = None, throttle: Throttle | None = None
) -> dict[str, Any]:
    named = path_of(work.source)
    if not named:
        raise TaskFailed("the task has no source path")
    # Before any look at the files, so that a refused task learns nothing of what lies outside.
    policy.check_path(named, "source")
    if not work.destination:
        raise TaskFailed("the task has no destination, and its job has none")
    policy.check_path(work.destination, "destination")
    source, destination = Path(named), Path(work.destination)
    if not source.exists():
        raise TaskFailed(f"source {source} does not exist")
    copies = planned_copies(source, destination, policy)
    total = sum(file.stat().st_size for file, _ in copies)
    if measured is not None:
        measured(total)
    done = 0
    digests: dict[str, str] = {}
    for file, target in copies:

        def moved(chunk: int) -> None:
            nonlocal done
            done += chunk
            report(done, total)
            if throttle is not None:
                throttle.moved(done, total)

        digests[str(target)] = copy_verified(file, target, moved)
    if source.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
    report(total, total)
    return {
        "bytes": total,
        "files": len(copies),
        "sha256": digests if len(digests) > 1 else next(iter(digests.values()), None),
    }


def planned_copies(source: Path, destination: Path, policy: Policy) -> list[tuple[Path, Path]]:
    """(file read, file written) for each file of the transfer, every one checked against the
    policy before the first is copied: a folder may hold links that lead out of the roots."""
    if source.is_file():
        copies = [(source, destination)]
    else:
        files = sorted(p for p in source.rglob("*") if p.is_file())
        copies = [(file, destination / file.relative_to(source)) for file in files]
    for file, target in copies:
        policy.check_path(file, "source")
        policy.check_path(target, "destination")
    return copies


def copy_verified(source: Path, target: Path, moved: Callable[[int], None]) -> str:
    """Copy to a temporary name beside the target, check size and SHA-256, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.jobledger-partial")
    temporary.unlink(missing_ok=True)  # then "x" creates it anew: never writes through a planted link
    digest = hashlib.sha256()
    try:
        with source.open("rb") as reader, temporary.open("xb") as writer:
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
                digest.update(chunk)
                moved(len(chunk))
            writer.flush()
            os.fsync(writer.fileno())
    except BaseException:  # stopped or failed half way: leave no partial file behind
        temporary.unlink(missing_ok=True)
        raise
    expected = source.stat().st_size
    if temporary.stat().st_size != expected or sha256_of(temporary) != digest.hexdigest():
        temporary.unlink(missing_ok=True)
        raise TaskFailed(f"copy of {source} did not verify (size or checksum differs)")
    os.replace(temporary, target)
    shutil.copystat(source, target)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def said_progress(line: str) -> int | None:
    """The percentage a line of a command's output says, when it is a `PROGRESS_LINE`
    (`progress: 42%`), rounded down to a whole one from 0 to 100; else None."""
    found = PROGRESS_LINE.fullmatch(line)
    if found is None:
        return None
    percent = float(found.group(1))
    return int(percent) if percent <= 100 else None


def run_command(source: dict[str, Any], report: Report, halt: Halt, said: Said | None = None) -> dict[str, Any]:
    """Run the command line (a string through the shell, or a list as argv) in a process
    group of its own, with a timeout; `halt` can stop the whole group. Each line of its
    output that says its progress (`PROGRESS_LINE`) goes to `said`."""
    command = source["command"]
    timeout = float(source.get("timeout") or DEFAULT_TIMEOUT_S)
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=OUTPUT_LINES)
    process = subprocess.Popen(
        command,
        shell=isinstance(command, str),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=source.get("cwd") or None,
        errors="replace",
        process_group=0,
    )
    halt.started(process)
    assert process.stdout is not None
    report(0, 0)
    try:
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            if said is not None and (percent := said_progress(line)) is not None:
                said(percent)
            if time.monotonic() - started > timeout:
                raise TaskFailed(f"command timed out after {timeout:.0f} s\n" + "\n".join(tail))
        code = process.wait(timeout=max(0.1, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        raise TaskFailed(f"command timed out after {timeout:.0f} s\n" + "\n".join(tail)) from None
    finally:
        if process.poll() is None:  # timed out: nothing of it outlives the task
            halt.kill()
            process.wait()
        halt.ended()
        process.stdout.close()
    if halt.signalled:
        raise Interrupted(f"command stopped by the worker (exit status {code})")
    result = {"exit_code": code, "output": list(tail)}
    if code != 0:
        raise TaskFailed(f"command exited with {code}\n" + "\n".join(tail))
    return result
