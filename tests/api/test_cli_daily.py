"""The `jobledger` command as people use it every day, through its real entry point against a
real `jobledger serve`, on both stores: what the server created when tasks were merged,
`job resume` that never runs a finished job again (and `job rerun` that does, on purpose),
destructive commands that ask first, options anywhere, id prefixes everywhere, size, speed,
time left and the reason a job waits in the tables, and store URLs that read naturally,
whose mistakes are one line, and whose read-only commands create nothing."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from jobledger_client import Client
from tests.api.conftest import Server, free_port
from tests.api.test_cli_client import CLAIM, COMPLETE, ROOT, WAIT, _env, table

CREATE = "mutation($input: CreateJobInput!) { createJob(input: $input) { id status } }"
STATUS = "query($id: ID!) { job(id: $id) { status tasks { nodes { uri status } } } }"


def jl(
    server: Server | None,
    *args: str,
    code: int = 0,
    stdin: int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """`jobledger ARGS...` with no terminal on stdin (unless given), as user ann; expect `code`."""
    environment = {**_env(server, "ann"), **(env or {})}
    if cwd != ROOT:
        environment["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env=environment,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == code, f"jobledger {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def jl_json(server: Server, *args: str, **kwargs: Any) -> Any:
    return json.loads(jl(server, *args, "--json", **kwargs).stdout)


def answered_on_a_terminal(server: Server, args: Sequence[str], reply: str) -> subprocess.CompletedProcess[str]:
    """`jobledger ARGS...` with a terminal on stdin, to which `reply` is typed."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env=_env(server, "ann"),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(terminal)
        os.write(controller, reply.encode() + b"\n")
        out, err = process.communicate(timeout=WAIT)
    finally:
        os.close(controller)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def job_status(server: Server, job_id: str) -> tuple[str, list[str]]:
    job = server.data(STATUS, {"id": job_id})["job"]
    return job["status"], [t["status"] for t in job["tasks"]["nodes"]]


def finish_every_task(server: Server) -> None:
    while leases := server.data(CLAIM)["claimTasks"]:
        for lease in leases:
            server.data(COMPLETE, {"id": lease["id"]})


# -- what the server created --------------------------------------------------------------


def test_identical_tasks_are_said_to_be_merged_and_the_counts_are_in_the_answer(server):
    sleeps = ["--command", "sleep 1"] * 4
    said = jl(server, "job", "submit", "--code", "naps", *sleeps).stdout
    assert said.startswith("submitted job ")
    assert said.strip().endswith("to queue default: 1 task created, 3 merged as duplicates of it, waiting")
    # The one task there is: uri 0, and no uri 1 to exclude.
    rows = table(jl(server, "task", "list", "naps").stdout)
    assert [r["URI"] for r in rows] == ["0"]
    refused = jl(server, "task", "exclude", "naps", "1", code=2)
    assert "Task 1 of job" in refused.stderr and "does not exist" in refused.stderr

    mixed = jl_json(server, "job", "submit", "--dest", "/out", "/media/a.mov", "/media/b.mov", "/media/a.mov")
    assert mixed["task_counts"] == {"created": 2, "merged": 1}

    # Over GraphQL: beside the data, under each field's response key, aliases apart.
    answer = server.query(
        'mutation($tasks: [TaskInput!]!) { createJob(input: {destination: "/o", tasks: $tasks}) { id } }',
        {"tasks": [{"source": "/x"}, {"source": "/x"}, {"source": "/y"}]},
    )
    assert answer["extensions"]["tasks"] == {"createJob": {"created": 2, "merged": 1}}
    job_id = answer["data"]["createJob"]["id"]
    added = server.query(
        'mutation($id: ID!) { more: addTasks(jobId: $id, tasks: [{source: "/x"}, {source: "/z"}]) { id uri } }',
        {"id": job_id},
    )
    assert added["extensions"]["tasks"] == {"more": {"created": 1, "merged": 1}}  # /x was there
    assert [t["uri"] for t in added["data"]["more"]] == ["0", "2"]

    # The Python client hands the counts on; an answer replayed for its key has none.
    with Client(server.graphql, "ann") as client:
        tasks = client.add_tasks(job_id, ["/z", "/w", "/w"], idempotency_key="k-add")
        assert [t.uri for t in tasks] == ["2", "3", "3"]
        assert (tasks.task_counts.created, tasks.task_counts.merged) == (1, 2)
        again = client.add_tasks(job_id, ["/z", "/w", "/w"], idempotency_key="k-add")
        assert [t.id for t in again] == [t.id for t in tasks] and again.task_counts is None

    first = jl(server, "job", "submit", "--idempotency-key", "once", "--dest", "/o", "/a", "/a").stdout
    second = jl(server, "job", "submit", "--idempotency-key", "once", "--dest", "/o", "/a", "/a").stdout
    assert "1 task created, 1 merged as a duplicate of it" in first
    assert first.split()[2] == second.split()[2]
    assert "1 task created, 1 merged as a duplicate of it" in second  # the same answer


