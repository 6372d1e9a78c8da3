"""The command runner: atomic saves, actors, and clean retries on version conflicts.

Application services (`domain.queues`, `domain.jobs`, `domain.dispatch`) write their
commands as methods taking a fresh `UnitOfWork`; `@command` runs them through the
service's `Runner`, which knows nothing of the services or of the application beyond
the `Store` protocol.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import IntegrityError
from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_random_exponential

from domain.access import Principal, on_behalf_of
from domain.base import LedgerAggregate, acting_as
from domain.errors import ConflictError
from domain.group_commit import Done, GroupCommit, Member
from domain.idempotency import Idempotency, IdempotencyRecord, record_id
from domain.idempotency import now as utc_now
from domain.limits import MAX_NAME
from domain.rules import check_optional_string
from domain.unit_of_work import Loader, UnitOfWork
from persistence.faults import taken

MAX_COMMAND_ATTEMPTS = 30  # in turn, after the first attempt lost its race


def _conflict_retries() -> Retrying:
    """Attempts again while another writer wins (an attempt answers None), up to
    MAX_COMMAND_ATTEMPTS; between them a random wait of up to 1 ms, 2 ms, ... 32 ms
    ("full jitter"), so that the writers colliding on one aggregate spread out."""
    return Retrying(
        retry=retry_if_result(lambda written: written is None),
        stop=stop_after_attempt(MAX_COMMAND_ATTEMPTS),
        wait=wait_random_exponential(multiplier=0.001, max=0.032),
        retry_error_callback=lambda state: None,  # out of attempts: None, and the caller says CONFLICT
    )


@dataclass(frozen=True)
class Written:
    """What a command wrote: the ids it answers with, and the store position of its last
    event (or of the store when it wrote nothing; 0 when it read nothing either)."""

    ids: list[str] = field(default_factory=list)
    position: int = 0
    replayed: bool = False  # answered from an idempotency key's record: nothing was written now
    # The aggregates as the command saved them, by id: its answer when the read models lag.
    saved: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.ids[0]


class Recorded(Protocol):
    """A saved event's place in the store's global log."""

    @property
    def notification(self) -> Any: ...


class Store(Protocol):
    """What the runner needs of the application: an atomic save and the log's head."""

    def save(self, *objs: Any) -> Sequence[Recorded]: ...

    def position(self) -> int: ...


class Runner:
    """Runs one command at a time from fresh state in a UnitOfWork and saves what it
    changed in one atomic save. Retries after a lost race take turns on `retry_turn`, a
    lock the application owns: many writers on one hot aggregate (a busy queue) in one
    process then make progress instead of colliding forever."""

    def __init__(self, store: Store, loader: Loader, retry_turn: threading.Lock, group_commit: bool = True) -> None:
        self.store = store
        self.loader = loader
        self.retry_turn = retry_turn
        # Commands that arrive together are saved together (see `domain.group_commit`).
        self.group = GroupCommit(loader, store.save, loader.remember, _batch_written) if group_commit else None

    def run(
        self,
        name: str,
        fn: Callable[[UnitOfWork], list[str]],
        actor: str | None,
        principal: Principal | None = None,
        idempotency: Idempotency | None = None,
    ) -> Written:
        """Run `fn` as one atomic command, recording `actor` on its events and checking it
        against `principal`'s rights (None: the service's own or an operator's command);
        retry it from fresh state on a version conflict, and report CONFLICT if other
        writers keep winning. With a principal, the actor is the principal's user. With an
        idempotency key, a command already done with it is answered from its record (see
        `domain.idempotency`), and a new one records it in its own save."""
        if principal is not None:
            actor = principal.user
        check_optional_string("actor", actor, MAX_NAME)  # recorded on every event it writes
        with acting_as(actor), on_behalf_of(principal):
            if self.group is not None and not self.group.leading_here:
                written = self.group.run(lambda uow: self._execute(uow, fn, idempotency))
            else:
                written = self._attempt(fn, idempotency)
            if written is None:
                with taken(self.retry_turn):
                    written = _conflict_retries()(self._attempt, fn, idempotency)
        if written is None:
            raise ConflictError(
                f"{name} kept colliding with other writers ({MAX_COMMAND_ATTEMPTS} attempts); try again"
            )
        return written

    def replayed(self, idempotency: Idempotency | None) -> Written | None:
        """The answer recorded for `idempotency`'s key, if a command was done with it lately
        (for operations of several commands, which check before their first)."""
        if idempotency is None:
            return None
        record = UnitOfWork(self.loader).find(IdempotencyRecord, record_id(idempotency.key))
        if record is None or not record.live(utc_now()):
            return None
        return Written(ids=record.answer(idempotency), position=self.store.position(), replayed=True)

    def _attempt(self, fn: Callable[[UnitOfWork], list[str]], idempotency: Idempotency | None) -> Written | None:
        """Run the command once from fresh state and save; None if another writer won."""
        done = self._execute(UnitOfWork(self.loader), fn, idempotency)
        if not isinstance(done, Done):
            return done
        try:
            recordings = self.store.save(*done.changed)
        except IntegrityError:
            return None
        self.loader.remember(done.changed)
        return Written(
            ids=done.ids,
            position=max(r.notification.id for r in recordings),
            saved={str(a.id): a for a in done.changed},
        )

    def _execute(
        self, uow: UnitOfWork, fn: Callable[[UnitOfWork], list[str]], idempotency: Idempotency | None
    ) -> Written | Done:
        """Run the command on `uow`: what it changed, to be saved, or its answer when it
        changed nothing (or its idempotency key's record answers it)."""
        record = None
        if idempotency is not None:
            record = uow.find(IdempotencyRecord, record_id(idempotency.key))
            if record is not None and record.live(utc_now()):
                return Written(ids=record.answer(idempotency), position=self.store.position(), replayed=True)
        ids = fn(uow)
        if idempotency is not None:
            if record is None:
                uow.add(IdempotencyRecord(idempotency.key, idempotency.fingerprint, list(ids), utc_now()))
            else:
                record.reuse(idempotency.fingerprint, list(ids), utc_now())
        changed: list[LedgerAggregate] = uow.changed()
        if not changed:
            return Written(ids=ids, position=self.store.position())
        return Done(ids, changed)


def _batch_written(member: Member, recordings: Sequence[Any]) -> Written:
    """A group-committed command's answer: its ids, and the position of its own last event."""
    mine = {id(event) for event in member.events}
    position = max(r.notification.id for r in recordings if id(r.domain_event) in mine)
    return Written(ids=member.ids, position=position, saved={str(a.id): a for a in member.changed})


class Service:
    """An application service: a group of commands sharing one runner."""

    name = "ledger"  # how its commands are named in errors: `queues.create`

    def __init__(self, runner: Runner) -> None:
        self.runner = runner


def command(fn: Callable[..., list[str]]) -> Callable[..., Written]:
    """Make `fn(self, uow, *args, **kwargs) -> ids`, a method of a Service, a command:
    called as `service.fn(*args, actor=..., principal=..., idempotency=..., **kwargs)`, it
    runs atomically through the service's runner, for `principal` if given, once per
    idempotency key if given, and answers with what it wrote."""
    command_name = fn.__name__.strip("_")

    @functools.wraps(fn)
    def run(
        self: Service,
        *args: Any,
        actor: str | None = None,
        principal: Principal | None = None,
        idempotency: Idempotency | None = None,
        **kwargs: Any,
    ) -> Written:
        return self.runner.run(
            f"{self.name}.{command_name}", lambda uow: fn(self, uow, *args, **kwargs), actor, principal, idempotency
        )

    return run
