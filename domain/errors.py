"""The errors commands raise; the API maps each class to one contract code."""

from __future__ import annotations

from collections.abc import Iterable


class LedgerError(Exception):
    """Base of every error a user can act on. `code` is the contract's error code."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def details(self) -> dict[str, object]:
        """Structured facts about the error, shown to clients beside the message."""
        return {}


class NotFoundError(LedgerError):
    code = "NOT_FOUND"

    def __init__(self, kind: str, key: object) -> None:
        shown = str(key) if len(str(key)) <= 100 else str(key)[:100] + "…"  # never echo megabytes
        super().__init__(f"{kind} {shown} does not exist")
        self.kind = kind
        self.key = shown

    @property
    def details(self) -> dict[str, object]:
        return {"kind": self.kind, "key": self.key}


class ValidationError(LedgerError):
    code = "VALIDATION"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @property
    def details(self) -> dict[str, object]:
        return {"field": self.field, "reason": self.reason}


class ConflictError(LedgerError):
    code = "CONFLICT"


class InvalidTransitionError(LedgerError):
    code = "INVALID_TRANSITION"

    def __init__(self, kind: str, current: str, requested: str, allowed: Iterable[str]) -> None:
        self.kind = kind
        self.current = str(current)
        self.requested = str(requested)
        self.allowed = sorted(str(a) for a in allowed)
        choices = ", ".join(self.allowed) or "nothing (it is final)"
        super().__init__(
            f"{kind} cannot go from {self.current} to {self.requested}; from {self.current} it may go to: {choices}"
        )

    @property
    def details(self) -> dict[str, object]:
        return {"from": self.current, "to": self.requested, "allowed": self.allowed}


class UnauthenticatedError(LedgerError):
    """No valid token: missing, malformed, unknown, revoked or expired, or its user disabled.
    `reason` says which, for the log and for the token's holder; it tells nothing about a
    token to anyone who cannot show its secret (see `domain.identity.authenticate`)."""

    code = "UNAUTHENTICATED"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def details(self) -> dict[str, object]:
        return {"reason": self.reason}


class ForbiddenError(LedgerError):
    """A known caller without the right to do this."""

    code = "FORBIDDEN"
