"""`jobledger serve` killed with SIGKILL under load, with a worker at work.

What a user must find after the restart: every job whose createJob was answered exists,
the event log has no gap, requests that got no answer can be sent again with their
Idempotency-Key without doubling anything, the worker's jobs still finish, and the read
models rebuilt from the events say the same as the ones the crashed server had kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tests.api.conftest import Server
from tests.faults.conftest import (
    CREATE_JOB,
    Answer,
    Fleet,
    PrivateCluster,
    all_events,
    call,
    created_codes,
    gaps_and_doubles,
    job_input,
    wait_for,
)

CLIENTS = 5
LOAD_BEFORE_KILL_S = 2.5
JOB = "query($id: ID!) { job(id: $id) { id code status tasks(first: 10) { nodes { id status } } } }"
JOBS = """query($phase: JobPhase, $after: String) {
  jobs(phase: $phase, first: 500, after: $after) {
    nodes { id code status progress size priority queue { code } tasks(first: 10) { nodes { id status attempts } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


@dataclass
class Submission:
    code: str
    key: str
    answer: Answer


def submit_until(
    server: Server, stop: threading.Event, client: int, out: list[Submission], lock: threading.Lock
) -> None:
    """One client: createJob after createJob, each with a key of its own, until `stop`."""
    n = 0
    while not stop.is_set():
        code, key = f"load-{client}-{n}", str(uuid.uuid4())
        answer = call(server, CREATE_JOB, job_input(code), key=key, timeout=15)
        with lock:
            out.append(Submission(code, key, answer))
        n += 1


def test_a_killed_server_loses_no_answered_job_and_retried_keys_double_nothing(
    cluster: PrivateCluster, fleet: Fleet
) -> None:
    store = cluster.store_url()
    first = fleet.serve(store, "server-1")
    port = urlsplit(first.url).port
    fleet.worker(first, "worker", concurrency=2, allow_commands=True, lease_seconds=10)

    submissions: list[Submission] = []
    lock, stop = threading.Lock(), threading.Event()
    clients = [
        threading.Thread(target=submit_until, args=(first, stop, n, submissions, lock), daemon=True)
        for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    time.sleep(LOAD_BEFORE_KILL_S)
    fleet.kill(first)
    stop.set()
    for client in clients:
        client.join(30)
    assert not any(c.is_alive() for c in clients), "a client hung after the kill"

    answered = [s for s in submissions if s.answer.ok]
    unanswered = [s for s in submissions if not s.answer.ok]
    print(f"\n{len(submissions)} createJob sent, {len(answered)} answered with success before the kill")
    for s in unanswered:
        print(f"  not answered with success: {s.code}: {s.answer.describe()[:200]}")
    assert len(answered) >= CLIENTS, "the load did not get going before the kill"
    coded = [s for s in unanswered if s.answer.answered and s.answer.code not in (None, "OUTCOME_UNKNOWN")]
    assert not coded, [s.answer.describe() for s in coded]  # a kill answers nothing, or not at all

    restarting = time.monotonic()
    second = fleet.serve(store, "server-2", port=port)  # the worker keeps its URL
    print(f"the restarted server was ready {time.monotonic() - restarting:.1f} s after it was started")

    # Every answered job exists, as answered.
    missing = []
    for s in answered:
        job_id = s.answer.body["data"]["createJob"]["id"]  # type: ignore[index]
        found = call(second, JOB, {"id": job_id})
        if not found.ok or found.body["data"]["job"] is None or found.body["data"]["job"]["code"] != s.code:  # type: ignore[index]
            missing.append(f"{s.code} ({job_id}): {found.describe()[:200]}")
    assert not missing, "answered with success, but not there after the restart:\n" + "\n".join(missing)

    # No gap in the log, and no job twice.
    positions = [int(e["position"]) for e in all_events(second)]
    assert not gaps_and_doubles(positions), gaps_and_doubles(positions)
    counts = created_codes(second)
    assert {s.code: counts.get(s.code) for s in answered if counts.get(s.code) != 1} == {}

    # Send again what got no answer, and some of what did: same keys, same input.
    resent = {s.code: call(second, CREATE_JOB, job_input(s.code), key=s.key) for s in [*unanswered, *answered[:5]]}
    assert {code: a.describe() for code, a in resent.items() if not a.ok} == {}
    for s in answered[:5]:
        assert resent[s.code].body["data"]["createJob"] == s.answer.body["data"]["createJob"]  # type: ignore[index]
    counts = created_codes(second)
    assert {s.code: counts.get(s.code) for s in submissions if counts.get(s.code) != 1} == {}, (
        "after sending every request again with its key, a job is missing or doubled"
    )
    positions = [int(e["position"]) for e in all_events(second)]
    assert not gaps_and_doubles(positions), gaps_and_doubles(positions)

    # The worker, which lived through the kill, finishes every job.
    job_ids = [a.body["data"]["createJob"]["id"] for a in resent.values()]  # type: ignore[index]
    job_ids += [s.answer.body["data"]["createJob"]["id"] for s in answered[5:]]  # type: ignore[index]
    finishing = time.monotonic()
    wait_for(
        f"all {len(job_ids)} jobs to be DONE",
        lambda: all(call(second, JOB, {"id": i}).body["data"]["job"]["status"] == "DONE" for i in job_ids),  # type: ignore[index]
        60,
        interval=0.5,
    )
    print(f"all {len(job_ids)} jobs DONE {time.monotonic() - finishing:.1f} s after the restart's checks")


def read_models(server: Server) -> dict[str, Any]:
    """What a user sees of every job, by id: active and finished ones."""
    seen: dict[str, Any] = {}
    for phase in ("ACTIVE", "FINISHED", "ARCHIVED"):
        after = None
        while True:
            answer = call(server, JOBS, {"phase": phase, "after": after})
            assert answer.ok, answer.describe()
            page = answer.body["data"]["jobs"]  # type: ignore[index]
            for job in page["nodes"]:
                seen[job["id"]] = {**job, "phase": phase}
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
    return seen


def test_read_models_rebuilt_from_the_events_after_a_kill_say_the_same(cluster: PrivateCluster, fleet: Fleet) -> None:
    store = cluster.store_url()
    first = fleet.serve(store, "server-1")
    for n in range(6):
        assert call(first, CREATE_JOB, job_input(f"kept-{n}"), key=f"kept-{n}").ok
    lease = call(first, 'mutation { claimTasks(worker: "w", limit: 4) { id } }')
    assert lease.ok, lease.describe()
    for claimed in lease.body["data"]["claimTasks"][:2]:  # type: ignore[index]
        assert call(first, "mutation($l: ID!) { completeTask(leaseId: $l) { id } }", {"l": claimed["id"]}).ok
    assert call(first, 'mutation { createQueue(input: {code: "side"}) { id } }').ok
    assert call(first, CREATE_JOB, {"i": {**job_input("moved")["i"], "queue": "side"}}).ok
    fleet.kill(first)

    second = fleet.serve(store, "server-2")
    before = read_models(second)
    fleet.stop_all()
    rebuilt = subprocess.run(
        [sys.executable, "-m", "api.cli", "projections", "rebuild"],
        env={**os.environ, "JOBLEDGER_DATABASE_URL": store},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    third = fleet.serve(store, "server-3")
    after = read_models(third)
    assert len(before) == 7
    assert after == before
