"""API benchmark: queries/s and mutations/s at 50 concurrent clients over real HTTP, and
subscription latency with 100 subscribers, on SQLite and PostgreSQL.

    .venv/bin/python bench/api.py [--store sqlite|postgres|both] [--seconds 10] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import fresh_postgres  # noqa: E402
from tests.api.conftest import start_server, stop_server  # noqa: E402

JOBS_QUERY = "{ jobs(first: 50) { totalCount nodes { id code status priority progress size queue { code } } } }"
CREATE_JOB = """mutation($i: Int!) { createJob(input: {code: "bench", priority: $i, destination: "/out",
  tasks: [{source: "/in/a.mov", size: 100}, {source: "/in/b.mov", size: 200}, {source: "/in/c.mov", size: 300}]})
  { id status } }"""
PROGRESS = "subscription($id: ID!) { jobProgress(jobId: $id) { status progress } }"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def hammer(url: str, clients: int, seconds: float, body: Any) -> tuple[float, list[float], int]:
    """`clients` loops sending `body(i)` for `seconds`; returns (requests/s, latencies ms, errors)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers={"X-Jobledger-User": "bench"}) as http:

        async def client(n: int) -> None:
            nonlocal errors
            i = 0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                answer = (await http.post(url, json=body(n * 1_000_000 + i))).json()
                latencies.append((time.perf_counter() - started) * 1000)
                errors += bool(answer.get("errors"))
                i += 1

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.monotonic() - started
    return len(latencies) / elapsed, latencies, errors


async def subscription_latency(server: Any, subscribers: int, rounds: int) -> list[float]:
    """ms from a mutation's answer to each subscriber's message about it."""
    server.data('mutation { createQueue(input: {code: "bench-sub"}) { id } }')
    job = server.data(
        'mutation { createJob(input: {queue: "bench-sub",'
        ' tasks: [{source: "/in/x", destination: "/out/x", size: 1000}]}) { id } }'
    )["createJob"]["id"]
    lease = server.data(
        'mutation { claimTasks(worker: "bench", queues: ["bench-sub"], limit: 1, leaseSeconds: 600) { id } }'
    )["claimTasks"][0]["id"]
    received: list[list[float]] = [[] for _ in range(rounds)]
    ready = asyncio.Event()
    connected = 0

    async def subscriber() -> None:
        nonlocal connected
        async with websockets.connect(server.ws, subprotocols=["graphql-transport-ws"], max_size=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            await ws.recv()
            await ws.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": PROGRESS, "variables": {"id": job}}})
            )
            await ws.recv()  # the current value
            connected += 1
            if connected == subscribers:
                ready.set()
            seen = 0
            while seen < rounds:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message.get("type") != "next":
                    continue
                progress = message["payload"]["data"]["jobProgress"]["progress"]
                received[seen].append((time.perf_counter(), progress))  # type: ignore[arg-type]
                seen += 1

    tasks = [asyncio.create_task(subscriber()) for _ in range(subscribers)]
    await asyncio.wait_for(ready.wait(), 60)
    sent: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for r in range(rounds):
            await asyncio.sleep(1.05)  # heartbeats are coalesced to one event a second
            query = "mutation($l: ID!, $p: Int) { heartbeat(leaseId: $l, progress: $p) { id } }"
            await http.post(server.graphql, json={"query": query, "variables": {"l": lease, "p": 10 + r}})
            sent.append(time.perf_counter())
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return [
        (at - sent[r]) * 1000
        for r, messages in enumerate(received)
        for at, _ in messages  # type: ignore[misc]
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def bench_store(name: str, url: str, args: argparse.Namespace, log: str) -> dict[str, Any]:
    server = start_server(url, log)
    try:
        say(f"[{name}] seeding {args.seed} jobs ...")
        await hammer(server.graphql, 10, 0.1, lambda i: {"query": CREATE_JOB, "variables": {"i": i % 1000}})
        while server.data("{ jobs(first: 0) { totalCount } }")["jobs"]["totalCount"] < args.seed:
            await hammer(server.graphql, 10, 2, lambda i: {"query": CREATE_JOB, "variables": {"i": i % 1000}})
        say(f"[{name}] queries for {args.seconds} s at {args.clients} clients ...")
        q_rate, q_lat, q_err = await hammer(server.graphql, args.clients, args.seconds, lambda i: {"query": JOBS_QUERY})
        say(f"[{name}] createJob for {args.seconds} s at {args.clients} clients ...")
        m_rate, m_lat, m_err = await hammer(
            server.graphql,
            args.clients,
            args.seconds,
            lambda i: {"query": CREATE_JOB, "variables": {"i": i % 1000}},
        )
        say(f"[{name}] subscription latency, {args.subscribers} subscribers ...")
        s_lat = await subscription_latency(server, args.subscribers, args.rounds)
    finally:
        stop_server(server)
    return {
        "queries/s": q_rate,
        "query p50 ms": pct(q_lat, 0.5),
        "query p99 ms": pct(q_lat, 0.99),
        "query errors": q_err,
        "createJob/s": m_rate,
        "createJob p50 ms": pct(m_lat, 0.5),
        "createJob p99 ms": pct(m_lat, 0.99),
        "createJob errors": m_err,
        "sub p50 ms": pct(s_lat, 0.5),
        "sub p99 ms": pct(s_lat, 0.99),
        "sub messages": len(s_lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=200, help="jobs in the store before querying")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="jlbench") as tmp:
        say(f"logs in {tmp}")
        if args.store in ("sqlite", "both"):
            results["SQLite"] = asyncio.run(bench_store("sqlite", f"sqlite:///{tmp}/bench.db", args, f"{tmp}/s.log"))
        if args.store in ("postgres", "both"):
            with fresh_postgres() as url:
                results["PostgreSQL"] = asyncio.run(bench_store("postgres", url, args, f"{tmp}/p.log"))
    stores = list(results)
    print(f"\n{'':22}" + "".join(f"{s:>14}" for s in stores))
    for key in next(iter(results.values())):
        print(f"{key:22}" + "".join(f"{results[s][key]:>14,.1f}" for s in stores))
    if len(stores) == 2:
        for key in ("queries/s", "createJob/s"):
            print(f"PostgreSQL/SQLite {key}: {results['PostgreSQL'][key] / results['SQLite'][key]:.2f}")


if __name__ == "__main__":
    main()
