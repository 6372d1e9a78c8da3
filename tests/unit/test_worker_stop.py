"""A worker stopped by SIGTERM while it holds three tasks, two of which have finished and are
being reported and one still running (an httpx MockTransport for the service): it kills the
running command's process group, lets the finished ones report, gives back only the lease
of the one it stopped, and says exactly that. The stop line for every mix of tasks, and
what a halt does to a transfer and to a command under way."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobledger_client import AsyncClient, RetryPolicy
from tests.unit.test_worker_outage import TASK
from worker import execute
from worker.halt import Halt, Interrupted
from worker.policy import Policy
from worker.runner import Phase, Running, Worker, stop_summary


def task(number: int, command: str) -> dict[str, Any]:
    """The outage test's task, numbered, running `command`."""
    return {**TASK, "id": f"t-{number}", "uri": str(number), "source": {"kind": "command", "command": command}}


def lease(number: int, command: str) -> dict[str, Any]:
    return {"id": f"lease-{number}", "worker": "w1", "expires": "2026-11-30T12:01:00Z", "task": task(number, command)}


class Service:
    """Hands out three leases at once: two quick commands and one that sleeps. The reports of
    the quick ones are slow (`completes` "slow": the SIGTERM arrives while they are on their
    way, then they are answered) or never answered ("refused": connection refused)."""

    def __init__(self, completes: str, pid_file: Path) -> None:
        self.completes = completes
        self.pid_file = pid_file
        self.leases = [lease(0, "true"), lease(1, "true"), lease(2, f"sleep 30 & echo $! > {pid_file}; wait")]
        self.sent: list[dict[str, Any]] = []
        self.reported: set[str] = set()
        self.signalled_at: float | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        self.sent.append({**sent, "key": request.headers.get("Idempotency-Key")})
        query, variables = sent["query"], sent["variables"]
        if "claimTasks" in query:
            leases, self.leases = self.leases, []
            return answer("claimTasks", leases)
        if "heartbeat" in query:
            return answer("heartbeat", lease(2, "sleep"))
        if "releaseTask" in query:
            return answer("releaseTask", {**task(2, "sleep"), "status": "QUEUED"})
        if "completeTask" in query:
            self.reported.add(variables["leaseId"])
            if self.reported == {"lease-0", "lease-1"}:
                await self.signal_once_the_sleep_runs()
            if self.completes == "refused":
                raise httpx.ConnectError("connection refused", request=request)
            await asyncio.sleep(0.3)
            number = int(variables["leaseId"].split("-")[1])
            return answer("completeTask", {**task(number, "true"), "status": "DONE"})
        return httpx.Response(200, json={"data": None, "errors": [{"message": f"unexpected {query[:30]}"}]})

    async def signal_once_the_sleep_runs(self) -> None:
        if self.signalled_at is not None:
            return
        deadline = time.monotonic() + 10
        while not (self.pid_file.exists() and self.pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the sleeping command never started"
            await asyncio.sleep(0.05)
        self.signalled_at = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's loop handles it


def answer(field: str, value: Any) -> httpx.Response:
    return httpx.Response(200, json={"data": {field: value}})


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    ("completes", "line"),
    [
        ("slow", "released 1 lease; 2 tasks had finished"),
        ("refused", "released 1 lease; 2 tasks had finished (2 not reported)"),
    ],
)
async def test_a_stop_gives_back_only_the_lease_of_the_task_it_stopped(completes, line, tmp_path, caplog):
    service = Service(completes, tmp_path / "sleep.pid")
    client = AsyncClient(
        "http://jobledger.test/graphql",
        "w1",
        retry=RetryPolicy(first_wait=0.05, give_up_after=None),
        httpx_options={"transport": httpx.MockTransport(service)},
    )
    worker = Worker(
        "http://jobledger.test/graphql",
        "w1",
        concurrency=3,
        client=client,
        poll_interval=0.05,
        live_view=False,
        policy=Policy(allow_commands=True),
    )
    with caplog.at_level(logging.INFO, logger="jobledger.worker"):
        await asyncio.wait_for(worker.run(), 30)
    took = time.monotonic() - (service.signalled_at or 0)

    said = [record.getMessage() for record in caplog.records]
    assert line in said, said
    assert took < 5, f"stopped {took:.1f} s after SIGTERM"
    assert not alive(int(service.pid_file.read_text())), "the sleeping command outlived the stop"
    releases = [s["variables"]["leaseId"] for s in service.sent if "releaseTask" in s["query"]]
    assert releases == ["lease-2"]
    assert worker.exit_status == 0
    # Each report went with a key, the same in every attempt; heartbeats with none.
    keys: dict[str, set[str | None]] = {}
    for sent in service.sent:
        if "completeTask" in sent["query"]:
            keys.setdefault(sent["variables"]["leaseId"], set()).add(sent["key"])
        if "heartbeat" in sent["query"]:
            assert sent["key"] is None
    assert len(keys) == 2 and all(len(k) == 1 and None not in k for k in keys.values()), keys
    assert all(s["key"] for s in service.sent if "claimTasks" in s["query"] or "releaseTask" in s["query"])


