"""Stopping a task under way, from the worker's loop while the task runs in its own thread.

A command runs in a process group of its own, so that `terminate` (SIGTERM) and `kill`
(SIGKILL) reach everything it started (a shell's `sleep`, a pipeline) and not the worker.
A command signalled so is interrupted whatever its exit status (many programs exit 0 on
SIGTERM without having done their work); one that had ended already keeps its outcome.
A transfer looks at `check` before each chunk it copies. Either way the task ends with
`Interrupted`, and the worker gives its lease back instead of failing it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading


class Interrupted(Exception):
    """The worker stopped the task before it ended: it is not finished, nor failed."""


class Halt:
    """One task's stop switch, shared by the worker's loop and the task's thread."""

    def __init__(self) -> None:
        self.requested = False  # the worker asked the task to stop
        self.signalled = False  # and signalled its command while the command ran
        self._process: subprocess.Popen[str] | None = None  # the command, leading its process group
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise Interrupted if the task was asked to stop (a transfer, between chunks)."""
        if self.requested:
            raise Interrupted("stopped by the worker")

    def started(self, process: subprocess.Popen[str]) -> None:
        """The task's command began, leading its own process group; a stop asked for while
        it was starting reaches it now."""
        with self._lock:
            self._process = process
            if self.requested:
                self._signal(signal.SIGTERM)

    def ended(self) -> None:
        """The command was reaped: its group id may soon belong to someone else."""
        with self._lock:
            self._process = None

    def terminate(self) -> None:
        """Ask the task to stop: SIGTERM to the command's whole process group."""
        with self._lock:
            self.requested = True
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Make the task stop: SIGKILL to the command's whole process group."""
        with self._lock:
            self.requested = True
            self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            return  # not started, or ended by itself: its outcome stands
        self.signalled = True
        with contextlib.suppress(ProcessLookupError, PermissionError):  # gone meanwhile
            os.killpg(self._process.pid, sig)
