"""The job table's row model: `Column`, `TableRow` and when two rows draw the same.

This module owns the plain data a screen hands to `JobTable` and the equality
its caches rely on (a `Text` cell's base style counts). Pure data and
functions; it touches no widget.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Literal

from rich.text import Text

__all__ = ["INDENT_PREFIX", "Align", "Cell", "Column", "TableRow", "row_key", "same_row", "starts_with_arrow"]

Cell = str | Text
Align = Literal["left", "right"]

INDENT_PREFIX = "↳ "


@dataclass(frozen=True)
class Column:
    """A fixed-width column; widths are given, never measured from the cells.

    `cell` is the index of the row cell it shows (None: its own position), so
    a narrow table can hide columns without its rows being rebuilt.
    """

    key: str
    label: str
    width: int
    align: Align = "left"
    cell: int | None = None


@dataclass(frozen=True)
class TableRow:
    """One line of the table; `key` is its identity across `set_rows` calls.

    A `str` cell is shown literally (never parsed as markup); a `Text` keeps its
    styles. `indent` marks a pipeline task under its job: the table draws `↳ `
    before the first cell, unless that cell already starts with a `↳` (as the
    headless queue's ID column does), so the arrow is never doubled.
    """

    key: str
    cells: tuple[Cell, ...]
    dim: bool = False
    indent: bool = False


row_key = attrgetter("key")


def starts_with_arrow(cell: Cell) -> bool:
    plain = cell if isinstance(cell, str) else cell.plain
    return plain.lstrip().startswith(INDENT_PREFIX[0])


def same_cell(a: Cell, b: Cell) -> bool:
    # Text.__eq__ ignores the base style, so a status whose colour changed but
    # whose words did not would otherwise keep its stale cached line.
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans


def same_row(a: TableRow, b: TableRow) -> bool:
    if a is b:
        return True
    return (
        a.key == b.key
        and a.dim == b.dim
        and a.indent == b.indent
        and len(a.cells) == len(b.cells)
        and all(same_cell(x, y) for x, y in zip(a.cells, b.cells))
    )

