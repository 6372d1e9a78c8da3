"""wrk-style API figures: requests/s and latency under wrk at 50 connections, against a real
`jobledger serve` (1 and 2 processes, on PostgreSQL) and against a stock Strawberry app serving the
same objects from memory (bench/stock_strawberry.py, under uvicorn with as many processes):

- `jobs(first: 50)` with each job's queue (the query issue 15 names);
- a page of tasks: one job's 100 tasks;
- `{ __typename }` (the cost of the HTTP and GraphQL layers alone);
- `createJob` with 3 tasks (no stock figure: every call is a committed PostgreSQL transaction).

    .venv/bin/python bench/wrk.py [--seconds 10] [--connections 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.databases import fresh_postgres  # noqa: E402
from tests.api.conftest import Server, free_port, start_server, stop_server  # noqa: E402

WRK = os.environ.get("BENCH_WRK", "/usr/bin/wrk")
JOBS_QUERY = "{ jobs(first: 50) { nodes { id code status priority progress created user queue { code } } } }"
TASKS_QUERY = (
    "query($id: ID!) { job(id: $id) { tasks(first: 100) { nodes { id uri status priority progress size attempts"
    " worker created } } } }"
)
TYPENAME_QUERY = "{ __typename }"
CREATE_JOB = """mutation($i: Int!) { createJob(input: {code: "bench", priority: $i, destination: "/out",
  tasks: [{source: "/in/a.mov", size: 100}, {source: "/in/b.mov", size: 200}, {source: "/in/c.mov", size: 300}]})
  { id } }"""
JOBS = 50
TASKS = 100
# wrk sends this request on every connection; the header is what bench/api.py's clients send.
POST_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Jobledger-User"] = "bench"
wrk.body = {body}
"""
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class WrkResult:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and non-2xx answers


def run_wrk(
    url: str, seconds: float, connections: int, threads: int, name: str, body: dict[str, object] | None = None
) -> WrkResult:
    """wrk POSTing `body` (default: JOBS_QUERY) to `url` for `seconds`; its figures, parsed from its report."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(POST_SCRIPT.format(body=json.dumps(json.dumps(body or {"query": JOBS_QUERY}))))
    try:
        command = [
            WRK,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds:g}s",
            "--latency",
            "--timeout",
            "30s",
        ]
        done = subprocess.run([*command, "-s", script.name, url], capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script.name)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout, name)


def parse_wrk(report: str, name: str) -> WrkResult:
    def latency(percentile: str) -> float:
        found = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", report, re.MULTILINE)
        return float(found[1]) * UNITS[found[2]] if found else float("nan")

    rate = re.search(r"Requests/sec:\s+([\d.]+)", report)
    if not rate:
        raise RuntimeError(f"no Requests/sec in wrk's report:\n{report}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", report))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    return WrkResult(name, float(rate[1]), latency("50"), latency("99"), errors + (int(non_2xx[1]) if non_2xx else 0))


def checked(url: str, body: dict[str, object], count: int) -> dict[str, object]:
    """The answer to `body` at `url`, which must hold a full page of `count` nodes and no errors."""
    answer = httpx.post(url, json=body, headers={"X-Jobledger-User": "bench"}, timeout=30).json()
    data = answer.get("data") or {}
    page = data["jobs"] if "jobs" in data else (data.get("job") or {}).get("tasks")
    if answer.get("errors") or not page or len(page["nodes"]) != count:
        raise RuntimeError(f"{url} did not answer a page of {count}: {str(answer)[:300]}")
    return data  # type: ignore[no-any-return]


def checked_jobs(url: str) -> dict[str, object]:
    """The `jobs` answer at `url`, which must be a full page without errors."""
    return checked(url, {"query": JOBS_QUERY}, JOBS)["jobs"]  # type: ignore[return-value]


def seed(server: Server) -> str:
    """JOBS jobs of 3 tasks and one job of TASKS tasks; the big job's id."""
    with httpx.Client(timeout=60, headers={"X-Jobledger-User": "bench"}) as http:
        for i in range(JOBS):
            answer = http.post(server.graphql, json={"query": CREATE_JOB, "variables": {"i": i}}).json()
            if answer.get("errors"):
                raise RuntimeError(f"seeding failed: {answer['errors'][0]}")
        tasks = [{"source": f"/in/{n:03}.exr", "size": 1000 + n} for n in range(TASKS)]
        big = """mutation($tasks: [TaskInput!]!) { createJob(input: {code: "big", destination: "/out",
          tasks: $tasks}) { id } }"""
        answer = http.post(server.graphql, json={"query": big, "variables": {"tasks": tasks}}).json()
        if answer.get("errors"):
            raise RuntimeError(f"seeding failed: {answer['errors'][0]}")
        return str(answer["data"]["createJob"]["id"])


