"""Identity commands: users, groups, their members' roles and tokens (`ledger.identity`),
and `authenticate`, which turns a token into the principal it stands for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from uuid import UUID

from domain.access import (
    ADMINS_GROUP,
    Principal,
    Right,
    Role,
    check_right,
    check_role,
    check_self_or_site_admin,
    check_site_admin,
    current_principal,
)
from domain.commands import Runner, Service, Written, command
from domain.errors import ForbiddenError, NotFoundError, UnauthenticatedError, ValidationError
from domain.groups import Group, check_group_code
from domain.limits import MAX_DESCRIPTION, MAX_TOKEN_LABEL, MAX_TOKEN_TEXT
from domain.rules import check_bool, check_optional_string, check_string
from domain.tokens import (
    SecretHasher,
    Token,
    check_lifetime,
    new_prefix,
    new_secret,
    parse_token,
    prefix_of,
    token_id,
    token_text,
)
from domain.unit_of_work import UnitOfWork
from domain.users import DIRECTORY_ID, Directory, User, check_user_name

SIGN_IN_LABEL = "sign-in link"  # a token that signs a browser in once
SESSION_LABEL = "browser session"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued: the only time its whole text exists outside its holder's hands
    (its repr leaves it out, so that it reaches no log by accident)."""

    token: str = field(repr=False)
    prefix: str
    written: Written

    @property
    def id(self) -> str:
        """The token's id (its aggregate's)."""
        return self.written.id


@dataclass
class _Minting:
    """A token about to be issued: its secret and the secret's hash, made once, before the
    command (argon2 takes tens of milliseconds); a prefix of its own for every attempt of
    the command, so that the improbable collision with another token's costs a retry."""

    secret: str
    secret_hash: str
    lifetime: timedelta | None
    label: str
    clock: Callable[[], datetime]
    prefix: str = ""  # the last attempt's, which is the one saved

    def mint(self, uow: UnitOfWork, user: User) -> Token:
        user.check_enabled()
        self.prefix = new_prefix()
        expires_at = self.clock() + self.lifetime if self.lifetime is not None else None
        return uow.add(Token(self.prefix, str(user.id), user.name, self.secret_hash, self.label, expires_at))

    def issued(self, written: Written) -> IssuedToken:
        return IssuedToken(token_text(self.prefix, self.secret), self.prefix, written)


