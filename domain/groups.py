"""The Group aggregate: a team (or a farm's machines) whose members each hold a role."""

from __future__ import annotations

from eventsourcing.domain import event

from domain.access import Role
from domain.base import LedgerAggregate
from domain.errors import ConflictError, NotFoundError, ValidationError
from domain.limits import MAX_GROUP_CODE
from domain.rules import CODE_PATTERN, check_string, shown


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
    def __init__(self, code: str, description: str) -> None:
        self.code = code
        self.description = description
        self.members: dict[str, str] = {}  # user name -> role

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
