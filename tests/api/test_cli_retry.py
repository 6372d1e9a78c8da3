"""The retry policy from the command line, against a real `jobledger serve` on both stores:
set on a queue (`queue create/update --retry-...`) and on a job (`job submit --retry-...`),
shown part by part with whose each part is (`queue show`, `job show`), and the time of a
failed task's next attempt in `task list` until it is put on hold and queued again."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from jobledger_client import Client
from tests.api.conftest import Server
from tests.api.test_cli_client import table
from tests.api.test_cli_daily import jl, jl_json

CLAIM = 'mutation { claimTasks(worker: "w1", limit: 1, leaseSeconds: 60) { id } }'
FAIL = 'mutation($l: ID!) { failTask(leaseId: $l, error: "disk full") { status attempts retryAt reason } }'
POLICY = "retryDelay retryBackoff retryMaxDelay retryJitter"


def shown_fields(output: str) -> dict[str, str]:
    """The `key: value` lines a `show` prints before its first blank line."""
    head = output.partition("\n\n")[0]
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in head.splitlines())}


def test_a_retry_policy_given_on_the_command_line_shows_part_by_part_with_whose_it_is(server: Server):
    jl(server, "queue", "create", "patient", "--retry-delay", "30", "--retry-jitter", "0")
    queue = shown_fields(jl(server, "queue", "show", "patient").stdout)
    assert queue["retries"] == "delay 30 s, backoff x2 (default), max delay 600 s (default), jitter 0 %"

    submitted = jl_json(
        server,
        *("job", "submit", "--queue", "patient", "--dest", "/out", "/media/a.mov"),
        *("--retry-delay", "0.5", "--retry-backoff", "3", "--retry-max-delay", "45"),
    )
    job = server.data(f"query($id: ID!) {{ job(id: $id) {{ {POLICY} }} }}", {"id": submitted["id"]})["job"]
    assert job == {"retryDelay": 0.5, "retryBackoff": 3.0, "retryMaxDelay": 45.0, "retryJitter": None}
    shown = shown_fields(jl(server, "job", "show", submitted["id"][:8]).stdout)
    assert shown["retries"] == "delay 0.5 s, backoff x3, max delay 45 s, jitter 0 % (queue's)"
    as_json = jl_json(server, "job", "show", submitted["id"])
    assert (as_json["retry_delay"], as_json["retry_jitter"]) == (0.5, None)

    # Cleared on the queue, a part is the server's default again; the job keeps its own.
    jl(server, "queue", "update", "patient", "--retry-jitter", "none", "--retry-backoff", "1.5")
    queue = shown_fields(jl(server, "queue", "show", "patient").stdout)
    assert queue["retries"] == "delay 30 s, backoff x1.5, max delay 600 s (default), jitter 20 % (default)"
    shown = shown_fields(jl(server, "job", "show", submitted["id"]).stdout)
    assert shown["retries"] == "delay 0.5 s, backoff x3, max delay 45 s, jitter 20 % (default)"

    # The client's update_job changes parts of a job's own policy; None gives one back to its queue.
    with Client(server.graphql, "ann") as client:
        changed = client.update_job(submitted["id"], retry_delay=None, retry_jitter=0.1)
    assert (changed.retry_delay, changed.retry_backoff, changed.retry_jitter) == (None, 3.0, 0.1)
    shown = shown_fields(jl(server, "job", "show", submitted["id"]).stdout)
    assert shown["retries"] == "delay 30 s (queue's), backoff x3, max delay 45 s, jitter 10 %"

    # Out of range: the server's refusal, one line, exit 2, and no job made.
    refused = jl(server, "job", "submit", "--code", "wild", "/media/b.mov", "--retry-jitter", "1.5", code=2)
    assert refused.stderr.startswith("jobledger: ") and "retryJitter" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert "wild" not in jl(server, "job", "list").stdout
    assert jl(server, "queue", "create", "hasty", "--retry-delay", "soon", code=2).stderr.endswith(
        "a number of seconds, not 'soon'\n"
    )


def test_a_failed_task_shows_its_next_attempt_in_task_list_until_it_is_queued_again_by_hand(server: Server):
    job = jl_json(
        server,
        *("job", "submit", "--code", "flaky", "--dest", "/out", "/media/a.mov", "/media/b.mov"),
        *("--retry-delay", "120", "--retry-jitter", "0"),
    )
    (lease,) = server.data(CLAIM)["claimTasks"]
    failed = server.data(FAIL, {"l": lease["id"]})["failTask"]
    retry_at = datetime.fromisoformat(failed["retryAt"].replace("Z", "+00:00"))
    assert failed["status"] == "QUEUED" and 115 <= (retry_at - datetime.now(UTC)).total_seconds() <= 120

    rows = {r["URI"]: r for r in table(jl(server, "task", "list", "flaky").stdout)}
    failed_uri = next(uri for uri, row in rows.items() if row["TRIES"] == "1")
    other = rows[str(1 - int(failed_uri))]
    clock = retry_at.strftime("%H:%M:%S UTC")
    assert re.fullmatch(re.escape(clock) + r" \(in 2m\)", rows[failed_uri]["NEXT TRY"]), rows[failed_uri]
    assert f"retry at {clock}" in rows[failed_uri]["REASON"]
    assert other["NEXT TRY"] == ""  # never failed: nothing to wait for
    listed = {t["uri"]: t for t in jl_json(server, "task", "list", job["id"])}
    assert listed[failed_uri]["retry_at"] == failed["retryAt"].replace("+00:00", "Z")
    assert "NEXT TRY" in jl(server, "job", "show", "flaky").stdout  # its task table too

    # Retry now, as the README says: on hold, then queued again; no wait is left.
    with Client(server.graphql, "ann") as client:
        task_id = next(t.id for t in client.tasks(job["id"]) if t.uri == failed_uri)
        client.update_tasks(job["id"], [{"id": task_id, "status": "onhold"}])
        client.update_tasks(job["id"], [{"id": task_id, "status": "queued"}])
    rows = table(jl(server, "task", "list", "flaky").stdout)
    assert "NEXT TRY" not in rows[0] and all(r["STATUS"] == "queued" for r in rows), rows
    assert server.data(CLAIM)["claimTasks"], "the task waits no more"