# -- resume, rerun ------------------------------------------------------------------------


def test_resume_never_runs_a_finished_job_again_and_rerun_does_on_purpose(server):
    done_id = server.data(CREATE, {"input": {"code": "copied", "destination": "/o", "tasks": [{"source": "/big"}]}})[
        "createJob"
    ]["id"]
    finish_every_task(server)
    assert job_status(server, done_id) == ("DONE", ["DONE"])
    events_before = len(jl(server, "--database-url", server.store_url, "events", "export").stdout.splitlines())

    refused = jl(server, "job", "resume", done_id[:8], code=2)
    assert refused.stderr.strip() == (
        f"jobledger: job {done_id[:8]} (copied) is done, not paused: nothing to resume. "
        f"To run it again: jobledger job rerun {done_id[:8]}"
    )
    # Running a done job again redoes its work: not without a yes.
    unconfirmed = jl(server, "job", "rerun", "copied", code=2)
    assert (
        "job " + done_id[:8] + " (copied) is done: running again runs every one of its tasks again"
        in unconfirmed.stderr
    )
    assert "add --yes" in unconfirmed.stderr
    declined = answered_on_a_terminal(server, ["job", "rerun", "copied"], "n")
    assert declined.returncode == 1 and "nothing done" in declined.stderr
    assert job_status(server, done_id) == ("DONE", ["DONE"])
    events_after = len(jl(server, "--database-url", server.store_url, "events", "export").stdout.splitlines())
    assert events_after == events_before  # nothing was written

    rerun = jl(server, "job", "rerun", "copied", "--yes").stdout.strip()
    assert rerun == f"rerunning (done before) job {done_id[:8]} (copied): waiting"
    assert job_status(server, done_id) == ("WAITING", ["QUEUED"])

    # Failed or aborted: the dashboard's "Run again", no question asked. Paused: resume.
    aborted = jl_json(server, "job", "submit", "--code", "stopped", "--dest", "/o", "/s")
    jl(server, "job", "abort", "stopped")
    assert jl_json(server, "job", "rerun", "stopped")["status"] == "WAITING"
    assert (
        "is waiting: it has not finished, so there is nothing to rerun"
        in jl(server, "job", "rerun", "stopped", code=2).stderr
    )
    held = jl_json(server, "job", "submit", "--code", "held", "--paused", "--dest", "/o", "/h")
    assert (
        "`jobledger job resume " + held["id"][:8] + "` lets it run on"
        in jl(server, "job", "rerun", "held", code=2).stderr
    )
    assert jl(server, "job", "resume", "held").stdout.strip() == f"resumed job {held['id'][:8]} (held): waiting"
    left = jl(server, "job", "resume", "held", aborted["id"][:8]).stdout.splitlines()
    assert left == [
        f"job {held['id'][:8]} (held) is not paused, left as it is: waiting",
        f"job {aborted['id'][:8]} (stopped) is not paused, left as it is: waiting",
    ]


# -- destructive commands ask -------------------------------------------------------------


