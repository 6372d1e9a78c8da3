"""Flood benchmark: one websocket replaying the whole history many times over, and what that
costs everyone else: the server's memory and another client's query latency.

A real `jobledger serve` on a fresh PostgreSQL database (as in tests/api/conftest.py) gets about
`--events` events (jobs of 20 tasks created over HTTP by 8 clients; not timed). Then, for each reader of `--readers`:

- greedy: one websocket opens `--subscriptions` `events(after: 0)` subscriptions and reads every
  message as fast as it can;
- stalled: the same, but it stops reading once each subscription has sent its first message (or
  its refusal), so the server cannot send the rest.

Meanwhile another client sends a simple query over HTTP (`{ jobs(first: 10) ... }`) every 0.1 s,
whether or not the previous ones were answered (so a stall shows in many samples), and the
server's RSS is sampled from /proc/PID/status. The flood socket runs in a process of its own, so
its JSON parsing does not slow the measuring client. The server is started with
JOBLEDGER_MAX_SUBSCRIPTIONS_PER_CONNECTION raised to `--subscriptions`, so that every
subscription of the flood is served (a server that does not know the variable refuses those
above its own limit; the table says how many were served). The last line counts the tracebacks
in the server's log.

    .venv/bin/python bench/flood.py [--events 20000] [--subscriptions 150] [--seconds 20]
        [--readers greedy,stalled] [--baseline-seconds 5]

Progress goes to stderr, the table to stdout. A default run takes about 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import fresh_postgres  # noqa: E402
from tests.api.conftest import Server, start_server, stop_server  # noqa: E402

QUERY = "{ jobs(first: 10) { nodes { id code status } } }"
EVENTS = "subscription { events(after: 0) { position type actor timestamp data } }"
CREATE_JOB = 'mutation($t: [TaskInput!]!) { createJob(input: {destination: "/out", tasks: $t}) { id } }'
TASKS_PER_JOB = 20  # about 24 events a job
WRITERS = 8
PROBE_EVERY_S = 0.1
PROBES_AT_ONCE = 256


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_mb(pid: int) -> float:
    """The process's resident set size in MB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the store -----------------------------------------------------------------------------------


def seed(server: Server, events: int) -> int:
    """Creates jobs over HTTP until the store holds about `events` events; returns the head."""

    async def write() -> int:
        async with httpx.AsyncClient(timeout=60, headers={"X-Jobledger-User": "bench"}) as http:

            async def head() -> int:
                return int((await http.get(f"{server.url}/readyz")).json()["head"])

            async def writer(n: int) -> None:
                i = 0
                while await head() < events:
                    tasks = [{"source": f"/in/{n}/{i}/{t}.mov", "size": 1000} for t in range(TASKS_PER_JOB)]
                    answer = await http.post(server.graphql, json={"query": CREATE_JOB, "variables": {"t": tasks}})
                    assert "errors" not in answer.json(), answer.text
                    i += 1
                    if n == 0 and i % 50 == 0:
                        say(f"wrote {await head():,} / {events:,} events")

            await asyncio.gather(*(writer(n) for n in range(WRITERS)))
            return await head()

    written = asyncio.run(write())
    while httpx.get(f"{server.url}/readyz", timeout=10).json().get("lag", 1) > 0:
        time.sleep(0.2)
    return written


# -- the flood (in a process of its own) ---------------------------------------------------------


async def _flood(url: str, subscriptions: int, reader: str, seconds: float) -> dict[str, Any]:
    counts: dict[str, Any] = {"next": 0, "refused": 0, "codes": {}, "close": None}
    first_seen: set[str] = set()
    # max_queue: the stalled reader leaves frames unread; a small queue makes the library stop
    # reading the socket, so the server sees TCP backpressure.
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"], max_size=None, max_queue=16) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"X-Jobledger-User": "flood"}}))
        while json.loads(await ws.recv())["type"] != "connection_ack":
            pass
        for n in range(subscriptions):
            await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": {"query": EVENTS}}))
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if reader == "stalled" and len(first_seen) >= subscriptions:
                    await asyncio.sleep(deadline - time.monotonic())
                    break
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
                message = json.loads(raw)
                first_seen.add(message.get("id"))
                if message["type"] == "next" and not message["payload"].get("errors"):
                    counts["next"] += 1
                elif message["type"] in ("error", "next"):
                    counts["refused"] += 1
                    payload = message["payload"]
                    errors = payload if isinstance(payload, list) else payload.get("errors") or [payload]
                    code = str((errors[0].get("extensions") or {}).get("code"))
                    counts["codes"][code] = counts["codes"].get(code, 0) + 1
        except websockets.ConnectionClosed as exc:
            counts["close"] = f"{exc.rcvd.code if exc.rcvd else None} {exc.rcvd.reason if exc.rcvd else ''}"
    return counts


