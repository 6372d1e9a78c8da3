"""The one table `python -m bench` prints: every figure, what it is compared with, and the ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

STORE_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}


@dataclass
class Figure:
    section: str
    name: str  # says its unit: "events/s", "p50 ms", "s"
    value: float | None = None
    beside: str = ""  # what it is compared with
    other: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.other or math.isnan(self.other) or math.isnan(self.value):
            return None
        return self.value / self.other


class Report:
    """Figures in the order they were first measured. A figure measured on both stores is one
    row: PostgreSQL's value beside SQLite's (or SQLite's alone when PostgreSQL was not run)."""

    def __init__(self, stores: list[str]) -> None:
        self.main_store = stores[0]
        self.figures: dict[tuple[str, ...], Figure] = {}
        self.notes: list[str] = []

    def per_store(self, section: str, name: str, store: str, value: float) -> None:
        figure = self.figures.setdefault((section, name), Figure(section, name))
        if store == self.main_store:
            figure.value = value
        else:
            figure.beside, figure.other = STORE_NAMES[store], value

    def compared(self, section: str, name: str, value: float, beside: str, other: float) -> None:
        self.figures[(section, name, beside)] = Figure(section, name, value, beside, other)

    def table(self, title: str) -> Table:
        table = Table(title=title, title_justify="left", caption_justify="left")
        table.add_column("benchmark", no_wrap=True)
        table.add_column("figure", no_wrap=True)
        table.add_column(f"jobledger ({STORE_NAMES[self.main_store]})", justify="right")
        table.add_column("beside", no_wrap=True)
        table.add_column("its figure", justify="right")
        table.add_column("ratio", justify="right")
        section = None
        for figure in self.figures.values():
            if section is not None and figure.section != section:
                table.add_section()
            ratio = figure.ratio
            table.add_row(
                figure.section if figure.section != section else "",
                figure.name,
                cell(figure.name, figure.value),
                figure.beside,
                cell(figure.name, figure.other),
                f"{ratio:.2f}" if ratio is not None else "",
            )
            section = figure.section
        table.caption = (
            "ratio = jobledger's figure / the one beside it (for ms and s, lower is better); "
            "PostgreSQL beside SQLite unless another comparison is named"
        )
        return table

    def print(self, console: Console, title: str) -> None:
        console.print(self.table(title))
        for note in self.notes:
            console.print(note)


def cell(name: str, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "" if value is None else "-"
    if name.endswith((" ms", " s", ": s")) or " s (" in name or " ms (" in name:
        return f"{value:,.2f}"
    return f"{value:,.0f}"