@contextlib.contextmanager
def jobledger(store_url: str, log: str, processes: int) -> Iterator[Server]:
    server = start_server(store_url, log, JOBLEDGER_WORKERS=str(processes), PYTHONPATH=str(ROOT))
    try:
        yield server
    finally:
        stop_server(server)


@contextlib.contextmanager
def stock_strawberry(answers_file: str, log: str, processes: int) -> Iterator[str]:
    """The stock app under uvicorn on a free port; yields its GraphQL URL."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.stock_strawberry:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(processes), "--log-level", "warning", "--no-access-log"]
    environment = {**os.environ, "BENCH_STOCK_JOBS": answers_file, "PYTHONPATH": str(ROOT)}
    with open(log, "a") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {process.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                checked_jobs(url)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stock Strawberry app did not answer in 30 s; see {log}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Comparison:
    figure: str  # what was sent, e.g. "jobs(first: 50)"
    ours: WrkResult
    stock: WrkResult | None  # None where the stock app has nothing to compare (writes)


def compare(
    seconds: float, connections: int, threads: int, tmp: str, processes: tuple[int, ...] = (1, 2)
) -> list[Comparison]:
    """jobledger (on a fresh PostgreSQL, seeded once) and the stock app serving the same answers,
    for every count of `processes`: the jobs page, the tasks page, `__typename`, then createJob."""
    results: list[Comparison] = []
    answers_file = f"{tmp}/stock-answers.json"
    with fresh_postgres("jobledger_bench_wrk") as url:
        big = ""
        for count in processes:
            plural = "es" if count > 1 else ""
            tasks_body: dict[str, object] = {"query": TASKS_QUERY, "variables": {"id": big}}
            reads = [("jobs(first: 50)", {"query": JOBS_QUERY}), ("a job's tasks(first: 100)", tasks_body)]
            reads.append(("{ __typename }", {"query": TYPENAME_QUERY}))
            ours: dict[str, WrkResult] = {}
            name = f"jobledger, {count} process{plural}"
            with jobledger(url, f"{tmp}/wrk-jobledger.log", count) as server:
                if not big:
                    big = seed(server)
                    tasks_body["variables"] = {"id": big}
                answers = {
                    "jobs": checked_jobs(server.graphql),
                    "job": checked(server.graphql, tasks_body, TASKS)["job"],
                }
                Path(answers_file).write_text(json.dumps(answers))
                for figure, body in reads:
                    say(f"== wrk {name}, {figure}: {seconds:g} s at {connections} connections")
                    ours[figure] = run_wrk(server.graphql, seconds, connections, threads, name, body)
                say(f"== wrk {name}, createJob of 3 tasks: {seconds:g} s at {connections} connections")
                created = run_wrk(
                    server.graphql, seconds, connections, threads, name, {"query": CREATE_JOB, "variables": {"i": 1}}
                )
            stock_name = f"stock Strawberry, {count} process{plural}"
            with stock_strawberry(answers_file, f"{tmp}/wrk-stock.log", count) as stock:
                for figure, body in reads:
                    say(f"== wrk {stock_name}, {figure}: {seconds:g} s at {connections} connections")
                    results.append(
                        Comparison(
                            figure, ours[figure], run_wrk(stock, seconds, connections, threads, stock_name, body)
                        )
                    )
            results.append(Comparison("createJob of 3 tasks", created, None))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jlwrk") as tmp:
        results = compare(args.seconds, args.connections, args.threads, tmp)
    print(f"\n{'':60}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for c in results:
        for r in (c.ours, c.stock):
            if r is not None:
                label = f"{c.figure}, {r.name}"
                print(f"{label:60}{r.requests_per_s:>12,.0f}{r.p50_ms:>10.1f}{r.p99_ms:>10.1f}{r.errors:>8}")
    for c in results:
        if c.stock is not None:
            ratio = c.ours.requests_per_s / c.stock.requests_per_s
            print(f"{c.figure}: {c.ours.name} / {c.stock.name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
