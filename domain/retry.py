"""When a failed task runs again: the retry policy (exponential backoff with jitter).

A queue sets a policy for its jobs, and a job may override any part of it; what neither
sets takes the default (`DEFAULT_RETRY`). The wait after failed attempt n is

    min(max_delay, delay * backoff ** (n - 1)), less a random share of up to `jitter` of it

so attempts spread out (jitter 1 is "full jitter": anywhere from no wait to the whole
wait) and never wait longer than `max_delay`. The time of the next attempt is drawn once,
by the command that records the failure, and kept in its event (`retry_at`): replaying
the log gives the same time, and nothing random happens when read models are built.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# The fields of a policy, as the catalogues of queues and jobs name them (`retry_delay`, ...).
POLICY_FIELDS = ("retry_delay", "retry_backoff", "retry_max_delay", "retry_jitter")
MAX_RETRY_DELAY_S = 7 * 24 * 3600  # a week: the longest wait a policy may ask for
MAX_RETRY_BACKOFF = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before attempt n + 1 after attempt n failed."""

    delay: float  # seconds after the first failed attempt
    backoff: float  # each further wait is this many times longer
    max_delay: float  # no wait is longer
    jitter: float  # 0..1: the share of each wait that is drawn at random (taken off it)

    def wait(self, attempt: int, draw: float) -> float:
        """Seconds to wait after failed attempt `attempt` (1: the first); `draw` in [0, 1)
        is the random part (0: the whole wait)."""
        if self.delay <= 0 or self.max_delay <= 0:
            return 0.0
        # Compared as logarithms first: backoff ** (attempt - 1) overflows a float long
        # before attempts run out (MAX_ATTEMPTS is 1000); below the longest wait it cannot.
        growth = (attempt - 1) * math.log(self.backoff) if self.backoff > 1 else 0.0
        if math.log(self.delay) + growth >= math.log(self.max_delay):
            nominal = self.max_delay
        else:
            nominal = min(self.max_delay, self.delay * self.backoff ** (attempt - 1))
        return nominal * (1 - self.jitter * draw)

    def next_attempt(self, now: datetime, attempt: int, draw: Callable[[], float] = random.random) -> datetime | None:
        """When the attempt after failed attempt `attempt` may start; None: at once."""
        seconds = self.wait(attempt, draw())
        return now + timedelta(seconds=seconds) if seconds > 0 else None


DEFAULT_RETRY = RetryPolicy(delay=10.0, backoff=2.0, max_delay=600.0, jitter=0.2)


def policy_of(*owners: Any) -> RetryPolicy:
    """The policy in force for the first of `owners` (a job, then its queue): each part
    from the first owner that sets it, else the default's."""

    def part(name: str, default: float) -> float:
        for owner in owners:
            value = getattr(owner, name, None)
            if value is not None:
                return float(value)
        return default

    return RetryPolicy(
        delay=part("retry_delay", DEFAULT_RETRY.delay),
        backoff=part("retry_backoff", DEFAULT_RETRY.backoff),
        max_delay=part("retry_max_delay", DEFAULT_RETRY.max_delay),
        jitter=part("retry_jitter", DEFAULT_RETRY.jitter),
    )
