"""One command's working set: every aggregate it loaded or made, saved together once."""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable
from copy import deepcopy
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository

from domain.base import LedgerAggregate
from domain.errors import NotFoundError

A = TypeVar("A", bound=LedgerAggregate)


# eventsourcing's aggregate cache fast-forwards a cached aggregate under its lock but
# deep-copies it after releasing it, so two threads loading one busy aggregate can copy
# it while the other mutates it ("dictionary changed size during iteration", or worse, a
# torn copy). Loads in this process take turns; from the cache they take microseconds.
_LOADING = threading.Lock()


def load(repository: Repository[Any], aggregate_id: UUID) -> Any:
    """Get an aggregate from the repository (cache, snapshot, events), one load at a time."""
    with _LOADING:
        return repository.get(aggregate_id)


def load_many(
    repository: Repository[Any],
    aggregate_ids: list[UUID],
    select_after: Callable[[dict[UUID, int]], list[Any]],
    related: Callable[[Any], list[UUID]] | None = None,
) -> dict[UUID, Any]:
    """Many aggregates without snapshots (tasks) in one query, as `load` would give them:
    cached ones fast-forwarded by their newer events, the others rebuilt from all of
    theirs; the ones that do not exist are left out.

    `related` names, for a cached aggregate, others the command will load too (a task's
    job, a job's queue): those that are cached are fast-forwarded in the same query."""
    cache = repository.cache
    assert cache is not None, "the ledger runs with an aggregate cache"
    with _LOADING:
        cached: dict[UUID, Any] = {}
        for uid in aggregate_ids:
            with contextlib.suppress(KeyError):
                cached[uid] = cache.get(uid)
        wanted = list(aggregate_ids)
        frontier = list(cached.values()) if related else []
        while frontier:
            following = []
            for aggregate in frontier:
                for uid in related(aggregate) if related else ():
                    if uid in cached or uid in wanted:
                        continue
                    with contextlib.suppress(KeyError):
                        cached[uid] = cache.get(uid)
                        wanted.append(uid)
                        following.append(cached[uid])
            frontier = following
        versions = {uid: cached[uid].version if uid in cached else 0 for uid in wanted}
        newer: dict[UUID, list[Any]] = defaultdict(list)
        for stored in select_after(versions):
            newer[stored.originator_id].append(repository.event_store.mapper.to_domain_event(stored))
        found: dict[UUID, Any] = {}
        for uid in wanted:
            aggregate = cached.get(uid)
            for event in newer.get(uid, ()):  # as project_aggregate, without its Protocol check
                aggregate = event.mutate(aggregate)
            if aggregate is None:
                continue
            cache.put(uid, aggregate)
            found[uid] = deepcopy(aggregate)
        return found


def remember(repository: Repository[Any], saved: list[Any]) -> None:
    """Put a command's saved aggregates in the cache: the next command finds them there
    (tasks made by createJob would otherwise be rebuilt from the store at their claim).
    Only commands call this, as their working copies are dropped after the save."""
    if repository.cache is None:
        return
    with _LOADING:
        for aggregate in saved:
            repository.cache.put(aggregate.id, aggregate)


def parse_id(kind: str, value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFoundError(kind, value) from None


class UnitOfWork:
    """Loads each aggregate at most once per command and remembers it for the save."""

    def __init__(
        self,
        repository: Repository[Any],
        select_after: Callable[[dict[UUID, int]], list[Any]] | None = None,
    ) -> None:
        self.repository = repository
        self.select_after = select_after
        self._loaded: dict[UUID, LedgerAggregate] = {}
        self._missing: set[UUID] = set()

    def prefetch(
        self, cls: type[A], aggregate_ids: list[Any], related: Callable[[Any], list[UUID]] | None = None
    ) -> None:
        """Load many aggregates of a kind without snapshots at once (the tasks of a claim
        or of a bulk completion), and the cached ones `related` names; `get` then finds
        them without a round trip each."""
        if self.select_after is None or self.repository.cache is None:
            return
        wanted: list[UUID] = []
        for value in aggregate_ids:
            try:
                uid = parse_id(cls.__name__, value)
            except NotFoundError:
                continue
            if uid not in self._loaded and uid not in self._missing:
                wanted.append(uid)
        if not wanted:
            return
        found = load_many(self.repository, list(dict.fromkeys(wanted)), self.select_after, related)
        for uid in wanted:
            if uid not in found:
                self._missing.add(uid)
        for uid, aggregate in found.items():
            self._loaded.setdefault(uid, aggregate)

    def get(self, cls: type[A], aggregate_id: object, *, allow_deleted: bool = False) -> A:
        """The aggregate of type `cls`; NotFoundError if it is missing, another type, or deleted."""
        kind = cls.__name__
        uid = parse_id(kind, aggregate_id)
        found = self._loaded.get(uid)
        if found is None:
            if uid in self._missing:
                raise NotFoundError(kind, aggregate_id)
            try:
                found = load(self.repository, uid)
            except AggregateNotFoundError:
                raise NotFoundError(kind, aggregate_id) from None
            self._loaded[uid] = found
        if not isinstance(found, cls):
            raise NotFoundError(kind, aggregate_id)
        if getattr(found, "deleted", False) and not allow_deleted:
            raise NotFoundError(kind, aggregate_id)
        return found

    def find(self, cls: type[A], aggregate_id: object) -> A | None:
        try:
            return self.get(cls, aggregate_id)
        except NotFoundError:
            return None

    def add(self, aggregate: A) -> A:
        self._loaded[aggregate.id] = aggregate
        return aggregate

    def changed(self) -> list[LedgerAggregate]:
        return [a for a in self._loaded.values() if a.pending_events]
