"""The chapter's numbered items: tables (raw values, and columns that say how to show them and which value is
best) and figures (a drawing function and its caption), numbered in the order they are added.

Captions and headers are gettext messages (``N_``), translated when the chapter is rendered; which items the
chapter holds is ``trashnet.report.chapter``'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

CHAPTER = 4  # the results chapter of a skripsi: Bab IV, Hasil dan Pembahasan


@dataclass
class Column:
    key: str
    header: str  # gettext message
    kind: str = "text"  # text, pct, pp, mb, ms, mega, min, ratio, int
    unit: str | None = None  # shown in the header: %, pp, MB, ms, M, min
    better: str | None = None  # "max" / "min": the best value of the column is marked


@dataclass(frozen=True)
class Message:
    """A text cell that is a sentence: a gettext message, %-formatted with ``args`` (each translated too, so an
    argument may be a message itself)."""

    msgid: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Table:
    key: str
    caption: str  # gettext message, %-formatted with ``args``
    columns: list[Column]
    rows: list[list[Any]]
    args: dict[str, Any] = field(default_factory=dict)
    highlight: set[int] = field(default_factory=set)  # row indexes drawn in bold (the final model)
    number: str = ""

    def best(self) -> list[set[int]]:
        """Per column, the row indexes holding its best value (ties all marked; a column whose values are all
        equal, or one value alone, has none)."""
        marks: list[set[int]] = []
        for index, column in enumerate(self.columns):
            values = [(r, row[index]) for r, row in enumerate(self.rows)
                      if isinstance(row[index], (int, float)) and not isinstance(row[index], bool)
                      and math.isfinite(row[index])]
            if column.better is None or len(values) < 2:
                marks.append(set())
                continue
            target = (max if column.better == "max" else min)(v for _, v in values)
            tied = {r for r, v in values if math.isclose(v, target, rel_tol=1e-12, abs_tol=1e-15)}
            marks.append(set() if len(tied) == len(values) else tied)  # all equal: nothing is best
        return marks


@dataclass
class Figure:
    key: str
    caption: str
    draw: Callable[[dict[str, str]], Any]  # translated labels -> matplotlib Figure
    args: dict[str, Any] = field(default_factory=dict)
    wide: bool = True
    number: str = ""


@dataclass
class Chapter:
    tables: dict[str, Table] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)

    def add_table(self, table: Table) -> Table:
        table.number = f"{CHAPTER}.{len(self.tables) + 1}"
        self.tables[table.key] = table
        return table

    def add_figure(self, figure: Figure) -> Figure:
        figure.number = f"{CHAPTER}.{len(self.figures) + 1}"
        self.figures[figure.key] = figure
        return figure

    def figures_with(self, prefix: str) -> list[Figure]:
        return [f for key, f in self.figures.items() if key.startswith(prefix)]