class IdentityCommands(Service):
    """The commands on users, groups and tokens (`ledger.identity`). Each takes `actor=` and
    answers with `Written` (the ids of what it changed), except those issuing a token,
    which answer with an `IssuedToken`. `authenticate` only reads."""

    name = "identity"

    def __init__(self, runner: Runner, hasher: SecretHasher | None = None) -> None:
        super().__init__(runner)
        self.hasher = hasher or SecretHasher()
        self.clock: Callable[[], datetime] = utc_now  # what expiry is measured against

    # -- users and groups -------------------------------------------------------

    @command
    def create_user(self, uow: UnitOfWork, name: str, *, site_admin: bool = False) -> list[str]:
        """A new user with a name no other user has; a site admin (every right everywhere) if asked."""
        check_site_admin("create users")
        name = check_user_name("name", name)
        check_bool("siteAdmin", site_admin)
        directory = _directory(uow)
        directory.check_user_name_free(name)
        return [str(_new_user(uow, directory, name, site_admin).id)]

    @command
    def disable_user(self, uow: UnitOfWork, user: str) -> list[str]:
        """No token of the user's works any more (until they are enabled again)."""
        check_site_admin("disable users")
        found = _user(uow, user)
        if not found.disabled:
            found.disable()
        return [str(found.id)]

    @command
    def enable_user(self, uow: UnitOfWork, user: str) -> list[str]:
        check_site_admin("enable users")
        found = _user(uow, user)
        if found.disabled:
            found.enable()
        return [str(found.id)]

    @command
    def set_site_admin(self, uow: UnitOfWork, user: str, site_admin: bool) -> list[str]:
        check_site_admin("make or unmake site admins")
        found = _user(uow, user)
        if check_bool("siteAdmin", site_admin) != found.site_admin:
            found.set_site_admin(site_admin)
        return [str(found.id)]

    @command
    def create_group(
        self, uow: UnitOfWork, code: str, *, description: str = "", allow_commands: bool = False
    ) -> list[str]:
        """A new group, with no members yet, and a code no other group has."""
        check_site_admin("create groups")
        code = check_group_code("code", code)
        description = check_string("description", description, MAX_DESCRIPTION)
        allow = check_bool("allowCommands", allow_commands)
        directory = _directory(uow)
        directory.check_group_code_free(code)
        return [str(_new_group(uow, directory, code, description, allow).id)]

    @command
    def update_group(
        self, uow: UnitOfWork, code: str, *, description: str | None = None, allow_commands: bool | None = None
    ) -> list[str]:
        """Change a group's description, or whether its queues may hold command tasks
        (which only a site admin may change: commands run on the workers' machines)."""
        code = check_group_code("code", code)
        check_right(Right.MANAGE_GROUP, code, f"group {code!r}")
        changes: dict[str, object] = {}
        if description is not None:
            changes["description"] = check_string("description", description, MAX_DESCRIPTION)
        if allow_commands is not None:
            check_site_admin("allow or forbid command tasks")
            changes["allow_commands"] = check_bool("allowCommands", allow_commands)
        team = _group(uow, code)
        different = {k: v for k, v in changes.items() if getattr(team, k) != v}
        if different:
            team.update(different)
        return [str(team.id)]

    @command
    def add_member(self, uow: UnitOfWork, group: str, user: str, role: Role | str) -> list[str]:
        """Make `user` a member of `group` in `role`; CONFLICT if they are one already."""
        _check_manages(group)
        wanted = check_role("role", role)
        team, member = _group(uow, group), _user(uow, user)
        team.check_not_member(member.name)
        _set_role(team, member, wanted)
        return [str(team.id)]

    @command
    def change_role(self, uow: UnitOfWork, group: str, user: str, role: Role | str) -> list[str]:
        """Give a member of `group` another role."""
        _check_manages(group)
        wanted = check_role("role", role)
        team, member = _group(uow, group), _user(uow, user)
        team.check_member(member.name)
        if team.role_of(member.name) != wanted:
            _set_role(team, member, wanted)
        return [str(team.id)]

    @command
    def remove_member(self, uow: UnitOfWork, group: str, user: str) -> list[str]:
        _check_manages(group)
        team, member = _group(uow, group), _user(uow, user)
        team.check_member(member.name)
        team.remove_member(str(member.id), member.name)
        member.note_membership(str(team.id), team.code, None)
        return [str(team.id)]

    # -- tokens -----------------------------------------------------------------

    def issue_token(
        self,
        user: str,
        *,
        expires_in: object = None,
        label: str | None = None,
        actor: str | None = None,
        principal: Principal | None = None,
    ) -> IssuedToken:
        """A new token for `user`, lasting `expires_in` (seconds, a timedelta or text such as
        `30d`; None: until revoked). The answer holds the token's text: it is never shown
        again. Users issue their own tokens; a site admin issues anyone's."""
        name = check_user_name("user", user)
        if principal is not None and not principal.site_admin and principal.user != name:
            raise ForbiddenError(f"only {name} or a site admin may issue tokens for this user")  # before the slow hash
        minting = self._minting(expires_in, label)
        return minting.issued(self._issue_token(minting, name, actor=actor, principal=principal))

    @command
    def _issue_token(self, uow: UnitOfWork, minting: _Minting, user: str) -> list[str]:
        check_self_or_site_admin(user, "issue tokens for this user")
        return [str(minting.mint(uow, _user(uow, user)).id)]

    def bootstrap(self, user: str = "admin", *, actor: str | None = None) -> IssuedToken | None:
        """On a store with no user yet: the first admin (a site admin, and admin of the
        admins' group, whose queues may hold command tasks) and a token for them that lasts
        until revoked. None once any user exists (so only the first start of the first
        instance makes one)."""
        name = check_user_name("user", user)
        minting = self._minting(None, "first admin")
        written = self._bootstrap(minting, name, actor=actor)
        return minting.issued(written) if written.ids else None

    @command
    def _bootstrap(self, uow: UnitOfWork, minting: _Minting, user: str) -> list[str]:
        directory = _directory(uow)
        if directory.users:
            return []
        admin = _new_user(uow, directory, user, True)
        admins = _find_group(uow, directory, ADMINS_GROUP) or _new_group(
            uow, directory, ADMINS_GROUP, "The site's administrators", True
        )
        _set_role(admins, admin, Role.ADMIN)
        return [str(minting.mint(uow, admin).id)]

    def sign_in(self, token: str, *, lifetime: object = "30d") -> tuple[Principal, IssuedToken]:
        """Exchange a token for a browser session's own token (lasting `lifetime`); a
        one-time sign-in token (see `issue_sign_in`) is revoked in the same command."""
        principal = self.authenticate(token)
        minting = self._minting(lifetime, SESSION_LABEL)
        presented = parse_token(token)
        assert presented is not None  # authenticate parsed it
        written = self._sign_in(minting, principal.user, presented.prefix, actor=principal.user)
        return principal, minting.issued(written)

    @command
    def _sign_in(self, uow: UnitOfWork, minting: _Minting, user: str, prefix: str) -> list[str]:
        shown = uow.get(Token, token_id(prefix))
        if shown.label == SIGN_IN_LABEL:
            if shown.revoked:
                raise UnauthenticatedError("revoked", "this sign-in link was used already; ask for a new one")
            shown.revoke()
        return [str(minting.mint(uow, _user(uow, user)).id)]

    def issue_sign_in(self, user: str, *, actor: str | None = None) -> IssuedToken:
        """A token that signs a browser in once (within a day), for the URL `serve` prints."""
        minting = self._minting("1d", SIGN_IN_LABEL)
        return minting.issued(self._issue_token(minting, check_user_name("user", user), actor=actor))

    def ensure_token(
        self,
        user: str,
        group: str | None = None,
        role: Role | str | None = None,
        *,
        expires: object = None,
        label: str | None = None,
        site_admin: bool = False,
        actor: str | None = None,
    ) -> IssuedToken:
        """A new token for `user`, in one atomic command that also creates the user when
        missing, the group when missing, and makes the user a member of `group` in `role`
        (or changes their role to it). `group` and `role` go together. `site_admin` makes
        the user a site admin (it never takes that away)."""
        name = check_user_name("user", user)
        code = check_group_code("group", group) if group is not None else None
        wanted = check_role("role", role) if role is not None else None
        if code is not None and wanted is None:
            raise ValidationError("role", "is required with a group: the role the user holds in it")
        if wanted is not None and code is None:
            raise ValidationError("group", "is required with a role: the group the role is held in")
        check_bool("siteAdmin", site_admin)
        minting = self._minting(expires, label)
        return minting.issued(self._ensure_token(minting, name, code, wanted, site_admin, actor=actor))

    @command
    def _ensure_token(
        self, uow: UnitOfWork, minting: _Minting, user: str, group: str | None, role: Role | None, site_admin: bool
    ) -> list[str]:
        directory = _directory(uow)
        member = _find_user(uow, directory, user) or _new_user(uow, directory, user, site_admin)
        if site_admin and not member.site_admin:
            member.set_site_admin(True)
        if group is not None and role is not None:
            team = _find_group(uow, directory, group) or _new_group(uow, directory, group, "")
            if team.role_of(user) != role:
                _set_role(team, member, role)
        return [str(minting.mint(uow, member).id)]

    @command
    def revoke_token(self, uow: UnitOfWork, token: str) -> list[str]:
        """Revoke a token named by its prefix, its whole text or its id; its next use fails.
        Revoking a revoked token changes nothing. Users revoke their own; a site admin anyone's."""
        found = _token(uow, token)
        principal = current_principal()
        if principal is not None and not principal.site_admin and principal.user != found.user:
            raise NotFoundError("Token", found.prefix)  # another's token: as if there were none
        if not found.revoked:
            found.revoke()
        return [str(found.id)]

    def _minting(self, expires_in: object, label: str | None) -> _Minting:
        lifetime = check_lifetime("expiresIn", expires_in)
        text = check_optional_string("label", label, MAX_TOKEN_LABEL) or ""
        secret = new_secret()
        return _Minting(secret, self.hasher.hash(secret), lifetime, text, self.clock)

    # -- authentication ---------------------------------------------------------

    def authenticate(self, token: object) -> Principal:
        """The principal `token` stands for; UnauthenticatedError if it is missing, not shaped
        like a token, unknown, revoked or expired, or its user is disabled. Whether a token
        was revoked or expired is told only to someone who shows its secret."""
        if token is None or token == "":
            raise UnauthenticatedError("missing", "a token is required")
        presented = parse_token(token)
        if presented is None:
            raise UnauthenticatedError("malformed", "not a jobledger token: a token reads jl_<prefix>_<secret>")
        uow = UnitOfWork(self.runner.loader)
        found = uow.find(Token, token_id(presented.prefix))
        if found is None or not self.hasher.verify(found.secret_hash, presented.secret):
            raise UnauthenticatedError("unknown", "unknown token")
        if found.revoked:
            raise UnauthenticatedError("revoked", f"token {found.prefix} was revoked")
        if found.expired(self.clock()):
            raise UnauthenticatedError("expired", f"token {found.prefix} expired at {found.expires_at}")
        holder = uow.get(User, found.user_id)
        if holder.disabled:
            raise UnauthenticatedError("disabled", f"user {holder.name!r} is disabled")
        return Principal(
            user=holder.name,
            user_id=str(holder.id),
            site_admin=holder.site_admin,
            groups=MappingProxyType({code: Role(role) for code, role in holder.groups.items()}),
            token_id=str(found.id),
        )


