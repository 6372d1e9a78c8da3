"""`jobledger queue|job|task ...` through the real entry point (a subprocess of `python -m
api.cli`) against a real `jobledger serve`, on both stores: the tables people read, the
`--json` scripts parse back, `job watch` ending when its jobs finish, and the errors
(the server's message with exit code 2; a friendly word when the service is down, after
--retry-for seconds of trying), and a submission made once however often it is sent."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.api.conftest import Server, free_port, start_server, stop_server
from tests.api.test_client import FlakyProxy

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds a command may take before the test fails instead of hanging
NO_TOKEN_FILE = f"{os.devnull}/token"  # a token file that cannot exist: no token of whoever runs the tests
TOKEN = "jl_0123456789ab_s3cr3t"


def _env(server: Server | None, user: str | None) -> dict[str, str]:
    ambient = ("JOBLEDGER_URL", "JOBLEDGER_USER", "JOBLEDGER_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in ambient}
    env["JOBLEDGER_TOKEN_FILE"] = NO_TOKEN_FILE
    if server is not None:
        env["JOBLEDGER_URL"] = server.graphql
    if user:
        env["JOBLEDGER_USER"] = user
    return env


def _start(server: Server | None, args: Sequence[str], user: str | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=_env(server, user),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], args: Sequence[str], code: int) -> subprocess.CompletedProcess[str]:
    try:
        out, err = process.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"jobledger {' '.join(args)} did not end within {WAIT} s") from None
    assert process.returncode == code, f"jobledger {' '.join(args)} -> {process.returncode}\n{out}\n{err}"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def cli(server: Server | None, *args: str, user: str | None = "ann", code: int = 0) -> subprocess.CompletedProcess[str]:
    """Run `jobledger ARGS...` against the server (through $JOBLEDGER_URL); expect exit `code`."""
    return _finish(_start(server, args, user), args, code)


def cli_json(server: Server, *args: str, **kwargs: Any) -> Any:
    return json.loads(cli(server, *args, "--json", **kwargs).stdout)


def together(server: Server | None, *calls: Sequence[str], code: int = 0) -> list[subprocess.CompletedProcess[str]]:
    """Several commands that do not depend on each other, run at the same time (each a process
    that mostly starts up), each expected to exit with `code`."""
    started = [(_start(server, args, "ann"), args) for args in calls]
    return [_finish(process, args, code) for process, args in started]


def table(output: str) -> list[dict[str, str]]:
    """A printed table as rows of {header: cell}. Columns are found where every line has two
    or more blanks in the same place, so empty cells stay in their column."""
    lines = [line for line in output.splitlines() if line.strip()]
    width = max(len(line) for line in lines)
    padded = [line.ljust(width) for line in lines]
    blank = [all(line[i] == " " for line in padded) for i in range(width)] + [True, True]
    spans, start = [], None
    for i in range(width + 2):
        if not blank[i] and start is None:
            start = i
        elif blank[i] and start is not None and (blank[i + 1] if i + 1 < len(blank) else True):
            spans.append((start, i))
            start = None
    headers = [padded[0][a:b].strip() for a, b in spans]
    return [{h: line[a:b].strip() for h, (a, b) in zip(headers, spans, strict=True)} for line in padded[1:]]


class Watch:
    """`jobledger job watch ...` running in the background; its stdout lines as they come."""

    def __init__(self, server: Server, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "job", "watch", *args],
            cwd=ROOT,
            env=_env(server, "ann"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, wanted: str) -> str:
        """Wait for a line containing `wanted`."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no line with {wanted!r} within {WAIT} s; saw {self.seen}") from None
            assert line is not None, f"watch ended before a line with {wanted!r}; saw {self.seen}"
            self.seen.append(line)
            if wanted in line:
                return line

    def finish(self) -> tuple[int, list[str], str]:
        """Wait for it to end by itself: (exit code, every line, stderr)."""
        try:
            code = self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"job watch did not end by itself; saw {self.seen}") from None
        while (line := self.lines.get(timeout=WAIT)) is not None:
            self.seen.append(line)
        assert self.process.stderr is not None
        return code, self.seen, self.process.stderr.read()


