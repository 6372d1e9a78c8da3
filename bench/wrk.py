"""wrk-style API figures: requests/s and latency of one GraphQL query, `jobs(first: 50)`, under
wrk at 50 connections, against a real `jobledger serve` (1 and 2 processes, on PostgreSQL) and
against a stock Strawberry app serving the same 50 jobs from memory (bench/stock_strawberry.py,
under uvicorn with as many processes).

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
JOBS_QUERY = "{ jobs(first: 50) { totalCount nodes { id code status priority progress size queue { code } } } }"
CREATE_JOB = """mutation($i: Int!) { createJob(input: {code: "bench", priority: $i, destination: "/out",
  tasks: [{source: "/in/a.mov", size: 100}, {source: "/in/b.mov", size: 200}, {source: "/in/c.mov", size: 300}]})
  { id } }"""
JOBS = 50
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


def run_wrk(url: str, seconds: float, connections: int, threads: int, name: str) -> WrkResult:
    """wrk POSTing JOBS_QUERY to `url` for `seconds`; its figures, parsed from its report."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(POST_SCRIPT.format(body=json.dumps(json.dumps({"query": JOBS_QUERY}))))
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


def checked_jobs(url: str) -> dict[str, object]:
    """The `jobs` answer at `url`, which must be a full page without errors."""
    answer = httpx.post(url, json={"query": JOBS_QUERY}, headers={"X-Jobledger-User": "bench"}, timeout=30).json()
    if answer.get("errors") or len(answer["data"]["jobs"]["nodes"]) != JOBS:
        raise RuntimeError(f"{url} did not answer a page of {JOBS} jobs: {str(answer)[:300]}")
    return answer["data"]["jobs"]  # type: ignore[no-any-return]


def seed(server: Server) -> None:
    with httpx.Client(timeout=60, headers={"X-Jobledger-User": "bench"}) as http:
        for i in range(JOBS):
            answer = http.post(server.graphql, json={"query": CREATE_JOB, "variables": {"i": i}}).json()
            if answer.get("errors"):
                raise RuntimeError(f"seeding failed: {answer['errors'][0]}")


@contextlib.contextmanager
def jobledger(store_url: str, log: str, processes: int) -> Iterator[Server]:
    server = start_server(store_url, log, JOBLEDGER_WORKERS=str(processes), PYTHONPATH=str(ROOT))
    try:
        yield server
    finally:
        stop_server(server)


@contextlib.contextmanager
def stock_strawberry(jobs_file: str, log: str, processes: int) -> Iterator[str]:
    """The stock app under uvicorn on a free port; yields its GraphQL URL."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.stock_strawberry:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(processes), "--log-level", "warning", "--no-access-log"]
    environment = {**os.environ, "BENCH_STOCK_JOBS": jobs_file, "PYTHONPATH": str(ROOT)}
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


def compare(
    seconds: float, connections: int, threads: int, tmp: str, processes: tuple[int, ...] = (1, 2)
) -> list[WrkResult]:
    """jobledger (on a fresh PostgreSQL with JOBS jobs) and the stock app, each with every
    count of `processes`; results in pairs (jobledger, stock) per count."""
    results: list[WrkResult] = []
    jobs_file = f"{tmp}/stock-jobs.json"
    with fresh_postgres("jobledger_bench_wrk") as url:
        for count in processes:
            name = f"jobledger, {count} process{'es' if count > 1 else ''}"
            with jobledger(url, f"{tmp}/wrk-jobledger.log", count) as server:
                if count == processes[0]:
                    seed(server)
                Path(jobs_file).write_text(json.dumps(checked_jobs(server.graphql)))
                say(f"== wrk {name}: {seconds:g} s at {connections} connections")
                results.append(run_wrk(server.graphql, seconds, connections, threads, name))
            name = f"stock Strawberry, {count} process{'es' if count > 1 else ''}"
            with stock_strawberry(jobs_file, f"{tmp}/wrk-stock.log", count) as stock:
                say(f"== wrk {name}: {seconds:g} s at {connections} connections")
                results.append(run_wrk(stock, seconds, connections, threads, name))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jlwrk") as tmp:
        results = compare(args.seconds, args.connections, args.threads, tmp)
    print(f"\n{'':34}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for r in results:
        print(f"{r.name:34}{r.requests_per_s:>12,.0f}{r.p50_ms:>10.1f}{r.p99_ms:>10.1f}{r.errors:>8}")
    for ours, stock in zip(results[::2], results[1::2], strict=True):
        print(f"{ours.name} / {stock.name}: {ours.requests_per_s / stock.requests_per_s:.2f}")


if __name__ == "__main__":
    main()
