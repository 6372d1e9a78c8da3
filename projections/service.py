"""The read side as one unit: store, runner, change feed, queries and clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from domain.errors import LedgerError
from domain.ledger import Ledger
from projections.clock import Clock
from projections.failures import Failure, Status
from projections.feed import ChangeFeed
from projections.query import ReadModels
from projections.runner import ProjectionRunner
from projections.stores import open_read_store

log = logging.getLogger("jobledger.projections")

READY_LAG = 1000  # events the read models may trail the store by and still be ready
KEPT_SKIPS = 1000
LISTEN_CHECK_S = 2.0  # how often the LISTEN connection is asked whether it lives


class ReadModelsUnavailable(LedgerError):
    """A change was recorded, but the read models cannot show it: they are stalled or behind,
    or they set one of its events aside. Answering from them would be a lie (NOT_FOUND for
    something that exists), so the caller hears this instead, and that the change is stored."""

    code = "UNAVAILABLE"

    def __init__(self, message: str, facts: dict[str, object]) -> None:
        super().__init__(message)
        self.facts = facts

    @property
    def details(self) -> dict[str, object]:
        return {"recorded": True, **self.facts}


class ReadSide:
    """Everything `jobledger serve` runs beside the ledger to keep and serve the read models."""

    def __init__(self, ledger: Ledger, finished_grace_s: float = 3600, archive_after_s: float = 1_209_600) -> None:
        self.ledger = ledger
        self.store = open_read_store(ledger.store)
        self.feed = ChangeFeed()
        self.runner = ProjectionRunner(ledger, self.store, self.feed)
        self.runner.recovery.on_set_aside.append(self._note_set_aside)
        self.models = ReadModels(self.store)
        self.clock = Clock(
            ledger,
            self.store,
            finished_grace_s,
            archive_after_s,
            is_leader=lambda: self.store.try_lead("clock"),
        )
        self._listener: Any = None
        self._listening: asyncio.Task[None] | None = None  # the task keeping the listener alive
        self._missed = False  # whether announcements may have been missed (listener re-opened)
        # Events set aside lately (by this instance's runner or, heard, another's): position ->
        # (when noted, event type, reason), for read-your-writes to tell a writer about them.
        self._set_aside: OrderedDict[int, tuple[float, str, str]] = OrderedDict()

    def start(self, *, clock: bool = True) -> None:
        """Create the tables, catch up, then follow the log (and run the clock) in the background."""
        self.runner.setup()
        self.ledger.after_save.append(self.runner.wake)
        self.runner.start()
        if clock:
            self.clock.start()

    async def start_async(self) -> None:
        """Open the async query pool and, on PostgreSQL, hear other instances' batches (and
        keep hearing them: a listener lost with its connection is opened again)."""
        await self.store.open_async()
        self._listener = await self.store.listen(self._hear)
        if self._listener is not None:
            self._listening = asyncio.get_running_loop().create_task(self._keep_listening())

    @property
    def deaf(self) -> bool:
        """Whether this instance has lost its LISTEN connection (PostgreSQL only)."""
        return self._listening is not None and (self._listener is None or self._listener.is_closed())

    async def _keep_listening(self) -> None:
        """Every LISTEN_CHECK_S, ask the listener's connection whether it lives; when it does
        not (PostgreSQL restarted, the network dropped it), open another, and catch the feed
        up with the read models, since announcements made meanwhile were never heard."""
        while True:
            await asyncio.sleep(LISTEN_CHECK_S)
            if self._missed:
                await self._catch_up_feed()
            listener = self._listener
            try:
                if listener is not None and not listener.is_closed():
                    await asyncio.wait_for(listener.execute("SELECT 1"), LISTEN_CHECK_S)
                    continue
            except Exception as exc:
                log.warning("the change feed's LISTEN connection failed (%s); listening again", type(exc).__name__)
            if listener is not None:
                with contextlib.suppress(Exception):
                    listener.terminate()
            self._listener = None
            try:
                self._listener = await self.store.listen(self._hear)
            except Exception as exc:
                log.warning("cannot listen to the change feed yet (%s)", type(exc).__name__)
                continue
            log.info("listening to the change feed again")
            self._missed = True
            await self._catch_up_feed()

    async def _catch_up_feed(self) -> None:
        """Announcements made while the listener was away were never heard: move the feed
        to the read models' position (again at the next check, if it cannot be read yet)."""
        try:
            self.feed.advance(await asyncio.to_thread(self.runner.position))
            self._missed = False
        except Exception as exc:
            log.warning("the change feed could not catch up yet (%s)", type(exc).__name__)

    # -- read-your-writes -------------------------------------------------------

    @property
    def troubled(self) -> bool:
        """Whether the read side is failing now: its runner retrying (on this instance, the
        leader), or deaf to the others' announcements."""
        return self.runner.recovery.trouble is not None or self.deaf

    async def wait_for(self, position: int, timeout: float = 10.0, patience: float | None = None) -> bool:
        """Read-your-writes: wait until the read models include `position`.

        Raises ReadModelsUnavailable (code UNAVAILABLE, saying the change is recorded)
        rather than let the caller answer from read models that lack it: when they do
        not get there in time (stalled on an event, or far behind), and when they passed
        it by setting aside an event at or below it. With `patience`, a read side that is
        failing (`troubled`: the store away, an event retried) is waited for that long only."""
        # The events this write may have had set aside are above what was announced before
        # it waits: the runner takes several attempts, with backoff, to set one aside.
        since = self.feed.position
        first = timeout if patience is None else min(timeout, patience)
        reached = await self.feed.wait_for_async(position, first)
        if not reached and first < timeout and not self.troubled:  # slow, not failing: wait on
            reached = await self.feed.wait_for_async(position, timeout - first)
        if not reached:
            await self._explain_delay(position, since)
        skipped = [
            (p, event_type, reason)
            for p, (_noted, event_type, reason) in list(self._set_aside.items())
            if since < p <= position
        ]
        if skipped:
            raise _set_aside_error(position, skipped)
        return True

    async def _explain_delay(self, position: int, since: int) -> None:
        try:
            status = await asyncio.to_thread(self.runner.status)
        except Exception as exc:
            log.warning("read-your-writes: the read models' status could not be read: %s", exc)
            raise ReadModelsUnavailable(
                f"your change was recorded (store position {position}), but the read models cannot be "
                "reached to show it; do not send it again",
                {"position": position},
            ) from None
        if status.position >= position:  # there after all (an announcement went astray)
            self.feed.advance(status.position)
            found = await asyncio.to_thread(self.runner.set_aside_between, since, position)
            if found:
                raise _set_aside_error(position, [(f.position or 0, f.event_type, f.reason) for f in found])
            return
        facts: dict[str, object] = {"position": position, "readPosition": status.position}
        failing = status.failing
        if failing is not None:
            facts.update(failingPosition=failing.position, eventType=failing.event_type, reason=failing.reason)
            at = f"event {failing.position} ({failing.event_type})" if failing.position else "reading the store"
            raise ReadModelsUnavailable(
                f"your change was recorded (store position {position}), but the read models are stalled at "
                f"position {status.position}, retrying {at}: {failing.reason}. It will show once they "
                "recover; do not send it again",
                facts,
            )
        raise ReadModelsUnavailable(
            f"your change was recorded (store position {position}), but the read models are still at "
            f"position {status.position} ({status.lag} events behind); it will show shortly; do not send it again",
            facts,
        )

    def _note_set_aside(self, failure: Failure) -> None:
        if failure.position is not None:
            self._remember(failure.position, failure.event_type, failure.reason)

    def _remember(self, position: int, event_type: str, reason: str) -> None:
        self._set_aside[position] = (time.monotonic(), event_type, reason)
        while len(self._set_aside) > KEPT_SKIPS:
            self._set_aside.popitem(last=False)

    def _hear(self, payload: str) -> None:
        """Another instance's announcement: note what it set aside before the feed moves on."""
        try:
            announced = json.loads(payload)
            types = announced.get("types") or ["?"]
            for position in announced.get("skipped") or ():
                self._remember(int(position), str(types[0]), "set aside by the projection runner")
        except (ValueError, TypeError, AttributeError):
            pass  # the feed says what is wrong with it
        self.feed.hear(payload)

    # -- health -----------------------------------------------------------------

    def health(self, ready_lag: int = READY_LAG) -> tuple[bool, dict[str, object]]:
        """(ready, body) for /readyz: ready, catching up, stalled on an event, or degraded by
        events set aside that nobody acknowledged, or deaf to other instances' changes (its
        LISTEN connection lost). Raises when the store cannot be read."""
        ready, body = health_of(self.runner.status(), ready_lag)
        if ready and self.deaf:
            return False, {**body, "status": "deaf", "reason": "the change feed's LISTEN connection is lost"}
        return ready, body

    async def stop_async(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listening
            self._listening = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self.store.close_async()

    def stop(self) -> None:
        self.clock.stop()
        self.runner.stop()
        if self.runner.wake in self.ledger.after_save:
            self.ledger.after_save.remove(self.runner.wake)
        self.store.close()


def health_of(status: Status, ready_lag: int = READY_LAG) -> tuple[bool, dict[str, object]]:
    body: dict[str, object] = {"position": status.position, "head": status.head, "lag": status.lag}
    failing = status.failing
    if failing is not None:
        return False, {
            "status": "stalled",
            "reason": failing.reason,
            **body,
            "failing_position": failing.position,
            "event_type": failing.event_type or None,
            "aggregate_id": failing.aggregate_id or None,
            "attempts": failing.attempts,
            "since": failing.first_failed,
            "set_aside": status.set_aside,
        }
    if status.set_aside:
        newest = status.newest_set_aside
        about = f" (newest: event {newest.position}, {newest.event_type}: {newest.reason})" if newest else ""
        return False, {
            "status": "degraded",
            "reason": f"{status.set_aside} event{'s' if status.set_aside != 1 else ''} set aside{about}; "
            "see `jobledger projections skipped`",
            **body,
            "set_aside": status.set_aside,
            "newest_set_aside": newest.position if newest else None,
        }
    if status.lag > ready_lag:
        return False, {"status": "catching up", **body}
    return True, {"status": "ready", **body}


def _set_aside_error(position: int, skipped: list[tuple[int, str, str]]) -> ReadModelsUnavailable:
    first_position, event_type, reason = skipped[0]
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return ReadModelsUnavailable(
        f"your change was recorded (store position {position}), but the read models could not apply event "
        f"{first_position} ({event_type}: {reason}){more} and set it aside, so they do not show all of it; "
        "`jobledger projections skipped` lists such events",
        {"position": position, "setAside": [p for p, _, _ in skipped]},
    )
