"""One command's working set: every aggregate it loaded or made, saved together once."""

from __future__ import annotations

import threading
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


def parse_id(kind: str, value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFoundError(kind, value) from None


class UnitOfWork:
    """Loads each aggregate at most once per command and remembers it for the save."""

    def __init__(self, repository: Repository[Any]) -> None:
        self.repository = repository
        self._loaded: dict[UUID, LedgerAggregate] = {}

    def get(self, cls: type[A], aggregate_id: object, *, allow_deleted: bool = False) -> A:
        """The aggregate of type `cls`; NotFoundError if it is missing, another type, or deleted."""
        kind = cls.__name__
        uid = parse_id(kind, aggregate_id)
        found = self._loaded.get(uid)
        if found is None:
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
