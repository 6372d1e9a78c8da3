"""An event the read models can never apply does not wedge them, and nobody is lied to.

The events are written straight into the store (validation keeps such events out of
the commands now, but old events, other writers or a bug may still put one there).
The runner retries the event a few times, then sets it aside in the failures table and
goes on; the writer waiting for it hears UNAVAILABLE ("recorded, but set aside"), not
NOT_FOUND; later writes are projected; `/readyz` (ReadSide.health) and `jobledger
projections status` say the read models are degraded until an operator acknowledges
it; a rebuild passes it the same way. A failure that is not the event's fault (a lock
timeout) is retried for as long as it lasts, never set aside, and reported as a stall.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from api.cli import main as cli
from domain.ledger import Ledger, Written
from projections import runner as runner_module
from projections.recovery import MAX_SET_ASIDE_IN_A_ROW
from projections.service import ReadModelsUnavailable, ReadSide

WAIT_S = 30  # an upper bound for every condition wait; none of them should come close
ATTEMPTS = 3


def tune(read_side: ReadSide) -> ReadSide:
    """Few attempts and short backoff, so that an event is set aside in a fraction of a second."""
    read_side.runner.recovery.max_attempts = ATTEMPTS
    read_side.runner.recovery.backoff_initial = 0.05
    read_side.runner.recovery.backoff_max = 0.2
    return read_side


@pytest.fixture
def read_sides(ledger: Ledger) -> Iterator[Callable[..., ReadSide]]:
    opened: list[ReadSide] = []

    def open_read_side(*, running: bool = True) -> ReadSide:
        read_side = tune(ReadSide(ledger))
        opened.append(read_side)
        if running:
            read_side.start(clock=False)
        else:
            read_side.runner.setup()
        return read_side

    yield open_read_side
    for read_side in opened:
        read_side.stop()


class LogWatch(logging.Handler):
    """Collects the projection runner's log records; `wait` for one that matches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[logging.LogRecord], bool], timeout: float = WAIT_S) -> logging.LogRecord:
        with self._cond:
            found: list[logging.LogRecord] = []
            ok = self._cond.wait_for(lambda: found.extend(r for r in self.records if predicate(r)) or found, timeout)
            assert ok, f"no such log record in {timeout} s: {[r.getMessage() for r in self.records]}"
            return found[0]

    def messages(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def log_watch() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("jobledger.projections")
    logger.addHandler(watch)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield watch
    logger.removeHandler(watch)
    logger.setLevel(level)


# -- events that can never apply -----------------------------------------------------


def job_created_event(ledger: Ledger) -> tuple[str, dict[str, Any]]:
    """The topic and the decoded state of a real Job.Created event, to make others from."""
    created = [n for n in ledger.recorder.select_notifications(start=1, limit=1000) if n.topic.endswith(":Job.Created")]
    assert created, "no job was created yet"
    return created[0].topic, ledger.mapper.transcoder.decode(created[0].state)


def write_poison(ledger: Ledger, kind: str) -> tuple[int, str]:
    """Write, straight into the store, a Job.Created event that cannot apply; (position, id)."""
    topic, state = job_created_event(ledger)
    if kind == "missing field":  # a handler meets state it cannot use (KeyError)
        del state["code"]
        body = ledger.mapper.transcoder.encode(state)
    elif kind == "nul in text":  # PostgreSQL refuses NUL in a text column
        state["code"] = "a\u0000b"
        body = ledger.mapper.transcoder.encode(state)
    else:  # "not json": the event cannot even be read
        body = b"{not json"
    aggregate_id = uuid.uuid4()
    [position] = ledger.recorder.insert_events([StoredEvent(aggregate_id, 1, topic, body)])
    return position, str(aggregate_id)


def new_job(ledger: Ledger, name: str) -> Written:
    return ledger.jobs.create(destination="/out", tasks=[f"/in/{name}.mov"])


def job_rows(read_side: ReadSide, job_id: str) -> list[dict[str, Any]]:
    return read_side.store.read("SELECT id, code FROM jl_jobs WHERE id = ?", (job_id,))


EXPECTED_ERROR = {"missing field": "KeyError", "nul in text": "NUL", "not json": "JSONDecodeError"}


@pytest.fixture(params=["missing field", "nul in text", "not json"])
def poison(request: pytest.FixtureRequest, store_url: str) -> str:
    if request.param == "nul in text" and store_url.startswith("sqlite"):
        pytest.skip("SQLite keeps NUL in text: that event applies there")
    return str(request.param)


# -- the policy ---------------------------------------------------------------------


def test_an_event_that_never_applies_is_set_aside_and_the_service_says_so(
    ledger, store_url, read_sides, log_watch, poison, capsys
):
    read_side = read_sides()
    before = new_job(ledger, "before")
    assert read_side.feed.wait_for(before.position, WAIT_S)

    position, aggregate_id = write_poison(ledger, poison)

    # Its writer hears the truth: recorded, but the read models set it aside.
    with pytest.raises(ReadModelsUnavailable) as raised:
        asyncio.run(read_side.wait_for(position, WAIT_S))
    assert raised.value.code == "UNAVAILABLE"
    assert raised.value.details == {"recorded": True, "position": position, "setAside": [position]}
    assert "recorded" in raised.value.message and "set it aside" in raised.value.message

    # Later writes are projected, and their writers are not troubled.
    after = new_job(ledger, "after")
    assert asyncio.run(read_side.wait_for(after.position, WAIT_S)) is True
    assert [row["id"] for row in job_rows(read_side, after.id)] == [after.id]
    assert job_rows(read_side, aggregate_id) == []

    # The status and /readyz are truthful about the gap.
    status = read_side.runner.status()
    assert (status.position, status.head, status.failing, status.set_aside) == (after.position, after.position, None, 1)
    [failure] = read_side.runner.failures()
    assert (failure.position, failure.aggregate_id, failure.event_type) == (position, aggregate_id, "Job.Created")
    assert failure.status == "set_aside"
    assert failure.attempts == ATTEMPTS
    assert EXPECTED_ERROR[poison] in failure.error
    ready, body = read_side.health()
    assert not ready
    assert body["status"] == "degraded"
    assert body["set_aside"] == 1 and body["newest_set_aside"] == position
    assert "1 event set aside" in str(body["reason"]) and "127.0.0.1" not in str(body["reason"])

    # The log names the event: one warning when it first failed, one error when set aside.
    named = [m for m in log_watch.messages(logging.WARNING) + log_watch.messages(logging.ERROR) if str(position) in m]
    assert len(named) == 2, named
    assert all(aggregate_id in m and "Job.Created" in m for m in named)
    assert len([m for m in log_watch.messages(logging.ERROR) if "aside" in m]) == 1

    # The operator's view, then acknowledging the gap makes the service ready again.
    url = ["--database-url", store_url, "projections"]
    assert cli([*url, "status"]) == 1
    shown = capsys.readouterr().out
    assert "degraded: 1 event(s) set aside" in shown and str(position) in shown
    assert cli([*url, "skipped"]) == 0
    listed = capsys.readouterr().out
    assert str(position) in listed and aggregate_id in listed and EXPECTED_ERROR[poison] in listed
    assert cli([*url, "acknowledge", str(position)]) == 0
    assert "acknowledged 1" in capsys.readouterr().out
    assert read_side.health() == (
        True,
        {"status": "ready", "position": after.position, "head": after.position, "lag": 0},
    )
    assert cli([*url, "status"]) == 0
    assert "1 event(s) set aside earlier were acknowledged" in capsys.readouterr().out


def test_a_rebuild_sets_the_same_event_aside_and_replays_the_rest(
    ledger, store_url, read_sides, poison, capsys, monkeypatch
):
    new_job(ledger, "before")
    position, aggregate_id = write_poison(ledger, poison)
    after = new_job(ledger, "after")
    read_side = read_sides(running=False)

    passed = read_side.runner.rebuild()

    assert passed == after.position  # every event: applied, or (one) set aside
    assert read_side.runner.position() == after.position
    assert job_rows(read_side, after.id) != []
    assert [(f.position, f.aggregate_id) for f in read_side.runner.failures()] == [(position, aggregate_id)]

    # The command line's rebuild and retry do the same, and say so.
    monkeypatch.setenv("JOBLEDGER_PROJECTION_MAX_ATTEMPTS", "2")
    url = ["--database-url", store_url, "projections"]
    assert cli([*url, "rebuild"]) == 0
    out, err = capsys.readouterr()
    assert f"rebuilt the read models from {after.position:,} events" in out
    assert "1 event(s) could not be applied and were set aside" in err and str(position) in err
    assert cli([*url, "retry"]) == 1  # still set aside: nothing was fixed
    assert "0 applied now, 1 still set aside" in capsys.readouterr().out
    assert read_side.runner.status().set_aside == 1


def test_a_failure_that_is_not_the_events_fault_stalls_visibly_and_recovers(
    ledger, store_url, read_sides, log_watch, capsys, monkeypatch
):
    """A lock timeout on the read models: retried with backoff for as long as it lasts,
    never set aside; meanwhile the status, /readyz and waiting writers say what is wrong."""
    blocked = threading.Event()
    blocked.set()
    calls = 0
    enough = threading.Event()
    [original, *others] = runner_module.HANDLERS["Job.Created"]

    def locked_out(tx: Any, record: Any, batch: Any) -> None:
        nonlocal calls
        if blocked.is_set():
            calls += 1
            if calls >= ATTEMPTS + 3:
                enough.set()
            raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
        original(tx, record, batch)

    before = new_job(ledger, "before")  # the first job: its events apply before the trouble
    read_side = read_sides()
    assert read_side.feed.wait_for(before.position, WAIT_S)
    monkeypatch.setitem(runner_module.HANDLERS, "Job.Created", [locked_out, *others])

    stuck = new_job(ledger, "stuck")
    assert enough.wait(WAIT_S)  # more attempts than would set an event aside
    job_created = next(
        n.id
        for n in ledger.recorder.select_notifications(start=before.position, limit=100, inclusive_of_start=False)
        if n.topic.endswith(":Job.Created")
    )

    status = read_side.runner.status()
    assert status.set_aside == 0
    assert status.position == job_created - 1
    assert status.failing is not None
    assert (status.failing.position, status.failing.event_type) == (job_created, "Job.Created")
    assert status.failing.attempts > ATTEMPTS  # never set aside
    ready, body = read_side.health()
    assert not ready
    assert body["status"] == "stalled"
    assert body["failing_position"] == job_created
    assert body["position"] == job_created - 1
    assert body["event_type"] == "Job.Created"
    assert body["reason"] == "LockNotAvailable: canceling statement due to lock timeout"
    with pytest.raises(ReadModelsUnavailable) as raised:
        asyncio.run(read_side.wait_for(stuck.position, 0.5))
    assert "stalled" in raised.value.message and "do not send it again" in raised.value.message
    assert raised.value.details["failingPosition"] == job_created
    assert cli(["--database-url", store_url, "projections", "status"]) == 1
    assert f"stalled: event {job_created} (Job.Created" in capsys.readouterr().out
    # One warning for the stall, however many retries.
    assert len([m for m in log_watch.messages(logging.WARNING) if str(job_created) in m]) == 1

    blocked.clear()  # the lock is gone
    assert asyncio.run(read_side.wait_for(stuck.position, WAIT_S)) is True
    assert job_rows(read_side, stuck.id) != []
    log_watch.wait(lambda r: "recovered" in r.getMessage() and str(job_created) in r.getMessage())
    assert read_side.health()[0] is True
    assert read_side.runner.failures(("retrying", "set_aside", "acknowledged")) == []


def test_events_set_aside_in_a_row_stop_the_runner_loudly(ledger, read_sides, log_watch):
    """When event after event fails, the fault is the read models' (a bad deployment), not
    the events': past MAX_SET_ASIDE_IN_A_ROW the runner stalls instead of skipping the log."""
    new_job(ledger, "first")
    poisoned = [write_poison(ledger, "missing field")[0] for _ in range(MAX_SET_ASIDE_IN_A_ROW + 1)]
    read_side = read_sides()
    read_side.runner.recovery.max_attempts = 1
    read_side.runner.recovery.backoff_initial = read_side.runner.recovery.backoff_max = 0.01

    log_watch.wait(lambda r: "not set aside" in r.getMessage())

    status = read_side.runner.status()
    assert status.set_aside == MAX_SET_ASIDE_IN_A_ROW
    assert status.position == poisoned[-2]
    assert status.failing is not None and status.failing.position == poisoned[-1]
    ready, body = read_side.health()
    assert not ready and body["status"] == "stalled"
    assert "not set aside" in str(body["reason"])
