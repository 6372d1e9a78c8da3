"""What a worker says about its own situation, so that it never polls in silence: the queues
it was told to claim from that do not exist, and claims the service refuses, an HTTP error
named as one (a wrong --url answers HTTP 404, not GraphQL).

A trouble is said when it begins, again at most once a minute while it lasts (with how
often it recurred), and when it ends; the queues are looked up at start and every few
minutes after."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from jobledger_client import JobledgerError, NotFound, Unavailable
from jobledger_client._transport import http_status

log = logging.getLogger("jobledger.worker")

QUEUE_CHECK_S = 300.0  # how often the worker looks again for the queues it claims from
REPEAT_S = 60.0  # how often a trouble that lasts is said again
URL_HINT = "is --url the jobledger server's address?"


def clock(seconds: float) -> str:
    """Elapsed time as `m:ss`, or `h:mm:ss` from an hour on."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def claim_failure(url: str, exc: JobledgerError) -> str:
    """What to log for a claim that failed with `exc`, in words: an answer that was not
    GraphQL by its HTTP status, with the question to ask about --url; the service's own
    error as it said it."""
    status = exc.details.get("status") if isinstance(exc, Unavailable) else None
    if isinstance(status, int):
        return f"HTTP {http_status(status)} from {url}: {URL_HINT}"
    if isinstance(exc, Unavailable) and not exc.retryable:
        return f"no GraphQL answer from {url} ({exc.message}): {URL_HINT}"
    if isinstance(exc, NotFound) and exc.kind is None:  # a jobledger server's answer to a path it does not serve
        return f"HTTP {http_status(404)} from {url} ({exc.message}): {URL_HINT}"
    return f"claim refused: {exc}"


class Trouble:
    """One kind of failure that may last: logged when it begins or changes, again at most every
    `every` seconds while it recurs (saying how often it did), and once when it is over."""

    def __init__(self, every: float = REPEAT_S) -> None:
        self.every = every
        self.said: str | None = None
        self.when = 0.0
        self.unsaid = 0  # times it recurred since it was last said

    def met(self, message: str) -> None:
        now = time.monotonic()
        if message == self.said and now - self.when < self.every:
            self.unsaid += 1
            return
        again = (
            f" (and {self.unsaid} more times since it was last said)" if message == self.said and self.unsaid else ""
        )
        log.warning("%s%s", message, again)
        self.said, self.when, self.unsaid = message, now, 0

    def over(self) -> None:
        if self.said is not None:
            log.info("claims are answered again")
            self.said, self.unsaid = None, 0


class QueueCheck:
    """Looks up the queues given with --queue, at start and every `every` seconds: each one
    that does not exist (or that the worker's token cannot see) is named in a warning, as
    is a worker none of whose queues exists; one that turned up since is named too."""

    def __init__(self, queues: Sequence[str], every: float = QUEUE_CHECK_S) -> None:
        self.queues = list(queues)
        self.every = every
        self.next = 0.0  # due at once
        self.missing: set[str] = set()

    def due(self) -> bool:
        return bool(self.queues) and time.monotonic() >= self.next

    async def run(self, client: Any) -> None:
        """One look (in a task of its own: during an outage it waits as long as the client does)."""
        self.next = time.monotonic() + self.every
        missing = []
        for ref in self.queues:
            try:
                found = await client.queue(ref)
            except JobledgerError:
                return  # the service cannot tell now (the claims say why); asked again later
            if found is None:
                missing.append(ref)
        for ref in missing:
            log.warning(
                "queue %r does not exist (or this worker's token cannot see it): nothing is claimed from it; "
                "check --queue, or create the queue",
                ref,
            )
        for ref in sorted(self.missing - set(missing)):
            log.info("queue %r exists now: claiming from it", ref)
        if missing and len(missing) == len(self.queues):
            log.warning("none of this worker's queues exists: it claims nothing until one does")
        self.missing = set(missing)
