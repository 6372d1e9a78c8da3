"""The query side: filters, phases, sorting, keyset pages, totals and clear errors."""

from __future__ import annotations

import pytest

from domain.errors import ValidationError
from projections.query import ReadModels, Sort
from projections.runner import ProjectionRunner
from projections.stores import open_read_store


@pytest.fixture
async def reads(ledger):
    store = open_read_store(ledger.store)
    runner = ProjectionRunner(ledger, store)
    runner.setup()
    await store.open_async()

    def sync() -> None:
        runner.catch_up()

    yield ReadModels(store), sync
    await store.close_async()
    store.close()


def seed(ledger) -> dict[str, str]:
    ledger.queues.create("high_prio", priority=999, actor="lars@edit.com")
    ids = {}
    for i, (code, queue, prio) in enumerate(
        [
            ("x and y.png", "high_prio", None),
            ("b.mov", None, 100),
            ("c.mov", None, 700),
            ("d.mov", "high_prio", 200),
        ]
    ):
        ids[code] = ledger.jobs.create(
            code=code,
            queue=queue,
            priority=prio,
            tasks=[{"source": f"/{i}", "size": 10}],
            destination="/o",
            actor="lars@edit.com" if i % 2 == 0 else "bob",
        ).id
    ledger.jobs.update(ids["b.mov"], status="ABORTED", actor="ops")
    return ids


async def codes(page) -> list[str]:
    return [n["code"] for n in page.nodes]


async def test_jobs_filter_with_the_contracts_where_examples(ledger, reads):
    models, sync = reads
    seed(ledger)
    sync()
    assert await codes(await models.jobs(where="status=aborted")) == ["b.mov"]
    assert await codes(await models.jobs(where='code="x and y.png"')) == ["x and y.png"]
    page = await models.jobs(where="status<>aborted AND priority>=500", order_by=[Sort("code")])
    assert await codes(page) == ["c.mov", "x and y.png"]
    page = await models.jobs(where="(status=failed OR status=aborted) AND user=bob")
    assert await codes(page) == ["b.mov"]
    assert await codes(await models.jobs(where="queue.code=high_prio", order_by=[Sort("code")])) == [
        "d.mov",
        "x and y.png",
    ]


async def test_a_job_without_a_priority_of_its_own_follows_its_queue(ledger, reads):
    models, sync = reads
    ids = seed(ledger)
    ledger.queues.update(ledger.registry().codes["high_prio"], priority=10)
    sync()
    job = await models.job(ids["x and y.png"])
    assert job["priority"] == 10
    assert (await models.job(ids["d.mov"]))["priority"] == 200


async def test_filter_by_queue_code_or_id_and_by_status_list(ledger, reads):
    models, sync = reads
    seed(ledger)
    sync()
    queue_id = ledger.registry().codes["high_prio"]
    assert (await models.jobs(queue="high_prio")).total_count == 2
    assert (await models.jobs(queue=queue_id)).total_count == 2
    assert await codes(await models.jobs(statuses=["ABORTED"])) == ["b.mov"]


async def test_pages_walk_every_row_once_in_sort_order_with_a_total(ledger, reads):
    models, sync = reads
    for i in range(23):
        ledger.jobs.create(code=f"job-{i:02d}", priority=(i * 37) % 1000, tasks=[f"/f{i}"], destination="/o")
    sync()
    seen, after = [], None
    while True:
        page = await models.jobs(order_by=[Sort("priority", descending=True)], first=5, after=after)
        assert page.total_count == 23
        seen += [(n["priority"], n["code"]) for n in page.nodes]
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert len(seen) == 23 and len(set(seen)) == 23
    assert [p for p, _ in seen] == sorted((p for p, _ in seen), reverse=True)


async def test_sorting_directives_accept_anyscale_names(ledger, reads):
    models, sync = reads
    seed(ledger)
    sync()
    page = await models.jobs(order_by=[Sort("CREATED_AT", descending=True)], phase=None)
    assert await codes(page) == ["d.mov", "c.mov", "b.mov", "x and y.png"]
    with pytest.raises(ValidationError, match="cannot sort by 'colour'"):
        await models.jobs(order_by=[Sort("colour")])


