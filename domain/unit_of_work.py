"""One command's working set (every aggregate it loaded or made, saved together once), and
the loader that fetches aggregates for it."""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository

from domain.base import LedgerAggregate
from domain.errors import NotFoundError
from persistence.faults import taken

A = TypeVar("A", bound=LedgerAggregate)


class Loader:
    """Gets aggregates from one application's repository (cache, snapshots, events).

    eventsourcing's aggregate cache fast-forwards a cached aggregate under its lock but
    deep-copies it after releasing it, so two threads loading one busy aggregate can copy
    it while the other mutates it ("dictionary changed size during iteration", or worse, a
    torn copy). Loads through one repository therefore take turns on `lock`, which the
    application that owns the repository hands in; from the cache they take microseconds.
    """

    def __init__(
        self,
        repository: Repository[Any],
        lock: threading.Lock,
        select_after: Callable[[dict[UUID, int]], list[Any]] | None = None,
    ) -> None:
        """`select_after` gives the stored events of many aggregates newer than the given
        versions in one query; without it aggregates are loaded one at a time."""
        self.repository = repository
        self.lock = lock
        self.select_after = select_after

    def load(self, aggregate_id: UUID) -> Any:
        """One aggregate; AggregateNotFoundError if there is none."""
        with taken(self.lock):
            return self.repository.get(aggregate_id)

    def events_of(self, aggregate_id: UUID, up_to: int | None = None) -> Iterable[Any]:
        """An aggregate's stored events, oldest first, up to version `up_to`."""
        return self.repository.event_store.get(aggregate_id, lte=up_to)

    @property
    def batches(self) -> bool:
        """Whether `load_many` can read many aggregates in one query."""
        return self.select_after is not None and self.repository.cache is not None

    def load_many(
        self, aggregate_ids: list[UUID], related: Callable[[Any], list[UUID]] | None = None
    ) -> dict[UUID, Any]:
        """Many aggregates without snapshots (tasks) in one query, as `load` would give them:
        cached ones fast-forwarded by their newer events, the others rebuilt from all of
        theirs; the ones that do not exist are left out.

        `related` names, for a cached aggregate, others the command will load too (a task's
        job, a job's queue): those that are cached are fast-forwarded in the same query."""
        cache = self.repository.cache
        assert cache is not None and self.select_after is not None, "only when `batches`"
        with taken(self.lock):
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
            to_domain_event = self.repository.event_store.mapper.to_domain_event
            for stored in self.select_after(versions):
                newer[stored.originator_id].append(to_domain_event(stored))
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

    def remember(self, saved: list[Any]) -> None:
        """Put a command's saved aggregates in the cache: the next command finds them there
        (tasks made by createJob would otherwise be rebuilt from the store at their claim).
        Only commands call this, as their working copies are dropped after the save."""
        if self.repository.cache is None:
            return
        with taken(self.lock):
            for aggregate in saved:
                self.repository.cache.put(aggregate.id, aggregate)


def parse_id(kind: str, value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFoundError(kind, value) from None


class NeedsStoredEvents(Exception):
    """A command of a group commit (`domain.group_commit`) asked for the stored events of an
    aggregate its batch changed but has not saved yet: it must run on its own, after the save."""


class UnitOfWork:
    """Loads each aggregate at most once per command and remembers it for the save.

    In a group commit, `overlay` holds the aggregates the batch's earlier commands changed, as
    they left them: this command works on copies of those instead of loading them."""

    def __init__(self, loader: Loader, overlay: dict[UUID, LedgerAggregate] | None = None) -> None:
        self.loader = loader
        self._loaded: dict[UUID, LedgerAggregate] = {}
        self._missing: set[UUID] = set()
        self._overlay = overlay if overlay is not None else {}

    def prefetch(
        self, cls: type[A], aggregate_ids: list[Any], related: Callable[[Any], list[UUID]] | None = None
    ) -> None:
        """Load many aggregates of a kind without snapshots at once (the tasks of a claim
        or of a bulk completion), and the cached ones `related` names; `get` then finds
        them without a round trip each."""
        if not self.loader.batches:
            return
        wanted: list[UUID] = []
        for value in aggregate_ids:
            try:
                uid = parse_id(cls.__name__, value)
            except NotFoundError:
                continue
            if uid in self._overlay:
                self._loaded.setdefault(uid, deepcopy(self._overlay[uid]))
            elif uid not in self._loaded and uid not in self._missing:
                wanted.append(uid)
        if not wanted:
            return
        found = self.loader.load_many(list(dict.fromkeys(wanted)), related)
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
        if found is None and uid in self._overlay:
            found = self._loaded[uid] = deepcopy(self._overlay[uid])
        if found is None:
            if uid in self._missing:
                raise NotFoundError(kind, aggregate_id)
            try:
                found = self.loader.load(uid)
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

    def stored_events(self, aggregate: LedgerAggregate) -> Iterable[Any]:
        """The aggregate's stored events up to the version this command loaded."""
        if aggregate.id in self._overlay:
            raise NeedsStoredEvents(aggregate.id)
        return self.loader.events_of(aggregate.id, up_to=aggregate.version)

    def add(self, aggregate: A) -> A:
        self._loaded[aggregate.id] = aggregate
        return aggregate

    def changed(self) -> list[LedgerAggregate]:
        return [a for a in self._loaded.values() if a.pending_events]
