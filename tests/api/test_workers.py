"""Workers against real servers: the built-in `jobledger worker` transferring files and
running commands, a worker killed mid-task, and many claimers on two instances of one store.
(What a worker refuses to do is in test_worker_safety.py.)

Every worker is a real `jobledger worker` subprocess in a process group of its own, so
that it and whatever it runs (a command's shell, its `sleep`) can be stopped together.
Each waits with a deadline and says what it was waiting for when the deadline passes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, start_server, stop_server

REPO = Path(__file__).resolve().parents[2]

JOB = """query($id: ID!) { job(id: $id) {
  id code status progress size finished
  tasks(first: 500) { nodes { id uri status attempts worker error result source } }
} }"""
JOB_EVENTS = """query($id: ID!, $after: Long) { job(id: $id) {
  events(first: 500, after: $after) { nodes { position type actor data } pageInfo { hasNextPage endCursor } }
} }"""
EVENTS = """query($aggregate: ID, $types: [String!], $after: Long) {
  events(aggregateId: $aggregate, types: $types, after: $after, first: 500) {
    nodes { position aggregateId type actor data } pageInfo { hasNextPage endCursor }
  }
}"""
TASK = "query($id: ID!) { task(id: $id) { id status attempts worker error } }"
CREATE_JOB = "mutation($i: CreateJobInput!) { createJob(input: $i) { id tasks(first: 500) { nodes { id } } } }"


# -- helpers -------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last seen: {last!r})")


def start_worker(
    server: Server,
    log_path: Path,
    name: str,
    *,
    concurrency: int = 1,
    lease_seconds: int = 60,
    roots: Sequence[Path] = (),
    allow_commands: bool = False,
    options: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A `jobledger worker` on the server; by default it runs no command and touches no file
    (`roots` and `allow_commands` are its --root and --allow-commands)."""
    log = log_path.open("ab")
    command = [
        *("--url", server.graphql, "--concurrency", str(concurrency), "--name", name),
        *("--lease-seconds", str(lease_seconds)),
        *(f"--root={root}" for root in roots),
        *(["--allow-commands"] if allow_commands else []),
        *options,
    ]
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", *command],
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,  # its own process group: it and its commands stop together
        )
    finally:
        log.close()  # the child holds its own copy


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the worker releases its leases), then SIGKILL for the whole group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(10)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # anything it left running
    process.wait(10)


@contextmanager
def workers(server: Server, tmp_path: Path, *names: str, **options: Any) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name in names:
            started.append(start_worker(server, tmp_path / f"{name}.log", name, **options))
        yield started
    finally:
        for process in started:
            stop_worker(process)


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"(no {path.name})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def get_job(server: Server, job_id: str) -> dict[str, Any]:
    return server.data(JOB, {"id": job_id})["job"]  # type: ignore[no-any-return]