def flood_process(url: str, subscriptions: int, reader: str, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_flood(url, subscriptions, reader, seconds)))


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    errors: int = 0
    flood: dict[str, Any] = field(default_factory=dict)


def measure(server: Server, phase: Phase, seconds: float) -> None:
    """A simple query every PROBE_EVERY_S for `seconds` (open loop: a slow answer does not delay
    the next probe, so a stall shows in many samples), sampling the server's RSS meanwhile."""
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            phase.rss.append(rss_mb(server.process.pid))
            stop.wait(0.25)

    def probe(http: httpx.Client) -> None:
        started = time.perf_counter()
        answer = http.post(server.graphql, json={"query": QUERY}).json()
        phase.latencies.append((time.perf_counter() - started) * 1000)
        phase.errors += bool(answer.get("errors"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    limits = httpx.Limits(max_connections=PROBES_AT_ONCE, max_keepalive_connections=PROBES_AT_ONCE)
    with (
        httpx.Client(timeout=120, limits=limits, headers={"X-Jobledger-User": "bystander"}) as http,
        ThreadPoolExecutor(PROBES_AT_ONCE) as pool,
    ):
        started = time.monotonic()
        probes = []
        while time.monotonic() - started < seconds:
            probes.append(pool.submit(probe, http))
            time.sleep(PROBE_EVERY_S)
        for done in probes:
            done.result()
    stop.set()
    sampler.join()


def run_flood(server: Server, args: argparse.Namespace, reader: str) -> Phase:
    phase = Phase(f"during {reader} flood")
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    flood = context.Process(target=flood_process, args=(server.ws, args.subscriptions, reader, args.seconds, out))
    flood.start()
    time.sleep(0.5)  # let the socket open and the subscriptions start
    measure(server, phase, args.seconds - 0.5)
    phase.flood = out.get(timeout=120)
    flood.join(30)
    return phase


def settle(server: Server, seconds: float) -> Phase:
    phase = Phase("after")
    time.sleep(1.0)  # the server notices the closed socket and ends its subscriptions
    measure(server, phase, seconds)
    return phase


def report(phases: list[Phase], head: int, args: argparse.Namespace) -> None:
    print(
        f"\n{args.subscriptions} x events(after: 0) on one websocket, {head:,} events in the store (PostgreSQL)\n"
        "query: another client's `{ jobs(first: 10) ... }` over HTTP, one every 0.1 s\n"
    )
    header = (
        f"{'phase':<24}{'queries':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
        f"{'RSS MB':>8}{'max RSS':>8}{'served':>8}{'events sent':>13}  refusals"
    )
    print(header)
    for phase in phases:
        flood = phase.flood
        served = args.subscriptions - flood.get("refused", 0) if flood else 0
        refusals = ", ".join(f"{n} x {code}" for code, n in flood.get("codes", {}).items()) if flood else ""
        if flood.get("close"):
            refusals += f" closed {flood['close']}"
        print(
            f"{phase.name:<24}{len(phase.latencies):>8}{pct(phase.latencies, 0.5):>9.1f}"
            f"{pct(phase.latencies, 0.95):>9.1f}{max(phase.latencies, default=float('nan')):>9.1f}"
            f"{phase.rss[-1]:>8.0f}{max(phase.rss):>8.0f}"
            f"{(served if flood else ''):>8}{(format(flood['next'], ',') if flood else ''):>13}  {refusals}"
        )
    base = pct(phases[0].latencies, 0.5)
    for phase in phases[1:]:
        if phase.flood:
            print(f"{phase.name}: median query latency x{pct(phase.latencies, 0.5) / base:.1f} of the baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--subscriptions", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=20, help="length of each flood")
    parser.add_argument("--baseline-seconds", type=float, default=5)
    parser.add_argument("--readers", default="greedy,stalled", help="comma-separated: greedy, stalled")
    args = parser.parse_args()
    readers = [r for r in args.readers.split(",") if r]
    with tempfile.TemporaryDirectory(prefix="jlflood") as tmp, fresh_postgres() as url:
        log = f"{tmp}/server.log"
        server = start_server(url, log, JOBLEDGER_MAX_SUBSCRIPTIONS_PER_CONNECTION=str(args.subscriptions))
        try:
            head = seed(server, args.events)
            say(f"{head:,} events in the store; baseline for {args.baseline_seconds} s ...")
            phases = [Phase("baseline")]
            measure(server, phases[0], args.baseline_seconds)
            for reader in readers:
                say(f"{reader} flood: {args.subscriptions} subscriptions for {args.seconds} s ...")
                phases.append(run_flood(server, args, reader))
                phases.append(settle(server, args.baseline_seconds))
                phases[-1].name = f"after {reader} flood"
        finally:
            stop_server(server)
            tracebacks = Path(log).read_text().count("Traceback")
        report(phases, head, args)
        print(f"tracebacks in the server log: {tracebacks}")


if __name__ == "__main__":
    main()
