"""The worker loop: claim while there is room, run each task in a thread, heartbeat every
second with progress, then complete or fail it. SIGINT/SIGTERM release the leases.

What a task may do is the worker's `Policy` (worker.policy): a task it refuses is failed
at once, without retry, with the refusal as its error, so that the refusal is an event of
the task. A service that refuses the worker itself (no valid token, or no right to claim)
stops it: it would be refused again each second.

It speaks to the service through jobledger_client's AsyncClient. While the service cannot
be reached, every request waits for it (the client's RetryPolicy, with backoff), and the
outage is logged once when it starts and once when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich import filesize
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobledger_client import (
    AsyncClient,
    Conflict,
    Forbidden,
    JobledgerError,
    NotFound,
    RetryPolicy,
    TaskLease,
    Unauthenticated,
)
from worker import execute
from worker.policy import Policy, Refused

log = logging.getLogger("jobledger.worker")


@dataclass
class Running:
    lease: str
    name: str
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    speed: float = 0.0  # MB/s
    _last: tuple[float, int] = (0.0, 0)

    def report(self, done: int, total: int) -> None:
        """Called from the task's thread as bytes move."""
        self.done, self.total = done, total

    @property
    def progress(self) -> int:
        return 100 * self.done // self.total if self.total else 0

    def sample_speed(self) -> float:
        now = time.monotonic()
        then, before = self._last
        if then:
            self.speed = round((self.done - before) / max(now - then, 1e-6) / 1_000_000, 3)
        self._last = (now, self.done)
        return self.speed


