"""What a task tells the worker as it runs (worker.execute), on real files and commands: a
transfer's size before its first byte moves, a transfer held to --max-rate and still
stopped promptly, a command's printed progress; and how the worker names a failed claim
(worker.watch)."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from jobledger_client import NotFound, Unavailable
from worker import execute
from worker.halt import Halt, Interrupted
from worker.policy import Policy
from worker.watch import Trouble, claim_failure, clock

MiB = execute.CHUNK


def test_a_transfer_says_its_size_before_it_moves_a_byte(tmp_path):
    (tmp_path / "in").mkdir()
    for name, size in (("a.bin", 3 * MiB + 1), ("b.bin", 10)):
        (tmp_path / "in" / name).write_bytes(os.urandom(size))
    heard: list[tuple[str, int]] = []
    work = execute.Work("transfer", str(tmp_path / "in"), str(tmp_path / "out"))
    result = execute.run(
        work,
        Policy.of(roots=[tmp_path]),
        lambda done, total: heard.append(("report", done)),
        measured=lambda size: heard.append(("size", size)),
    )
    assert heard[0] == ("size", 3 * MiB + 11)  # the folder's files together, first
    assert [kind for kind, _ in heard[1:]] == ["report"] * (len(heard) - 1)
    assert result["bytes"] == 3 * MiB + 11


def test_a_transfer_keeps_to_its_rate_and_a_stop_still_cuts_it_short(tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * MiB))
    work = execute.Work("transfer", str(source), str(tmp_path / "copy.bin"))
    began = time.monotonic()
    execute.run(work, Policy.of(roots=[tmp_path]), lambda done, total: None, max_rate=3.0)
    # The first two MiB are due 0.7 s after the start; the last chunk is not held back.
    assert 0.65 <= time.monotonic() - began < 5
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()

    halt = Halt()
    slow = execute.Work("transfer", str(source), str(tmp_path / "slow.bin"))
    threading.Timer(0.3, halt.terminate).start()
    began = time.monotonic()
    with pytest.raises(Interrupted):
        execute.run(slow, Policy.of(roots=[tmp_path]), lambda done, total: None, halt, max_rate=0.1)
    assert time.monotonic() - began < 1.5  # a MiB at 0.1 MB/s would hold it 10 s
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "copy.bin"]  # no partial file


def test_a_command_says_the_progress_it_prints(tmp_path):
    heard: list[int] = []
    script = 'echo "progress: 5%"; echo "compiling"; echo "Progress: 62.5 %"; echo "progress: 300%"'
    work = execute.Work("command", {"kind": "command", "command": script}, None, "ops", True)
    result = execute.run(work, Policy(allow_commands=True), lambda done, total: None, said=heard.append)
    assert heard == [5, 62]
    assert result["output"][1] == "compiling"


def test_a_failed_claim_is_named_by_what_it_was():
    url = "http://farm:8000/api/graphql"
    http_404 = Unavailable("x", details={"url": url, "status": 404, "retry": False})
    assert claim_failure(url, http_404) == f"HTTP 404 Not Found from {url}: is --url the jobledger server's address?"
    edge = NotFound("there is nothing at /api/graphql: the API is at /graphql, the dashboard at /")
    assert claim_failure(url, edge).startswith(f"HTTP 404 Not Found from {url} (there is nothing at /api/graphql")
    lease = NotFound("Lease l-1 does not exist", details={"kind": "Lease", "key": "l-1"})
    assert claim_failure(url, lease) == "claim refused: NOT_FOUND: Lease l-1 does not exist"


def test_a_lasting_trouble_is_said_once_a_while_and_its_end_once(caplog):
    caplog.set_level(logging.INFO, logger="jobledger.worker")
    trouble = Trouble(every=0.2)
    for _ in range(5):
        trouble.met("HTTP 404 Not Found from u: is --url the jobledger server's address?")
    time.sleep(0.25)
    trouble.met("HTTP 404 Not Found from u: is --url the jobledger server's address?")
    trouble.met("claim refused: FORBIDDEN: no")
    trouble.over()
    trouble.over()
    assert [r.getMessage() for r in caplog.records] == [
        "HTTP 404 Not Found from u: is --url the jobledger server's address?",
        "HTTP 404 Not Found from u: is --url the jobledger server's address? (and 4 more times since it was last said)",
        "claim refused: FORBIDDEN: no",
        "claims are answered again",
    ]
    assert (clock(65), clock(3_725)) == ("1:05", "1:02:05")
