"""Who is calling: the bearer token of a request (or the session cookie of a signed-in
browser, or the `connection_init` payload of a websocket) turned into a `Caller`, with
repeated bad tokens from one address slowed down, and the principal re-checked on long-
lived connections so that revocation reaches them too."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.access import Principal, Right
from domain.errors import UnauthenticatedError
from domain.identity import IdentityCommands

log = logging.getLogger("jobledger.auth")

ACTOR_HEADER = "X-Jobledger-User"
SESSION_COOKIE = "jobledger_session"
RECHECK_S = 5.0  # a websocket's principal is read again at most this long after the last time


@dataclass
class Caller:
    """The caller of one request or websocket. With authentication off, `principal` is
    None (every right; the actor is what the caller says); with it on, either `principal`
    or `problem` (why the token was refused) is set."""

    principal: Principal | None
    actor: str | None
    problem: UnauthenticatedError | None = None
    token: str | None = field(default=None, repr=False)
    checked: float = 0.0  # monotonic time the principal was read

    def require(self) -> Principal | None:
        """The principal (None: authentication off); UNAUTHENTICATED if the token was refused."""
        if self.problem is not None:
            raise self.problem
        return self.principal

    def readable(self) -> frozenset[str] | None:
        """The groups whose lists this caller reads; None: all of them."""
        principal = self.require()
        return None if principal is None else principal.groups_with(Right.READ)

    def sees(self, group: str | None) -> bool:
        """Whether an object of `group` exists for this caller (lookups by id)."""
        principal = self.require()
        return principal is None or (group is not None and principal.sees(group))

    @property
    def unrestricted(self) -> bool:
        principal = self.require()
        return principal is None or principal.site_admin


class Throttle:
    """Slows down an address that keeps showing bad tokens: after FREE failures within
    WINDOW_S, each further attempt with a token not recently accepted waits 0.1 s, 0.2 s,
    0.4 s, ... up to MAX_DELAY_S. Tokens that worked lately pass at once, from any address."""

    FREE = 5
    WINDOW_S = 60.0
    MAX_DELAY_S = 5.0
    MAX_ADDRESSES = 10_000

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def delay(self, address: str) -> float:
        failures = self._recent(address)
        extra = len(failures) - self.FREE
        return 0.0 if extra < 0 else min(self.MAX_DELAY_S, 0.1 * 2**extra)

    def failed(self, address: str) -> None:
        if len(self._failures) >= self.MAX_ADDRESSES:
            self._failures.clear()
        self._recent(address).append(time.monotonic())

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.setdefault(address, deque(maxlen=64))
        while failures and failures[0] < time.monotonic() - self.WINDOW_S:
            failures.popleft()
        return failures


class Authenticator:
    """Turns what a request shows into a `Caller` (see the module's docstring)."""

    def __init__(self, identity: IdentityCommands, enabled: bool, run: Any) -> None:
        """`run(fn, *args)` runs a blocking call off the event loop (the store's reads and
        the slow hash)."""
        self.identity = identity
        self.enabled = enabled
        self.run = run
        self.throttle = Throttle()
        self._accepted: dict[bytes, float] = {}  # digest of a token that worked -> when

    async def caller(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], params: Mapping[str, Any] | None, address: str
    ) -> Caller:
        """The caller of a request: its `Authorization: Bearer` header, else the token in a
        websocket's `connection_init` payload, else the session cookie."""
        if not self.enabled:
            return Caller(None, _actor_header(headers, params))
        token = bearer(params, headers) or cookies.get(SESSION_COOKIE) or None
        return await self.check(token, address)

    async def check(self, token: str | None, address: str) -> Caller:
        """A caller for `token`: its principal, or why it was refused."""
        if not token:
            problem = UnauthenticatedError(
                "missing", "sign in: send a token as `Authorization: Bearer <token>` (jobledger token create makes one)"
            )
            return Caller(None, None, problem)
        digest = hashlib.sha256(token.encode()).digest()
        if digest not in self._accepted:
            wait = self.throttle.delay(address)
            if wait:
                await asyncio.sleep(wait)
        try:
            principal = await self.run(self.identity.authenticate, token)
        except UnauthenticatedError as problem:
            self._accepted.pop(digest, None)
            self.throttle.failed(address)
            log.warning("refused a token from %s: %s", address, problem.reason)
            return Caller(None, None, problem, token)
        if len(self._accepted) > 10_000:
            self._accepted.clear()
        self._accepted[digest] = time.monotonic()
        return Caller(principal, principal.user, None, token, time.monotonic())

    async def refresh(self, caller: Caller, address: str = "websocket") -> Caller:
        """The caller read again if its principal is older than RECHECK_S (a websocket's
        token may have been revoked, or its user's roles changed, since it connected)."""
        if not self.enabled or caller.token is None or time.monotonic() - caller.checked < RECHECK_S:
            return caller
        fresh = await self.check(caller.token, address)
        caller.principal, caller.actor, caller.problem, caller.checked = (
            fresh.principal,
            fresh.actor,
            fresh.problem,
            fresh.checked,
        )
        return caller


def bearer(params: Mapping[str, Any] | None, headers: Mapping[str, str]) -> str | None:
    """The token in a `connection_init` payload (`Authorization: Bearer ...` or `token`),
    else in the Authorization header."""
    for source in (params or {}, headers):
        for key, value in source.items():
            if not isinstance(key, str) or not isinstance(value, str):
                continue
            if key.lower() == "authorization":
                scheme, _, rest = value.strip().partition(" ")
                return rest.strip() if scheme.lower() == "bearer" else value.strip()
            if key.lower() == "token" and source is params:
                return value.strip()
    return None


def _actor_header(headers: Mapping[str, str], params: Mapping[str, Any] | None) -> str | None:
    """With authentication off: the X-Jobledger-User header (or the same key in a
    websocket's connection_init payload)."""
    for key, value in (params or {}).items():
        if isinstance(key, str) and key.lower() == ACTOR_HEADER.lower() and isinstance(value, str) and value:
            return value
    return headers.get(ACTOR_HEADER) or None
