"""The worker loop: claim while there is room, run each task in a thread, heartbeat every
second with progress, then complete or fail it. The heartbeats carry a transfer's bytes
done and speed, and its size from the first one on (measured before it copies), or the
progress a command printed (`execute.PROGRESS_LINE`). What keeps the worker from working
(queues that do not exist, claims refused, a --url that answers HTTP 404) it says through
worker.watch, once and then at most once a minute, never every second.

What a task may do is the worker's `Policy` (worker.policy): a task it refuses is failed
at once, without retry, with the refusal as its error, so that the refusal is an event of
the task. A service that refuses the worker itself (no valid token, or no right to claim)
stops it: it would be refused again each second.

It speaks to the service through jobledger_client's AsyncClient, which sends claims,
completions, failures and releases with an Idempotency-Key and sends them again, the same
key each time, while the service cannot be reached (its RetryPolicy, with backoff, for as
long as it takes). The outage is logged once when it starts and once when it ends.

SIGINT or SIGTERM stops it, promptly even while the service cannot be reached: no more
claims; each command under way gets SIGTERM on its whole process group, SIGKILL after
KILL_GRACE seconds (a transfer stops before its next chunk); tasks that had finished
report their end; the leases of the tasks it stopped go back to the queue (not counted as
an attempt); one line says what happened ("released 1 lease; 2 tasks had finished"). The
service is tried for STOP_GRACE seconds, then for RELEASE_GRACE more for the releases. A
second signal exits at once (status 128 + the signal), killing what still runs; leases
not given back then expire by themselves. A stop leaves exit status 0."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
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
from worker.halt import Halt, Interrupted
from worker.policy import Policy, Refused
from worker.watch import QueueCheck, Trouble, claim_failure, clock

log = logging.getLogger("jobledger.worker")

KILL_GRACE = 2.0  # seconds a stopped command has between SIGTERM and SIGKILL
STOP_GRACE = 3.0  # seconds a stopping worker keeps trying to claim and report
RELEASE_GRACE = 2.0  # seconds it then keeps trying to give back the leases of the tasks it stopped


class Phase(enum.Enum):
    """Where a leased task stands, for what the worker does with its lease when it stops."""

    RUNNING = "running"  # its work is under way
    FINISHED = "finished"  # its work ended by itself; its end is being reported
    REPORTED = "reported"  # the service has its end (done or failed)
    UNREPORTED = "unreported"  # its work ended, but the service could not be told
    INTERRUPTED = "interrupted"  # the worker stopped it: its lease goes back
    UNSTARTED = "unstarted"  # claimed as the worker was stopping: its lease goes back
    RELEASED = "released"  # its lease went back: the service took it
    LOST = "lost"  # its lease was over (the job aborted, or the lease expired)


ENDED = (Phase.FINISHED, Phase.REPORTED, Phase.UNREPORTED)
GIVEN_BACK = (Phase.INTERRUPTED, Phase.UNSTARTED)


@dataclass
class Running:
    lease: str
    name: str
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    speed: float = 0.0  # MB/s
    phase: Phase = Phase.RUNNING
    halt: Halt = field(default_factory=Halt)
    size: int | None = None  # the source's bytes, once the transfer measured them
    size_sent: bool = False  # the service has the size (or cannot take it)
    percent: int | None = None  # the progress a command printed last
    _last: tuple[float, int] = (0.0, 0)

    def report(self, done: int, total: int) -> None:
        """Called from the task's thread as bytes move."""
        self.done, self.total = done, total

    def measured(self, size: int) -> None:
        """Called from the task's thread when the transfer knows its size, before it copies."""
        self.size, self.total = size, size

    def said(self, percent: int) -> None:
        """Called from the task's thread when the command printed its progress."""
        self.percent = percent

    @property
    def progress(self) -> int:
        if self.percent is not None:
            return self.percent
        return 100 * self.done // self.total if self.total else 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def sample_speed(self) -> float:
        now = time.monotonic()
        then, before = self._last
        if then:
            self.speed = round((self.done - before) / max(now - then, 1e-6) / 1_000_000, 3)
        self._last = (now, self.done)
        return self.speed


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def stop_summary(held: list[Running]) -> str:
    """What a stop did with the tasks the worker held, in one line: "released 1 lease; 2 tasks
    had finished". Only the releases the service took count as released."""
    if not held:
        return "no task was under way"
    count = {phase: sum(r.phase is phase for r in held) for phase in Phase}
    said = [f"released {plural(count[Phase.RELEASED], 'lease')}"]
    if ended := sum(count[phase] for phase in ENDED):
        unreported = ended - count[Phase.REPORTED]
        said.append(f"{plural(ended, 'task')} had finished" + (f" ({unreported} not reported)" if unreported else ""))
    if kept := count[Phase.INTERRUPTED] + count[Phase.UNSTARTED]:
        said.append(f"{plural(kept, 'lease')} could not be released (left to expire)")
    if count[Phase.RUNNING]:
        said.append(f"{plural(count[Phase.RUNNING], 'task')} did not stop (lease left to expire)")
    if count[Phase.LOST]:
        said.append(f"{plural(count[Phase.LOST], 'lease')} had ended already")
    return "; ".join(said)


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
        max_rate: float | None = None,
    ) -> None:
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        # No time limit on retries: a worker waits out an outage, and a stop cuts it short.
        self.client = client or AsyncClient(url, self.name, token=token, retry=RetryPolicy(give_up_after=None, log=log))
        self.policy = policy or Policy()
        self.queues = queues or None
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.live_view = sys.stdout.isatty() if live_view is None else live_view
        self.running: dict[str, Running] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.held: list[Running] | None = None  # the tasks held when the stop began
        self.slot_free = asyncio.Event()  # a task ended: claim again at once
        self.finished = 0
        self.failed = 0
        self.exit_status = 0
        self.max_rate = max_rate  # MB/s per transfer; None: as fast as it goes
        self.url = str(getattr(self.client, "url", url))
        self.queue_check = QueueCheck(self.queues or [])
        self.claim_trouble = Trouble()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._signalled, sig)
        view = asyncio.create_task(self._view()) if self.live_view else None
        log.info("worker %s claiming from %s", self.name, ", ".join(self.queues or ["every queue"]))
        for allowance in self.policy.describe():
            log.info(allowance)
        if self.max_rate:
            log.info("transfers: at most %s MB/s each", f"{self.max_rate:g}")
        checking: asyncio.Task[None] | None = None
        try:
            while not self.stopping.is_set():
                if self.queue_check.due() and (checking is None or checking.done()):
                    checking = asyncio.create_task(self.queue_check.run(self.client))
                if len(self.running) >= self.concurrency:
                    await self._pause(self.poll_interval, self.slot_free)
                    continue
                if not await self._claim():
                    await self._pause(self.poll_interval)
        finally:
            if checking is not None:
                checking.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await checking
            self._stop()
            await self._shutdown()
            if view:
                view.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await view
            await self.client.close()

    def _signalled(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.held is not None:
            self._exit_at_once(name, 128 + signum)
        log.info("%s: stopping (a second SIGTERM or SIGINT exits at once)", name)
        self._stop()

    def _stop(self) -> None:
        """Begin the stop (once): no more claims, the service tried for STOP_GRACE seconds more,
        and SIGTERM to each command under way."""
        if self.held is not None:
            return
        self.stopping.set()
        self.client.retry.stop(within=STOP_GRACE)
        self.held = list(self.running.values())
        for running in self.held:
            if running.phase is Phase.RUNNING:
                running.halt.terminate()

    def _exit_at_once(self, signal_name: str, status: int) -> None:
        """The second signal: kill what still runs and leave now."""
        left = [r for r in self.running.values() if r.phase not in (Phase.REPORTED, Phase.RELEASED, Phase.LOST)]
        for running in left:
            running.halt.kill()
        log.warning("%s again: exiting at once; %s left to expire", signal_name, plural(len(left), "lease"))
        logging.shutdown()
        os._exit(status)

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
            self._stop()
            return 0
        except JobledgerError as exc:
            if not self.stopping.is_set():  # a claim cut short by the stop is no news
                self.claim_trouble.met(claim_failure(self.url, exc))
            return 0
        self.claim_trouble.over()
        for lease in leases:
            running = Running(lease.id, f"{lease.job_code} #{lease.task.uri}")
            self.running[lease.id] = running
            if self.held is not None:  # claimed as the stop began: given back unstarted
                running.phase = Phase.UNSTARTED
                self.held.append(running)
                continue
            job = asyncio.create_task(self._execute(running, lease))
            self.tasks.add(job)
            job.add_done_callback(self.tasks.discard)
        return len(leases)

    async def _execute(self, running: Running, lease: TaskLease) -> None:
        log.info("started %s (lease %s)", running.name, running.lease)
        work = execute.Work.of(lease)
        loop = asyncio.get_running_loop()
        run = functools.partial(
            execute.run,
            work,
            self.policy,
            running.report,
            running.halt,
            measured=running.measured,
            said=running.said,
            max_rate=self.max_rate,
        )
        doing = loop.run_in_executor(None, run)
        while True:
            try:
                result = await asyncio.wait_for(asyncio.shield(doing), 1.0)
                break
            except TimeoutError:
                if not self.stopping.is_set() and not await self._heartbeat(running):
                    await self._lost(running, doing)
                    return
            except Interrupted:  # the stop's: its lease goes back as the worker stops
                running.phase = Phase.INTERRUPTED
                log.info("stopped %s", running.name)
                return
            except Refused as exc:  # asking again will not change the answer: no retry
                await self._finish(running, error=str(exc), retry=False)
                return
            except execute.TaskFailed as exc:
                await self._finish(running, error=str(exc))
                return
            except Exception as exc:  # a bug or an OS error: the task fails, the worker goes on
                await self._finish(running, error=f"{exc.__class__.__name__}: {exc}")
                return
        await self._finish(running, result=result)

    async def _heartbeat(self, running: Running) -> bool:
        """Renew the lease with the progress so far (and the size of the source, until the
        service has it); False when the lease is over."""
        size = running.size if not running.size_sent else None
        try:
            await self.client.heartbeat(
                running.lease,
                progress=running.progress,
                bytes_done=running.done,
                speed=running.sample_speed(),
                size=size,
            )
            running.size_sent = size is not None or running.size_sent
        except (Conflict, NotFound):
            return False
        except JobledgerError:
            # Refused this once: the lease is still ours until the service says otherwise.
            # A size it refused is not sent again.
            running.size_sent = size is not None or running.size_sent
        return True

    async def _lost(self, running: Running, doing: asyncio.Future[Any]) -> None:
        """The lease is over (the job was aborted, or the lease expired): the task may be
        another worker's now, so its work stops here."""
        log.warning("lease %s of %s is over (job aborted or lease expired); stopping it", running.lease, running.name)
        running.phase = Phase.LOST
        running.halt.terminate()
        with contextlib.suppress(Exception):  # TimeoutError, or the Interrupted it ends with
            await asyncio.wait_for(asyncio.shield(doing), KILL_GRACE)
        running.halt.kill()
        self.running.pop(running.lease, None)
        self.slot_free.set()

    async def _finish(
        self, running: Running, *, result: Any = None, error: str | None = None, retry: bool = True
    ) -> None:
        """Report the task done (with its result) or failed (with the error; queued again
        while attempts remain, unless `retry` is False)."""
        running.phase = Phase.FINISHED
        try:
            if error is None:
                await self.client.complete(running.lease, result)
                self.finished += 1
                log.info("done %s", running.name)
            else:
                await self.client.fail(running.lease, error, retry=retry)
                self.failed += 1
                log.warning("failed %s: %s", running.name, error.splitlines()[0] if error else "")
            running.phase = Phase.REPORTED
        except JobledgerError as exc:
            running.phase = Phase.UNREPORTED
            log.warning("could not report %s: %s", running.name, exc)
        finally:
            self.running.pop(running.lease, None)
            self.slot_free.set()

    async def _shutdown(self) -> None:
        """Wait for the stopped tasks (SIGKILL to the commands still running after KILL_GRACE)
        and the reports of the finished ones, give back the leases of the tasks stopped or
        never started, and say what happened."""
        executions = list(self.tasks)
        if executions:
            _, pending = await asyncio.wait(executions, timeout=KILL_GRACE)
            if pending:
                for running in self.held or ():
                    if running.phase is Phase.RUNNING:
                        running.halt.kill()
                _, pending = await asyncio.wait(pending, timeout=STOP_GRACE)
            for job in pending:
                job.cancel()
        held = self.held or []
        await self._release([r for r in held if r.phase in GIVEN_BACK])
        log.info(stop_summary(held))
        log.info("worker %s stopped: %d done, %d failed", self.name, self.finished, self.failed)

    async def _release(self, given_back: list[Running]) -> None:
        """Give the leases back, trying the service for RELEASE_GRACE seconds more."""
        if given_back:
            self.client.retry.stop(within=RELEASE_GRACE)
        for running in given_back:
            try:
                await self.client.release(running.lease)
                running.phase = Phase.RELEASED
            except JobledgerError as exc:
                log.warning("could not release lease %s of %s: %s", running.lease, running.name, exc)

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
            speed = filesize.decimal(int(r.speed * 1_000_000)) + "/s" if r.total else ""
            bars.add_row(
                Text(r.name, no_wrap=True, overflow="ellipsis"),
                ProgressBar(total=100, completed=r.progress, width=20),
                Text(f"{r.progress:3d}%"),
                Text(speed, justify="right"),
                Text(clock(r.elapsed), justify="right"),
            )
        summary = f"{self.name}: {len(self.running)} running, {self.finished} done, {self.failed} failed"
        return Group(bars, Text(summary, style="bold"))