def job_reaches(server: Server, job_id: str, status: str, timeout: float, logs: list[Path]) -> dict[str, Any]:
    seen: list[str] = []

    def check() -> dict[str, Any] | None:
        job = get_job(server, job_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        return job if job["status"] == status else None

    try:
        return wait_until(f"job {job_id} to be {status}", check, timeout)  # type: ignore[no-any-return]
    except AssertionError as exc:
        tails = "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in logs)
        raise AssertionError(f"{exc}; statuses seen {seen}\n{tails}") from None


def all_pages(
    server: Server, query: str, variables: dict[str, Any], path: Callable[[dict[str, Any]], Any]
) -> list[dict[str, Any]]:
    """Every node of an event connection, following `after` from page to page."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = path(server.data(query, {**variables, "after": after}))
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = int(page["pageInfo"]["endCursor"])


def task_events(server: Server, task_id: str) -> list[dict[str, Any]]:
    return all_pages(server, EVENTS, {"aggregate": task_id}, lambda d: d["events"])


def job_events(server: Server, job_id: str) -> list[dict[str, Any]]:
    return all_pages(server, JOB_EVENTS, {"id": job_id}, lambda d: d["job"]["events"])


def status_story(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["status"] for e in events if e["type"] == "Job.StatusChanged"]


# -- a transfer job, end to end --------------------------------------------------------

FILE_SIZES = [
    0, 1, 2, 17, 100, 511, 1024, 4095, 4096, 65_536, 100_003, 262_144,
    500_000, 1_048_576, 1_048_577, 1_500_000, 2_000_000, 3_000_000, 4_194_304,
]  # fmt: skip
FOLDER = {"a.txt": 0, "b.bin": 1000, "sub/c.bin": 300_000, "sub/deeper/d.bin": 1_234_567}


def make_sources(root: Path) -> list[tuple[Path, int]]:
    """19 files of mixed sizes and one folder with files inside: (source, size) each."""
    rng = random.Random(7)
    root.mkdir()
    sources = []
    for index, size in enumerate(FILE_SIZES):
        path = root / f"file{index:02d}_{size}.bin"
        path.write_bytes(rng.randbytes(size))
        sources.append((path, size))
    folder = root / "folder"
    for name, size in FOLDER.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(rng.randbytes(size))
    sources.insert(7, (folder, sum(FOLDER.values())))
    return sources


def test_a_worker_transfers_a_job_of_twenty_files_and_folders_byte_for_byte(server, tmp_path):
    sources = make_sources(tmp_path / "src")
    destination = tmp_path / "dst"
    created = server.data(
        CREATE_JOB,
        {
            "i": {
                "code": "delivery",
                "destination": str(destination),
                "tasks": [{"source": str(path), "size": size} for path, size in sources],
            }
        },
    )["createJob"]
    job_id = created["id"]
    assert len(created["tasks"]["nodes"]) == 20

    with workers(server, tmp_path, "mover", concurrency=4, roots=[tmp_path]):
        job = job_reaches(server, job_id, "DONE", 180, [tmp_path / "mover.log"])

    assert job["progress"] == 100
    assert job["size"] == sum(size for _, size in sources)
    assert job["finished"] is not None
    for task in job["tasks"]["nodes"]:
        assert (task["status"], task["attempts"], task["worker"]) == ("DONE", 1, "mover"), task
        assert task["error"] is None
    for path, _ in sources:
        copied = destination / path.name
        if path.is_dir():
            inside = sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())
            assert sorted(p.relative_to(copied) for p in copied.rglob("*") if p.is_file()) == inside
            for relative in inside:
                assert (copied / relative).read_bytes() == (path / relative).read_bytes(), relative
        else:
            assert copied.read_bytes() == path.read_bytes(), path.name
    assert not [p for p in destination.rglob("*") if "jobledger-partial" in p.name]

    story = job_events(server, job_id)
    types = [e["type"] for e in story]
    assert types[0] == "Job.Created"
    assert status_story(story) == ["WAITING", "RUNNING", "DONE"]
    assert types[-1] == "Job.StatusChanged"
    noted = Counter(e["data"]["status"] for e in story if e["type"] == "Job.TaskStatusChanged")
    for e in story:  # claims and completions of several tasks at once are noted in one event
        if e["type"] == "Job.TaskStatusesChanged":
            noted.update(e["data"]["statuses"].values())
    assert (noted["BOOTING"], noted["DONE"]) == (20, 20)
    for task in job["tasks"]["nodes"]:
        kinds = [e["type"] for e in task_events(server, task["id"])]
        assert kinds[0] == "Task.Created" and kinds[-1] == "Task.Completed", kinds
        assert kinds.count("Task.Claimed") == 1 and kinds.count("Task.Completed") == 1, kinds
        assert set(kinds) <= {"Task.Created", "Task.Claimed", "Task.Executing", "Task.LeaseRenewed", "Task.Completed"}
        assert all(e["actor"] == "mover" for e in task_events(server, task["id"])[1:])


def test_a_jobs_events_include_what_happened_to_its_tasks(server, tmp_path):
    job_id = server.data(
        CREATE_JOB, {"i": {"code": "story", "tasks": [{"source": {"kind": "command", "command": "true"}}]}}
    )["createJob"]["id"]
    lease = server.data('mutation { claimTasks(worker: "w") { id } }')["claimTasks"][0]["id"]
    server.data("mutation($l: ID!) { completeTask(leaseId: $l) { status } }", {"l": lease})
    types = [e["type"] for e in job_events(server, job_id)]
    assert "Task.Claimed" in types and "Task.Completed" in types, types


# -- a full queue and the others ------------------------------------------------------------


def command_tasks(count: int, tag: str) -> list[dict[str, Any]]:
    return [{"source": {"kind": "command", "command": "true", "item": f"{tag}{i}"}} for i in range(count)]


def test_a_queue_at_its_limit_does_not_hide_the_work_of_lower_priority_queues(server):
    create_job = "mutation($i: CreateJobInput!) { createJob(input: $i) { id } }"
    claim = 'mutation { claimTasks(worker: "w", limit: 1) { id task { job { code } } } }'
    server.data('mutation { createQueue(input: {code: "hi", priority: 900, maxConcurrency: 1}) { id } }')
    server.data('mutation { createQueue(input: {code: "lo", priority: 100}) { id } }')
    server.data(create_job, {"i": {"code": "running", "queue": "hi", "tasks": command_tasks(1, "r")}})
    server.data(create_job, {"i": {"code": "held-back", "queue": "hi", "tasks": command_tasks(30, "h")}})
    server.data(create_job, {"i": {"code": "elsewhere", "queue": "lo", "tasks": command_tasks(1, "e")}})

    assert [lease["task"]["job"]["code"] for lease in server.data(claim)["claimTasks"]] == ["running"]
    # "hi" is at its limit; the next claim must reach into "lo".
    assert [lease["task"]["job"]["code"] for lease in server.data(claim)["claimTasks"]] == ["elsewhere"]


# -- a command that keeps failing --------------------------------------------------------


def test_a_failing_command_is_retried_then_failed_with_its_output(server, tmp_path):
    job_id = server.data(
        CREATE_JOB,
        {
            "i": {
                "code": "exit3",
                "tasks": [{"source": {"kind": "command", "command": "echo out; exit 3"}}],
                "retryDelay": 0,  # retried at once: the attempts and the output are the point here
            }
        },
    )["createJob"]["id"]

    with workers(server, tmp_path, "runner", allow_commands=True):
        job = job_reaches(server, job_id, "FAILED", 90, [tmp_path / "runner.log"])

    (task,) = job["tasks"]["nodes"]
    assert (task["status"], task["attempts"], task["worker"]) == ("FAILED", 3, "runner")
    assert "exited with 3" in task["error"] and "out" in task["error"], task["error"]
    kinds = [e["type"] for e in task_events(server, task["id"])]
    assert kinds.count("Task.Claimed") == 3
    failures = [e for e in task_events(server, task["id"]) if e["type"] == "Task.AttemptFailed"]
    assert [e["data"]["status"] for e in failures] == ["QUEUED", "QUEUED", "FAILED"]
    assert status_story(job_events(server, job_id)) == ["WAITING", "RUNNING", "FAILED"]


# -- a worker killed mid-task --------------------------------------------------------------


def test_a_task_of_a_killed_worker_is_requeued_when_its_lease_expires_and_another_worker_finishes_it(server, tmp_path):
    marker = tmp_path / "MARKER"
    command = f"test -f {marker} || (touch {marker}; sleep 30)"  # slow the first time only
    job_id = server.data(
        CREATE_JOB,
        {  # queued again at once when the lease expires (retryDelay 0): the hand-over is the point here
            "i": {"code": "survivor", "tasks": [{"source": {"kind": "command", "command": command}}], "retryDelay": 0}
        },
    )["createJob"]["id"]
    task_id = get_job(server, job_id)["tasks"]["nodes"][0]["id"]
    logs = [tmp_path / "doomed.log", tmp_path / "heir.log"]

    doomed = start_worker(server, logs[0], "doomed", lease_seconds=3, allow_commands=True)
    heir = None
    try:
        wait_until(
            "the first worker to be executing the task",
            lambda: marker.exists() and server.data(TASK, {"id": task_id})["task"]["status"] == "EXECUTING",
            60,
        )
        os.killpg(doomed.pid, signal.SIGKILL)  # no release, no goodbye: the lease must expire
        doomed.wait(10)
        killed = time.monotonic()
        heir = start_worker(server, logs[1], "heir", allow_commands=True)
        requeued = wait_until(
            "the clock to expire the dead worker's lease",
            lambda: [e for e in task_events(server, task_id) if e["type"] == "Task.LeaseExpired"],
            30,
        )
        expired_after = time.monotonic() - killed
        job = job_reaches(server, job_id, "DONE", 60, logs)
    finally:
        stop_worker(doomed)
        if heir is not None:
            stop_worker(heir)

    assert expired_after < 15, f"the lease of 3 s was expired {expired_after:.1f} s after the kill"
    assert requeued[0]["actor"] == "jobledger-clock"
    assert requeued[0]["data"]["status"] == "QUEUED"
    (task,) = job["tasks"]["nodes"]
    assert (task["status"], task["attempts"], task["worker"]) == ("DONE", 2, "heir")
    events = task_events(server, task_id)
    kinds = [e["type"] for e in events]
    first_claim, expiry = kinds.index("Task.Claimed"), kinds.index("Task.LeaseExpired")
    second_claim = kinds.index("Task.Claimed", first_claim + 1)
    assert first_claim < kinds.index("Task.Executing") < expiry < second_claim < kinds.index("Task.Completed")
    assert [e["data"]["worker"] for e in events if e["type"] == "Task.Claimed"] == ["doomed", "heir"]
    assert status_story(job_events(server, job_id)) == ["WAITING", "RUNNING", "DONE"]


# -- many claimers, two instances, one store --------------------------------------------------

# 1,000 tasks (40 jobs x 25) by default. The full 2,000 (JOBLEDGER_TEST_CLAIM_TASKS_PER_JOB=50)
# ran at ~14 tasks/s over HTTP here (2 cores, shared, load ~10): 168 s, beyond a CI budget.
SCALE_JOBS = int(os.environ.get("JOBLEDGER_TEST_CLAIM_JOBS", "40"))
SCALE_TASKS_PER_JOB = int(os.environ.get("JOBLEDGER_TEST_CLAIM_TASKS_PER_JOB", "25"))
CLAIMERS = 8
QUEUE_LIMIT = 3
CLAIM_TIMEOUT_S = float(os.environ.get("JOBLEDGER_TEST_CLAIM_TIMEOUT", "240"))
CLAIM = """mutation($worker: String!, $limit: Int) {
  claimTasks(worker: $worker, queues: ["bulk"], limit: $limit, leaseSeconds: 300) { id task { id } }
}"""
COMPLETE = "mutation($lease: ID!) { completeTask(leaseId: $lease) { id status } }"
LEASE_ENDS = ("Task.LeaseExpired", "Task.AttemptFailed", "Task.LeaseReleased")


def test_eight_claimers_on_two_instances_run_every_task_once_and_never_exceed_the_queue_limit(store_url, tmp_path):
    if not store_url.startswith("postgres"):
        pytest.skip("several instances on one store need PostgreSQL")
    total = SCALE_JOBS * SCALE_TASKS_PER_JOB
    servers = [start_server(store_url, str(tmp_path / f"server{i}.log")) for i in range(2)]
    try:
        first = servers[0]
        queue_id = first.data(
            'mutation { createQueue(input: {code: "bulk", maxConcurrency: 3, executionMode: FIFO}) { id } }'
        )["createQueue"]["id"]
        task_ids: set[str] = set()
        job_ids = []
        for j in range(SCALE_JOBS):
            tasks = [
                {"source": {"kind": "command", "command": "true", "item": f"{j}/{k}"}}
                for k in range(SCALE_TASKS_PER_JOB)
            ]
            created = servers[j % 2].data(CREATE_JOB, {"i": {"code": f"bulk{j}", "queue": "bulk", "tasks": tasks}})
            job_ids.append(created["createJob"]["id"])
            task_ids |= {t["id"] for t in created["createJob"]["tasks"]["nodes"]}
        assert len(task_ids) == total

        completed: Counter[str] = Counter()
        errors: list[Any] = []
        lock = threading.Lock()
        deadline = time.monotonic() + CLAIM_TIMEOUT_S

        def claimer(number: int) -> None:
            name = f"claimer-{number}"
            rng = random.Random(number)
            with httpx.Client(timeout=60, headers={"X-Jobledger-User": name}) as http:
                calls = 0

                def call(query: str, **variables: Any) -> dict[str, Any] | None:
                    nonlocal calls
                    server = servers[(number + calls) % 2]  # alternate between the instances
                    calls += 1
                    body = http.post(server.graphql, json={"query": query, "variables": variables}).json()
                    if body.get("errors"):
                        with lock:
                            errors.append((name, query.split("(")[0], body["errors"][0]))
                        return None
                    return body["data"]  # type: ignore[no-any-return]

                while time.monotonic() < deadline:
                    with lock:
                        if sum(completed.values()) >= total or len(errors) > 20:
                            return
                    data = call(CLAIM, worker=name, limit=rng.randint(1, 4))
                    leases = data["claimTasks"] if data else []
                    if not leases:
                        time.sleep(0.05)
                        continue
                    for lease in leases:
                        if call(COMPLETE, lease=lease["id"]):
                            with lock:
                                completed[lease["task"]["id"]] += 1

        started = time.monotonic()
        threads = [threading.Thread(target=claimer, args=(n,), daemon=True) for n in range(CLAIMERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic() + 30))
        elapsed = time.monotonic() - started
        rate = sum(completed.values()) / elapsed
        print(f"\n{sum(completed.values())}/{total} tasks in {elapsed:.1f} s: {rate:.1f} tasks/s over HTTP")
        assert not any(t.is_alive() for t in threads), "a claimer hung"
        assert errors == [], errors[:5]
        assert sum(completed.values()) == total, (
            f"only {sum(completed.values())}/{total} tasks done in {CLAIM_TIMEOUT_S:.0f} s ({rate:.1f}/s)"
        )

        # The history, as any client reads it, from the other instance.
        reader = servers[1]
        records = all_pages(
            reader,
            EVENTS,
            {"types": ["Task.Claimed", "Task.Completed", *LEASE_ENDS]},
            lambda d: d["events"],
        )
        by_task: dict[str, list[str]] = defaultdict(list)
        for record in sorted(records, key=lambda r: int(r["position"])):
            by_task[record["aggregateId"]].append(record["type"])
        assert set(by_task) == task_ids
        done_counts = Counter({t: kinds.count("Task.Completed") for t, kinds in by_task.items()})
        assert {t: n for t, n in done_counts.items() if n != 1} == {}, "a task was executed twice or never"
        for task_id, kinds in by_task.items():
            live = False
            for kind in kinds:
                if kind == "Task.Claimed":
                    assert not live, f"task {task_id} was leased twice at once: {kinds}"
                    live = True
                elif kind in LEASE_ENDS or kind == "Task.Completed":
                    live = False

        moves = all_pages(
            reader,
            EVENTS,
            {"aggregate": queue_id, "types": ["Queue.JobStarted", "Queue.JobStopped"]},
            lambda d: d["events"],
        )
        running: set[str] = set()
        peak = 0
        for move in sorted(moves, key=lambda r: int(r["position"])):
            if move["type"] == "Queue.JobStarted":
                running.add(move["data"]["job_id"])
            else:
                running.discard(move["data"]["job_id"])
            peak = max(peak, len(running))
        assert 1 <= peak <= QUEUE_LIMIT, f"{peak} jobs of the queue ran at once; its maxConcurrency is 3"
        assert running == set()

        statuses = Counter()
        for job_id in job_ids:
            statuses[reader.data("query($id: ID!) { job(id: $id) { status } }", {"id": job_id})["job"]["status"]] += 1
        assert statuses == Counter({"DONE": SCALE_JOBS})
    finally:
        for running_server in servers:
            stop_server(running_server)
