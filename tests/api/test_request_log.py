"""The service's log, read from a real `jobledger serve`: one line per HTTP request (uvicorn's
access log is off), carrying the method, path, GraphQL operation, status, error code,
duration, caller and request id; with JOBLEDGER_LOG_FORMAT=json, every line on standard
error is one JSON object, the request lines with those fields, in each process of
`--workers 2` too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, free_port, stop_server
from tests.conftest import fresh_schema

NAMED = "query QueueCount { queues { totalCount } }"
UNNAMED_BUT_GIVEN = "query Listing { queues { nodes { code } } } query Other { queues { totalCount } }"
NOT_VALID = "query Broken { queues { noSuchField } }"


@dataclass
class Logged:
    """A running server whose standard output and standard error go to files of their own."""

    server: Server
    stdout: Path
    stderr: Path

    def lines(self) -> list[str]:
        return [line for line in self.stderr.read_text().splitlines() if line.strip()]


def start_logged(store_url: str, tmp: Path, **env: str) -> Logged:
    port = free_port()
    environment = {
        **os.environ,
        "JOBLEDGER_AUTH": "off",
        "JOBLEDGER_WORKERS": "1",
        "JOBLEDGER_DATABASE_URL": store_url,
        **env,
    }
    stdout, stderr = tmp / "stdout.log", tmp / "stderr.log"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=err,
            env=environment,
            text=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, store_url)
    deadline = time.monotonic() + 90  # a loaded machine: the first admin's token is a slow hash
    while time.monotonic() < deadline:
        assert process.poll() is None, f"jobledger serve exited: {stderr.read_text()[-3000:]}"
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return Logged(server, stdout, stderr)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"jobledger serve was not ready in 90 s: {stderr.read_text()[-3000:]}")


@pytest.fixture
def serve_logged(tmp_path: Path) -> Iterator[Callable[..., Logged]]:
    """Starts a server on SQLite with its log in the format given; stops it after the test."""
    started: list[Logged] = []

    def start(log_format: str, **env: str) -> Logged:
        store = f"sqlite:///{tmp_path / 'jobledger.db'}"
        started.append(start_logged(store, tmp_path, JOBLEDGER_LOG_FORMAT=log_format, **env))
        return started[-1]

    yield start
    for running in started:
        stop_server(running.server)


def ask(server: Server, query: str, operation: str | None = None, **headers: str) -> str:
    """POST a GraphQL request (as carol, unless the headers say otherwise); the request id
    the server answered with."""
    body: dict[str, Any] = {"query": query, **({"operationName": operation} if operation else {})}
    headers = headers or {"X-Jobledger-User": "carol"}
    response = httpx.post(server.graphql, json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


def requests_made(server: Server, token: str | None = None) -> dict[str, str]:
    """A few requests of each kind (as carol and dave, or with `token` where authentication
    is on); their request ids by what they were."""
    carol = {"Authorization": f"Bearer {token}"} if token else {"X-Jobledger-User": "carol"}
    dave = {"Authorization": f"Bearer {token}"} if token else {"X-Jobledger-User": "dave"}
    ids = {
        "named": ask(server, NAMED, **carol),
        "chosen": ask(server, UNNAMED_BUT_GIVEN, operation="Listing", **carol),
        "invalid": ask(server, NOT_VALID, **dave),
    }
    missing = httpx.get(f"{server.url}/no/such/page", timeout=10)
    assert missing.status_code == 404
    ids["missing"] = missing.headers["x-request-id"]
    return ids


def wait_for(logged: Logged, request_id: str) -> None:
    """The request line is written as the answer leaves; give the log a moment to have it
    (`id=...` is in the request line's text, in either format; other lines of the request
    may come before it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and f"id={request_id}" not in logged.stderr.read_text():
        time.sleep(0.05)


def test_each_request_is_one_readable_line_with_its_operation_code_caller_and_id(
    serve_logged: Callable[..., Logged],
) -> None:
    logged = serve_logged("text")
    ids = requests_made(logged.server)
    wait_for(logged, ids["missing"])
    lines = logged.lines()
    for what, request_id in ids.items():
        mine = [line for line in lines if request_id in line]
        assert len(mine) == 1, (what, mine)
    by_id = {what: next(line for line in lines if request_id in line) for what, request_id in ids.items()}
    line = r"\S+ \S+ INFO jobledger\.http: {} {} {} [0-9.]+ ms op={} code={} user={} id={}$"
    assert re.search(line.format("POST", "/graphql", 200, "QueueCount", "-", "carol", ids["named"]), by_id["named"])
    assert re.search(line.format("POST", "/graphql", 200, "Listing", "-", "carol", ids["chosen"]), by_id["chosen"])
    assert re.search(
        line.format("POST", "/graphql", 200, "Broken", "VALIDATION", "dave", ids["invalid"]), by_id["invalid"]
    )
    assert re.search(line.format("GET", "/no/such/page", 404, "-", "NOT_FOUND", "-", ids["missing"]), by_id["missing"])
    # uvicorn's access log ('127.0.0.1:PORT - "POST /graphql HTTP/1.1" 200') is not a second line.
    assert not [line for line in lines if "HTTP/1.1" in line], lines
    assert any("Started server process" in line for line in lines)


def test_json_logs_are_one_object_per_line_and_request_lines_carry_their_fields(
    serve_logged: Callable[..., Logged], tmp_path: Path
) -> None:
    logged = serve_logged("json", JOBLEDGER_AUTH="on", JOBLEDGER_TOKEN_FILE=str(tmp_path / "token"))
    ids = requests_made(logged.server, token=(tmp_path / "token").read_text().strip())
    ids["refused"] = ask(logged.server, NAMED, Authorization="Bearer jl_000000000000_not-a-token")
    wait_for(logged, ids["refused"])
    entries = [json.loads(line) for line in logged.lines()]  # every line: fails on one that is not JSON
    assert all(isinstance(entry, dict) for entry in entries)
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"]), entry
    assert any(e["logger"] == "uvicorn.error" and "Started server process" in e["message"] for e in entries)
    requests = {e["request_id"]: e for e in entries if "method" in e}
    assert len([e for e in entries if "method" in e]) == len(requests), "a request logged twice"

    named = requests[ids["named"]]
    assert named["logger"] == "jobledger.http" and named["level"] == "INFO"
    assert {k: named[k] for k in ("method", "path", "operation", "status", "code", "user")} == {
        "method": "POST",
        "path": "/graphql",
        "operation": "QueueCount",
        "status": 200,
        "code": None,
        "user": "admin",  # who the token authenticated as
    }
    assert isinstance(named["duration_ms"], int | float) and named["duration_ms"] >= 0
    assert ids["named"] in named["message"] and "QueueCount" in named["message"]
    assert requests[ids["chosen"]]["operation"] == "Listing"
    invalid = requests[ids["invalid"]]
    assert (invalid["operation"], invalid["code"], invalid["user"]) == ("Broken", "VALIDATION", "admin")
    missing = requests[ids["missing"]]
    assert (missing["method"], missing["path"], missing["status"], missing["code"]) == (
        "GET",
        "/no/such/page",
        404,
        "NOT_FOUND",
    )
    refused = requests[ids["refused"]]
    assert (refused["status"], refused["code"], refused["user"]) == (200, "UNAUTHENTICATED", None)
    # the warning logged while serving the refused request carries its request id
    (warning,) = [e for e in entries if e["logger"] == "jobledger.auth" and "refused a token" in e["message"]]
    assert (warning["level"], warning["request_id"]) == ("WARNING", ids["refused"]), warning
    assert "not-a-token" not in json.dumps(entries), "a token's secret in the log"


def test_an_unknown_log_format_is_refused_before_serving(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(free_port())],
        env={
            **os.environ,
            "JOBLEDGER_AUTH": "off",
            "JOBLEDGER_LOG_FORMAT": "xml",
            "JOBLEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "JOBLEDGER_LOG_FORMAT must be text or json, not 'xml'" in refused.stderr, refused.stderr


def test_json_logs_in_every_process_of_a_two_process_server(postgres_database: str, tmp_path: Path) -> None:
    running = start_logged(
        fresh_schema(postgres_database, "logs"), tmp_path, JOBLEDGER_WORKERS="2", JOBLEDGER_LOG_FORMAT="json"
    )
    try:
        request_ids = [ask(running.server, NAMED) for _ in range(6)]
        wait_for(running, request_ids[-1])
    finally:
        stop_server(running.server)
    entries = [json.loads(line) for line in running.lines()]
    assert any(e["message"].startswith("Started parent process") for e in entries), entries
    started = {e["message"] for e in entries if e["message"].startswith("Started server process")}
    assert len(started) == 2, started  # each serving process: "Started server process [PID]"
    requests = [e for e in entries if e.get("path") == "/graphql"]  # the others: waiting for /readyz
    assert sorted(e["request_id"] for e in requests) == sorted(request_ids)
    assert all(e["operation"] == "QueueCount" and e["status"] == 200 for e in requests), requests
