"""Reading the log: every event as position, aggregate, version, type, time, actor and data."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.utils import get_topic

from domain.errors import ValidationError
from domain.job import Job
from domain.queue import Queue, QueueRegistry
from domain.task import Task

if TYPE_CHECKING:
    from domain.ledger import Ledger

AGGREGATES = (Queue, QueueRegistry, Job, Task)
_ENVELOPE = ("originator_topic", "timestamp", "actor")
# Kept in the store (a token is checked against it) but never shown in the history.
_WITHHELD = frozenset({"secret_hash"})
# Base classes that are never recorded themselves: Task.Excluded etc. derive from it.
_ABSTRACT = frozenset({"Task.StatusChanged"})


@dataclass(frozen=True)
class Record:
    """One event as audit tools and projections read it."""

    position: int
    aggregate_id: str
    aggregate_type: str
    version: int
    type: str
    timestamp: datetime
    actor: str | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "aggregate_id": self.aggregate_id,
            "aggregate_type": self.aggregate_type,
            "version": self.version,
            "type": self.type,
            "timestamp": self.timestamp.isoformat(),
            "actor": self.actor,
            "data": self.data,
        }

    def to_json_line(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)


def event_types() -> dict[str, str]:
    """Every event type name (`Job.StatusChanged`) and its topic in the store."""
    found: dict[str, str] = {}
    for aggregate in AGGREGATES:
        for value in vars(aggregate).values():
            if (
                isinstance(value, type)
                and issubclass(value, CanMutateAggregate)
                and value.__name__ != "Event"
                and value.__qualname__ not in _ABSTRACT
            ):
                topic = get_topic(value)
                found[topic.split(":", 1)[1]] = topic
    return found


def plain(value: Any) -> Any:
    """Event data as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class History:
    """The store's global log (ordered, gap-free positions) and each aggregate's events."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._types = event_types()

    def topics_for(self, types: Iterable[str] | None) -> list[str]:
        if not types:
            return []
        topics = []
        for name in types:
            if name not in self._types:
                known = ", ".join(sorted(self._types))
                raise ValidationError("types", f"unknown event type {name!r}; known types: {known}")
            topics.append(self._types[name])
        return topics

    def read(self, after: int = 0, limit: int = 1000, types: Sequence[str] | None = None) -> list[Record]:
        """Up to `limit` events with positions above `after`, oldest first."""
        if after < 0:
            raise ValidationError("after", "must be a position, 0 or more")
        notifications = self.ledger.recorder.select_notifications(
            start=after, limit=limit, topics=self.topics_for(types), inclusive_of_start=False
        )
        return [self._record(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in notifications]

    def follow(self, after: int = 0, batch: int = 1000) -> Iterator[Record]:
        """Every event after `after` that is in the store now, in order, a batch at a time."""
        while True:
            records = self.read(after, batch)
            yield from records
            if len(records) < batch:
                return
            after = records[-1].position

    def of_aggregate(self, aggregate_id: str | UUID) -> list[Record]:
        """One aggregate's events, oldest first (empty if there is no such aggregate)."""
        try:
            uid = UUID(str(aggregate_id))
        except ValueError:
            raise ValidationError("aggregateId", f"{aggregate_id!r} is not an id") from None
        rows = self.ledger.store.select_aggregate_positions(self.ledger.recorder, uid)
        return [self._record(*row) for row in rows]

    def of_aggregates(self, aggregate_ids: list[str]) -> list[Record]:
        """The events of several aggregates (a job and its tasks), in log order."""
        records = [r for aggregate_id in dict.fromkeys(aggregate_ids) for r in self.of_aggregate(aggregate_id)]
        return sorted(records, key=lambda r: r.position)

    def of_job(self, job_id: str) -> list[Record]:
        """A job's story: its own events and its tasks', in log order."""
        try:
            job: Any = self.ledger.load(UUID(str(job_id)))
        except (ValueError, AggregateNotFoundError):
            return []
        task_ids = list(getattr(job, "tasks", {}))
        return self.of_aggregates([str(job_id), *task_ids])

    def _record(self, position: int, originator_id: Any, version: int, topic: str, state: bytes) -> Record:
        data = self.ledger.mapper.transcoder.decode(state)
        type_name = topic.split(":", 1)[1]
        return Record(
            position=position,
            aggregate_id=str(UUID(str(originator_id))),
            aggregate_type=type_name.split(".", 1)[0],
            version=version,
            type=type_name,
            timestamp=data["timestamp"],
            actor=data.get("actor"),
            data=plain({k: v for k, v in data.items() if k not in _ENVELOPE and k not in _WITHHELD}),
        )
