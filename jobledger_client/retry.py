"""One retry policy for everything that talks to the service: send again what failed for a
passing reason, for a bounded time.

    client = Client(url)                                        # RetryPolicy(): for up to 30 s
    worker = AsyncClient(url, retry=RetryPolicy(give_up_after=None, log=log))   # until stopped

What is sent again (`transient`): a request that found no service (refused, reset, timed
out), an HTTP 502, 503 or 504 instead of a GraphQL answer, and the service's UNAVAILABLE
(its database could not be reached: nothing was written) and OUTCOME_UNKNOWN (the
connection dropped while committing). The clients send every attempt of a mutation with
the same Idempotency-Key, so sending it again cannot do it twice. The service's other
answers (NotFound, Conflict, ...) are raised at once.

The waits: `first_wait` (0.5 s) doubling up to `max_wait` (10 s), with jitter so that the
workers of one outage do not all come back in the same instant. No attempt starts after
`give_up_after` seconds (30 s; None: until it is answered); then the last failure is raised
(an attempt itself lasts at most the client's `timeout`). The outage is logged once
("server unreachable") and the recovery once ("server reachable again"), however many
requests waited through it.

`stop(within)` is for a program that is stopping (the worker on SIGTERM): retries end
`within` seconds from then, waits are cut short, and on AsyncClient an attempt still
without an answer then is abandoned.

Built on tenacity; `Client` and `AsyncClient` take it as `retry=`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, wait_exponential, wait_random

from jobledger_client.errors import OutcomeUnknown, Unavailable

T = TypeVar("T")
DEFAULT_GIVE_UP_AFTER = 30.0
LOOK_EVERY = 0.1  # seconds between a wait's looks at whether the policy was stopped


def transient(error: BaseException | None) -> bool:
    """Whether `error` is a failure that sending the request again may mend."""
    return isinstance(error, Unavailable) and error.retryable


class RetryPolicy:
    """Send a request again while it fails for a passing reason (`transient`), with
    exponential backoff (`first_wait` doubling up to `max_wait` seconds, plus up to
    `first_wait` of jitter), starting no attempt after `give_up_after` seconds (None: until
    it is answered; 0: one attempt). Safe to share
    between the requests of one client: the outage is logged once whichever request meets
    it first."""

    def __init__(
        self,
        *,
        first_wait: float = 0.5,
        max_wait: float = 10.0,
        give_up_after: float | None = DEFAULT_GIVE_UP_AFTER,
        log: logging.Logger | None = None,
    ) -> None:
        self.first_wait = first_wait
        self.max_wait = max_wait
        self.give_up_after = give_up_after
        self.log = log or logging.getLogger("jobledger_client")
        self.reachable = True
        self.cutoff: float | None = None  # time.monotonic() after which no attempt is made

    def stop(self, within: float = 0.0) -> None:
        """Give up retrying `within` seconds from now (0: at once), for a program that is
        stopping. A request that would be sent again after then gives up now with the failure
        it last met (a wait under way is cut short); on AsyncClient an attempt still without an
        answer then is abandoned with OutcomeUnknown. Once the cutoff has passed, a request gets
        one attempt (on AsyncClient, with a tenth of a second to be answered). A later call
        sets a new cutoff: the worker gives its last requests, the releases, one of their own."""
        self.cutoff = time.monotonic() + within

    @property
    def stopped(self) -> bool:
        """Whether the cutoff `stop` set has passed."""
        return self.cutoff is not None and time.monotonic() >= self.cutoff

    def call(self, send: Callable[..., T], *args: Any) -> T:
        """`send(*args)`, again while it fails for a passing reason."""
        retries = Retries(self)
        try:
            return Retrying(sleep=retries.sleep, **retries.options())(retries.attempt, send, *args)
        except GaveUp:
            raise retries.failure() from None

    async def acall(self, send: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await send(*args)`, again while it fails for a passing reason."""
        retries = Retries(self)
        try:
            return await AsyncRetrying(sleep=retries.asleep, **retries.options())(retries.async_attempt, send, *args)
        except GaveUp:
            raise retries.failure() from None

    def _lost(self, error: BaseException | None) -> None:
        if self.reachable:
            self.reachable = False
            self.log.warning("server unreachable (%s); retrying", getattr(error, "message", error))

    def _heard(self, error: BaseException | None) -> None:
        """After an attempt: any answer, a refusal too, means the service is there."""
        if not self.reachable and not transient(error):
            self.reachable = True
            self.log.warning("server reachable again")


class GaveUp(Exception):
    """A wait cut short by `RetryPolicy.stop`: the request ends with the failure it last met."""


class Retries:
    """The attempts of one request under a policy: its deadline, the failure it last met,
    and waits that end early when the policy is stopped."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = time.monotonic()
        self.deadline = None if policy.give_up_after is None else self.started + policy.give_up_after
        # wait_exponential_jitter would do, but its arguments changed within tenacity 9.
        self.backoff = wait_exponential(multiplier=policy.first_wait, max=policy.max_wait) + wait_random(
            0, policy.first_wait
        )
        self.last: BaseException | None = None

    def options(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(transient),
            "wait": self.wait,
            "stop": self.should_stop,
            "before_sleep": lambda state: self.policy._lost(self.last),
            "reraise": True,
        }

    def wait(self, state: RetryCallState) -> float:
        """The backoff, ending at the deadline so that the last attempt is made on it."""
        backoff = float(self.backoff(state))
        if self.deadline is None:
            return backoff
        return max(0.0, min(backoff, self.deadline - time.monotonic()))

    def should_stop(self, state: RetryCallState) -> bool:
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            return True
        return self.past_cutoff(now + (state.upcoming_sleep or 0.0))

    def past_cutoff(self, moment: float) -> bool:
        cutoff = self.policy.cutoff
        return cutoff is not None and moment >= cutoff

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.past_cutoff(end):
                raise GaveUp
            time.sleep(min(left, LOOK_EVERY))

    async def asleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.past_cutoff(end):
                raise GaveUp
            await asyncio.sleep(min(left, LOOK_EVERY))

    def attempt(self, send: Callable[..., T], *args: Any) -> T:
        try:
            result = send(*args)
        except Exception as error:
            self.heard(error)
            raise
        self.heard(None)
        return result

    async def async_attempt(self, send: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            result = await self.answer(send(*args))
        except Exception as error:
            self.heard(error)
            raise
        self.heard(None)
        return result

    async def answer(self, pending: Awaitable[T]) -> T:
        """The attempt's answer, unless the policy's cutoff passes first: then the attempt is
        cancelled, and whether the service carried it out is unknown."""
        attempt = asyncio.ensure_future(pending)
        try:
            while not attempt.done():
                await asyncio.wait({attempt}, timeout=LOOK_EVERY)
                if not attempt.done() and self.policy.stopped:
                    attempt.cancel()
                    raise OutcomeUnknown(
                        "no answer before the client stopped waiting: whether the request was carried out is unknown",
                        details={"retry": True},
                    )
            return attempt.result()
        finally:
            if not attempt.done():
                attempt.cancel()

    def heard(self, error: BaseException | None) -> None:
        self.last = error
        self.policy._heard(error)

    def failure(self) -> BaseException:
        """What a request that gave up raises: the failure it last met."""
        assert self.last is not None, "a wait comes after a failed attempt"
        return self.last
