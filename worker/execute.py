"""Running one task: a file transfer or a command line.

A task says its kind in its source object: `{"kind": "command", "command": "..."}`
runs a command; anything else (a path string, or `{"path": ...}`) is a transfer
of that file or directory to the task's destination, or into the job's
destination folder under the same name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobledger_client import TaskLease

CHUNK = 1024 * 1024
OUTPUT_LINES = 20
DEFAULT_TIMEOUT_S = 3600

Report = Callable[[int, int], None]  # (bytes done, bytes total)


class TaskFailed(Exception):
    """The task ran and failed; the message says why (and, for commands, the output)."""


@dataclass(frozen=True)
class Work:
    kind: str
    source: Any
    destination: str | None

    @classmethod
    def of(cls, lease: TaskLease) -> Work:
        source = lease.task.source
        kind = source.get("kind", "transfer") if isinstance(source, dict) else "transfer"
        return cls(kind, source, target_path(source, lease.task.destination, lease.job_destination))


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


def run(work: Work, report: Report) -> dict[str, Any]:
    if work.kind == "command":
        return run_command(work.source, report)
    return transfer(work, report)


def transfer(work: Work, report: Report) -> dict[str, Any]:
    source = Path(path_of(work.source) or "")
    if not work.destination:
        raise TaskFailed("the task has no destination, and its job has none")
    if not source.exists():
        raise TaskFailed(f"source {source} does not exist")
    destination = Path(work.destination)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    total = sum(f.stat().st_size for f in files)
    done = 0
    digests: dict[str, str] = {}
    for file in files:
        target = destination if source.is_file() else destination / file.relative_to(source)

        def moved(chunk: int) -> None:
            nonlocal done
            done += chunk
            report(done, total)

        digests[str(target)] = copy_verified(file, target, moved)
    if source.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
    report(total, total)
    return {
        "bytes": total,
        "files": len(files),
        "sha256": digests if len(digests) > 1 else next(iter(digests.values()), None),
    }


def copy_verified(source: Path, target: Path, moved: Callable[[int], None]) -> str:
    """Copy to a temporary name beside the target, check size and SHA-256, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.jobledger-partial")
    digest = hashlib.sha256()
    with source.open("rb") as reader, temporary.open("wb") as writer:
        while chunk := reader.read(CHUNK):
            writer.write(chunk)
            digest.update(chunk)
            moved(len(chunk))
        writer.flush()
        os.fsync(writer.fileno())
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


def run_command(source: dict[str, Any], report: Report) -> dict[str, Any]:
    """Run the command line (a string through the shell, or a list as argv), with a timeout."""
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
    )
    assert process.stdout is not None
    report(0, 0)
    try:
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            if time.monotonic() - started > timeout:
                process.kill()
                raise TaskFailed(f"command timed out after {timeout:.0f} s\n" + "\n".join(tail))
        code = process.wait(timeout=max(0.1, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        process.kill()
        raise TaskFailed(f"command timed out after {timeout:.0f} s\n" + "\n".join(tail)) from None
    result = {"exit_code": code, "output": list(tail)}
    if code != 0:
        raise TaskFailed(f"command exited with {code}\n" + "\n".join(tail))
    return result
