"""Retries wait: exponential backoff with jitter, set on a queue, overridden by a job,
drawn once when the failure is recorded (domain rules on the in-memory store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from domain.catalogue import JOB, QUEUE
from domain.errors import ConflictError, ValidationError
from domain.ledger import Ledger
from domain.retry import DEFAULT_RETRY, RetryPolicy, policy_of
from domain.task import Task, TaskStatus

START = datetime(2026, 11, 30, 20, 15, 0, tzinfo=UTC)


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("memory://")


def task(ledger: Ledger, task_id: str) -> Task:
    found = ledger.load(UUID(task_id))
    assert isinstance(found, Task)
    return found


def one_task_job(ledger: Ledger, **settings: object) -> str:
    job_id = ledger.jobs.create(tasks=["/in/a.mov"], destination="/out", **settings).id
    (task_id,) = ledger.load(UUID(job_id)).tasks
    return str(task_id)


def claim(ledger: Ledger, task_id: str, now: datetime, lease_seconds: int = 60) -> str | None:
    leases = ledger.dispatch.claim("w1", [task_id], lease_seconds=lease_seconds, now=now).ids
    return leases[0] if leases else None


def fail(ledger: Ledger, task_id: str, now: datetime, error: str = "disk full") -> datetime | None:
    """Claim the task at `now`, fail the attempt then; when the next one may start."""
    lease = claim(ledger, task_id, now)
    assert lease is not None, "the task should be claimable"
    ledger.dispatch.fail(lease, error, now=now)
    return task(ledger, task_id).retry_at


def seconds(later: datetime | None, now: datetime) -> float:
    assert later is not None
    return (later - now).total_seconds()


# -- the policy itself -------------------------------------------------------------------


def test_waits_grow_by_the_backoff_up_to_the_longest_wait():
    policy = RetryPolicy(delay=10, backoff=2, max_delay=60, jitter=0)
    assert [policy.wait(attempt, 0.5) for attempt in range(1, 6)] == [10, 20, 40, 60, 60]


def test_jitter_takes_at_most_its_share_off_each_wait():
    policy = RetryPolicy(delay=10, backoff=3, max_delay=600, jitter=0.2)
    assert policy.wait(2, 0.0) == 30  # no draw: the whole wait
    assert policy.wait(2, 0.999999) == pytest.approx(24, abs=1e-3)
    full = RetryPolicy(delay=10, backoff=1, max_delay=600, jitter=1)
    assert full.wait(1, 0.999999) == pytest.approx(0, abs=1e-3)  # full jitter: from nothing ...
    assert full.wait(1, 0.0) == 10  # ... to the whole wait


def test_the_thousandth_attempt_waits_the_longest_wait_without_overflowing():
    policy = RetryPolicy(delay=1, backoff=10, max_delay=3600, jitter=0)
    assert policy.wait(1000, 0.3) == 3600
    tiny = RetryPolicy(delay=5e-324, backoff=10, max_delay=3600, jitter=0)  # the smallest float there is
    assert tiny.wait(1000, 0.3) == 3600


def test_no_delay_means_at_once():
    assert RetryPolicy(delay=0, backoff=2, max_delay=600, jitter=0.2).next_attempt(START, 3) is None


def test_a_job_overrides_its_queues_policy_part_by_part_and_the_rest_is_the_default():
    class Owner:
        def __init__(self, **parts: float | None) -> None:
            for name in ("retry_delay", "retry_backoff", "retry_max_delay", "retry_jitter"):
                setattr(self, name, parts.get(name))

    queue = Owner(retry_delay=30, retry_backoff=3)
    job = Owner(retry_delay=5)
    assert policy_of(job, queue) == RetryPolicy(delay=5, backoff=3, max_delay=DEFAULT_RETRY.max_delay, jitter=0.2)
    assert policy_of(Owner(), Owner()) == DEFAULT_RETRY == RetryPolicy(delay=10, backoff=2, max_delay=600, jitter=0.2)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("retry_delay", -1, "retryDelay"),
        ("retry_backoff", 0.5, "retryBackoff"),
        ("retry_backoff", 11, "retryBackoff"),
        ("retry_max_delay", float("inf"), "retryMaxDelay"),
        ("retry_jitter", 1.5, "retryJitter"),
        ("retry_jitter", "a lot", "retryJitter"),
    ],
)
def test_a_policy_out_of_bounds_is_refused_naming_the_field(ledger, name, value, says):
    with pytest.raises(ValidationError) as refused:
        ledger.queues.create("bad", **{name: value})
    assert refused.value.field == says
    with pytest.raises(ValidationError) as refused:
        ledger.jobs.create(tasks=["/a"], destination="/o", **{name: value})
    assert refused.value.field == says
    assert QUEUE[name].nullable and JOB[name].nullable


# -- the story of a flaky task -----------------------------------------------------------


def test_a_failed_task_waits_its_retry_time_and_each_wait_is_longer(ledger):
    ledger.queues.create("flaky", retry_delay=30, retry_backoff=2, retry_max_delay=100, retry_jitter=0.2)
    task_id = one_task_job(ledger, queue="flaky", max_attempts=5)

    now = START
    for attempt, nominal in enumerate((30, 60, 100, 100), start=1):
        retry_at = fail(ledger, task_id, now, error=f"disk full ({attempt})")
        assert 0.8 * nominal <= seconds(retry_at, now) <= nominal, (attempt, retry_at)
        assert task(ledger, task_id).status == TaskStatus.QUEUED
        assert claim(ledger, task_id, retry_at - timedelta(milliseconds=1)) is None  # not a moment before
        now = retry_at
    last = fail(ledger, task_id, now)
    assert last is None and task(ledger, task_id).status == TaskStatus.FAILED  # no retry: no retry time


def test_a_task_waiting_to_retry_refuses_a_claim_by_id(ledger):
    ledger.queues.create("slow", retry_delay=60, retry_jitter=0)
    task_id = one_task_job(ledger, queue="slow")
    retry_at = fail(ledger, task_id, START)
    assert retry_at == START + timedelta(seconds=60)
    before = ledger.position()
    assert ledger.dispatch.claim("w2", [task_id], now=START + timedelta(seconds=59)).ids == []
    assert ledger.position() == before  # nothing was written
    with pytest.raises(ConflictError, match="waits to retry"):
        task(ledger, task_id).claim("w2", 60, START)  # the aggregate's own rule
    assert claim(ledger, task_id, retry_at) is not None


def test_a_jobs_own_policy_overrides_its_queues(ledger):
    ledger.queues.create("patient", retry_delay=600, retry_jitter=0)
    hurried = one_task_job(ledger, queue="patient", retry_delay=2)
    patient = one_task_job(ledger, queue="patient")
    assert seconds(fail(ledger, hurried, START), START) == 2
    assert seconds(fail(ledger, patient, START), START) == 600
    # Changed later, the job's policy counts from its next failure on.
    ledger.jobs.update(str(task(ledger, patient).job_id), retry_delay=1, retry_backoff=1)
    later = START + timedelta(seconds=600)
    assert seconds(fail(ledger, patient, later), later) == 1


def test_the_default_policy_waits_about_ten_seconds_then_twenty(ledger):
    task_id = one_task_job(ledger)
    first = fail(ledger, task_id, START)
    assert 8 <= seconds(first, START) <= 10
    assert first is not None
    second = fail(ledger, task_id, first)
    assert 16 <= seconds(second, first) <= 20


def test_an_expired_lease_backs_off_too(ledger):
    ledger.queues.create("leases", retry_delay=40, retry_jitter=0)
    task_id = one_task_job(ledger, queue="leases")
    assert claim(ledger, task_id, START, lease_seconds=10) is not None
    expired_at = START + timedelta(seconds=11)
    assert ledger.dispatch.expire_leases([task_id], now=expired_at).ids == [task_id]
    expired = task(ledger, task_id)
    assert (expired.status, expired.retry_at) == (TaskStatus.QUEUED, expired_at + timedelta(seconds=40))
    assert claim(ledger, task_id, expired_at + timedelta(seconds=39)) is None
    assert claim(ledger, task_id, expired_at + timedelta(seconds=40)) is not None


def test_a_lease_given_back_unworked_runs_again_at_once(ledger):
    ledger.queues.create("release", retry_delay=40)
    task_id = one_task_job(ledger, queue="release")
    lease = claim(ledger, task_id, START)
    assert lease is not None
    ledger.dispatch.release(lease, now=START)
    assert task(ledger, task_id).retry_at is None
    assert claim(ledger, task_id, START) is not None


def test_holding_and_queueing_a_waiting_task_by_hand_runs_it_at_once(ledger):
    ledger.queues.create("manual", retry_delay=3600)
    task_id = one_task_job(ledger, queue="manual")
    fail(ledger, task_id, START)
    job_id = task(ledger, task_id).job_id
    ledger.jobs.update_tasks(job_id, [{"id": task_id, "status": "ONHOLD"}])
    ledger.jobs.update_tasks(job_id, [{"id": task_id, "status": "QUEUED"}])
    assert task(ledger, task_id).retry_at is None
    assert claim(ledger, task_id, START) is not None


def test_the_retry_time_is_in_the_event_and_replay_gives_the_same(ledger):
    ledger.queues.create("replayed", retry_delay=30, retry_jitter=1)
    task_id = one_task_job(ledger, queue="replayed")
    retry_at = fail(ledger, task_id, START)
    (failed,) = [e for e in ledger.repository.event_store.get(UUID(task_id)) if type(e).__name__ == "AttemptFailed"]
    assert failed.retry_at == retry_at
    replayed = ledger.repository.event_store.get(UUID(task_id))
    rebuilt = None
    for event in replayed:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt is not None and rebuilt.retry_at == retry_at


def test_a_failure_recorded_before_retries_waited_retries_at_once(ledger):
    """Events recorded by an older version have no `retry_at`: they load, and mean at once."""
    task_id = one_task_job(ledger)
    lease = claim(ledger, task_id, START)
    assert lease is not None
    ledger.dispatch.fail(lease, "disk full", now=START)
    events = list(ledger.repository.event_store.get(UUID(task_id)))
    stored = ledger.mapper.to_stored_event(events[-1])
    state = ledger.mapper.transcoder.decode(stored.state)
    assert state.pop("retry_at") is not None
    old = type(stored)(
        stored.originator_id, stored.originator_version, stored.topic, ledger.mapper.transcoder.encode(state)
    )
    rebuilt = None
    for event in [*events[:-1], ledger.mapper.to_domain_event(old)]:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt is not None
    assert (rebuilt.status, rebuilt.retry_at, rebuilt.is_due(START)) == (TaskStatus.QUEUED, None, True)