def test_destructive_commands_ask_first_or_take_yes(server):
    render = jl_json(server, "queue", "create", "render")
    one = jl_json(server, "job", "submit", "--queue", "render", "--dest", "/o", "/r1")
    two = jl_json(server, "job", "submit", "--queue", "render", "--dest", "/o", "/r2")

    refused = jl(server, "queue", "terminate", "render", code=2)
    assert refused.stderr.strip() == (
        "jobledger: terminate queue render: abort its 2 unfinished jobs; add --yes to do it (no terminal to ask on)"
    )
    assert jl(server, "queue", "delete", "render", code=2).stderr.strip() == (
        "jobledger: delete queue render: its 2 unfinished jobs move to the default queue; "
        "add --yes to do it (no terminal to ask on)"
    )
    assert "abort 2 jobs (r1, r2); add --yes" in jl(server, "job", "abort", one["id"], two["id"], code=2).stderr
    assert job_status(server, one["id"])[0] == job_status(server, two["id"])[0] == "WAITING"

    declined = answered_on_a_terminal(server, ["queue", "terminate", "render"], "no")
    assert declined.returncode == 1 and "Go on? [y/N]" in declined.stderr and "nothing done" in declined.stderr
    assert job_status(server, one["id"])[0] == "WAITING"
    agreed = answered_on_a_terminal(server, ["queue", "terminate", "render"], "y")
    assert agreed.returncode == 0 and agreed.stdout.startswith("terminated queue render")
    assert job_status(server, one["id"])[0] == job_status(server, two["id"])[0] == "ABORTED"

    assert jl(server, "job", "delete", one["id"][:8], code=2).stderr.startswith(
        f"jobledger: delete 1 job (job {one['id'][:8]} (r1), aborted); their history stays; add --yes"
    )
    assert jl(server, "job", "delete", one["id"][:8], "-y").stdout.strip() == f"deleted job {one['id'][:8]} (r1)"
    assert server.data("query($id: ID!) { job(id: $id) { id } }", {"id": one["id"]})["job"] is None
    assert jl_json(server, "queue", "delete", "render", "--yes") == {"id": render["id"], "deleted": True}


# -- options and ids ----------------------------------------------------------------------


def test_global_options_go_before_or_after_the_command(server):
    before = jl(
        server, "--json", "--url", server.graphql, "--user", "bob", "job", "submit", "--dest", "/o", "/g"
    ).stdout
    job = json.loads(before)
    assert job["user"] == "bob"
    after = json.loads(jl(server, "job", "list", "--json", "--url", server.graphql).stdout)
    middle = json.loads(jl(server, "job", "--json", "list").stdout)
    assert [j["id"] for j in after] == [j["id"] for j in middle] == [job["id"]]
    assert json.loads(jl(server, "--retry-for=0", "--json", "queue", "show", "default").stdout)["code"] == "default"
    # Where an option does not belong, argparse says so.
    assert "unrecognized arguments: --json" in jl(server, "--json", "events", "export", code=2).stderr

    malformed = jl(server, "--url", "notaurl", "job", "list", code=2)
    assert malformed.stderr.strip() == (
        "jobledger: --url 'notaurl' is not a URL of the service: write it like http://127.0.0.1:8000/graphql"
    )
    from_env = jl(None, "job", "list", code=2, env={"JOBLEDGER_URL": "localhost:8000"})
    assert "$JOBLEDGER_URL 'localhost:8000' is not a URL of the service: write it like http://localhost:8000" in (
        from_env.stderr
    )
    assert "cannot reach" not in malformed.stderr + from_env.stderr


def test_events_export_takes_the_ids_the_job_commands_take(server):
    job = jl_json(server, "job", "submit", "--code", "audited", "--dest", "/o", "/e")
    store = ["--database-url", server.store_url]
    full = jl(server, *store, "events", "export", "--aggregate", job["id"]).stdout.splitlines()
    assert full and {json.loads(line)["aggregate_id"] for line in full} == {job["id"]}
    by_prefix = jl(server, "events", "export", "--aggregate", job["id"][:8], *store).stdout.splitlines()
    by_code = jl(server, "events", *store, "export", "--aggregate", "audited").stdout.splitlines()
    assert by_prefix == by_code == full
    # A deleted job is in no read model; its history is still found by a prefix.
    jl(server, "job", "delete", job["id"], "--yes")
    assert (
        jl(server, *store, "events", "export", "--aggregate", job["id"][:10]).stdout.splitlines()[: len(full)] == full
    )
    missing = jl(server, *store, "events", "export", "--aggregate", "nosuchjob", code=2)
    assert missing.stderr.strip() == "jobledger: Aggregate nosuchjob does not exist"
    # Of 17 jobs two begin alike (16 hex digits): that beginning names more than one.
    firsts: dict[str, str] = {}
    for n in range(17):
        made = server.data(CREATE, {"input": {"destination": "/o", "tasks": [{"source": f"/f{n}"}]}})["createJob"]
        if made["id"][0] in firsts:
            break
        firsts[made["id"][0]] = made["id"]
    ambiguous = jl(server, *store, "events", "export", "--aggregate", made["id"][0], code=2)
    assert ambiguous.stderr.startswith(f"jobledger: aggregate: {made['id'][0]!r} names more than one (e.g. ")
    assert ambiguous.stderr.strip().endswith("); give more of the id")


# -- size, speed, time left, reason -------------------------------------------------------

