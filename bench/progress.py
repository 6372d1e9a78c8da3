"""A benchmark phase's progress on stderr: rich's bar on a terminal; in a log, a plain
line every 10 s and one at the end (rich would only draw the end there). Inside `shared()`
(`python -m bench`), each phase is a line of the one bar shown for the whole run.

The counter is a plain integer that a background thread reads, so counting costs the
timed work no more than a lock, whether the phase runs in threads or coroutines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.text import Text

LOG_EVERY_S = 10.0
DRAW_EVERY_S = 0.25
_shared: Bar | None = None  # rich allows one live display at a time: phases join this one


class _Rate(ProgressColumn):
    """Items per second since the start (not rich's recent speed: the figure a run reports)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        return Text(f"{task.completed / elapsed:,.0f}/s" if elapsed else "")


COLUMNS = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn())


class Progress:
    """A counter for one phase of a run: `add` to it or `set` it while it is `running`."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.done += n

    def set(self, done: int, total: int | None = None) -> None:
        self.done = done
        self.total = self.total if total is None else total

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed else 0.0
        return f"  {self.label}: {self.done:,}/{self.total:,}  {rate:,.0f}/s  {elapsed:.0f} s"

    @contextmanager
    def running(self) -> Iterator[Progress]:
        console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
        self.started = time.perf_counter()
        if not console.is_terminal:
            try:
                with _every(LOG_EVERY_S, lambda: console.print(self.line())):
                    yield self
            finally:
                console.print(self.line())
            return
        if _shared is not None:
            with self._drawn_on(_shared):
                yield self
            return
        with Bar(*COLUMNS, console=console) as bar, self._drawn_on(bar):
            yield self

    @contextmanager
    def _drawn_on(self, bar: Bar) -> Iterator[None]:
        task = bar.add_task(self.label, total=self.total)

        def draw() -> None:
            bar.update(task, completed=self.done, total=self.total)

        try:
            with _every(DRAW_EVERY_S, draw):
                yield
        finally:
            draw()
            if bar is _shared:
                bar.remove_task(task)


@contextmanager
def shared(console: Console) -> Iterator[Bar]:
    """One bar for a whole run on a terminal: the caller adds its own task for the run, and
    each phase's Progress shows as a line under it while it runs."""
    global _shared
    with Bar(*COLUMNS, console=console) as bar:
        _shared = bar
        try:
            yield bar
        finally:
            _shared = None


@contextmanager
def _every(seconds: float, call: Callable[[], None]) -> Iterator[None]:
    """`call()` every `seconds` in a background thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            call()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
