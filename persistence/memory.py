"""The event store in memory: eventsourcing's own in-memory recorders (`eventsourcing.popo`),
so that the domain's rules run in a unit test without a database."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from persistence import PositionedEvent, Storage


class MemoryStorage(Storage):
    """`memory://`: every application opened on it gets an empty store of its own, which
    ends with it. There are no read models here: those need SQLite or PostgreSQL."""

    def prepare(self) -> None:
        """Nothing to prepare."""

    def schema_lock(self) -> AbstractContextManager[None]:
        """Nothing to hold: no other process sees this store."""
        return contextlib.nullcontext()

    def select_events_after(self, recorder: ApplicationRecorder, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        return [event for uid, version in versions.items() for event in recorder.select_events(uid, gt=version)]

    def select_aggregate_positions(self, recorder: ApplicationRecorder, aggregate_id: UUID) -> list[PositionedEvent]:
        """A scan of the whole log: in memory, and only for tests, that is quick enough."""
        head = recorder.max_notification_id()
        if not head:
            return []
        return [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(start=1, limit=head)
            if str(n.originator_id) == str(aggregate_id)
        ]
