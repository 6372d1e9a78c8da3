"""Stopping real `jobledger worker` processes: promptly while their server is gone, killing
the command they run (its whole process group) and giving its lease back, and saying
exactly what they did. (The client's retries are in test_client.py; what a worker
refuses to do is in test_worker_safety.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.api.conftest import Server, stop_server
from tests.api.test_workers import (
    CREATE_JOB,
    TASK,
    get_job,
    log_tail,
    start_worker,
    stop_worker,
    task_events,
    wait_until,
)

STOP_WITHIN = 5.0  # seconds a worker may take to exit after SIGTERM, whatever the server does


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def said(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


def sigterm_and_time(worker: subprocess.Popen[bytes], log: Path, sig: signal.Signals = signal.SIGTERM) -> float:
    """SIGTERM (or `sig`) to the worker alone (not its group: what it runs must be stopped by
    the worker itself); seconds until it exited, which must be with status 0."""
    sent = time.monotonic()
    os.kill(worker.pid, sig)
    try:
        worker.wait(STOP_WITHIN + 10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker ignored SIGTERM for {STOP_WITHIN + 10} s\n{log_tail(log)}") from None
    took = time.monotonic() - sent
    assert worker.returncode == 0, log_tail(log)
    return took


def sleeping_job(server: Server, pid_file: Path, seconds: int = 30) -> tuple[str, str]:
    """A job of one command task that records the pid of its `sleep` and waits for it: (job id, task id)."""
    command = f"sleep {seconds} & echo $! > {pid_file}; wait"
    created = server.data(
        CREATE_JOB, {"i": {"code": "sleeper", "tasks": [{"source": {"kind": "command", "command": command}}]}}
    )
    job_id = created["createJob"]["id"]
    return job_id, created["createJob"]["tasks"]["nodes"][0]["id"]


def executing(server: Server, task_id: str, pid_file: Path) -> int:
    """Wait until the task runs and its sleep has started; the sleep's pid."""
    wait_until(
        "the task to be executing",
        lambda: (
            pid_file.exists()
            and pid_file.read_text().strip()
            and server.data(TASK, {"id": task_id})["task"]["status"] == "EXECUTING"
        ),
        60,
    )
    return int(pid_file.read_text())


def test_a_worker_whose_server_is_gone_stops_within_seconds_of_sigterm(server, tmp_path):
    log = tmp_path / "stranded.log"
    worker = start_worker(server, log, "stranded")
    try:
        wait_until("the worker to claim", lambda: said(log, "claiming from"), 30)
        stop_server(server)
        wait_until("the worker to find the server gone", lambda: said(log, "server unreachable"), 30)
        time.sleep(8)  # by now it waits several seconds between attempts: the stop must cut that short
        took = sigterm_and_time(worker, log)
    finally:
        stop_worker(worker)
    print(f"idle worker, server gone: exited {took:.2f} s after SIGTERM")
    assert took < STOP_WITHIN, f"{took:.1f} s\n{log_tail(log)}"
    assert said(log, "no task was under way") and said(log, "worker stranded stopped"), log_tail(log)


def test_a_worker_whose_server_is_gone_still_kills_its_command_and_stops(server, tmp_path):
    pid_file = tmp_path / "sleep.pid"
    _, task_id = sleeping_job(server, pid_file)
    log = tmp_path / "stranded.log"
    worker = start_worker(server, log, "stranded", allow_commands=True)
    try:
        sleep_pid = executing(server, task_id, pid_file)
        stop_server(server)
        time.sleep(1.5)  # a heartbeat or two meets the closed port
        took = sigterm_and_time(worker, log)
    finally:
        stop_worker(worker)
    print(f"worker running `sleep 30`, server gone: exited {took:.2f} s after SIGTERM")
    assert took < STOP_WITHIN, f"{took:.1f} s\n{log_tail(log)}"
    assert not alive(sleep_pid), "the command's sleep outlived the worker"
    assert said(log, "released 0 leases; 1 lease could not be released (left to expire)"), log_tail(log)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_a_worker_kills_its_command_and_gives_the_lease_back_unworked(server, tmp_path, sig):
    pid_file = tmp_path / "sleep.pid"
    job_id, task_id = sleeping_job(server, pid_file)
    log = tmp_path / "sleeper.log"
    worker = start_worker(server, log, "sleeper", allow_commands=True)
    try:
        sleep_pid = executing(server, task_id, pid_file)
        took = sigterm_and_time(worker, log, sig)
        gone_after = time.monotonic()
    finally:
        stop_worker(worker)
    print(f"worker running `sleep 30`, server up: exited {took:.2f} s after {sig.name}")
    assert took < STOP_WITHIN, f"{took:.1f} s\n{log_tail(log)}"
    assert not alive(sleep_pid), "the command's sleep outlived its worker's stop"
    assert time.monotonic() - gone_after < 1  # checked at once, not after the 30 s it would have slept

    (task,) = get_job(server, job_id)["tasks"]["nodes"]
    assert (task["status"], task["attempts"]) == ("QUEUED", 0), task
    kinds = [e["type"] for e in task_events(server, task_id)]
    assert kinds.count("Task.Claimed") == 1 and kinds[-1] == "Task.LeaseReleased", kinds
    assert "Task.AttemptFailed" not in kinds and "Task.Completed" not in kinds, kinds
    text = log.read_text()
    assert "released 1 lease\n" in text and "had finished" not in text, log_tail(log)
    assert "worker sleeper stopped: 0 done, 0 failed" in text, log_tail(log)


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_and_a_second_signal_exits_at_once(server, tmp_path):
    pid_file = tmp_path / "sleep.pid"
    stubborn = {"kind": "command", "command": f"trap '' TERM; sleep 30 & echo $! > {pid_file}; wait"}
    created = server.data(CREATE_JOB, {"i": {"code": "stubborn", "tasks": [{"source": stubborn}]}})
    task_id = created["createJob"]["tasks"]["nodes"][0]["id"]

    # One signal: the command ignores SIGTERM, so SIGKILL follows after the grace; the lease goes back.
    log = tmp_path / "patient.log"
    worker = start_worker(server, log, "patient", allow_commands=True)
    try:
        first = executing(server, task_id, pid_file)
        took = sigterm_and_time(worker, log)
    finally:
        stop_worker(worker)
    print(f"worker running a command that ignores SIGTERM: exited {took:.2f} s after SIGTERM")
    assert 1.5 < took < STOP_WITHIN, f"{took:.1f} s\n{log_tail(log)}"
    assert not alive(first)
    assert said(log, "released 1 lease"), log_tail(log)
    pid_file.unlink()

    # Two signals: the second exits at once, killing the command; its lease is left to expire.
    log = tmp_path / "hasty.log"
    worker = start_worker(server, log, "hasty", allow_commands=True)
    try:
        second = executing(server, task_id, pid_file)
        sent = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)
        time.sleep(0.3)
        os.kill(worker.pid, signal.SIGTERM)
        worker.wait(STOP_WITHIN)
        took = time.monotonic() - sent
    finally:
        stop_worker(worker)
    print(f"second SIGTERM 0.3 s after the first: exited {took:.2f} s after the first")
    assert took < 1.5, f"{took:.1f} s\n{log_tail(log)}"
    assert worker.returncode == 128 + signal.SIGTERM, log_tail(log)
    assert not alive(second)
    assert said(log, "SIGTERM again: exiting at once; 1 lease left to expire"), log_tail(log)
    assert server.data(TASK, {"id": task_id})["task"]["worker"] == "hasty"