class Worker:
    """Claims tasks from the service at `url` (from `queues`, or all) as `name`, runs up to
    `concurrency` at once within `policy` (by default: no commands, no files), until
    SIGINT/SIGTERM. `token` is the client's (default $JOBLEDGER_TOKEN, else the token file);
    `client` replaces the AsyncClient it would open (tests give one with a mock transport).
    `exit_status` is 0 after a stop by signal, 2 when the service refused the worker."""

    def __init__(
        self,
        url: str,
        name: str | None = None,
        queues: list[str] | None = None,
        concurrency: int = 1,
        lease_seconds: int = 60,
        poll_interval: float = 1.0,
        live_view: bool | None = None,
        client: AsyncClient | None = None,
        policy: Policy | None = None,
        token: str | None = None,
    ) -> None:
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = client or AsyncClient(url, self.name, token=token, retry=RetryPolicy(log=log))
        self.policy = policy or Policy()
        self.queues = queues or None
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.live_view = sys.stdout.isatty() if live_view is None else live_view
        self.running: dict[str, Running] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.slot_free = asyncio.Event()  # a task ended: claim again at once
        self.finished = 0
        self.failed = 0
        self.exit_status = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        view = asyncio.create_task(self._view()) if self.live_view else None
        log.info("worker %s claiming from %s", self.name, ", ".join(self.queues or ["every queue"]))
        for allowance in self.policy.describe():
            log.info(allowance)
        try:
            while not self.stopping.is_set():
                if len(self.running) >= self.concurrency:
                    await self._pause(self.poll_interval, self.slot_free)
                    continue
                if not await self._claim():
                    await self._pause(self.poll_interval)
        finally:
            await self._shutdown()
            if view:
                view.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await view
            await self.client.close()

    async def _pause(self, seconds: float, also: asyncio.Event | None = None) -> None:
        """Wait `seconds`, or less if we are stopping (or `also` is set)."""
        waits = [asyncio.ensure_future(self.stopping.wait())]
        if also is not None:
            also.clear()
            waits.append(asyncio.ensure_future(also.wait()))
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()

    async def _claim(self) -> int:
        room = self.concurrency - len(self.running)
        try:
            leases = await self.client.claim(self.name, self.queues, room, self.lease_seconds)
        except (Unauthenticated, Forbidden) as exc:
            log.error("the service refused this worker, stopping: %s", exc.message)
            self.exit_status = 2
            self.stopping.set()
            return 0
        except JobledgerError as exc:
            log.warning("claim refused: %s", exc)
            return 0
        for lease in leases:
            running = Running(lease.id, f"{lease.job_code} #{lease.task.uri}")
            self.running[lease.id] = running
            job = asyncio.create_task(self._execute(running, lease))
            self.tasks.add(job)
            job.add_done_callback(self.tasks.discard)
        return len(leases)

    async def _execute(self, running: Running, lease: TaskLease) -> None:
        log.info("started %s (lease %s)", running.name, running.lease)
        work = execute.Work.of(lease)
        doing = asyncio.get_running_loop().run_in_executor(None, execute.run, work, self.policy, running.report)
        lost = False
        while not lost:
            try:
                result = await asyncio.wait_for(asyncio.shield(doing), 1.0)
                break
            except TimeoutError:
                lost = not await self._heartbeat(running)
            except Refused as exc:  # asking again will not change the answer: no retry
                await self._finish(running, error=str(exc), retry=False)
                return
            except execute.TaskFailed as exc:
                await self._finish(running, error=str(exc))
                return
            except Exception as exc:  # a bug or an OS error: the task fails, the worker goes on
                await self._finish(running, error=f"{exc.__class__.__name__}: {exc}")
                return
        if lost:
            log.warning(
                "lease %s of %s is over (job aborted or lease expired); dropping it",
                running.lease,
                running.name,
            )
            self.running.pop(running.lease, None)
            self.slot_free.set()
            return
        await self._finish(running, result=result)

    async def _heartbeat(self, running: Running) -> bool:
        """Renew the lease with the progress so far; False when the lease is over."""
        try:
            await self.client.heartbeat(
                running.lease, progress=running.progress, bytes_done=running.done, speed=running.sample_speed()
            )
        except (Conflict, NotFound):
            return False
        except JobledgerError:
            pass  # refused this once: the lease is still ours until the service says otherwise
        return True

    async def _finish(
        self, running: Running, *, result: Any = None, error: str | None = None, retry: bool = True
    ) -> None:
        """Report the task done (with its result) or failed (with the error; queued again
        while attempts remain, unless `retry` is False)."""
        try:
            if error is None:
                await self.client.complete(running.lease, result)
                self.finished += 1
                log.info("done %s", running.name)
            else:
                await self.client.fail(running.lease, error, retry=retry)
                self.failed += 1
                log.warning("failed %s: %s", running.name, error.splitlines()[0] if error else "")
        except JobledgerError as exc:
            log.warning("could not report %s: %s", running.name, exc)
        finally:
            self.running.pop(running.lease, None)
            self.slot_free.set()

    async def _shutdown(self) -> None:
        """Stop claiming; give back every lease still held, so others can run those tasks."""
        leases = list(self.running)
        for lease in leases:
            with contextlib.suppress(JobledgerError, TimeoutError):
                await asyncio.wait_for(self.client.release(lease), 5)
        for job in list(self.tasks):
            job.cancel()
        if leases:
            log.info("released %d lease(s) on shutdown", len(leases))
        log.info("worker %s stopped: %d done, %d failed", self.name, self.finished, self.failed)

    async def _view(self) -> None:
        """A live view on the terminal: one progress bar per running task, redrawn every second."""
        with Live(self._render(), console=Console(highlight=False), refresh_per_second=1) as live:
            try:
                while True:
                    await asyncio.sleep(1)
                    live.update(self._render())
            finally:
                live.update(self._render(), refresh=True)  # the counts as the worker stops

    def _render(self) -> Group:
        bars = Table.grid(padding=(0, 1))
        for r in list(self.running.values()):
            speed = filesize.decimal(int(r.speed * 1_000_000)) + "/s"
            bars.add_row(
                Text(r.name, no_wrap=True, overflow="ellipsis"),
                ProgressBar(total=100, completed=r.progress, width=20),
                Text(f"{r.progress:3d}%"),
                Text(speed, justify="right"),
            )
        summary = f"{self.name}: {len(self.running)} running, {self.finished} done, {self.failed} failed"
        return Group(bars, Text(summary, style="bold"))
