"""Group commit: the commands that arrive together in one process are saved in one transaction.

Every command runs from fresh state and is saved with optimistic concurrency, so commands that
touch one aggregate at once (every createJob adds a job to its queue) collide: one wins, the
others retry, and a busy queue goes no faster than one command per round trip. A `GroupCommit`
instead lets the first command that finds no save under way lead: it takes the commands that
are waiting (its own first), runs them one after another, each on copies of the aggregates as
the ones before it left them, and saves all their events in one atomic save. The others wait
for their answers. A command that fails is left out (its copies are dropped, so it changes
nothing); one that must read stored events of an aggregate the batch changed runs alone after
the save. If another process won a race against the batch's save, every command of the batch
is run again on its own, as before.

Every command is still checked and recorded exactly as when it runs alone: the same function,
in its caller's context (actor, principal), and its own events, in its own order. Its database calls
run under the leading request's deadline (`persistence.faults`), which began at about the same time.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.base import LedgerAggregate
from domain.unit_of_work import Loader, NeedsStoredEvents, UnitOfWork

MAX_BATCH = 64  # commands saved in one transaction at most


@dataclass(eq=False)
class Member:
    """One command waiting in (or leading) a batch."""

    context: contextvars.Context
    execute: Callable[[UnitOfWork], Any]  # runs the command on a unit of work: Done, or a Written answer
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    finished: bool = False
    outcome: Any = None  # a Written, None (run it alone), or the exception to raise
    events: list[Any] = field(default_factory=list)
    changed: list[LedgerAggregate] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def finish(self, outcome: Any) -> None:
        self.outcome, self.finished = outcome, True
        self.done.set()


@dataclass
class Done:
    """What a command of a batch did: the ids it answers with, and the aggregates it changed."""

    ids: list[str]
    changed: list[LedgerAggregate]


class GroupCommit:
    """Leader/follower batching of one runner's commands (see the module's docstring).

    `save(*events_and_aggregates)` saves atomically and returns the recordings;
    `written(member, recordings)` builds a member's answer from its share of them."""

    def __init__(
        self,
        loader: Loader,
        save: Callable[..., Sequence[Any]],
        remember: Callable[[list[Any]], None],
        written: Callable[[Member, Sequence[Any]], Any],
    ) -> None:
        self._loader = loader
        self._save = save
        self._remember = remember
        self._written = written
        self._lock = threading.Lock()
        self._pending: list[Member] = []
        self._leading = False
        self._here = threading.local()  # `leading` on the thread running a batch

    @property
    def leading_here(self) -> bool:
        """Whether this thread is running a batch: a command that a command runs (nested)
        must then be saved on its own, as its batch cannot start before this one ends."""
        return getattr(self._here, "leading", False)

    def run(self, execute: Callable[[UnitOfWork], Any]) -> Any:
        """The command's answer (a Written), or None when it must run on its own (it lost a
        race with another process, or it reads stored events its batch changed)."""
        member = Member(contextvars.copy_context(), execute)
        with self._lock:
            self._pending.append(member)
            if not self._leading:
                self._leading = member.lead = True
        if not member.lead:
            member.done.wait()
        if not member.finished:  # woken to lead (or leading from the start)
            self._lead()
        if isinstance(member.outcome, BaseException):
            raise member.outcome
        return member.outcome

    def _lead(self) -> None:
        with self._lock:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
        self._here.leading = True
        try:
            self._run_batch(batch)
        finally:
            self._here.leading = False
            for member in batch:
                if not member.finished:
                    member.finish(None)
            with self._lock:
                if self._pending:
                    following = self._pending[0]
                    following.lead = True
                    following.done.set()
                else:
                    self._leading = False

    def _run_batch(self, batch: list[Member]) -> None:
        overlay: dict[UUID, LedgerAggregate] = {}  # each changed aggregate as the batch has left it
        saving: list[Member] = []
        for member in batch:
            uow = UnitOfWork(self._loader, overlay)
            try:
                result = member.context.run(member.execute, uow)
            except NeedsStoredEvents:
                member.finish(None)
                continue
            except Exception as exc:
                member.finish(exc)
                continue
            if not isinstance(result, Done):  # answered without writing (nothing changed, or a replay)
                member.finish(result)
                continue
            member.ids = result.ids
            member.changed = result.changed
            for aggregate in result.changed:
                member.events.extend(aggregate.collect_events())
                overlay[aggregate.id] = aggregate
            saving.append(member)
        if not saving:
            return
        events = [event for member in saving for event in member.events]
        try:
            recordings = self._save(*events, *overlay.values())
        except IntegrityError:
            return  # another process won: each command runs again on its own (finished with None)
        except Exception as exc:
            for member in saving:
                member.finish(exc)
            return
        self._remember(list(overlay.values()))
        for member in saving:
            member.finish(self._written(member, recordings))