# -- finding and making the aggregates, within one command -----------------------------


def _directory(uow: UnitOfWork) -> Directory:
    """The directory; made by the first command that needs it."""
    return uow.find(Directory, DIRECTORY_ID) or uow.add(Directory())


def _find_user(uow: UnitOfWork, directory: Directory, name: str) -> User | None:
    user_id = directory.user_id_for(name)
    return uow.get(User, user_id) if user_id is not None else None


def _find_group(uow: UnitOfWork, directory: Directory, code: str) -> Group | None:
    group_id = directory.group_id_for(code)
    return uow.get(Group, group_id) if group_id is not None else None


def _user(uow: UnitOfWork, name: object) -> User:
    """A user by name; NotFoundError if there is none."""
    name = check_user_name("user", name)
    found = _find_user(uow, _directory(uow), name)
    if found is None:
        raise NotFoundError("User", name)
    return found


def _group(uow: UnitOfWork, code: object) -> Group:
    """A group by code; NotFoundError if there is none."""
    code = check_group_code("group", code)
    found = _find_group(uow, _directory(uow), code)
    if found is None:
        raise NotFoundError("Group", code)
    return found


def _token(uow: UnitOfWork, ref: object) -> Token:
    """A token by prefix, whole text or id. A NotFoundError names the prefix, never a secret."""
    text = check_string("token", ref, MAX_TOKEN_TEXT, blank=False)
    prefix = prefix_of(text)
    if prefix is not None:
        found = uow.find(Token, token_id(prefix))
        if found is None:
            raise NotFoundError("Token", prefix)
        return found
    try:
        return uow.get(Token, UUID(text.strip()))
    except ValueError:
        raise ValidationError("token", "give a token's prefix, the token itself, or its id") from None


def _new_user(uow: UnitOfWork, directory: Directory, name: str, site_admin: bool) -> User:
    user = uow.add(User(name, site_admin))
    directory.register_user(name, str(user.id))
    return user


def _check_manages(group: object) -> None:
    """FORBIDDEN unless the caller administers the group (checked before looking it up, so
    that nothing tells an outsider whether it exists)."""
    code = check_group_code("group", group)
    check_right(Right.MANAGE_GROUP, code, f"group {code!r}")


def _new_group(
    uow: UnitOfWork, directory: Directory, code: str, description: str, allow_commands: bool = False
) -> Group:
    group = uow.add(Group(code, description, allow_commands))
    directory.register_group(code, str(group.id))
    return group


def _set_role(group: Group, user: User, role: Role) -> None:
    """Record the membership on both sides (see `User.groups`)."""
    if group.role_of(user.name) is None:
        group.add_member(str(user.id), user.name, role.value)
    else:
        group.change_role(str(user.id), user.name, role.value)
    user.note_membership(str(group.id), group.code, role.value)


__all__ = ["IdentityCommands", "IssuedToken", "Principal", "Role"]
