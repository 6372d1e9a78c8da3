"""How the client's commands print: tables, fields, sizes, speeds, durations and statuses
through rich for people (colour on a terminal, plain lines in a pipe), JSON for scripts.

In a pipe nothing is wrapped or padded: a line per row, whole, without trailing blanks,
so that `grep`, `cut` and the tests read what a person would see. `--json` output is
written as it always was, never through rich.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import IO, Any

from rich import filesize
from rich.console import Console, RenderableType
from rich.progress_bar import ProgressBar
from rich.protocol import is_renderable
from rich.table import Table
from rich.text import Text

from jobledger_client.models import RETRY_DEFAULTS

SHORT = 8  # characters of an id shown in tables
PIPE_WIDTH = 1_000_000  # a pipe has no width: never wrap

STATUS_STYLES = {
    "done": "green",
    "running": "cyan",
    "executing": "cyan",
    "booting": "cyan",
    "paused": "yellow",
    "onhold": "yellow",
    "disabled": "yellow",
    "failed": "red",
    "aborted": "red",
    "excluded": "dim",
}


def _console(stream: IO[str]) -> Console:
    console = Console(file=stream, highlight=False, markup=False, emoji=False)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


@cache
def stdout() -> Console:
    """The console on standard output."""
    return _console(sys.stdout)


@cache
def stderr() -> Console:
    """The console on standard error."""
    return _console(sys.stderr)


def show(renderable: RenderableType, console: Console | None = None) -> None:
    """Print a renderable: as rich draws it on a terminal, as plain lines in a pipe."""
    console = console or stdout()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    lines = captured.get().splitlines()
    console.file.write("".join(line.rstrip() + "\n" for line in lines))
    console.file.flush()


def say(line: str) -> None:
    """A command's one-line answer."""
    show(Text(line))


def fail(message: str) -> None:
    """`jobledger: <message>` on stderr."""
    show(Text.assemble(("jobledger:", "bold red"), " ", message), stderr())


def note(message: str) -> None:
    """A remark on stderr that is not part of the answer (e.g. that a list was cut short)."""
    show(Text(message, style="dim"), stderr())


def answer(args: argparse.Namespace, data: Any, line: str) -> None:
    """A command's one-line answer, or its data as JSON with --json."""
    if args.json:
        write_json(data)
    else:
        say(line)


def write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def table(
    rows: Sequence[Mapping[str, Any]],
    *,
    right: Iterable[str] = (),
    drop_empty: Iterable[str] = (),
    widths: Mapping[str, int] | None = None,
) -> Table:
    """Rows of {header: cell} as a table: `right` columns aligned right, `drop_empty`
    columns left out when no row has anything in them, `widths` the most characters a
    column shows (longer cells end in "…")."""
    right, drop_empty, widths = set(right), set(drop_empty), dict(widths or {})
    headers = [h for h in rows[0] if h not in drop_empty or any(str(r[h]) not in ("", "-") for r in rows)]
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        grid.add_column(
            header,
            justify="right" if header in right else "left",
            no_wrap=True,
            overflow="ellipsis",
            max_width=widths.get(header),
        )
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in (row[h] for h in headers)))
    return grid


def fields(pairs: Sequence[tuple[str, Any]]) -> Table:
    """`key:  value` lines, the values aligned."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in pairs:
        grid.add_row(f"{key}:", value if is_renderable(value) and not isinstance(value, str) else str(value))
    return grid


def progress(percent: int) -> RenderableType:
    """A percentage, with rich's bar in front of it on a terminal."""
    if not stdout().is_terminal:
        return Text(f"{percent}%")
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=100, completed=percent, width=20), f"{percent}%")
    return bar


def status(value: str) -> Text:
    """A status in lower case, coloured by what it means."""
    text = value.lower()
    return Text(text, style=STATUS_STYLES.get(text, ""))


def size(size: int | None) -> str:
    """Bytes in decimal units (rich's: 950 bytes, 1.2 kB, 34.5 MB); '-' when unknown."""
    if size is None or size < 0:
        return "-"
    return filesize.decimal(size)


def speed(mb_per_s: float) -> str:
    """A speed given in MB/s, in the unit that suits it (rich's file sizes, per second)."""
    if mb_per_s <= 0:
        return "-"
    return filesize.decimal(round(mb_per_s * 1_000_000)) + "/s"


def duration(seconds: int | float | None) -> str:
    """H:MM:SS, as rich's time columns show it; '-' when unknown."""
    if seconds is None:
        return "-"
    return str(timedelta(seconds=int(seconds)))


def ago(moment: datetime | None, now: datetime) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago`; the date after a week."""
    if moment is None:
        return "-"
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return "just now" if seconds > -5 else iso(moment)
    for limit, unit, name in ((60, 1, "s"), (3600, 60, "m"), (86400, 3600, "h"), (7 * 86400, 86400, "d")):
        if seconds < limit:
            return f"{int(seconds // unit)}{name} ago"
    return moment.strftime("%Y-%m-%d")


def due(moment: datetime | None, now: datetime) -> str:
    """A time to come: `20:15:04 UTC (in 12s)`, the date in front when not today, `(due)` once
    it has come; '-' for none."""
    if moment is None:
        return "-"
    clock = moment.strftime("%H:%M:%S UTC" if moment.date() == now.date() else "%Y-%m-%d %H:%M:%S UTC")
    seconds = (moment - now).total_seconds()
    if seconds <= 0:
        return f"{clock} (due)"
    for limit, unit, name in ((60, 1, "s"), (3600, 60, "m"), (86400, 3600, "h")):
        if seconds < limit:
            return f"{clock} (in {math.ceil(seconds / unit)}{name})"
    return f"{clock} (in {math.ceil(seconds / 86400)}d)"


def retry_policy(owners: Sequence[tuple[str, Any]]) -> str:
    """The retry policy in force, in words: each part from the first of `owners` (whose name,
    its settings: a job, then its queue) that sets it, else the server's default, and for a
    part that is not the first owner's, whose it is: `delay 0.5 s, backoff x2 (queue's), ...`."""
    words = (
        ("retry_delay", lambda v: f"delay {v:g} s"),
        ("retry_backoff", lambda v: f"backoff x{v:g}"),
        ("retry_max_delay", lambda v: f"max delay {v:g} s"),
        ("retry_jitter", lambda v: f"jitter {v * 100:g} %"),
    )
    parts = []
    for name, worded in words:
        set_by = [(whose, getattr(o, name)) for whose, o in owners if getattr(o, name, None) is not None]
        whose, value = set_by[0] if set_by else ("default", RETRY_DEFAULTS[name])
        parts.append(worded(value) + ("" if whose == owners[0][0] else f" ({whose})"))
    return ", ".join(parts)


def iso(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def tail(text: str, width: int) -> str:
    """The end of a long path (where its name is), "…" in front."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def tags(values: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(values.items()))
