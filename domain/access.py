"""Who may do what: the roles a user holds in a group, the rights each role gives (as
data, in one table), and the principal an authenticated token stands for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from domain.rules import check_enum


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

    def may(self, right: Right, group: str) -> bool:
        """Whether this user holds `right` in `group`."""
        if self.site_admin:
            return True
        role = self.groups.get(group)
        return role is not None and right in RIGHTS[role]
