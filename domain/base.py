"""The aggregate base every jobledger aggregate shares: events carry their actor."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("jobledger_actor", default=None)


def current_actor() -> str | None:
    """The actor that commands in this context record on their events."""
    return _ACTOR.get()


@contextlib.contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    """Record `actor` on every event triggered inside the block."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


class LedgerAggregate(Aggregate):
    """An aggregate whose every event records who caused it (and, as all events, when)."""

    class Event(Aggregate.Event):
        actor: str | None = dataclasses.field(default=None, kw_only=True)

    class Created(Event, Aggregate.Created):
        pass

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("actor") is None:  # (an `__init__` naming `actor` hands in its default)
            kwargs["actor"] = current_actor()
        return super()._create(event_class, id=id, **kwargs)

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("actor", current_actor())
        super().trigger_event(event_class, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """The copy eventsourcing hands a command from its cache, made fast: aggregates hold
        JSON-like data, so dicts and lists are copied, immutable values shared, and only
        anything else goes through the generic deepcopy (which took a quarter of a claim)."""
        clone = object.__new__(type(self))
        clone.__dict__.update({name: self._copy_of(name, value, memo) for name, value in vars(self).items()})
        return clone

    def _copy_of(self, name: str, value: Any, memo: dict[int, Any]) -> Any:
        return _copied(value, memo)

    @property
    def facts(self) -> dict[str, Any]:
        """The aggregate's attributes, without bookkeeping: what replay must reproduce."""
        return {k: v for k, v in vars(self).items() if k != "_pending_events"}


_IMMUTABLE = (str, int, float, type(None), datetime, UUID, Enum)


def _copied(value: Any, memo: dict[int, Any]) -> Any:
    if isinstance(value, _IMMUTABLE):
        return value
    if type(value) is dict:
        return {key: _copied(item, memo) for key, item in value.items()}
    if type(value) is list:
        return [_copied(item, memo) for item in value]
    return copy.deepcopy(value, memo)
