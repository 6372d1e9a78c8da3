"""The aggregate base every jobledger aggregate shares: events carry their actor."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

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
        kwargs.setdefault("actor", current_actor())
        return super()._create(event_class, id=id, **kwargs)

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("actor", current_actor())
        super().trigger_event(event_class, **kwargs)

    @property
    def facts(self) -> dict[str, Any]:
        """The aggregate's attributes, without bookkeeping: what replay must reproduce."""
        return {k: v for k, v in vars(self).items() if k != "_pending_events"}
