"""The Group aggregate: a team (or a farm's machines) whose members each hold a role."""

from __future__ import annotations

from eventsourcing.domain import event

from domain.access import ADMINS_GROUP, Role
from domain.base import LedgerAggregate
from domain.errors import ConflictError, NotFoundError, ValidationError
from domain.limits import MAX_GROUP_CODE
from domain.rules import CODE_PATTERN, check_string, shown
from domain.unit_of_work import UnitOfWork
from domain.users import DIRECTORY_ID, Directory


def check_group_code(field: str, code: object) -> str:
    """A group's code: 1 to MAX_GROUP_CODE characters of `a-z 0-9 _ -`, as a queue's."""
    check_string(field, code, MAX_GROUP_CODE, blank=False)
    assert isinstance(code, str)
    if not CODE_PATTERN.match(code):
        raise ValidationError(field, f"{shown(code)} may contain only lowercase letters, digits, '_' and '-'")
    return code


class Group(LedgerAggregate):
    """Who belongs to the group, and in which role. Members are named by user name,
    which never changes and is never reused (users are disabled, not deleted)."""

    @event("Created")
    def __init__(self, code: str, description: str, allow_commands: bool = False) -> None:
        self.code = code
        self.description = description
        self.members: dict[str, str] = {}  # user name -> role
        # Whether jobs of the group's queues may hold command tasks (shell commands run on
        # workers started with --allow-commands). Only a site admin changes it.
        self.allow_commands = allow_commands

    @event("Updated")
    def update(self, changes: dict[str, object]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    def role_of(self, user: str) -> Role | None:
        role = self.members.get(user)
        return Role(role) if role is not None else None

    def check_member(self, user: str) -> None:
        if user not in self.members:
            raise NotFoundError("Member", f"{user} of group {self.code}")

    def check_not_member(self, user: str) -> None:
        if user in self.members:
            raise ConflictError(
                f"user {user!r} is already a member of group {self.code!r} (as {self.members[user]}); "
                "change their role instead"
            )

    @event("MemberAdded")
    def add_member(self, user_id: str, user: str, role: str) -> None:
        self.members = {**self.members, user: role}

    @event("MemberRoleChanged")
    def change_role(self, user_id: str, user: str, role: str) -> None:
        self.members = {**self.members, user: role}

    @event("MemberRemoved")
    def remove_member(self, user_id: str, user: str) -> None:
        self.members = {name: role for name, role in self.members.items() if name != user}


def find_group(uow: UnitOfWork, code: str) -> Group | None:
    """The group of this code, if there is one."""
    directory = uow.find(Directory, DIRECTORY_ID)
    group_id = directory.group_id_for(code) if directory is not None else None
    return uow.get(Group, group_id) if group_id is not None else None


def commands_allowed(uow: UnitOfWork, code: str) -> bool:
    """Whether the group's queues may hold command tasks. The admins' group allows them
    until a site admin says otherwise (it exists before anyone has made it, on a server
    with authentication off)."""
    group = find_group(uow, code)
    if group is None:
        return code == ADMINS_GROUP
    return group.allow_commands


def check_group_exists(uow: UnitOfWork, code: str) -> None:
    """NOT_FOUND unless the group exists (the admins' group always does)."""
    if code != ADMINS_GROUP and find_group(uow, code) is None:
        raise NotFoundError("Group", code)
