"""Who may do what: the roles a user holds in a group, the rights each role gives (as
data, in one table), and the principal an authenticated token stands for."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from domain.errors import ForbiddenError, NotFoundError
from domain.rules import check_enum

# The group that owns the default queue, and every queue recorded before queues had owners.
ADMINS_GROUP = "admins"


class Role(StrEnum):
    """A user's place in one group."""

    VIEWER = "viewer"  # reads the group's queues, jobs, tasks and events
    MEMBER = "member"  # and submits jobs, and manages the jobs it submitted
    OPERATOR = "operator"  # and manages every job and queue of the group
    WORKER = "worker"  # claims, heartbeats, completes and fails the group's tasks, and nothing else
    ADMIN = "admin"  # everything an operator does, and manages the group itself (its members)


class Right(StrEnum):
    READ = "read"  # the group's queues, jobs, tasks and events, counts included
    SUBMIT = "submit"  # create jobs; change, pause, abort and delete one's own
    MANAGE_JOBS = "manage_jobs"  # change any job of the group's queues
    MANAGE_QUEUES = "manage_queues"  # create, change, seal and delete the group's queues
    WORK = "work"  # claim tasks, heartbeat, complete and fail them
    MANAGE_GROUP = "manage_group"  # add and remove members, change their roles


_READER = frozenset({Right.READ})
_MEMBER = _READER | {Right.SUBMIT}
_OPERATOR = _MEMBER | {Right.MANAGE_JOBS, Right.MANAGE_QUEUES}

RIGHTS: Mapping[Role, frozenset[Right]] = MappingProxyType(
    {
        Role.VIEWER: _READER,
        Role.MEMBER: _MEMBER,
        Role.OPERATOR: _OPERATOR,
        # A worker's token is a machine's: it sees the tasks it claims, not the group's lists.
        Role.WORKER: frozenset({Right.WORK}),
        Role.ADMIN: _OPERATOR | {Right.MANAGE_GROUP},
    }
)


def check_role(field: str, role: object) -> Role:
    """One of the roles, named in any case."""
    return check_enum(field, Role, role)


@dataclass(frozen=True)
class Principal:
    """The user a token stands for, as `IdentityCommands.authenticate` found them: their
    name (the actor of what they do), whether they are a site admin (every right in every
    group, and the users and groups themselves), and their role in each of their groups."""

    user: str
    user_id: str
    site_admin: bool = False
    groups: Mapping[str, Role] = field(default_factory=dict)
    token_id: str | None = None  # the token they showed, for the log

    def role_in(self, group: str) -> Role | None:
        return self.groups.get(group)

    def sees(self, group: str) -> bool:
        """Whether the group's queues, jobs and tasks exist for this user: a reader of the
        group, or a worker of it (who sees the tasks it claims and their job and queue)."""
        if self.site_admin:
            return True
        role = self.groups.get(group)
        return role is not None and bool(RIGHTS[role] & {Right.READ, Right.WORK})

    def groups_with(self, right: Right) -> frozenset[str] | None:
        """The groups in which this user holds `right`; None for all of them (a site admin)."""
        if self.site_admin:
            return None
        return frozenset(code for code, role in self.groups.items() if right in RIGHTS[role])

    def may(self, right: Right, group: str) -> bool:
        """Whether this user holds `right` in `group`."""
        if self.site_admin:
            return True
        role = self.groups.get(group)
        return role is not None and right in RIGHTS[role]


# -- the caller of the command running now -------------------------------------------

_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("jobledger_principal", default=None)


def current_principal() -> Principal | None:
    """Who the command running in this context runs for; None: the service itself or an
    operator on its machine (the clock, `jobledger token`, a server with auth off)."""
    return _PRINCIPAL.get()


@contextlib.contextmanager
def on_behalf_of(principal: Principal | None) -> Iterator[None]:
    """Check every command run inside the block against `principal`'s rights."""
    token = _PRINCIPAL.set(principal)
    try:
        yield
    finally:
        _PRINCIPAL.reset(token)


def _label(right: Right) -> str:
    return {
        Right.READ: "read",
        Right.SUBMIT: "submit jobs to",
        Right.MANAGE_JOBS: "manage the jobs of",
        Right.MANAGE_QUEUES: "manage the queues of",
        Right.WORK: "work on the tasks of",
        Right.MANAGE_GROUP: "manage",
    }[right]


def check_sees(kind: str, ref: object, group: str) -> None:
    """NOT_FOUND, exactly as for an object that does not exist, unless the caller may see
    the group's objects: nothing tells a caller whether a hidden object exists."""
    principal = current_principal()
    if principal is not None and not principal.sees(group):
        raise NotFoundError(kind, ref)


def check_right(right: Right, group: str, what: str) -> None:
    """FORBIDDEN unless the caller holds `right` in `group`; `what` names the object."""
    principal = current_principal()
    if principal is not None and not principal.may(right, group):
        role = principal.role_in(group)
        held = f"you are {role.value} in group {group!r}" if role else f"you are not a member of group {group!r}"
        raise ForbiddenError(f"you may not {_label(right)} {what}: {held}")


def guard_queue(queue: Any, right: Right, ref: object = None) -> None:
    """The caller may see `queue` (else NOT_FOUND) and holds `right` in its group (else FORBIDDEN)."""
    check_sees("Queue", queue.id if ref is None else ref, queue.group)
    check_right(right, queue.group, f"queue {queue.code!r}")


def guard_job(job: Any, queue: Any, ref: object = None) -> None:
    """The caller may change `job`: an operator of its queue's group, or the member who
    submitted it. Hidden: NOT_FOUND; seen but not theirs to change: FORBIDDEN."""
    check_sees("Job", job.id if ref is None else ref, queue.group)
    principal = current_principal()
    if principal is None or principal.may(Right.MANAGE_JOBS, queue.group):
        return
    if principal.may(Right.SUBMIT, queue.group):
        if job.user == principal.user:
            return
        raise ForbiddenError(
            f"you may change only the jobs you submitted in group {queue.group!r}; "
            f"job {str(job.id)[:8]} is {job.user or 'nobody'}'s (an operator of the group may change it)"
        )
    check_right(Right.MANAGE_JOBS, queue.group, f"job {str(job.id)[:8]}")


def guard_work(queue: Any, what: str) -> None:
    """The caller works for the queue's group (a worker's token, or a site admin)."""
    check_sees("Lease", what, queue.group)
    check_right(Right.WORK, queue.group, f"queue {queue.code!r}")


def check_site_admin(what: str) -> None:
    """FORBIDDEN unless the caller is a site admin (or the service itself)."""
    principal = current_principal()
    if principal is not None and not principal.site_admin:
        raise ForbiddenError(f"only a site admin may {what}")


def check_self_or_site_admin(user: str, what: str) -> None:
    """FORBIDDEN unless the caller is `user` or a site admin."""
    principal = current_principal()
    if principal is not None and not principal.site_admin and principal.user != user:
        raise ForbiddenError(f"only {user} or a site admin may {what}")
