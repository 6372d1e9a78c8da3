"""The GraphQL side of identity: `me`, the groups and users an admin manages, and the
mutations on users, groups, members and tokens (their rules are in `domain.identity`)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types import Info

from api.context import Context, acting, caller, services
from domain.errors import ForbiddenError
from domain.groups import Group as GroupAggregate
from domain.groups import find_group
from domain.unit_of_work import UnitOfWork
from domain.users import DIRECTORY_ID, Directory, User


@strawberry.type
class Membership:
    group: str
    role: str


@strawberry.type
class Me:
    user: str | None = strawberry.field(description="null while authentication is off")
    site_admin: bool
    auth: bool = strawberry.field(description="whether the service requires tokens")
    groups: list[Membership]


@strawberry.type
class Member:
    user: str
    role: str


@strawberry.type
class GroupInfo:
    code: str
    description: str
    allow_commands: bool
    members: list[Member]

    @classmethod
    def of(cls, group: GroupAggregate) -> GroupInfo:
        return cls(
            code=group.code,
            description=group.description,
            allow_commands=group.allow_commands,
            members=[Member(user=u, role=r) for u, r in sorted(group.members.items())],
        )


@strawberry.type
class UserInfo:
    name: str
    site_admin: bool
    disabled: bool
    groups: list[Membership]


@strawberry.type
class IssuedToken:
    token: str = strawberry.field(description="the token itself: shown this once, never again")
    prefix: str = strawberry.field(description="its public part, to name it (e.g. to revoke it)")
    user: str


def _read(info: Info[Context, Any], fn: Any) -> Any:
    """Run `fn(uow)` on fresh aggregates off the event loop."""
    ledger = services(info).ledger
    return services(info).call(lambda: fn(UnitOfWork(ledger.identity.runner.loader)))


@strawberry.type
class IdentityQuery:
    @strawberry.field(description="who you are: your user, and your role in each of your groups")
    def me(self, info: Info[Context, None]) -> Me:
        who = caller(info)
        principal = who.require()
        if principal is None:
            return Me(user=who.actor, site_admin=True, auth=False, groups=[])
        memberships = [Membership(group=g, role=r.value) for g, r in sorted(principal.groups.items())]
        return Me(user=principal.user, site_admin=principal.site_admin, auth=True, groups=memberships)

    @strawberry.field(description="the groups you belong to (a site admin: all), with their members")
    async def groups(self, info: Info[Context, None]) -> list[GroupInfo]:
        principal = caller(info).require()

        def read(uow: UnitOfWork) -> list[GroupInfo]:
            directory = uow.find(Directory, DIRECTORY_ID)
            codes = sorted(directory.groups) if directory is not None else []
            if principal is not None and not principal.site_admin:
                codes = [c for c in codes if c in principal.groups]
            found = [find_group(uow, code) for code in codes]
            return [GroupInfo.of(g) for g in found if g is not None]

        return await _read(info, read)  # type: ignore[no-any-return]

    @strawberry.field(description="every user (site admins only)")
    async def users(self, info: Info[Context, None]) -> list[UserInfo]:
        principal = caller(info).require()
        if principal is not None and not principal.site_admin:
            raise ForbiddenError("only a site admin may list the users")

        def read(uow: UnitOfWork) -> list[UserInfo]:
            directory = uow.find(Directory, DIRECTORY_ID)
            users = [uow.get(User, i) for _, i in sorted((directory.users if directory else {}).items())]
            return [
                UserInfo(
                    name=u.name,
                    site_admin=u.site_admin,
                    disabled=u.disabled,
                    groups=[Membership(group=g, role=r) for g, r in sorted(u.groups.items())],
                )
                for u in users
            ]

        return await _read(info, read)  # type: ignore[no-any-return]


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(description="a new user (site admins only)")
    async def create_user(self, info: Info[Context, None], name: str, site_admin: bool = False) -> UserInfo:
        svc = services(info)
        await svc.call(svc.ledger.identity.create_user, name, site_admin=site_admin, **acting(info))
        return UserInfo(name=name, site_admin=site_admin, disabled=False, groups=[])

    @strawberry.mutation(description="no token of the user works any more (site admins only)")
    async def disable_user(self, info: Info[Context, None], name: str) -> bool:
        svc = services(info)
        await svc.call(svc.ledger.identity.disable_user, name, **acting(info))
        return True

    @strawberry.mutation(description="the user's tokens work again (site admins only)")
    async def enable_user(self, info: Info[Context, None], name: str) -> bool:
        svc = services(info)
        await svc.call(svc.ledger.identity.enable_user, name, **acting(info))
        return True

    @strawberry.mutation(description="a new group (site admins only)")
    async def create_group(
        self, info: Info[Context, None], code: str, description: str = "", allow_commands: bool = False
    ) -> GroupInfo:
        svc = services(info)
        await svc.call(
            svc.ledger.identity.create_group,
            code,
            description=description,
            allow_commands=allow_commands,
            **acting(info),
        )
        return await _group(info, code)

    @strawberry.mutation(description="change a group's description; allowCommands: site admins only")
    async def update_group(
        self,
        info: Info[Context, None],
        code: str,
        description: str | None = None,
        allow_commands: bool | None = None,
    ) -> GroupInfo:
        svc = services(info)
        await svc.call(
            svc.ledger.identity.update_group,
            code,
            description=description,
            allow_commands=allow_commands,
            **acting(info),
        )
        return await _group(info, code)

    @strawberry.mutation(description="make a user a member of a group in a role (the group's admins)")
    async def add_member(self, info: Info[Context, None], group: str, user: str, role: str) -> GroupInfo:
        svc = services(info)
        await svc.call(svc.ledger.identity.add_member, group, user, role, **acting(info))
        return await _group(info, group)

    @strawberry.mutation(description="give a member another role (the group's admins)")
    async def change_role(self, info: Info[Context, None], group: str, user: str, role: str) -> GroupInfo:
        svc = services(info)
        await svc.call(svc.ledger.identity.change_role, group, user, role, **acting(info))
        return await _group(info, group)

    @strawberry.mutation(description="remove a member from a group (the group's admins)")
    async def remove_member(self, info: Info[Context, None], group: str, user: str) -> GroupInfo:
        svc = services(info)
        await svc.call(svc.ledger.identity.remove_member, group, user, **acting(info))
        return await _group(info, group)

    @strawberry.mutation(
        description="a new token for `user` (default: you; another's: site admins only), lasting "
        "`expiresIn` (e.g. 30d; null: until revoked). The answer is the only time it is shown."
    )
    async def create_token(
        self,
        info: Info[Context, None],
        user: str | None = None,
        expires_in: str | None = None,
        label: str | None = None,
    ) -> IssuedToken:
        svc = services(info)
        acting_as = acting(info)
        holder = user or acting_as["actor"]
        if not holder:
            raise ForbiddenError("name the user the token is for (authentication is off: there is no 'you')")
        issued = await svc.call(
            svc.ledger.identity.issue_token, holder, expires_in=expires_in, label=label, **acting_as
        )
        return IssuedToken(token=issued.token, prefix=issued.prefix, user=holder)

    @strawberry.mutation(description="revoke a token (by prefix): yours, or anyone's for a site admin")
    async def revoke_token(self, info: Info[Context, None], token: str) -> bool:
        svc = services(info)
        await svc.call(svc.ledger.identity.revoke_token, token, **acting(info))
        return True


async def _group(info: Info[Context, Any], code: str) -> GroupInfo:
    def read(uow: UnitOfWork) -> GroupInfo:
        group = find_group(uow, code)
        assert group is not None  # the command just found or made it
        return GroupInfo.of(group)

    return await _read(info, read)  # type: ignore[no-any-return]
