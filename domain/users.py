"""The User aggregate, and the directory that keeps user names and group codes unique."""

from __future__ import annotations

import re
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import ConflictError, ValidationError
from domain.limits import MAX_USER_NAME
from domain.rules import check_string, shown

# Lowercase, so that `Alice` and `alice` can never be two users; `@` and `.` for e-mail-like names.
USER_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@+-]*$")


def check_user_name(field: str, name: object) -> str:
    """A user's name: 1 to MAX_USER_NAME characters of `a-z 0-9 . _ @ + -`, starting with a
    letter or a digit. It is the actor recorded on what they do, and never changes."""
    check_string(field, name, MAX_USER_NAME, blank=False)
    assert isinstance(name, str)
    if not USER_NAME_PATTERN.match(name):
        raise ValidationError(
            field,
            f"{shown(name)} may contain only lowercase letters, digits, '.', '_', '@', '+' and '-', "
            "and starts with a letter or a digit",
        )
    return name


class User(LedgerAggregate):
    """Someone (or a machine) that holds tokens. Never deleted, so a name is never reused;
    disabled instead, which makes every token of theirs unusable.

    `groups` mirrors the group's own record of the membership (`Group.members`): both change
    in one save, so that authenticating reads the user alone, not every group."""

    @event("Created")
    def __init__(self, name: str, site_admin: bool) -> None:
        self.name = name
        self.site_admin = site_admin
        self.disabled = False
        self.groups: dict[str, str] = {}  # group code -> role

    def check_enabled(self) -> None:
        if self.disabled:
            raise ConflictError(f"user {self.name!r} is disabled; enable them first")

    @event("Disabled")
    def disable(self) -> None:
        self.disabled = True

    @event("Enabled")
    def enable(self) -> None:
        self.disabled = False

    @event("SiteAdminChanged")
    def set_site_admin(self, site_admin: bool) -> None:
        self.site_admin = site_admin

    @event("MembershipChanged")
    def note_membership(self, group_id: str, group: str, role: str | None) -> None:
        """The user's role in `group` is now `role` (None: no longer a member)."""
        if role is None:
            self.groups = {code: r for code, r in self.groups.items() if code != group}
        else:
            self.groups = {**self.groups, group: role}


DIRECTORY_ID = uuid5(NAMESPACE_URL, "jobledger:directory")


class Directory(LedgerAggregate):
    """One per store: which user holds each name and which group each code.

    Every command that creates a user or a group writes here, so two concurrent writers
    of one name collide on its version and exactly one of them wins (as `QueueRegistry`
    does for queue codes)."""

    @staticmethod
    def create_id() -> UUID:
        return DIRECTORY_ID

    @event("Created")
    def __init__(self) -> None:
        self.users: dict[str, str] = {}  # name -> user id
        self.groups: dict[str, str] = {}  # code -> group id

    def user_id_for(self, name: str) -> str | None:
        return self.users.get(name)

    def group_id_for(self, code: str) -> str | None:
        return self.groups.get(code)

    def check_user_name_free(self, name: str) -> None:
        if name in self.users:
            raise ConflictError(f"a user named {name!r} already exists; choose another name")

    def check_group_code_free(self, code: str) -> None:
        if code in self.groups:
            raise ConflictError(f"a group with code {code!r} already exists; choose another code")

    @event("UserRegistered")
    def register_user(self, name: str, user_id: str) -> None:
        self.users = {**self.users, name: user_id}

    @event("GroupRegistered")
    def register_group(self, code: str, group_id: str) -> None:
        self.groups = {**self.groups, code: group_id}