# -- queues -------------------------------------------------------------------------------


def test_queue_commands(server):
    create = [
        "queue",
        "create",
        "ingest",
        "--priority",
        "700",
        "--max-concurrency",
        "4",
        "--mode",
        "fifo",
        "--description",
        "incoming media",
        "--tag",
        "team=post",
        "--json",
    ]
    # Flags in any place; --url instead of $JOBLEDGER_URL.
    first, second = together(server, create, ["queue", "--url", server.graphql, "create", "render", "--mode", "LIFO"])
    created = json.loads(first.stdout)
    assert (created["code"], created["priority"], created["max_concurrency"], created["execution_mode"]) == (
        "ingest",
        700,
        4,
        "FIFO",
    )
    assert created["tags"] == {"team": "post"} and created["user"] == "ann" and created["default"] is False
    assert uuid.UUID(created["id"]) and created["created"].endswith("Z")
    assert second.stdout.startswith("created queue render (") and second.stdout.strip().endswith(")")

    listing, tagged = together(
        server, ["queue", "list"], ["queue", "tag", "render", "owner=mlops", "tier=gold", "--json"]
    )
    rows = table(listing.stdout)
    assert [r["CODE"] for r in rows] == ["default", "ingest", "render"]  # by code
    assert [r["DEF"] for r in rows] == ["*", "", ""]
    ingest = rows[1]
    assert (ingest["PRI"], ingest["MODE"], ingest["MAX"], ingest["STATUS"], ingest["TAGS"]) == (
        "700",
        "fifo",
        "4",
        "waiting",
        "team=post",
    )
    assert ingest["CREATED"].endswith("s ago") and ingest["TOTAL"] == "0"
    assert json.loads(tagged.stdout)["tags"] == {"owner": "mlops", "tier": "gold"}
    untagged = cli(server, "queue", "untag", "render", "tier", "nothing")
    assert untagged.stdout.strip() == "queue render tags: owner=mlops"

    cli(server, "queue", "update", "ingest", "--priority", "800", "--max-concurrency", "none", "--status", "disabled")
    shown, by_id = together(server, ["queue", "show", "ingest"], ["queue", "show", created["id"], "--json"])
    fields = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert fields["code"].strip() == "ingest" and fields["priority"].strip() == "800"
    assert fields["max concurrency"].strip() == "unlimited" and fields["status"].strip() == "disabled"
    assert fields["tags"].strip() == "team=post" and fields["description"].strip() == "incoming media"
    assert fields["id"].strip() == created["id"] and "by ann" in fields["created"]
    found = json.loads(by_id.stdout)
    assert (found["code"], found["priority"], found["status"], found["max_concurrency"]) == (
        "ingest",
        800,
        "DISABLED",
        None,
    )

    archived = cli_json(server, "queue", "archive", "ingest")
    assert archived["state"] == "SEALED"
    active, everything, terminated = together(
        server,
        ["queue", "list", "--where", "code<>default", "--json"],  # archived queues are left out
        ["queue", "list", "--archived"],
        ["queue", "terminate", "render", "--yes"],
    )
    assert [q["code"] for q in json.loads(active.stdout)] == ["render"]
    assert {r["CODE"]: r["STATE"] for r in table(everything.stdout)} == {
        "default": "",
        "ingest": "sealed",
        "render": "",
    }
    assert terminated.stdout.startswith("terminated queue render")

    deleted, said = together(
        server, ["queue", "delete", "ingest", "--json", "--yes"], ["queue", "delete", "render", "-y"]
    )
    assert json.loads(deleted.stdout) == {"id": created["id"], "deleted": True}
    assert said.stdout.startswith("deleted queue render")
    left = server.data("{ queues(includeArchived: true) { nodes { code } } }")["queues"]["nodes"]
    assert left == [{"code": "default"}]


