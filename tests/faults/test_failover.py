"""Two `jobledger serve` on one store: PostgreSQL restarted under them, and one of them
killed. Exactly one leads the projections afterwards, each hears the other's writes
(its LISTEN connection re-opened), and an idempotency key means the same job on either.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.api.conftest import Server
from tests.api.test_subscriptions import JOB_UPDATED, GraphQLWS, errors_of
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
    readyz,
    wait_for,
)

JOB = "query($id: ID!) { job(id: $id) { id code } }"
PROMPT_S = 3.0  # a write read through the other instance, a subscription's message


def leads(log: Path, role: str = "projections") -> bool:
    """Whether the server writing `log` believes it leads `role` (the projections or the
    clock): it said `leading the ROLE` and has not said `lost the ROLE lead` since."""
    said = re.findall(f"leading the {role}|lost the {role} lead", log.read_text(errors="replace"))
    return bool(said) and said[-1] == f"leading the {role}"


def said_since(log: Path, offset: int, text: str) -> bool:
    return text in log.read_text(errors="replace")[offset:]


def when_said(log: Path, offset: int, text: str) -> float | None:
    """The wall-clock time of the first line after `offset` that says `text` (logging's asctime)."""
    for line in log.read_text(errors="replace")[offset:].splitlines():
        if text in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def size(log: Path) -> int:
    return len(log.read_text(errors="replace"))


def job_id(answer: Answer) -> str:
    assert answer.ok, answer.describe()
    return answer.body["data"]["createJob"]["id"]  # type: ignore[index,no-any-return]


def read_through(reader: Server, writer: Server, code: str) -> float:
    """Seconds from sending createJob to `writer` until `reader` shows the job."""
    sent = time.monotonic()
    created = job_id(call(writer, CREATE_JOB, job_input(code, tasks=1)))
    wait_for(
        f"{code}, written through one instance, to be read through the other",
        lambda: (call(reader, JOB, {"id": created}).body or {}).get("data", {}).get("job"),
        15,
        interval=0.05,
    )
    return time.monotonic() - sent


async def test_after_a_postgres_restart_one_server_leads_and_each_hears_the_other(
    cluster: PrivateCluster, fleet: Fleet
) -> None:
    store = cluster.store_url()
    a = fleet.serve(store, "a")
    b = fleet.serve(store, "b")
    logs = {"a": fleet.log("a"), "b": fleet.log("b")}
    assert [leads(logs["a"]), leads(logs["b"])] == [True, False], "the first server started should lead"
    job_id(call(a, CREATE_JOB, job_input("before")))

    async with GraphQLWS(b.ws) as early:
        # A subscription that lives through the outage, as a dashboard's would.
        before = await early.subscribe(JOB_UPDATED, {"where": "code=across"})
        await asyncio.sleep(0.3)
        marks = {name: size(log) for name, log in logs.items()}
        await asyncio.to_thread(cluster.crash)
        await asyncio.sleep(3)
        await asyncio.to_thread(cluster.start)
        back_wall = cluster.ready_at()  # when PostgreSQL was ready again
        back = time.monotonic() - (time.time() - back_wall)

        # Both ready again, each listening again; exactly one leads.
        ready: dict[str, float] = {}
        for name, server in (("a", a), ("b", b)):
            is_ready = lambda s=server: readyz(s).status == 200  # type: ignore[misc]  # noqa: E731
            await asyncio.to_thread(wait_for, f"{name}'s /readyz to be 200", is_ready, 20)
            ready[name] = time.monotonic() - back
        await asyncio.to_thread(
            wait_for,
            "a server to lead the projections again after the restart",
            lambda: any(said_since(log, marks[n], "leading the projections") for n, log in logs.items()),
            20,
        )
        handover = min(t for n, log in logs.items() if (t := when_said(log, marks[n], "leading the projections")))
        handover -= back_wall
        print(f"\n/readyz 200 again {ready} s after PostgreSQL was ready; a projections leader after {handover:+.2f} s")

        # Writes through either server are answered promptly (read-your-writes: the one that
        # does not lead hears the leader's progress on its LISTEN connection) and read
        # promptly through the other.
        answers = {}
        for name, server in (("a", a), ("b", b)):
            answer = await asyncio.to_thread(call, server, CREATE_JOB, job_input(f"through-{name}", tasks=1))
            job_id(answer)
            answers[name] = answer.elapsed
        a_to_b = await asyncio.to_thread(read_through, b, a, "a-to-b")
        b_to_a = await asyncio.to_thread(read_through, a, b, "b-to-a")
        print(f"createJob answered in {answers} s; read through the other: a->b {a_to_b:.2f} s, b->a {b_to_a:.2f} s")

        # Subscriptions on each server see a job created through the other: ones opened
        # now, and one opened on B before the outage.
        heard: dict[str, float] = {}
        async with GraphQLWS(a.ws) as on_a, GraphQLWS(b.ws) as on_b:
            subs = {
                "b": await on_b.subscribe(JOB_UPDATED, {"where": "code=across"}),
                "a": await on_a.subscribe(JOB_UPDATED, {"where": "code=back"}),
            }
            await asyncio.sleep(0.3)
            for listener, writer, code in (("b", a, "across"), ("a", b, "back")):
                sent = time.monotonic()
                created = job_id(await asyncio.to_thread(call, writer, CREATE_JOB, job_input(code, tasks=1)))
                message = (await subs[listener].next(timeout=15))["jobUpdated"]
                assert message["id"] == created
                heard[listener] = subs[listener].arrivals[-1] - sent
                if code == "across":
                    early_fate = await first_message(before, created)
                    early_after = (before.arrivals[-1] - sent) if before.arrivals else None

    await asyncio.sleep(2)  # leadership is re-checked every second: let a second leader show itself
    leaders = {role: [n for n, log in logs.items() if leads(log, role)] for role in ("projections", "clock")}
    print(f"subscriptions opened after the restart heard the other server's job after {heard} s")
    print(
        f"the subscription opened on b before the outage: {early_fate}"
        + (f" ({early_after:.2f} s)" if early_after else "")
    )
    # The old leader notices its dead lock connection at its next check (every second); until
    # then it and the new leader both believe they lead (their runners' conditional position
    # updates keep them from applying a batch twice).
    took = {n: when_said(log, marks[n], "leading the projections") for n, log in logs.items()}
    lost = {n: when_said(log, marks[n], "lost the projections lead") for n, log in logs.items()}
    overlap = max(
        [lost[o] - took[n] for n in logs for o in logs if n != o and took[n] and lost[o] and lost[o] > took[n]],
        default=0.0,
    )
    print(f"both believed they led the projections for {overlap:.2f} s after the restart")
    print(f"leaders now: {leaders}; what the servers said after the restart:")
    for name, log in logs.items():
        for line in log.read_text(errors="replace")[marks[name] :].splitlines():
            if "lead" in line or "change feed" in line or "listener_lost" in line:
                print(f"  {name}: {line[:160]}")

    positions = [int(e["position"]) for e in await asyncio.to_thread(all_events, b)]
    assert not gaps_and_doubles(positions), gaps_and_doubles(positions)
    assert leaders == {"projections": leaders["projections"][:1], "clock": leaders["clock"][:1]}, leaders
    assert len(leaders["projections"]) == 1 and len(leaders["clock"]) == 1, leaders
    assert max(ready.values()) < 10, ready
    assert max(answers.values()) < PROMPT_S, f"createJob after the restart took {answers} s"
    assert a_to_b < PROMPT_S and b_to_a < PROMPT_S, (a_to_b, b_to_a)
    assert max(heard.values()) < PROMPT_S, heard
    assert early_fate == "heard", f"the subscription opened before the outage: {early_fate}"


async def first_message(sub: Any, job: str) -> str:
    """What became of a subscription opened before the outage: it heard the job, it ended
    with an error (which the client can act on), or it went quiet (the case to avoid)."""
    try:
        msg = await sub.message(timeout=8)
    except AssertionError as exc:
        return f"quiet or closed: {exc}"
    if msg["type"] == "next" and not msg["payload"].get("errors"):
        return "heard" if msg["payload"]["data"]["jobUpdated"]["id"] == job else f"another message: {msg}"
    return f"ended with {errors_of(msg) or msg}"


def test_a_key_retried_on_the_other_server_after_a_failover_returns_the_same_job(
    cluster: PrivateCluster, fleet: Fleet
) -> None:
    store = cluster.store_url()
    a = fleet.serve(store, "a")
    b = fleet.serve(store, "b")
    logs = {"a": fleet.log("a"), "b": fleet.log("b")}
    assert leads(logs["a"]) and not leads(logs["b"])

    answered = call(a, CREATE_JOB, job_input("answered"), key="key-answered")
    first_id = job_id(answered)

    # A large job in flight on A when A is killed: it may or may not have been committed.
    in_flight: dict[str, Answer] = {}
    big = job_input("in-flight", tasks=1000)
    sender = threading.Thread(
        target=lambda: in_flight.setdefault("answer", call(a, CREATE_JOB, big, key="key-in-flight")), daemon=True
    )
    sender.start()
    time.sleep(0.15)
    mark = size(logs["b"])
    fleet.kill(a)
    killed_wall = time.time()
    sender.join(30)
    print(f"\nthe createJob in flight at the kill: {in_flight['answer'].describe()[:200]}")

    head_before = readyz(b).body["head"]  # type: ignore[index]
    again = call(b, CREATE_JOB, job_input("answered"), key="key-answered")
    assert again.ok, again.describe()
    assert again.body["data"]["createJob"] == answered.body["data"]["createJob"]  # type: ignore[index]
    assert readyz(b).body["head"] == head_before, "answering a key already used wrote something"  # type: ignore[index]
    conflict = call(b, CREATE_JOB, job_input("answered", tasks=2), key="key-answered")
    assert conflict.code == "CONFLICT", conflict.describe()

    retried = call(b, CREATE_JOB, big, key="key-in-flight")
    retried_id = job_id(retried)
    if in_flight["answer"].ok:
        assert retried_id == job_id(in_flight["answer"])
    wait_for(
        "b to lead the projections after a was killed",
        lambda: said_since(logs["b"], mark, "leading the projections"),
        15,
        0.05,
    )
    took_over = when_said(logs["b"], mark, "leading the projections") or float("nan")
    print(f"b led the projections {took_over - killed_wall:.2f} s after a was killed")
    assert call(b, JOB, {"id": first_id}).body["data"]["job"]["code"] == "answered"  # type: ignore[index]
    assert call(b, JOB, {"id": retried_id}).body["data"]["job"]["code"] == "in-flight"  # type: ignore[index]
    counts = created_codes(b)
    assert (counts.get("answered"), counts.get("in-flight")) == (1, 1), counts
    positions = [int(e["position"]) for e in all_events(b)]
    assert not gaps_and_doubles(positions), gaps_and_doubles(positions)