def held(*phases: Phase) -> list[Running]:
    tasks = [Running(f"lease-{i}", f"job #{i}") for i in range(len(phases))]
    for running, phase in zip(tasks, phases, strict=True):
        running.phase = phase
    return tasks


@pytest.mark.parametrize(
    ("phases", "line"),
    [
        ((), "no task was under way"),
        ((Phase.RELEASED,), "released 1 lease"),
        ((Phase.RELEASED, Phase.REPORTED, Phase.REPORTED), "released 1 lease; 2 tasks had finished"),
        ((Phase.REPORTED,), "released 0 leases; 1 task had finished"),
        (
            (Phase.RELEASED, Phase.RELEASED, Phase.UNREPORTED, Phase.REPORTED),
            "released 2 leases; 2 tasks had finished (1 not reported)",
        ),
        (
            (Phase.INTERRUPTED, Phase.UNSTARTED, Phase.RELEASED),
            "released 1 lease; 2 leases could not be released (left to expire)",
        ),
        (
            (Phase.RUNNING, Phase.LOST),
            "released 0 leases; 1 task did not stop (lease left to expire); 1 lease had ended already",
        ),
    ],
)
def test_the_stop_line_counts_what_happened(phases, line):
    assert stop_summary(held(*phases)) == line


# -- what a halt does to the task under way -------------------------------------------------


def test_a_halted_transfer_stops_before_its_next_chunk_and_leaves_no_partial_file(tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * execute.CHUNK + 5))
    halt = Halt()
    reports: list[int] = []

    def report(done: int, total: int) -> None:
        reports.append(done)
        halt.terminate()  # as the worker does from its loop on SIGTERM

    work = execute.Work("transfer", str(source), str(tmp_path / "out" / "big.bin"))
    with pytest.raises(Interrupted):
        execute.run(work, Policy.of(roots=[tmp_path]), report, halt)
    assert reports == [execute.CHUNK]
    assert not list((tmp_path / "out").iterdir())  # neither the file nor its .jobledger-partial


def test_a_signalled_command_is_interrupted_whatever_its_exit_status_and_one_that_ended_keeps_it(tmp_path):
    policy = Policy(allow_commands=True)

    def command(line: str) -> execute.Work:
        return execute.Work("command", {"kind": "command", "command": line}, None, "default", True)

    # It exits 0 on SIGTERM without having done its work: still interrupted, not done.
    halt = Halt()
    started = tmp_path / "started"

    def stop_once_started() -> None:
        while not started.exists():
            time.sleep(0.02)
        halt.terminate()

    threading.Thread(target=stop_once_started, daemon=True).start()
    with pytest.raises(Interrupted):
        execute.run(command(f"trap 'exit 0' TERM; touch {started}; sleep 30 & wait"), policy, lambda d, t: None, halt)
    assert started.exists()

    # Stopped before it began: it never starts.
    halt = Halt()
    halt.terminate()
    with pytest.raises(Interrupted):
        execute.run(command(f"touch {tmp_path / 'never'}"), policy, lambda d, t: None, halt)
    assert not (tmp_path / "never").exists()

    # Ended by itself: a stop asked for afterwards changes nothing.
    halt = Halt()
    assert execute.run(command("echo fine"), policy, lambda d, t: None, halt)["output"] == ["fine"]
    halt.terminate()
    assert not halt.signalled
