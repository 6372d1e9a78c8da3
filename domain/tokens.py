"""The Token aggregate, and what a token string is: `jl_<prefix>_<secret>`.

The prefix is public: it names the token in lists, logs and `jobledger token revoke`, and
the token's aggregate id is derived from it, so finding a token by its prefix needs no
index and two tokens can never share one. The secret is shown once, when the token is
issued; the store keeps only its argon2 hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import ValidationError
from domain.limits import MAX_TOKEN_LIFETIME_S, MAX_TOKEN_TEXT, MIN_TOKEN_LIFETIME_S
from domain.rules import shown

TOKEN_MARK = "jl"
PREFIX_LENGTH = 12  # hex digits: 48 bits, so a random new prefix practically never collides
SECRET_LENGTH = 43  # characters of SECRET_ALPHABET: 256 bits
SECRET_ALPHABET = string.ascii_letters + string.digits  # no `_` or `-`: a double click selects it whole
_PREFIX = re.compile(rf"^[0-9a-f]{{{PREFIX_LENGTH}}}$")
_SECRET = re.compile(rf"^[A-Za-z0-9]{{{SECRET_LENGTH}}}$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def token_id(prefix: str) -> UUID:
    """The id of the token with this prefix."""
    return uuid5(NAMESPACE_URL, f"jobledger:token:{prefix}")


def new_prefix() -> str:
    return secrets.token_hex(PREFIX_LENGTH // 2)


def new_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def token_text(prefix: str, secret: str) -> str:
    return f"{TOKEN_MARK}_{prefix}_{secret}"


@dataclass(frozen=True)
class PresentedToken:
    """A token string taken apart. Its repr shows the prefix only."""

    prefix: str
    secret: str

    def __repr__(self) -> str:
        return f"PresentedToken(prefix={self.prefix!r})"


def parse_token(text: object) -> PresentedToken | None:
    """`jl_<prefix>_<secret>` taken apart; None if `text` is not shaped like a token."""
    if not isinstance(text, str) or len(text) > MAX_TOKEN_TEXT:
        return None
    mark, _, rest = text.strip().partition("_")
    prefix, _, secret = rest.partition("_")
    if mark != TOKEN_MARK or not _PREFIX.match(prefix) or not _SECRET.match(secret):
        return None
    return PresentedToken(prefix, secret)


def prefix_of(ref: str) -> str | None:
    """The prefix a reference to a token names: the prefix itself, `jl_<prefix>`, or a whole
    token; None if it names none of these."""
    presented = parse_token(ref)
    if presented is not None:
        return presented.prefix
    bare = ref.strip().removeprefix(f"{TOKEN_MARK}_").rstrip("_")
    return bare if _PREFIX.match(bare) else None


def check_lifetime(field: str, value: object) -> timedelta | None:
    """How long a new token lasts: None (until revoked), a timedelta, whole seconds, or text
    such as `90m`, `12h`, `30d`, `2w`; from MIN_TOKEN_LIFETIME_S to MAX_TOKEN_LIFETIME_S."""
    if value is None:
        return None
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValidationError(field, f"{shown(value)} is not a duration such as 90m, 12h, 30d or 2w")
        value = int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if isinstance(value, int) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta):
        raise ValidationError(field, "must be a duration (seconds, or text such as 30d), or null for none")
    if not MIN_TOKEN_LIFETIME_S <= value.total_seconds() <= MAX_TOKEN_LIFETIME_S:
        raise ValidationError(
            field, f"a token lasts {MIN_TOKEN_LIFETIME_S} s to {MAX_TOKEN_LIFETIME_S // 86400} days (got {value})"
        )
    return value


class SecretHasher:
    """argon2id hashes of token secrets (argon2-cffi's defaults: ~50 ms and 64 MiB each).

    A secret that verified once is remembered in this process only, as its SHA-256 digest
    with the hash it verified against, so a client sending its token with every request
    costs one slow check, not one per request; revocation and expiry are still read from
    the token every time."""

    MAX_REMEMBERED = 10_000

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._verified: dict[str, bytes] = {}  # argon2 hash -> digest of the secret that matched it
        self._lock = threading.Lock()

    def hash(self, secret: str) -> str:
        return self.hasher.hash(secret)

    def verify(self, secret_hash: str, secret: str) -> bool:
        digest = hashlib.sha256(secret.encode()).digest()
        with self._lock:
            known = self._verified.get(secret_hash)
        if known is not None:
            return hmac.compare_digest(known, digest)
        try:
            self.hasher.verify(secret_hash, secret)
        except (VerificationError, InvalidHashError):
            return False
        with self._lock:
            if len(self._verified) >= self.MAX_REMEMBERED:
                self._verified.clear()
            self._verified[secret_hash] = digest
        return True


class Token(LedgerAggregate):
    """A bearer token of one user: found by its public prefix, checked against the hash of
    its secret, usable until it expires or is revoked."""

    @staticmethod
    def create_id(prefix: str) -> UUID:
        return token_id(prefix)

    @event("Issued")
    def __init__(
        self, prefix: str, user_id: str, user: str, secret_hash: str, label: str, expires_at: datetime | None
    ) -> None:
        self.prefix = prefix
        self.user_id = user_id
        self.user = user
        self.secret_hash = secret_hash
        self.label = label
        self.expires_at = expires_at
        self.revoked = False

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @event("Revoked")
    def revoke(self) -> None:
        self.revoked = True
