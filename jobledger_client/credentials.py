"""Where a jobledger token is kept, and how a client finds it.

A token (`jl_<12 hex prefix>_<secret>`) is found, first match wins:

1. the one given (`token=`, `--token`);
2. $JOBLEDGER_TOKEN;
3. the first line of the token file: $JOBLEDGER_TOKEN_FILE if set, else
   $XDG_CONFIG_HOME/jobledger/token, else ~/.config/jobledger/token.

`jobledger serve` writes the first admin's token to that same file on an empty store
(`write_token_file`), so a client run by the same user on the same machine finds it.
The file is readable by its owner only, and so is the folder it is made in.

Standard library only: the server imports `token_file_path` and `write_token_file`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TOKEN_ENV = "JOBLEDGER_TOKEN"
TOKEN_FILE_ENV = "JOBLEDGER_TOKEN_FILE"
FILE_MODE = 0o600  # the owner reads and writes; nobody else sees it
FOLDER_MODE = 0o700


def token_file_path() -> Path:
    """The token file: $JOBLEDGER_TOKEN_FILE, else $XDG_CONFIG_HOME/jobledger/token, else
    ~/.config/jobledger/token. It need not exist."""
    explicit = os.environ.get(TOKEN_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "jobledger" / "token"


def find_token(explicit: str | None = None) -> str | None:
    """The token to send: `explicit`, else $JOBLEDGER_TOKEN, else the token file's first line;
    None when there is none. Raises PermissionError (saying what to do) when the token file
    exists but cannot be read."""
    for candidate in (explicit, os.environ.get(TOKEN_ENV)):
        if candidate and candidate.strip():
            return candidate.strip()
    return read_token_file(token_file_path())


def read_token_file(path: Path) -> str | None:
    """The first line of the token file at `path`; None when it is missing or empty."""
    try:
        with path.open(encoding="utf-8") as reader:
            first = reader.readline().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise PermissionError(
            f"cannot read the token file {path}: run as its owner, or pass --token or set {TOKEN_ENV}"
        ) from None
    return first or None


def write_token_file(token: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Write `token` and a newline to the token file (`path`, else `token_file_path()`), readable
    by its owner only; missing folders are made with mode 0700. The file never exists, even for
    an instant, with wider permissions, and a reader sees the old file or the new, never half.
    Returns the path written."""
    target = Path(path) if path is not None else token_file_path()
    make_private_folders(target.parent)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as writer:
            # O_CREAT's mode is cut by the umask and ignored for a file that was there: set it.
            os.fchmod(writer.fileno(), FILE_MODE)
            writer.write(f"{token}\n")
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def make_private_folders(folder: Path) -> None:
    """Make `folder` and any missing folder above it, each with mode 0700 (those that exist
    are left as they are)."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    for each in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by someone else
            each.mkdir(mode=FOLDER_MODE)


def token_prefix(token: str | None) -> str | None:
    """The public part of a token (`jl_0123456789ab`), safe to show; None for no token."""
    if not token:
        return None
    head, _, rest = token.partition("_")
    prefix = rest.partition("_")[0]
    return f"{head}_{prefix}" if prefix else "a token"


def missing_token_advice() -> str:
    """What someone refused as UNAUTHENTICATED should do."""
    return f"pass --token or set {TOKEN_ENV}; the server's first admin token is in {token_file_path()}"
