"""The `jobledger` command through its real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from domain.history import History


def jobledger(store_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBLEDGER_DATABASE_URL": store_url}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_events_export_writes_the_history_as_json_lines(ledger, store_url):
    job_id = ledger.jobs.create(tasks=["/a", "/b"], destination="/o", actor="lars").id
    done = jobledger(store_url, "events", "export")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["position"] for line in lines] == list(range(1, ledger.position() + 1))
    assert set(lines[0]) == {
        "position",
        "aggregate_id",
        "aggregate_type",
        "version",
        "type",
        "timestamp",
        "actor",
        "data",
    }
    after = jobledger(store_url, "events", "export", "--after", "5")
    assert json.loads(after.stdout.splitlines()[0])["position"] == 6
    mine = jobledger(store_url, "events", "export", "--aggregate", job_id)
    assert [json.loads(x)["type"] for x in mine.stdout.splitlines()] == [
        r.type for r in History(ledger).of_aggregate(job_id)
    ]


def test_events_export_follow_keeps_tailing(ledger, store_url):
    env = {**os.environ, "JOBLEDGER_DATABASE_URL": store_url}
    tail = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "events", "export", "--follow", "--after", str(ledger.position())],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        ledger.queues.create("late", actor="lars")
        line = json.loads(tail.stdout.readline())
        assert (line["type"], line["actor"]) == ("Queue.Created", "lars")
    finally:
        tail.kill()
        tail.wait()


def test_projections_rebuild_shows_progress_and_a_count_then_status_shows_no_lag(ledger, store_url):
    for i in range(20):
        ledger.jobs.create(tasks=[f"/f{i}"], destination="/o")
    before = jobledger(store_url, "projections", "status")
    assert before.returncode == 0, before.stderr
    assert f"{ledger.position():,}" in before.stdout
    rebuilt = jobledger(store_url, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"from {ledger.position():,} events" in rebuilt.stdout
    assert "100.0%" in rebuilt.stderr
    status = jobledger(store_url, "projections", "status")
    assert status.stdout.split()[-1] == "0"  # the lag


def test_a_bad_database_url_is_a_readable_error(tmp_path):
    done = jobledger("mysql://nowhere/db", "projections", "status")
    assert done.returncode == 2
    assert "unsupported scheme 'mysql'" in done.stderr and "Traceback" not in done.stderr


def test_the_entry_point_offers_every_programs_commands(store_url):
    """`jobledger` only dispatches: the server, the worker and the client add their own."""
    done = jobledger(store_url, "--help")
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("COMMAND", 2)[-1]
    for command in ("serve", "projections", "events", "worker", "queue", "job", "task"):
        assert f"\n    {command} " in listed, command


def test_the_worker_refuses_a_concurrency_below_one(store_url):
    done = jobledger(store_url, "worker", "--concurrency", "0")
    assert done.returncode == 2
    assert "--concurrency must be 1 or more" in done.stderr
