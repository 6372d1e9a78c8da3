"""`jobledger projections ...` and `jobledger events export`: the operator's commands on
the store itself, no service needed.

People get rich: a table, a progress bar and colour on a terminal. In a pipe or a log the
same words come as plain lines, neither wrapped nor padded, so that `grep` and the tests
read what a person would see; a rebuild's progress is then a line every tenth of the way.
`events export` writes JSON lines, never through rich.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO
from uuid import UUID

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from api.settings import Settings
from domain.errors import NotFoundError, ValidationError
from domain.history import History
from domain.ledger import Ledger
from projections.failures import Failure
from projections.schema import JOBS, QUEUES, TASKS
from projections.service import ReadSide
from projections.stores import ReadStore, open_read_store

PIPE_WIDTH = 1_000_000  # a pipe has no width: never wrap
EXPORT_PAGE = 1000  # events read at once by `events export`
FOLLOW_POLL_S = 0.2  # how often `events export --follow` looks for new events


# -- projections ---------------------------------------------------------------


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    """The position and lag; then, if the runner is stuck on an event or set events aside,
    which and why (exit status 1, so that scripts notice)."""
    with read_side(settings) as side:
        status = side.runner.status()
    out = console(sys.stdout)
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    grid.add_column("projection", min_width=12)
    for header in ("position", "head", "lag"):
        grid.add_column(header, justify="right", min_width=10)
    grid.add_row("read models", f"{status.position:,}", f"{status.head:,}", f"{status.lag:,}")
    show(out, grid)
    failing = status.failing
    if failing is not None:
        show(
            out,
            Text.assemble(
                ("stalled:", "bold red"),
                f" event {failing.position} ({failing.event_type} of {failing.aggregate_id}) has failed "
                f"{failing.attempts} time(s) since {failing.first_failed}, last at {failing.last_failed}:\n"
                f"  {failing.error}",
            ),
        )
    if status.set_aside:
        newest = status.newest_set_aside
        about = f"; newest: event {newest.position} ({newest.event_type}): {newest.reason}" if newest else ""
        show(
            out,
            Text.assemble(
                ("degraded:", "bold yellow"),
                f" {status.set_aside} event(s) set aside and not acknowledged{about}\n"
                "  list them with `jobledger projections skipped`; after a fix `jobledger projections retry` "
                "applies them, or `jobledger projections acknowledge` accepts the gap",
            ),
        )
    if status.acknowledged:
        show(out, Text(f"{status.acknowledged} event(s) set aside earlier were acknowledged"))
    return 1 if failing is not None or status.set_aside else 0


def run_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    with read_side(settings, setup=False) as side:
        started = time.monotonic()
        with replaying(console(sys.stderr)) as progress:
            applied = side.runner.rebuild(progress=progress)
        elapsed = time.monotonic() - started
        rate = applied / elapsed if elapsed > 0 else 0.0
        show(
            console(sys.stdout),
            Text(f"rebuilt the read models from {applied:,} events in {elapsed:.1f} s ({rate:,.0f} events/s)"),
        )
        set_aside = side.runner.failures()
    if set_aside:
        err = console(sys.stderr)
        show(err, Text(f"{len(set_aside)} event(s) could not be applied and were set aside:", style="yellow"))
        show(err, failures_table(set_aside))
    return 0


def run_retry(settings: Settings, args: argparse.Namespace) -> int:
    """A rebuild: replaying the whole log applies each event set aside in its place, in
    order, which re-applying it alone after its aggregate's later events could not."""
    with read_side(settings) as side:
        before = len(side.runner.failures())
    out = console(sys.stdout)
    show(out, Text(f"{before} event(s) set aside; replaying the log to retry them in their place"))
    run_rebuild(settings, args)
    with read_side(settings, setup=False) as side:
        after = len(side.runner.failures())
    show(out, Text(f"{before - after if before >= after else 0} applied now, {after} still set aside"))
    return 1 if after else 0


def run_skipped(settings: Settings, args: argparse.Namespace) -> int:
    with read_side(settings) as side:
        failures = side.runner.failures()
    out = console(sys.stdout)
    show(out, failures_table(failures) if failures else Text("no events set aside"))
    return 0


def run_acknowledge(settings: Settings, args: argparse.Namespace) -> int:
    with read_side(settings) as side:
        done = side.runner.acknowledge(args.positions or None)
    show(console(sys.stdout), Text(f"acknowledged {done} event(s) set aside"))
    return 0 if done or not args.positions else 1


@contextmanager
def read_side(settings: Settings, *, setup: bool = True) -> Iterator[ReadSide]:
    """The store's read side, not running (no background runner, no clock), closed after;
    its tables created first when `setup`."""
    ledger = Ledger(settings.database_url)
    try:
        side = ReadSide(ledger, settings.finished_grace_s, settings.archive_after_s)
        try:
            if setup:
                side.runner.setup()
            yield side
        finally:
            side.stop()
    finally:
        ledger.close()


