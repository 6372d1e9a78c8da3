"""Anyscale's job queue verbs on `client.job_queue` (`list`, `status`, `update`, `archive`,
`terminate`, `delete`, `add_tags`, `remove_tags`, `list_tags`), with their plans. A queue
is named by `job_queue_id` or by `name` (its code)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jobledger_client import _plans as plans
from jobledger_client import documents as doc
from jobledger_client._inputs import UNSET, quoted
from jobledger_client._plans import Emit, Listing, Plan, call
from jobledger_client._results import ResultIterator
from jobledger_client.errors import NotFound, Validation
from jobledger_client.models import Queue

if TYPE_CHECKING:
    from jobledger_client._verbs import Verbs


def resolve_queue(job_queue_id: str | None, name: str | None, include_archived: bool = True) -> Plan[Queue]:
    """A queue by id, or by name (an archived one only when include_archived)."""
    if not job_queue_id and not name:
        raise Validation.of("job_queue_id", "give job_queue_id or name")
    key = str(job_queue_id or name)
    found = yield from call(
        doc.QUEUE_BY, {"id": str(job_queue_id)} if job_queue_id else {"code": name}, "queue", Queue.parse
    )
    if found is None:
        raise NotFound(f"Queue {key} does not exist", details={"kind": "Queue", "key": key})
    if not job_queue_id and not include_archived and found.archived:
        raise NotFound(
            f"Queue {key} is archived; pass include_archived=True to use it", details={"kind": "Queue", "key": key}
        )
    return found


def ref_id(job_queue_id: str | None, name: str | None, include_archived: bool = True) -> Plan[str]:
    if job_queue_id:
        return str(job_queue_id)
    return (yield from resolve_queue(None, name, include_archived)).id


def tags_matcher(tags_filter: Any) -> Callable[[Queue], bool] | None:
    """Anyscale's tags_filter: {key: [values]} or ["key:value", ...]; a queue matches when each
    key has one of its values (any value when the list is empty)."""
    if not tags_filter:
        return None
    wanted: dict[str, set[str]] = {}
    if isinstance(tags_filter, Mapping):
        for key, values in tags_filter.items():
            values = [values] if isinstance(values, str) else list(values or [])
            wanted.setdefault(str(key), set()).update(str(v) for v in values)
    else:
        for entry in tags_filter:
            key, sep, value = str(entry).partition(":")
            wanted.setdefault(key, set())
            if sep:
                wanted[key].add(value)

    def matches(queue: Queue) -> bool:
        for key, values in wanted.items():
            if key not in queue.tags:
                return False
            if values and str(queue.tags[key]) not in values:
                return False
        return True

    return matches


def job_queue_list(
    listing: Listing,
    job_queue_id: str | None,
    name: str | None,
    creator_id: str | None,
    tags_filter: Any,
    page_size: int | None,
    max_items: int | None,
    sorting_directives: Any,
    include_archived: bool,
) -> Plan[None]:
    if job_queue_id:
        found = yield from call(doc.QUEUE_BY, {"id": str(job_queue_id)}, "queue", Queue.parse)
        listing.pages, listing.total_count = 1, int(found is not None)
        if found is not None and (max_items is None or max_items > 0):
            yield Emit(found)
        return
    conditions = []
    if name is not None:
        conditions.append(f"code={quoted(name)}")
    if creator_id is not None:
        conditions.append(f"user={quoted(creator_id)}")
    yield from plans.queues(
        listing,
        " AND ".join(conditions) or None,
        include_archived,
        sorting_directives,
        page_size or 50,
        max_items,
        keep=tags_matcher(tags_filter),
    )


class JobQueues:
    """Anyscale's job queue verbs: ``client.job_queue.list(...)``, ``status``, ``update``,
    ``archive``, ``terminate``, ``delete``, ``add_tags``, ``remove_tags``, ``list_tags``.
    A queue is named by ``job_queue_id`` or by ``name`` (its code)."""

    def __init__(self, client: Verbs) -> None:
        self._client = client

    def list(
        self,
        job_queue_id: str | None = None,
        name: str | None = None,
        creator_id: str | None = None,
        tags_filter: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
        page_size: int | None = None,
        max_items: int | None = None,
        sorting_directives: Any = None,
        include_archived: bool = False,
    ) -> ResultIterator[Queue]:
        """Job queues, fetched lazily `page_size` at a time, at most `max_items`: one by id, or
        filtered by name, creator and tags ({key: [values]} or ["key:value"]), sorted by
        sorting_directives (["-created", "name"] or [{"sort_field": "CREATED_AT",
        "sort_order": "DESC"}]). Archived queues only with include_archived=True."""
        listing = Listing()
        plan = job_queue_list(
            listing,
            job_queue_id,
            name,
            creator_id,
            tags_filter,
            page_size,
            max_items,
            sorting_directives,
            include_archived,
        )
        return self._client._iter(plan, listing)  # type: ignore[no-any-return]

    def status(self, job_queue_id: str | None = None, name: str | None = None, include_archived: bool = False) -> Queue:
        """A job queue's state and counts (total, successful, failed, active jobs). Raises NotFound."""
        return self._client._run(resolve_queue(job_queue_id, name, include_archived))  # type: ignore[no-any-return]

    def update(
        self,
        job_queue_id: str | None = None,
        job_queue_name: str | None = None,
        max_concurrency: int | None = UNSET,
        idle_timeout_s: int | None = UNSET,
        *,
        name: str | None = None,
        **changes: Any,
    ) -> Queue:
        """Change max_concurrency and idle_timeout_s (None clears them), or any other field of
        update_queue (priority, status, description...)."""

        def plan() -> Plan[Queue]:
            qid = yield from ref_id(job_queue_id, job_queue_name or name)
            fields = {"max_concurrency": max_concurrency, "idle_timeout_s": idle_timeout_s, **changes}
            return (yield from plans.update_queue(qid, fields))

        return self._client._run(plan())  # type: ignore[no-any-return]

    def _mutation(self, document: str, key: str, job_queue_id: Any, name: Any, include_archived: bool, **v: Any) -> Any:
        def plan() -> Plan[Queue]:
            qid = yield from ref_id(job_queue_id, name, include_archived)
            return (yield from call(document, {"id": qid, **v}, key, Queue.parse))

        return self._client._run(plan())

    def archive(self, job_queue_id: str | None = None, name: str | None = None) -> str:
        """Seal a job queue: no new jobs. Returns its id."""
        result = self._mutation(doc.ARCHIVE_QUEUE, "archiveQueue", job_queue_id, name, True)
        return _then(result, lambda q: q.id)

    def terminate(
        self, job_queue_id: str | None = None, name: str | None = None, include_archived: bool = False
    ) -> str:
        """Abort every unfinished job of a job queue. Returns its id."""
        result = self._mutation(doc.TERMINATE_QUEUE, "terminateQueue", job_queue_id, name, include_archived)
        return _then(result, lambda q: q.id)

    def delete(self, job_queue_id: str | None = None, name: str | None = None, include_archived: bool = False) -> str:
        """Delete a job queue (its unfinished jobs move to the default queue). Returns its id."""

        def plan() -> Plan[str]:
            qid = yield from ref_id(job_queue_id, name, include_archived)
            return (yield from plans.delete_queue(qid))

        return self._client._run(plan())  # type: ignore[no-any-return]

    def add_tags(
        self, job_queue_id: str | None = None, name: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Upsert tags {key: value}; returns the queue's tags after."""
        result = self._mutation(doc.ADD_QUEUE_TAGS, "addQueueTags", job_queue_id, name, True, tags=dict(tags or {}))
        return _then(result, lambda q: dict(q.tags))

    def remove_tags(
        self, job_queue_id: str | None = None, name: str | None = None, keys: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Remove tags by key; returns the queue's tags after."""
        result = self._mutation(doc.REMOVE_QUEUE_TAGS, "removeQueueTags", job_queue_id, name, True, keys=list(keys))
        return _then(result, lambda q: dict(q.tags))

    def list_tags(self, job_queue_id: str | None = None, name: str | None = None) -> dict[str, Any]:
        """A job queue's tags as {key: value}."""
        return _then(self.status(job_queue_id, name, include_archived=True), lambda q: dict(q.tags))


def _then(result: Any, fn: Any) -> Any:
    """fn(result), also when result is still to be awaited (AsyncClient)."""
    if asyncio.iscoroutine(result):

        async def after() -> Any:
            return fn(await result)

        return after()
    return fn(result)