# -- jobs and tasks -----------------------------------------------------------------------


def test_job_and_task_commands(server, tmp_path):
    clip = tmp_path / "clip.mov"
    clip.write_bytes(b"x" * 1000)
    cli(server, "queue", "create", "ingest", "--priority", "700")
    submit = ["job", "submit", "--queue", "ingest", "--dest", "/out", "--priority", "650", str(clip), "/media/b.mov"]
    submitted, held = together(
        server,
        [*submit, "--command", "render --frame 1", "--json"],
        ["job", "submit", "--code", "held", "--paused", "/media/c.mov"],
    )
    job = json.loads(submitted.stdout)
    assert (job["queue_code"], job["code"], job["priority"], job["destination"], job["user"]) == (
        "ingest",
        "clip.mov",
        650,
        "/out",
        "ann",
    )
    assert job["status"] in ("PENDING", "WAITING") and job["phase"] == "ACTIVE"
    said = held.stdout
    assert said.startswith("submitted job ") and "(held) to queue default: 1 task, paused" in said
    held_id = said.split()[2]
    assert uuid.UUID(held_id)
    # Created at nearly the same time: tell them apart by their creation.
    newest_first = [
        n["id"]
        for n in server.data('{ jobs(orderBy: [{field: "created", order: DESC}]) { nodes { id } } }')["jobs"]["nodes"]
    ]

    listing, in_queue, where, by_priority, shown, detail, tasks_json = together(
        server,
        ["job", "list"],
        ["job", "list", "--queue", "ingest", "--json"],
        ["job", "list", "--where", "status=paused", "--json"],
        ["job", "list", "--sort", "-priority", "--json"],
        ["job", "show", job["id"][:8]],  # a short id (what the tables show) names the job
        ["job", "show", "held", "--json"],  # and so does a unique code
        ["task", "list", job["id"], "--json"],
    )
    rows = table(listing.stdout)
    assert [r["ID"] for r in rows] == [i[:8] for i in newest_first]
    row = next(r for r in rows if r["CODE"] == "clip.mov")
    assert row["ID"] == job["id"][:8] and row["QUEUE"] == "ingest" and row["STATUS"] in ("pending", "waiting")
    assert row["PRI"] == "650" and row["PROGRESS"] == "0%" and row["CREATED"].endswith("ago") and row["USER"] == "ann"
    assert [j["id"] for j in json.loads(in_queue.stdout)] == [job["id"]]
    assert [j["code"] for j in json.loads(where.stdout)] == ["held"]
    assert [j["code"] for j in json.loads(by_priority.stdout)] == ["clip.mov", "held"]

    head, _, tasks_part = shown.stdout.partition("\n\n")
    fields = dict(line.split(":", 1) for line in head.splitlines())
    assert fields["id"].strip() == job["id"] and fields["queue"].strip() == "ingest"
    assert fields["status"].strip().endswith("(active)") and "0%" in fields["progress"]
    assert tasks_part.startswith("tasks (3):")
    task_rows = table(tasks_part.split("\n", 1)[1])
    assert [(t["URI"], t["STATUS"]) for t in task_rows] == [("0", "queued"), ("1", "queued"), ("2", "queued")]
    assert task_rows[0]["SOURCE"].endswith("clip.mov") and task_rows[2]["SOURCE"] == "$ render --frame 1"
    held_job = json.loads(detail.stdout)
    assert held_job["id"] == held_id and held_job["status"] == "PAUSED"
    assert [t["source"] for t in held_job["tasks"]] == ["/media/c.mov"]

    tasks = json.loads(tasks_json.stdout)
    assert [t["uri"] for t in tasks] == ["0", "1", "2"]
    assert tasks[0]["source"] == str(clip) and tasks[2]["source"] == {"kind": "command", "command": "render --frame 1"}
    assert all(t["job_id"] == job["id"] for t in tasks)
    # Tasks by uri, by id prefix, by id.
    said = cli(server, "task", "exclude", job["id"][:6], "0", tasks[2]["id"][:8], tasks[1]["id"]).stdout
    assert said.strip() == f"excluded 3 tasks of job {job['id'][:8]} (clip.mov): 0, 2, 1"
    excluded = cli_json(server, "task", "list", job["id"], "--where", "status=excluded")
    assert [(t["uri"], t["status"]) for t in excluded] == [("0", "EXCLUDED"), ("1", "EXCLUDED"), ("2", "EXCLUDED")]

    resumed, paused = together(server, ["job", "resume", held_id], ["job", "pause", job["id"][:8], "--json"])
    assert resumed.stdout.strip() == f"resumed job {held_id[:8]} (held): waiting"
    assert (json.loads(paused.stdout)["status"], json.loads(paused.stdout)["modifier"]) == ("PAUSED", "ann")
    aborted = cli_json(server, "job", "abort", held_id, job["id"][:8], "--user", "bob", "--yes")
    assert [(j["id"], j["status"], j["modifier"]) for j in aborted] == [
        (held_id, "ABORTED", "bob"),
        (job["id"], "ABORTED", "bob"),
    ]


