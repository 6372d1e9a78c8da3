"""Finished jobs leave the active list after the grace period and are archived later,
by events the clock records, so that history shows the moves and a replay repeats them."""

from __future__ import annotations

import time
from datetime import timedelta

from domain.history import History
from projections.clock import CLOCK_ACTOR
from projections.service import ReadSide
from tests.helpers import job


def phase_of(read_side: ReadSide, job_id: str) -> str:
    rows = read_side.store.read("SELECT phase FROM jl_jobs WHERE id = ?", (job_id,))
    return str(rows[0]["phase"])


def finished_job(ledger) -> str:
    job_id = ledger.jobs.create(tasks=["/a"], destination="/o").id
    ledger.jobs.update(job_id, status="ABORTED", actor="ops")
    return job_id


def test_the_clock_moves_a_finished_job_from_active_to_finished_to_archived(ledger):
    read_side = ReadSide(ledger, finished_grace_s=60, archive_after_s=120)
    read_side.runner.setup()
    job_id = finished_job(ledger)
    still_open = ledger.jobs.create(tasks=["/b"], destination="/o").id
    read_side.runner.catch_up()
    finished_at = job(ledger, job_id).finished

    assert read_side.clock.tick(now=finished_at + timedelta(seconds=59)) == (0, 0)
    assert read_side.clock.tick(now=finished_at + timedelta(seconds=61)) == (1, 0)
    read_side.runner.catch_up()
    assert phase_of(read_side, job_id) == "FINISHED"
    assert read_side.clock.tick(now=finished_at + timedelta(seconds=121)) == (0, 1)
    read_side.runner.catch_up()
    assert (phase_of(read_side, job_id), phase_of(read_side, still_open)) == ("ARCHIVED", "ACTIVE")

    moves = [r for r in History(ledger).of_aggregate(job_id) if r.type in ("Job.Retired", "Job.Archived")]
    assert [(r.type, r.actor) for r in moves] == [("Job.Retired", CLOCK_ACTOR), ("Job.Archived", CLOCK_ACTOR)]
    read_side.stop()


def test_a_reopened_job_comes_back_to_the_active_list_and_a_stale_move_is_refused(ledger):
    read_side = ReadSide(ledger, finished_grace_s=1, archive_after_s=2)
    read_side.runner.setup()
    job_id = finished_job(ledger)
    read_side.runner.catch_up()
    finished_at = job(ledger, job_id).finished
    read_side.clock.tick(now=finished_at + timedelta(seconds=1.5))
    ledger.jobs.update(job_id, status="WAITING", actor="ops")
    read_side.runner.catch_up()
    assert phase_of(read_side, job_id) == "ACTIVE"
    # The domain re-checks every move: an old cutoff does nothing to a reopened job.
    assert ledger.jobs.retire([job_id], finished_at + timedelta(seconds=5)).ids == []
    read_side.stop()


def test_with_short_periods_the_running_service_moves_jobs_on_its_own_and_a_rebuild_agrees(ledger):
    read_side = ReadSide(ledger, finished_grace_s=0.3, archive_after_s=0.8)
    read_side.start()
    read_side.clock.stop()
    read_side.clock.start(interval=0.1)
    try:
        job_id = finished_job(ledger)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = read_side.store.read("SELECT phase FROM jl_jobs WHERE id = ?", (job_id,))
            if rows and rows[0]["phase"] == "ARCHIVED":
                break
            time.sleep(0.05)
        assert phase_of(read_side, job_id) == "ARCHIVED"
    finally:
        read_side.clock.stop()
        read_side.runner.stop()
    before = read_side.store.read("SELECT id, phase, status FROM jl_jobs ORDER BY id")
    read_side.runner.rebuild()
    assert read_side.store.read("SELECT id, phase, status FROM jl_jobs ORDER BY id") == before
    read_side.stop()


def test_the_clock_vacuums_the_churning_read_model_tables_on_postgres(ledger):
    """Dead task rows do not pile up where autovacuum is off: the leading clock vacuums."""
    read_side = ReadSide(ledger)
    read_side.runner.setup()
    job_id = ledger.jobs.create(tasks=["/a", "/b"], destination="/o").id
    ledger.jobs.update(job_id, status="PAUSED")
    read_side.runner.catch_up()
    read_side.clock.vacuum()
    if read_side.store.backend == "postgres":
        rows = read_side.store.read(
            "SELECT relname, last_vacuum FROM pg_stat_user_tables"
            " WHERE schemaname = current_schema() AND relname IN ('jl_tasks', 'jl_jobs', 'jl_queues', 'jl_tracking')"
        )
        assert len(rows) == 4 and all(r["last_vacuum"] is not None for r in rows), rows
    read_side.stop()
