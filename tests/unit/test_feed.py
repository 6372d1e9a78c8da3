"""A subscriber that stops reading the change feed costs bounded memory, and loses nothing:
the changes it has not taken merge into one that spans them all."""

from __future__ import annotations

import asyncio
import itertools

from projections.feed import MAX_MERGED_IDS, MAX_PENDING, Change, ChangeFeed


async def test_a_subscriber_that_stops_reading_holds_a_bounded_merged_backlog():
    feed = ChangeFeed()
    changes = feed.subscribe(heartbeat=60)
    first = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0)  # subscribed
    for position in range(1, 5001):
        feed.publish(Change(first=position, position=position, jobs=frozenset({f"job-{position % 10}"})))
    await asyncio.sleep(0.05)  # the deliveries run on this loop
    taken = [await first]
    queue = feed._subscribers[0][1]
    assert queue.qsize() <= MAX_PENDING
    while not queue.empty():
        taken.append(await anext(changes))
    assert taken[0].first == 1
    assert taken[-1].position == 5000
    spans = [(c.first, c.position) for c in taken]
    assert all(later[0] == earlier[1] + 1 for earlier, later in itertools.pairwise(spans)), spans
    assert set().union(*(c.jobs for c in taken)) == {f"job-{n}" for n in range(10)}
    await changes.aclose()


def test_merging_past_the_id_cap_says_more_ids_changed():
    a = Change(first=1, position=1, tasks=frozenset(f"a{n}" for n in range(MAX_MERGED_IDS)))
    b = Change(first=2, position=2, tasks=frozenset({"b"}))
    merged = a.merged(b)
    assert (merged.first, merged.position, merged.more) == (1, 2, True)
    assert len(merged.tasks) == MAX_MERGED_IDS
    assert not a.merged(Change(first=2, position=2)).more
