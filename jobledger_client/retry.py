"""One retry policy for everything that talks to the service: wait out an unreachable service.

    client = AsyncClient(url, user="w1", retry=RetryPolicy(log=logging.getLogger("jobledger.worker")))

A request that finds no service (`Unavailable`: refused, timed out, not answered in
GraphQL) is sent again after 0.5 s, 1 s, 2 s... up to 10 s apart, until it is answered
or `give_up_after` seconds have passed (never, by default). The outage is logged once
("server unreachable") and the recovery once ("server reachable again"), however many
requests waited through it. The service's own refusals (NotFound, Conflict, ...) are
answers, not outages: they are raised at once.

Built on tenacity; `Client` and `AsyncClient` take it as `retry=`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
)

from jobledger_client.errors import Unavailable

T = TypeVar("T")


class RetryPolicy:
    """Send a request again while the service is unavailable, with exponential backoff
    (`first_wait` doubling up to `max_wait` seconds), for `give_up_after` seconds at most
    (None: until it answers). Safe to share between the requests of one client: the outage
    is logged once whichever request meets it first."""

    def __init__(
        self,
        *,
        first_wait: float = 0.5,
        max_wait: float = 10.0,
        give_up_after: float | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.first_wait = first_wait
        self.max_wait = max_wait
        self.give_up_after = give_up_after
        self.log = log or logging.getLogger("jobledger_client")
        self.reachable = True

    def call(self, send: Callable[..., T], *args: Any) -> T:
        """`send(*args)`, again while it raises Unavailable."""
        return Retrying(**self._options())(self._attempt, send, *args)

    async def acall(self, send: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await send(*args)`, again while it raises Unavailable."""
        return await AsyncRetrying(**self._options())(self._async_attempt, send, *args)

    def _options(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception_type(Unavailable),
            "wait": wait_exponential(multiplier=self.first_wait, max=self.max_wait),
            "stop": stop_never if self.give_up_after is None else stop_after_delay(self.give_up_after),
            "before_sleep": self._lost,
            "reraise": True,
        }

    def _attempt(self, send: Callable[..., T], *args: Any) -> T:
        try:
            result = send(*args)
        except Exception as error:
            self._heard(error)
            raise
        self._heard(None)
        return result

    async def _async_attempt(self, send: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            result = await send(*args)
        except Exception as error:
            self._heard(error)
            raise
        self._heard(None)
        return result

    def _lost(self, state: RetryCallState) -> None:
        if self.reachable:
            self.reachable = False
            error = state.outcome.exception() if state.outcome else None
            self.log.warning("server unreachable (%s); retrying", getattr(error, "message", error))

    def _heard(self, error: Exception | None) -> None:
        """After an attempt: any answer, a refusal too, means the service is there."""
        if not self.reachable and not isinstance(error, Unavailable):
            self.reachable = True
            self.log.warning("server reachable again")