async def test_a_nullable_sort_key_pages_without_losing_rows(ledger, reads):
    models, sync = reads
    seed(ledger)
    sync()
    seen, after = [], None
    while True:
        page = await models.jobs(order_by=[Sort("finished")], first=1, after=after)
        seen += await codes(page)
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert sorted(seen) == ["b.mov", "c.mov", "d.mov", "x and y.png"]


async def test_queues_hide_sealed_ones_unless_asked_and_count_their_jobs(ledger, reads):
    models, sync = reads
    seed(ledger)
    sealed = ledger.queues.create("old")
    ledger.queues.seal(sealed.id)
    sync()
    assert "old" not in await codes(await models.queues())
    assert "old" in await codes(await models.queues(include_archived=True))
    default = await models.queue(code="default")
    assert (default["total_jobs"], default["active_jobs"], default["failed_jobs"]) == (2, 1, 0)
    assert (await models.queues(where="default=true")).nodes[0]["code"] == "default"


async def test_tasks_of_a_job_in_order_and_filtered(ledger, reads):
    models, sync = reads
    job_id = ledger.jobs.create(tasks=[f"/f{i}" for i in range(12)], destination="/o").id
    first_task = next(iter(ledger.repository.get(__import__("uuid").UUID(job_id)).tasks))
    ledger.jobs.update_tasks(job_id, [{"id": first_task, "status": "EXCLUDED"}])
    sync()
    page = await models.tasks(job_id, first=5)
    assert [n["uri"] for n in page.nodes] == ["0", "1", "2", "3", "4"] and page.total_count == 12
    page = await models.tasks(job_id, first=5, after=page.end_cursor)
    assert [n["uri"] for n in page.nodes] == ["5", "6", "7", "8", "9"]
    assert (await models.tasks(job_id, where="status<>excluded")).total_count == 11
    assert (await models.tasks(job_id, where=f"job.id={job_id} AND source=/f3")).nodes[0]["uri"] == "3"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"first": 501}, "first"),
        ({"first": -1}, "first"),
        ({"after": "not-a-cursor"}, "after"),
        ({"where": "status=exploded"}, "where"),
        ({"where": "status="}, "where"),
    ],
)
async def test_bad_list_arguments_are_validation_errors(ledger, reads, kwargs, field):
    models, sync = reads
    sync()
    with pytest.raises(ValidationError) as caught:
        await models.jobs(**kwargs)
    assert caught.value.field == field


async def test_values_are_data_never_sql(ledger, reads):
    models, sync = reads
    seed(ledger)
    sync()
    for value in ['"x\'; DROP TABLE jl_jobs; --"', '"\' OR 1=1 --"', '"b.mov\\" OR code=\\"c.mov"']:
        assert (await models.jobs(where=f"code={value}")).total_count == 0
    assert (await models.jobs(phase=None)).total_count == 4


def test_a_batch_touching_hundreds_of_jobs_is_applied_and_announced_within_notify_limits(ledger):
    """PostgreSQL refuses NOTIFY payloads of 8,000 bytes: a big batch announces what it can
    and says `more`, instead of failing (and stalling the read side)."""
    from projections.batch import MAX_PAYLOAD_BYTES

    store = open_read_store(ledger.store)
    runner = ProjectionRunner(ledger, store, batch_size=5000)
    runner.setup()
    for i in range(120):
        ledger.jobs.create(code=f"bulk-{i}", tasks=[f"/a{i}", f"/b{i}"], destination="/o")
    heard = []
    runner.feed.publish = heard.append  # type: ignore[method-assign]
    assert runner.run_batch() == ledger.position()  # the whole log, in one batch
    (change,) = heard
    assert change.more and len(change.jobs) < 120
    assert runner.position() == ledger.position()
    store.close()
    assert MAX_PAYLOAD_BYTES < 8000