def failures_table(failures: Sequence[Failure]) -> RenderableType:
    """The events set aside, oldest first: a row each, then each one's whole error (too
    long for a column)."""
    rows = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    rows.add_column("position", justify="right")
    for header in ("type", "aggregate"):
        rows.add_column(header, no_wrap=True)
    rows.add_column("attempts", justify="right")
    rows.add_column("set aside", no_wrap=True)
    rows.add_column("acknowledged")
    errors = Table.grid(padding=(0, 2))
    errors.add_column(justify="right", min_width=len("position"))
    errors.add_column(overflow="fold")
    for f in failures:
        acknowledged = Text("yes", style="dim") if f.status == "acknowledged" else Text("no", style="yellow")
        rows.add_row(str(f.position), f.event_type, f.aggregate_id, str(f.attempts), f.last_failed, acknowledged)
        errors.add_row(str(f.position), Text(f.error, style="red"))
    return Group(rows, Text(""), errors)


@contextmanager
def replaying(err: Console) -> Iterator[Callable[[int, int], None]]:
    """`progress(done, total)` for a replay of the log: rich's bar on a terminal; in a pipe
    or a log, a plain line each tenth of the way (rich would only draw the end there)."""
    if not err.is_terminal:
        yield _tenths(err)
        return
    columns = (
        TextColumn("replaying"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.completed:,}/{task.total:,} events"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task: TaskID | None = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:  # the total is known from the first batch on
                task = bar.add_task("replaying", total=total, completed=done)
            bar.update(task, completed=done, total=total)

        yield progress


def _tenths(err: Console) -> Callable[[int, int], None]:
    last_tenth = -1

    def progress(done: int, total: int) -> None:
        nonlocal last_tenth
        fraction = done / total if total else 1.0
        tenth = int(fraction * 10)
        if tenth != last_tenth:
            last_tenth = tenth
            show(err, Text(f"replaying {fraction:6.1%} {done:,}/{total:,} events"))

    return progress


# -- events ----------------------------------------------------------------------


def run_export(settings: Settings, args: argparse.Namespace) -> int:
    ledger = Ledger(settings.database_url)
    history = History(ledger)
    after = args.after
    try:
        aggregate = aggregate_named(ledger, history, args.aggregate) if args.aggregate else None
        while True:
            if aggregate:
                records = [r for r in history.of_aggregate(aggregate) if r.position > after]
            else:
                records = history.read(after, EXPORT_PAGE)
            for record in records:
                sys.stdout.write(record.to_json_line() + "\n")
                after = record.position
            sys.stdout.flush()
            if len(records) == EXPORT_PAGE and not aggregate:
                continue
            if not args.follow:
                return 0
            # A poll, not a retry: nothing failed, there is just nothing new yet.
            time.sleep(FOLLOW_POLL_S)
    except BrokenPipeError:  # the reader (e.g. `head`) has had enough
        return 0
    finally:
        ledger.close()


def aggregate_named(ledger: Ledger, history: History, ref: str) -> str:
    """The id of the aggregate `ref` names, as the job commands take it: an id; a unique
    prefix of a queue's, job's or task's id (the short ids the tables show) or a job's or
    queue's code, as the read models know them; else a unique id prefix among every
    aggregate in the log (a deleted job, a user, a token). NotFoundError when none is,
    ValidationError when several are."""
    try:
        return str(UUID(ref))
    except ValueError:
        pass
    store = open_read_store(ledger.store)
    try:
        found = _in_read_models(store, ref)
    except Exception:  # read models never built (or being rebuilt): the log still knows
        found = []
    finally:
        store.close()
    if not found and _ID_TEXT.match(ref):
        found = sorted({r.aggregate_id for r in history.follow() if r.aggregate_id.startswith(ref.lower())})[:2]
    if not found:
        raise NotFoundError("Aggregate", ref)
    if len(found) > 1:
        raise ValidationError(
            "aggregate", f"{ref!r} names more than one (e.g. {found[0]} and {found[1]}); give more of the id"
        )
    return found[0]


_ID_TEXT = re.compile(r"^[0-9a-fA-F-]+$")  # what may begin an id


def _in_read_models(store: ReadStore, ref: str) -> list[str]:
    """Ids of queues, jobs and tasks starting with `ref`, else of jobs and queues coded `ref`
    (at most two a table: enough to tell one from several)."""
    found: list[str] = []
    if _ID_TEXT.match(ref):
        prefix = ref.lower()
        for table in (JOBS, QUEUES, TASKS):
            rows = store.read(f"SELECT id FROM {table} WHERE id >= ? ORDER BY id LIMIT 2", (prefix,))
            found += [r["id"] for r in rows if str(r["id"]).startswith(prefix)]
    if not found:
        for table in (JOBS, QUEUES):
            found += [r["id"] for r in store.read(f"SELECT id FROM {table} WHERE code = ? LIMIT 2", (ref,))]
    return list(dict.fromkeys(str(i) for i in found))


# -- output ------------------------------------------------------------------------


def console(stream: IO[str]) -> Console:
    """A console on `stream` (made per command: tests swap sys.stdout)."""
    made = Console(file=stream, highlight=False, markup=False, emoji=False)
    if not made.is_terminal:
        made.width = PIPE_WIDTH
    return made


def show(on: Console, renderable: RenderableType) -> None:
    """Print a renderable: as rich draws it on a terminal, as plain lines in a pipe."""
    if on.is_terminal:
        on.print(renderable)
        return
    with on.capture() as captured:
        on.print(renderable)
    on.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    on.file.flush()
