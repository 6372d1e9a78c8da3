"""Configuration, read once at start-up from the environment and command-line flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from domain.storage import DEFAULT_DATABASE_URL


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number of seconds, not {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    finished_grace_s: int = 3600
    archive_after_s: int = 14 * 24 * 3600
    command_threads: int = 16

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("JOBLEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL,
            finished_grace_s=_int_env("JOBLEDGER_FINISHED_GRACE", 3600),
            archive_after_s=_int_env("JOBLEDGER_ARCHIVE_AFTER", 14 * 24 * 3600),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
