"""The worker loop: claim while there is room, run each task in a thread, heartbeat every
second with progress, then complete or fail it. SIGINT/SIGTERM release the leases."""

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

from worker import execute
from worker.client import ApiError, Client

log = logging.getLogger("jobledger.worker")

CLAIM = """mutation($worker: String!, $queues: [String!], $limit: Int, $lease: Int) {
  claimTasks(worker: $worker, queues: $queues, limit: $limit, leaseSeconds: $lease) {
    id expires task { id uri source destination size job { id code destination } }
  }
}"""
HEARTBEAT = """mutation($lease: ID!, $progress: Int, $bytes: Long, $speed: Float) {
  heartbeat(leaseId: $lease, progress: $progress, bytesDone: $bytes, speed: $speed) { expires }
}"""
COMPLETE = "mutation($lease: ID!, $result: JSON) { completeTask(leaseId: $lease, result: $result) { status } }"
FAIL = "mutation($lease: ID!, $error: String!) { failTask(leaseId: $lease, error: $error) { status attempts } }"
RELEASE = "mutation($lease: ID!) { releaseTask(leaseId: $lease) { status } }"


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
    def __init__(
        self,
        url: str,
        name: str | None = None,
        queues: list[str] | None = None,
        concurrency: int = 1,
        lease_seconds: int = 60,
        poll_interval: float = 1.0,
        live_view: bool | None = None,
    ) -> None:
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = Client(url, self.name)
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

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        view = asyncio.create_task(self._view()) if self.live_view else None
        log.info("worker %s claiming from %s", self.name, ", ".join(self.queues or ["every queue"]))
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
        try:
            data = await self.client.call(
                CLAIM,
                worker=self.name,
                queues=self.queues,
                limit=self.concurrency - len(self.running),
                lease=self.lease_seconds,
            )
        except ApiError as exc:
            log.warning("claim refused: %s", exc)
            return 0
        for lease in data["claimTasks"]:
            task = lease["task"]
            running = Running(lease["id"], f"{task['job']['code']} #{task['uri']}")
            self.running[lease["id"]] = running
            job = asyncio.create_task(self._execute(running, task))
            self.tasks.add(job)
            job.add_done_callback(self.tasks.discard)
        return len(data["claimTasks"])

    async def _execute(self, running: Running, task: dict[str, Any]) -> None:
        log.info("started %s (lease %s)", running.name, running.lease)
        work = execute.Work.of(task)
        doing = asyncio.get_running_loop().run_in_executor(None, execute.run, work, running.report)
        lost = False
        while not lost:
            try:
                result = await asyncio.wait_for(asyncio.shield(doing), 1.0)
                break
            except TimeoutError:
                lost = not await self._heartbeat(running)
            except execute.TaskFailed as exc:
                await self._finish(running, FAIL, error=str(exc))
                return
            except Exception as exc:  # a bug or an OS error: the task fails, the worker goes on
                await self._finish(running, FAIL, error=f"{exc.__class__.__name__}: {exc}")
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
        await self._finish(running, COMPLETE, result=result)

    async def _heartbeat(self, running: Running) -> bool:
        try:
            await self.client.call(
                HEARTBEAT,
                lease=running.lease,
                progress=running.progress,
                bytes=running.done,
                speed=running.sample_speed(),
            )
            return True
        except ApiError as exc:
            return exc.code not in ("CONFLICT", "NOT_FOUND")

    async def _finish(self, running: Running, mutation: str, **values: Any) -> None:
        try:
            await self.client.call(mutation, lease=running.lease, **values)
            if mutation == COMPLETE:
                self.finished += 1
                log.info("done %s", running.name)
            else:
                self.failed += 1
                log.warning("failed %s: %s", running.name, str(values.get("error", "")).splitlines()[0])
        except ApiError as exc:
            log.warning("could not report %s: %s", running.name, exc)
        finally:
            self.running.pop(running.lease, None)
            self.slot_free.set()

    async def _shutdown(self) -> None:
        """Stop claiming; give back every lease still held, so others can run those tasks."""
        leases = list(self.running)
        for lease in leases:
            with contextlib.suppress(ApiError, TimeoutError):
                await asyncio.wait_for(self.client.call(RELEASE, lease=lease), 5)
        for job in list(self.tasks):
            job.cancel()
        if leases:
            log.info("released %d lease(s) on shutdown", len(leases))
        log.info("worker %s stopped: %d done, %d failed", self.name, self.finished, self.failed)

    async def _view(self) -> None:
        """A live view: one progress bar per running task, redrawn every second."""
        drawn = 0
        while True:
            lines = [
                f"{r.name[:40]:<40} [{'#' * (r.progress // 5):<20}] {r.progress:3d}% {r.speed:8.2f} MB/s"
                for r in list(self.running.values())
            ]
            lines.append(f"{self.name}: {len(self.running)} running, {self.finished} done, {self.failed} failed")
            sys.stdout.write("\x1b[F\x1b[2K" * drawn + "\n".join(lines) + "\n")
            sys.stdout.flush()
            drawn = len(lines)
            await asyncio.sleep(1)