# -- job watch ----------------------------------------------------------------------------

CREATE_JOB = "mutation($input: CreateJobInput!) { createJob(input: $input) { id } }"
CLAIM = 'mutation { claimTasks(worker: "w1", limit: 2, leaseSeconds: 30) { id task { uri job { id } } } }'
HEARTBEAT = "mutation($id: ID!) { heartbeat(leaseId: $id, progress: 50, bytesDone: 100000000, speed: 12.5) { id } }"
COMPLETE = "mutation($id: ID!) { completeTask(leaseId: $id) { status } }"
ABORT = "mutation($id: ID!) { updateJob(id: $id, input: {status: ABORTED}) { status } }"


def test_job_watch_follows_jobs_until_they_finish(server):
    sized = [{"source": "/media/a.mov", "size": 200_000_000}, {"source": "/media/b.mov", "size": 200_000_000}]
    job_id = server.data(CREATE_JOB, {"input": {"code": "transfer", "destination": "/out", "tasks": sized}})[
        "createJob"
    ]["id"]
    other = cli_json(server, "job", "submit", "/media/c.mov", "--paused")

    plain = Watch(server, job_id[:8])  # stdout is a pipe: plain lines, no bars
    as_json = Watch(server, job_id, other["id"], "--json")
    assert plain.until("%").startswith(f"{job_id[:8]}  transfer")
    first = [json.loads(as_json.until('"job_id"')), json.loads(as_json.until('"job_id"'))]
    assert {r["job_id"] for r in first} == {job_id, other["id"]}

    leases = server.data(CLAIM)["claimTasks"]
    assert {lease["task"]["job"]["id"] for lease in leases} == {job_id}  # the other one is paused
    mine = sorted(leases, key=lambda lease: lease["task"]["uri"])
    server.data(HEARTBEAT, {"id": mine[0]["id"]})
    moving = plain.until("MB/s")
    assert "running" in moving and "12.5 MB/s" in moving and " left" in moving and "400.0 MB" in moving
    report = json.loads(as_json.until("12.5"))
    assert report["status"] == "RUNNING" and report["speed"] == 12.5 and report["etr_seconds"] > 0
    for lease in mine:
        server.data(COMPLETE, {"id": lease["id"]})

    code, lines, errors = plain.finish()  # ends by itself: the job is done
    assert code == 0 and errors == ""
    assert lines[-1].startswith(f"{job_id[:8]}  transfer") and "100%" in lines[-1] and "done" in lines[-1]
    assert len(lines) == len(set(lines))  # a line per change

    server.data(ABORT, {"id": other["id"]})
    code, lines, errors = as_json.finish()
    assert code == 1 and errors == ""  # not every job it watched is DONE
    reports = [json.loads(line) for line in lines]
    last = {r["job_id"]: r for r in reports}
    assert last[job_id]["status"] == "DONE" and last[job_id]["progress"] == 100 and last[job_id]["finished"]
    assert last[other["id"]]["status"] == "ABORTED" and last[other["id"]]["finished"]

    # A finished job's watch gives its final value and ends at once.
    again = cli(server, "job", "watch", job_id).stdout.splitlines()
    assert len(again) == 1 and "done" in again[0] and "100%" in again[0]


