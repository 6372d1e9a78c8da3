"""Fault tests' fixtures: a private, throwaway PostgreSQL cluster that a test may crash and
start again, `jobledger serve` processes on it that a test may kill, and a client that
times every answer and sorts it into a success, a coded error, or no answer at all.

The cluster is this test session's own (initdb into a temporary folder, a free port, trust
authentication, fsync off), never the machine's PostgreSQL: stopping it breaks nobody else.
Without PostgreSQL binaries the fault tests are skipped, unless JOBLEDGER_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import Server, free_port, start_server
from tests.api.test_workers import start_worker, stop_worker

REQUIRE_POSTGRES = os.environ.get("JOBLEDGER_REQUIRE_POSTGRES", "") not in ("", "0", "no", "false")
DB_TIMEOUT_S = 2.0  # JOBLEDGER_DB_TIMEOUT of every server here: how long an outage may hold a request
_schemas = itertools.count(1)


# -- the private cluster ------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The folder of initdb and pg_ctl: `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin; None when there is none."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0))
    candidates += [Path(p) for p in reversed(versions)]
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster in `root` (data/, its socket and its log), on 127.0.0.1:`port`.

    `crash()` is `pg_ctl stop -m immediate` (the server processes die as in a power cut,
    connections drop without a goodbye); `stop()` is a clean `-m fast`; `start()` brings it
    back on the same port."""

    bindir: Path
    root: Path
    port: int
    as_owner: list[str]  # the command prefix that runs a program as the cluster's OS user

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def _pg(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_owner, str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def init(self) -> None:
        done = self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c log_timezone=UTC"
        done = self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "30", "start")
        if done.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed ({done.returncode}): {done.stdout}{done.stderr}\n{self.log_tail()}"
            )

    def stop(self, mode: str = "fast") -> None:
        done = self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        if done.returncode != 0 and self.running():
            raise RuntimeError(f"pg_ctl stop -m {mode} failed: {done.stdout}{done.stderr}")

    def crash(self) -> None:
        """Every PostgreSQL process gone at once; what was in flight is lost or unanswered."""
        self.stop("immediate")

    def ready_at(self) -> float:
        """The wall-clock time PostgreSQL last said it was ready to accept connections (from
        its log: a little before `pg_ctl start -w` returns)."""
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            if "ready to accept connections" in line:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
                return stamp.timestamp()
        raise AssertionError(f"PostgreSQL never said it was ready:\n{self.log_tail()}")

    def running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.data), "status").returncode == 0

    def store_url(self) -> str:
        """A fresh schema's URL (the server creates the schema on its first start)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?schema=f{next(_schemas)}_{uuid.uuid4().hex[:8]}"

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True, connect_timeout=3
        )

    def log_tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return "(no PostgreSQL log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _owner_prefix() -> list[str] | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return None
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    return ["su", "postgres", "-s", "/bin/sh", "-c", '"$0" "$@"']


def _unavailable(reason: str) -> None:
    if REQUIRE_POSTGRES:
        pytest.fail(f"JOBLEDGER_REQUIRE_POSTGRES is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """The session's private cluster. Its folder is a short one under the system's temporary
    folder, owned by the cluster's user: pytest's own folders are private to the user running
    pytest (root cannot lend them to `postgres`), and the socket path must stay short. Its log
    is copied to pytest's folder at the end."""
    bindir = postgres_bindir()
    if bindir is None:
        _unavailable("no PostgreSQL binaries (neither `pg_config --bindir` nor /usr/lib/postgresql/*/bin)")
    assert bindir is not None
    prefix = _owner_prefix()
    if prefix is None:
        _unavailable("running as root and there is no `postgres` user to run PostgreSQL as")
    assert prefix is not None
    root = Path(tempfile.mkdtemp(prefix="jlpg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = PrivateCluster(bindir, root, free_port(), prefix)
    try:
        cluster.init()
        for _ in range(3):  # the free port may be taken between finding it and binding it
            try:
                cluster.start()
                break
            except RuntimeError:
                cluster.port = free_port()
        else:
            cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            if cluster.running():
                cluster.stop("immediate")
        with contextlib.suppress(Exception):
            shutil.copy(cluster.log, tmp_path_factory.getbasetemp() / "private-postgres.log")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(pg_cluster: PrivateCluster) -> PrivateCluster:
    """The private cluster, running (a test that failed while it was down leaves it down)."""
    if not pg_cluster.running():
        pg_cluster.start()
    return pg_cluster


# -- servers and workers that a test may kill ----------------------------------------------


def launch(store_url: str, log_path: Path, port: int | None = None, **env: str) -> Server:
    """A `jobledger serve` (authentication off, JOBLEDGER_DB_TIMEOUT=2) on `port` (a free
    one if None), once /readyz answers 200."""
    return start_server(store_url, str(log_path), port, JOBLEDGER_DB_TIMEOUT=str(DB_TIMEOUT_S), **env)


@dataclass
class Fleet:
    """The servers and workers of one test; all stopped at its end, whatever happened."""

    folder: Path
    servers: list[Server] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def serve(self, store_url: str, name: str, port: int | None = None, **env: str) -> Server:
        server = launch(store_url, self.log(name), port, **env)
        self.servers.append(server)
        return server

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def kill(self, server: Server) -> None:
        """kill -9: no shutdown, no goodbye to PostgreSQL or to clients."""
        server.process.kill()
        server.process.wait(10)

    def worker(self, server: Server, name: str, **options: Any) -> subprocess.Popen[bytes]:
        process = start_worker(server, self.log(name), name, **options)
        self.workers.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.workers:
            stop_worker(process)
        for server in self.servers:
            if server.process.poll() is None:
                server.process.terminate()
                try:
                    server.process.wait(10)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


# -- a client that times and sorts every answer --------------------------------------------


@dataclass
class Answer:
    """One request's fate: how long it took, and the answer (or why there was none)."""

    elapsed: float
    status: int | None = None
    body: dict[str, Any] | None = None
    failure: str | None = None  # the transport error when no answer came

    @property
    def answered(self) -> bool:
        return self.failure is None

    @property
    def ok(self) -> bool:
        return self.body is not None and not self.body.get("errors") and self.body.get("data") is not None

    @property
    def error(self) -> dict[str, Any] | None:
        errors = (self.body or {}).get("errors") or []
        return errors[0] if errors else None

    @property
    def code(self) -> str | None:
        error = self.error
        return None if error is None else (error.get("extensions") or {}).get("code")

    def describe(self) -> str:
        if self.failure:
            return f"no answer after {self.elapsed:.2f} s ({self.failure})"
        return f"HTTP {self.status} after {self.elapsed:.2f} s: {self.body}"


def call(
    server: Server,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    timeout: float = 30,
    client: httpx.Client | None = None,
) -> Answer:
    """POST a GraphQL request (with an Idempotency-Key if `key`), never raising."""
    headers = {"X-Jobledger-User": "tester"}
    if key is not None:
        headers["Idempotency-Key"] = key
    started = time.monotonic()
    try:
        poster: Callable[..., httpx.Response] = client.post if client is not None else httpx.post
        response = poster(
            server.graphql, json={"query": query, "variables": variables or {}}, headers=headers, timeout=timeout
        )
    except httpx.HTTPError as exc:
        return Answer(time.monotonic() - started, failure=f"{type(exc).__name__}: {exc}")
    elapsed = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = {"unparsed": response.text[:500]}
    return Answer(elapsed, response.status_code, body)


def readyz(server: Server, timeout: float = 30) -> Answer:
    started = time.monotonic()
    try:
        response = httpx.get(f"{server.url}/readyz", timeout=timeout)
    except httpx.HTTPError as exc:
        return Answer(time.monotonic() - started, failure=f"{type(exc).__name__}: {exc}")
    return Answer(time.monotonic() - started, response.status_code, response.json())


# -- what the tests ask ------------------------------------------------------------------

CREATE_JOB = "mutation($i: CreateJobInput!) { createJob(input: $i) { id code tasks(first: 10) { nodes { id } } } }"
EVENTS = """query($types: [String!], $after: Long) {
  events(types: $types, after: $after, first: 500) {
    nodes { position aggregateId type data } pageInfo { hasNextPage endCursor }
  }
}"""


def job_input(code: str, tasks: int = 3) -> dict[str, Any]:
    """A job of `tasks` commands that do nothing (`true`), marked by its code."""
    return {
        "i": {
            "code": code,
            "metadata": {"marker": code},
            "tasks": [{"source": {"kind": "command", "command": "true", "item": f"{code}/{n}"}} for n in range(tasks)],
        }
    }


def all_events(server: Server, types: list[str] | None = None) -> list[dict[str, Any]]:
    """Every event of the log (of `types`), page after page, as any client reads them."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        answer = call(server, EVENTS, {"types": types, "after": after})
        assert answer.ok, answer.describe()
        page = answer.body["data"]["events"]  # type: ignore[index]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = int(page["pageInfo"]["endCursor"])


def gaps_and_doubles(positions: list[int]) -> str:
    """'' when `positions` are 1, 2, 3, ... with none missing or repeated; else what is wrong."""
    wrong = []
    doubled = sorted({p for p in positions if positions.count(p) > 1}) if len(set(positions)) != len(positions) else []
    if doubled:
        wrong.append(f"positions doubled: {doubled[:20]}")
    expected = list(range(1, len(set(positions)) + 1))
    if sorted(set(positions)) != expected:
        missing = sorted(set(range(1, max(positions, default=0) + 1)) - set(positions))
        wrong.append(f"positions missing: {missing[:20]}")
    if positions != sorted(positions):
        wrong.append("positions out of order")
    return "; ".join(wrong)


def created_codes(server: Server) -> dict[str, int]:
    """How many Job.Created events the log holds for each job code."""
    counts: dict[str, int] = {}
    for event in all_events(server, ["Job.Created"]):
        code = event["data"].get("code")
        counts[code] = counts.get(code, 0) + 1
    return counts


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1) -> tuple[Any, float]:
    """Poll `check` until it returns something truthy: (that, seconds it took); fails
    saying `what` did not happen, with the last thing seen."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        last = check()
        if last:
            return last, time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last seen: {last!r})")
