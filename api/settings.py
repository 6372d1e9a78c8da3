"""Configuration, read once at start-up from the environment and command-line flags."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace

from persistence import DEFAULT_DATABASE_URL

MIB = 1024 * 1024
MIN_METRICS_TOKEN = 16  # characters: a shared secret short enough to guess is no secret


def _int_env(name: str, default: int, unit: str = "seconds", minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number of {unit}, not {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}, not {value}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    finished_grace_s: int = 3600
    archive_after_s: int = 14 * 24 * 3600
    command_threads: int = 16
    # Hostile input: what one request, one websocket message and one client may take.
    max_body_bytes: int = MIB  # an HTTP request's body (and a GET's query string)
    max_ws_message_bytes: int = 64 * 1024  # one websocket message
    max_subscriptions_per_connection: int = 100  # operations running at once on one websocket
    max_subscriptions: int = 10_000  # operations running at once on all websockets of this instance
    # Access control: tokens required (JOBLEDGER_AUTH=off only on a loopback address), the
    # first admin's name on an empty store, and where their token is written (None: the
    # default the CLI and the client read, see jobledger_client.credentials).
    auth: bool = True
    read_wait_s: float = 10.0  # a write waits this long for the read models to show it
    admin_user: str = "admin"
    token_file: str | None = None
    metrics_token: str | None = None  # /metrics to whoever shows it; None: to loopback callers only

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("JOBLEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL,
            finished_grace_s=_int_env("JOBLEDGER_FINISHED_GRACE", 3600),
            archive_after_s=_int_env("JOBLEDGER_ARCHIVE_AFTER", 14 * 24 * 3600),
            max_body_bytes=_int_env("JOBLEDGER_MAX_BODY_BYTES", MIB, "bytes", minimum=1),
            max_ws_message_bytes=_int_env("JOBLEDGER_MAX_WS_MESSAGE_BYTES", 64 * 1024, "bytes", minimum=1),
            max_subscriptions_per_connection=_int_env(
                "JOBLEDGER_MAX_SUBSCRIPTIONS_PER_CONNECTION", 100, "subscriptions", minimum=1
            ),
            max_subscriptions=_int_env("JOBLEDGER_MAX_SUBSCRIPTIONS", 10_000, "subscriptions", minimum=1),
            auth=_auth_env(),
            read_wait_s=float(_int_env("JOBLEDGER_READ_WAIT", 10, minimum=1)),
            admin_user=os.environ.get("JOBLEDGER_ADMIN_USER") or "admin",
            token_file=os.environ.get("JOBLEDGER_TOKEN_FILE") or None,
            metrics_token=_metrics_token_env(),
        )

    def check_auth(self) -> None:
        """Authentication may be off only on a loopback address."""
        if not self.auth and not is_loopback(self.host):
            raise SystemExit(
                f"jobledger: JOBLEDGER_AUTH=off is allowed only on a loopback address, not on {self.host}; "
                "serve on 127.0.0.1, or turn authentication on and use tokens (jobledger token create)"
            )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _auth_env() -> bool:
    raw = (os.environ.get("JOBLEDGER_AUTH") or "on").strip().lower()
    if raw in ("on", "1", "true", "yes"):
        return True
    if raw in ("off", "0", "false", "no"):
        return False
    raise SystemExit(f"JOBLEDGER_AUTH must be on or off, not {raw!r}")


def _metrics_token_env() -> str | None:
    raw = (os.environ.get("JOBLEDGER_METRICS_TOKEN") or "").strip()
    if raw and len(raw) < MIN_METRICS_TOKEN:
        raise SystemExit(
            f"JOBLEDGER_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN} characters (it has {len(raw)}); "
            "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return raw or None


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