# -- errors -------------------------------------------------------------------------------


def test_errors_are_the_servers_message_and_exit_code_2(server):
    missing = str(uuid.uuid4())
    refused = server.error("mutation($id: ID!) { updateJob(id: $id, input: {status: PAUSED}) { id } }", {"id": missing})
    assert refused["extensions"]["code"] == "NOT_FOUND"
    job = server.data(CREATE_JOB, {"input": {"status": "PAUSED", "tasks": [{"source": "/media/a.mov"}]}})["createJob"]
    server.data(ABORT, {"id": job["id"]})

    answers = together(
        server,
        ["job", "pause", missing],
        ["job", "show", missing],
        ["job", "watch", "nosuchjob"],
        ["queue", "show", "nope"],
        ["queue", "create", "default"],
        ["job", "list", "--where", "colour=red"],
        ["job", "pause", job["id"]],
        ["task", "exclude", job["id"], "7"],
        ["job", "submit"],
        code=2,
    )
    assert all(a.stdout == "" and a.stderr.startswith("jobledger: ") for a in answers)
    said = [a.stderr.removeprefix("jobledger: ").rstrip("\n") for a in answers]
    assert said[0] == refused["message"]  # the server's own words
    assert said[1:4] == [f"Job {missing} does not exist", "Job nosuchjob does not exist", "Queue nope does not exist"]
    assert "already exists" in said[4]
    assert said[5].startswith("where: ") and "colour" in said[5]
    assert "cannot go from ABORTED to PAUSED" in said[6]
    assert said[7] == f"Task 7 of job {job['id']} does not exist"
    assert "PATH or --command" in said[8]


def test_a_service_that_is_down_is_tried_for_retry_for_seconds_then_gets_a_friendly_message():
    url = f"http://127.0.0.1:{free_port()}/graphql"
    calls = (["job", "list"], ["queue", "show", "default", "--json"], ["job", "watch", str(uuid.uuid4())])
    # 2 s: long enough for a second attempt on a loaded machine, where a CLI's start takes a while.
    for done in together(None, *[[*args, "--url", url, "--retry-for", "2"] for args in calls], code=2):
        retrying, friendly = done.stderr.splitlines()
        assert retrying.startswith(f"jobledger: server unreachable (no GraphQL answer from {url}: ")
        assert retrying.endswith("; retrying")
        assert (
            friendly == f"jobledger: cannot reach the service at {url} (tried for 2 s): is `jobledger serve` running?"
        )
        assert done.stdout == ""
    once = cli(None, "job", "list", "--url", url, "--retry-for", "0", code=2)
    assert once.stderr == f"jobledger: cannot reach the service at {url}: is `jobledger serve` running?\n"
    refused = cli(None, "job", "list", "--retry-for", "soon", code=2)
    assert "--retry-for: a number of seconds, not 'soon'" in refused.stderr


