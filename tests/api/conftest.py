"""A real `jobledger serve` on a free port of 127.0.0.1, per test, on each store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[str]
    store_url: str

    @property
    def graphql(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws(self) -> str:
        return self.graphql.replace("http://", "ws://")

    def query(self, query: str, variables: dict[str, Any] | None = None, user: str | None = "tester") -> dict[str, Any]:
        """POST a GraphQL request; returns the whole JSON answer (data and errors)."""
        headers = {"X-Jobledger-User": user} if user else {}
        response = httpx.post(
            self.graphql, json={"query": query, "variables": variables or {}}, headers=headers, timeout=30
        )
        return response.json()  # type: ignore[no-any-return]

    def data(self, query: str, variables: dict[str, Any] | None = None, user: str | None = "tester") -> dict[str, Any]:
        """POST and expect success: the `data` part."""
        answer = self.query(query, variables, user)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]  # type: ignore[no-any-return]

    def error(self, query: str, variables: dict[str, Any] | None = None, user: str | None = "tester") -> dict[str, Any]:
        """POST and expect a failure: the first error."""
        answer = self.query(query, variables, user)
        assert answer.get("errors"), answer
        return answer["errors"][0]  # type: ignore[no-any-return]


def start_server(store_url: str, log_path: str, port: int | None = None, **env: str) -> Server:
    """A `jobledger serve` on `port` (a free one if None), once /readyz answers 200."""
    port = port or free_port()
    # Authentication off unless a test turns it on (tests/api/test_access.py does).
    # One process unless a test asks for more (JOBLEDGER_WORKERS; tests/api/test_processes.py).
    environment = {
        **os.environ,
        "JOBLEDGER_AUTH": "off",
        "JOBLEDGER_WORKERS": "1",
        "JOBLEDGER_DATABASE_URL": store_url,
        **env,
    }
    log = open(log_path, "a")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        text=True,
        start_new_session=True,  # its own process group: every process it starts is stopped with it
    )
    server = Server(f"http://127.0.0.1:{port}", process, store_url)
    deadline = time.monotonic() + 60  # a loaded 2-core machine can take that long to import and open
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jobledger serve exited with {process.returncode}:\n{tail(log_path)}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    kill_group(process)
    raise RuntimeError(f"jobledger serve did not become ready in 60 s:\n{tail(log_path)}")


def tail(path: str | Path, lines: int = 30) -> str:
    """The end of a log, for an error message."""
    path = Path(path)
    if not path.exists():
        return f"(no {path.name})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def kill_group(process: subprocess.Popen[str]) -> None:
    """Kill the server and every process of its group (the children of `--workers N`)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop_server(server: Server) -> None:
    server.process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(10)
    kill_group(server.process)  # children left behind by a parent that stopped badly


@pytest.fixture
def server(store_url: str, tmp_path) -> Iterator[Server]:
    running = start_server(store_url, str(tmp_path / "server.log"))
    yield running
    stop_server(running)
