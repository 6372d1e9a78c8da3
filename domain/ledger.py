"""The application: the event store, its atomic save, and the services that give every
command users and workers can give (`ledger.queues`, `ledger.jobs`, `ledger.dispatch`), and
who they are (`ledger.identity`: users, groups, tokens)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import Recording

from domain.base import LedgerAggregate
from domain.commands import Runner, Written
from domain.dispatch import DispatchCommands
from domain.errors import ValidationError
from domain.groups import Group
from domain.identity import IdentityCommands
from domain.job import DEFAULT_MAX_ATTEMPTS, Job
from domain.jobs import JobCommands
from domain.queue import REGISTRY_ID, Queue, QueueRegistry, members
from domain.queues import QueueCommands
from domain.unit_of_work import Loader, parse_id
from domain.users import Directory
from persistence import Storage, StorageError, database_url_from_env, open_storage


class Ledger(Application[Any]):
    """Queues, jobs and tasks, and the users, groups and tokens that reach them,
    event-sourced. Commands validate everything before they write, save every aggregate
    they touched in one transaction, and write nothing when they fail.

    The concurrency policy of this process lives here, as locks handed to the parts
    that take turns on them: loads through the repository's cache, retries after a
    lost race, and claims, completions and failures."""

    name = "jobledger"
    snapshotting_intervals = {Queue: 200, Job: 200, QueueRegistry: 200, Directory: 200, Group: 200}  # noqa: RUF012
    env = {"AGGREGATE_CACHE_MAXSIZE": "50000"}  # noqa: RUF012

    queues: QueueCommands
    jobs: JobCommands
    dispatch: DispatchCommands
    identity: IdentityCommands

    def __init__(self, database_url: str | Storage | None = None, env: dict[str, str] | None = None) -> None:
        """`database_url` (default $JOBLEDGER_DATABASE_URL) or a storage already opened
        chooses the store; `env` adds to eventsourcing's settings for it."""
        self.store: Storage = open_store(database_url)
        self.store.prepare()
        # Called with the newest position after every save (the projection runner wakes on it).
        self.after_save: list[Callable[[int], None]] = []
        # Called with what each save recorded (api.metrics counts the events appended).
        self.after_record: list[Callable[[list[Recording[Any]]], None]] = []
        with self.store.schema_lock():
            super().__init__(env={**self.store.env, **(env or {})})
            self.loader = Loader(self.repository, threading.Lock(), self.select_events_after)
            grouped = os.environ.get("JOBLEDGER_GROUP_COMMIT", "on").lower() not in ("off", "0", "false", "no")
            runner = Runner(self, self.loader, retry_turn=threading.Lock(), group_commit=grouped)
            self.queues = QueueCommands(runner)
            self.jobs = JobCommands(runner)
            self.dispatch = DispatchCommands(runner, turn=threading.Lock())
            self.identity = IdentityCommands(runner)
            self.queues.ensure_default(actor="jobledger")

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        """Save like eventsourcing does, but record the events of all aggregates in the
        order they happened, so the log reads as a story (job created, then its tasks)."""
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        others = []
        for obj in objs:  # ours directly: eventsourcing's runtime Protocol checks cost ~20 us each
            if isinstance(obj, LedgerAggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                others.append(obj)
        processing_event.collect_events(*others, **kwargs)
        _into_causal_order(processing_event.events)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        if recordings:
            for hook in self.after_record:
                hook(recordings)
            for listener in self.after_save:
                listener(recordings[-1].notification.id)
        return recordings

    def select_events_after(self, versions: dict[UUID, int]) -> list[Any]:
        """The stored events of many aggregates newer than the given versions, in one query."""
        return self.store.select_events_after(self.recorder, versions)

    def position(self) -> int:
        """The position of the newest event in the store (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    # -- reading aggregates ----------------------------------------------------

    def load(self, aggregate_id: UUID) -> Any:
        """One aggregate as it is now; AggregateNotFoundError if there is none."""
        return self.loader.load(aggregate_id)

    def registry(self) -> QueueRegistry | None:
        try:
            registry: Any = self.load(REGISTRY_ID)
        except AggregateNotFoundError:
            return None
        assert isinstance(registry, QueueRegistry)
        return registry

    def open_jobs(self, queue_id: str) -> list[str]:
        """The unfinished jobs of a queue, in arrival order (from the queue's own events)."""
        return self._members(queue_id)[0]

    def running_jobs(self, queue_id: str) -> list[str]:
        """The RUNNING jobs of a queue (from the queue's own events)."""
        return self._members(queue_id)[1]

    def _members(self, queue_id: str) -> tuple[list[str], list[str]]:
        return members(self.loader.events_of(parse_id("Queue", queue_id)))


def open_store(database_url: str | Storage | None = None) -> Storage:
    """The storage a database URL names (default $JOBLEDGER_DATABASE_URL); a
    ValidationError naming the setting, with what to write instead, if it names none."""
    if isinstance(database_url, Storage):
        return database_url
    try:
        return open_storage(database_url or database_url_from_env())
    except StorageError as exc:
        raise ValidationError(exc.setting, exc.reason) from None


def _into_causal_order(events: list[Any]) -> None:
    """Sort by timestamp (stable), unless a clock step would put one aggregate's
    events out of version order; then keep them as collected."""
    ordered = sorted(events, key=lambda e: e.timestamp)
    last: dict[Any, int] = {}
    for event in ordered:
        if last.get(event.originator_id, 0) >= event.originator_version:
            return
        last[event.originator_id] = event.originator_version
    events[:] = ordered


__all__ = ["DEFAULT_MAX_ATTEMPTS", "Ledger", "Written", "open_store"]