def test_a_submission_is_made_once_with_a_key_of_ones_own_or_through_a_dropped_connection(server):
    submit = ["job", "submit", "/media/a.mov", "--code", "keyed", "--idempotency-key", "order-1234"]
    first = cli_json(server, *submit)
    assert cli_json(server, *submit)["id"] == first["id"]  # the same job, not a second one
    other = cli(server, "job", "submit", "/media/b.mov", "--idempotency-key", "order-1234", code=2)
    assert "Idempotency-Key 'order-1234' was used" in other.stderr and "use a new key" in other.stderr

    # The first attempt reaches the server, which makes the job, but its answer is lost on the way.
    with FlakyProxy(server.graphql, "dropped") as proxy:
        done = cli(None, "job", "submit", "/media/c.mov", "--code", "dropped", "--json", "--url", proxy.url)
    job = json.loads(done.stdout)
    assert [post.key for post in proxy.posts] == [proxy.posts[0].key] * 2 and proxy.posts[0].key
    assert "server unreachable (no answer from" in done.stderr and "server reachable again" in done.stderr
    listed = cli_json(server, "job", "list", "--where", 'code="dropped"', "--phase", "all")
    assert [j["id"] for j in listed] == [job["id"]]
    listed = cli_json(server, "job", "list", "--where", 'code="keyed"', "--phase", "all")
    assert [j["id"] for j in listed] == [first["id"]]


# -- tokens ------------------------------------------------------------------------------------


def test_the_token_is_accepted_before_and_after_the_action(server):
    # The test server runs with authentication off and reads no token: this checks the command line.
    before = cli_json(server, "queue", "--token", TOKEN, "list")
    after = cli_json(server, "queue", "list", "--token", TOKEN)
    assert [q["code"] for q in before] == [q["code"] for q in after] == ["default"]


@contextmanager
def refusing(code: str, message: str) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in service that refuses every request with `code`: its /graphql URL, and the
    headers of each request it got."""
    received: list[dict[str, str]] = []

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            received.append(dict(self.headers))
            body = json.dumps({"data": None, "errors": [{"message": message, "extensions": {"code": code}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    listener = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.server_address[1]}/graphql", received
    finally:
        listener.shutdown()
        listener.server_close()


def test_a_missing_or_refused_token_says_what_to_do_and_exits_2():
    with refusing("UNAUTHENTICATED", "a valid token is required") as (url, received):
        done = cli(None, "job", "list", "--url", url, code=2)
    assert done.stdout == "" and "Authorization" not in received[0]
    assert done.stderr == (
        "jobledger: a valid token is required (pass --token or set JOBLEDGER_TOKEN; "
        f"the server's first admin token is in {NO_TOKEN_FILE})\n"
    )

    said = "you may not submit jobs to queue 'ops': you are viewer in group 'team'"
    with refusing("FORBIDDEN", said) as (url, received):
        done = cli(None, "job", "--token", TOKEN, "submit", "/a.mov", "--queue", "ops", "--url", url, code=2)
    assert received[0]["Authorization"] == f"Bearer {TOKEN}"
    assert done.stderr == (
        f"jobledger: {said} (refused to token jl_0123456789ab: ask an admin for a role that allows it,"
        " or use another --token)\n"
    )


def test_on_a_server_with_authentication_the_token_decides(store_url, tmp_path):
    admin_file = tmp_path / "admin-token"
    guarded = start_server(
        store_url, str(tmp_path / "server.log"), JOBLEDGER_AUTH="on", JOBLEDGER_TOKEN_FILE=str(admin_file)
    )
    try:
        admin = admin_file.read_text().strip()
        submitted = cli_json(guarded, "job", "--token", admin, "submit", "/media/a.mov", "--dest", "/out", user=None)
        assert submitted["user"] == "admin"
        cli(guarded, "job", "abort", submitted["id"], "--token", admin, user=None)
        watched = cli(guarded, "job", "watch", submitted["id"], "--token", admin, "--json", code=1, user=None)
        assert json.loads(watched.stdout)["status"] == "ABORTED"  # over the websocket, with the token

        refused = cli(guarded, "queue", "list", user="ann", code=2)  # --user means nothing here
        assert refused.stdout == "" and refused.stderr.startswith("jobledger: ")
        assert refused.stderr.endswith(
            f"(pass --token or set JOBLEDGER_TOKEN; the server's first admin token is in {NO_TOKEN_FILE})\n"
        )
    finally:
        stop_server(guarded)
