"""What a worker may do to the machine it runs on, and the refusals when a task asks more.

A worker runs command tasks only when started with `--allow-commands` and only for
queues whose group allows them (`Queue.allowCommands`), and reads and writes files only
under its `--root` folders; without any it transfers nothing. A refused task is failed
without retry, its error starting with `refused:` and saying what to do.

Paths are compared after `os.path.realpath`, so that neither `..` nor a symlink leads out
of a root, and folder by folder, so that /data2 is not inside /data. A destination that
does not exist yet resolves through its nearest existing folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class Refused(Exception):
    """The worker will not run this task; the message starts with `refused:` and says why
    and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused: {reason}")


class BadRoot(ValueError):
    """A --root that is not an existing folder."""


@dataclass(frozen=True)
class Policy:
    """A worker's permissions: `allow_commands`, and `roots` (real paths) that transfers stay
    under. The default allows nothing."""

    allow_commands: bool = False
    roots: tuple[Path, ...] = ()

    @classmethod
    def of(cls, allow_commands: bool = False, roots: Iterable[str | os.PathLike[str]] = ()) -> Policy:
        """The policy for the worker's options; each root resolved to its real path. Raises
        BadRoot for a root that is not an existing folder."""
        return cls(allow_commands, tuple(dict.fromkeys(real_folder(root) for root in roots)))

    def describe(self) -> list[str]:
        """What the worker allows, in words for its log at start."""
        commands = (
            "command tasks: allowed, for queues whose group allows them"
            if self.allow_commands
            else "command tasks: refused (start the worker with --allow-commands to run them)"
        )
        files = (
            f"transfers: under {self.shown_roots()} only"
            if self.roots
            else "transfers: refused (start the worker with --root DIR to allow them under DIR)"
        )
        return [commands, files]

    def shown_roots(self) -> str:
        return ", ".join(str(root) for root in self.roots)

    def check_command(self, queue: str | None, queue_allows: bool) -> None:
        """Raise Refused unless this worker and the task's queue both allow commands."""
        if not self.allow_commands:
            raise Refused("command tasks need a worker started with --allow-commands")
        if not queue_allows:
            named = f"queue {queue}" if queue else "the task's queue"
            raise Refused(
                f"{named} does not allow command tasks: ask a site admin to allow them for its group,"
                " or submit the job to a queue that does"
            )

    def check_path(self, path: str | os.PathLike[str], role: str) -> None:
        """Raise Refused unless `path` (a `role`: "source" or "destination") resolves to a
        place under one of the roots."""
        if not self.roots:
            raise Refused(
                f"this worker reads and writes no files ({role} {path}): start it with --root DIR"
                " to allow transfers under DIR"
            )
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(root) for root in self.roots):
            resolved = f" (it resolves to {real})" if str(real) != str(path) else ""
            raise Refused(
                f"{role} {path}{resolved} is outside the worker's roots ({self.shown_roots()}):"
                " put it under one of them, or start a worker with a --root that holds it"
            )


def real_folder(root: str | os.PathLike[str]) -> Path:
    """The real path of an existing folder given as a --root."""
    real = Path(os.path.realpath(Path(root).expanduser()))
    if not real.is_dir():
        raise BadRoot(f"--root {root} is not an existing folder")
    return real