HEARTBEAT = "mutation($id: ID!) { heartbeat(leaseId: $id, progress: 25, bytesDone: 50000000, speed: 12.5) { id } }"


def test_the_tables_show_size_speed_time_left_and_why_a_job_waits(server):
    sized = [{"source": "/media/a.mov", "size": 200_000_000}, {"source": "/media/b.mov", "size": 200_000_000}]
    running = server.data(CREATE, {"input": {"code": "transfer", "destination": "/out", "tasks": sized}})["createJob"]
    lease = server.data(CLAIM)["claimTasks"][0]
    server.data(HEARTBEAT, {"id": lease["id"]})
    waiting = jl_json(server, "job", "submit", "--code", "nowhere", "/media/c.mov")  # no destination

    rows = {r["CODE"]: r for r in table(jl(server, "job", "list").stdout)}
    moving = rows["transfer"]
    assert (moving["STATUS"], moving["SIZE"], moving["SPEED"]) == ("running", "400.0 MB", "12.5 MB/s")
    assert re.fullmatch(r"\d+:\d\d:\d\d", moving["LEFT"]), moving
    assert (rows["nowhere"]["SIZE"], rows["nowhere"]["SPEED"], rows["nowhere"]["LEFT"]) == ("-", "-", "-")

    head = jl(server, "job", "show", running["id"][:8]).stdout.partition("\n\n")[0]
    fields = {k: v.strip() for k, v in (line.split(":", 1) for line in head.splitlines())}
    assert fields["size"] == "400.0 MB" and fields["speed"] == "12.5 MB/s"
    assert re.fullmatch(r"\d+:\d\d:\d\d", fields["time left"])
    tasks = {t["URI"]: t for t in table(jl(server, "task", "list", "transfer").stdout)}
    assert (tasks["0"]["STATUS"], tasks["0"]["SIZE"], tasks["0"]["SPEED"]) == ("executing", "200.0 MB", "12.5 MB/s")
    assert re.fullmatch(r"\d+:\d\d:\d\d", tasks["0"]["LEFT"]) and tasks["1"]["LEFT"] == "-"

    shown = jl(server, "job", "show", "nowhere").stdout
    reason = next(line for line in shown.splitlines() if line.startswith("reason:"))
    assert "no destination" in reason
    listed = table(jl(server, "task", "list", waiting["id"]).stdout)
    assert "no destination" in listed[0]["REASON"]
    as_json = jl_json(server, "task", "list", waiting["id"])
    assert "no destination" in as_json[0]["reason"] and as_json[0]["time_left"] is None


# -- store URLs -----------------------------------------------------------------------------


def test_read_only_commands_on_a_store_that_is_not_there_create_nothing(tmp_path, store_url):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    clean = {"JOBLEDGER_DATABASE_URL": ""}
    for command in (["projections", "status"], ["events", "export"], ["projections", "skipped"]):
        done = jl(None, *command, code=2, cwd=empty, env=clean)
        assert done.stderr.startswith(f"jobledger: no store at {empty}/jobledger.db (sqlite:jobledger.db), ")
        assert "Traceback" not in done.stderr
    assert list(empty.iterdir()) == []
    if store_url.startswith("postgresql"):
        schema = f"absent_{uuid.uuid4().hex[:8]}"
        url = re.sub(r"schema=[^&]+", f"schema={schema}", store_url)
        done = jl(None, "projections", "status", "--database-url", url, code=2)
        assert f"no jobledger store in schema '{schema}'" in done.stderr
        with psycopg.connect(url.partition("?")[0]) as conn:
            assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None


def test_serve_on_a_store_it_cannot_open_says_why_in_one_line(tmp_path):
    nowhere = jl(None, "serve", "--database-url", f"sqlite:///{tmp_path}/no/folder/x.db", "--port", "1", code=2)
    assert nowhere.stderr == (
        f"jobledger: cannot create the SQLite file {tmp_path}/no/folder/x.db: the folder {tmp_path}/no/folder "
        f"does not exist; create it (mkdir -p {tmp_path}/no/folder) or name a file in a folder that exists\n"
    )
    port = free_port()
    gone = jl(None, "--database-url", f"postgresql://postgres@127.0.0.1:{port}/ledger", "serve", "--port", "1", code=2)
    assert gone.stderr.startswith(
        f"jobledger: cannot reach PostgreSQL at 127.0.0.1:{port} (database ledger, user postgres)"
    )
    assert gone.stderr.count("\n") == 1 and "Traceback" not in gone.stderr
