"""JobTable: the virtualised, keyboard-driven table behind the jobs queue.

This module owns the widget: its rows, cursor and marks, the keys, the
messages, and painting the header and row lines (with a cache of drawn
lines); it touches only itself. The row model is `job_table_rows`', fitting a
cell to its column `job_table_cells`', and the geometry and scrolling
`job_table_viewport`'s; `Column` and `TableRow` are re-exported here.

Textual's DataTable measures every cell and removes rows in O(n), which costs
seconds at 10,000 jobs; JobTable is a Line-API `ScrollView` (the toolong
pattern) instead: rows are plain data, columns have fixed widths, and only
the lines on screen are ever turned into Strips. Screens filter and sort,
then hand the whole list to `set_rows` as often as they like; the table keeps
the cursor on its job. A few changed rows are cheaper through `update_rows`,
and a subclass can keep only the rows on screen current (`freshen_rows`
catches the rest as they scroll into view).

Call every method from the app's event loop (`app.call_from_thread` from a
thread), as with any widget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip

from skytui.widgets.job_table_cells import fit_plain, fit_text
from skytui.widgets.job_table_rows import INDENT_PREFIX, Cell, Column, TableRow, row_key, same_row, starts_with_arrow
from skytui.widgets.job_table_viewport import GUTTER_WIDTH, HEADER_LINES, JobTableViewport

__all__ = ["Column", "JobTable", "TableRow"]

MARK_GUTTER = "▌"
# Rendered lines kept: a few screens' worth, in both cursor styles. Each Strip
# is a dozen long-lived objects that every full GC collection walks, so more
# than that costs more in GC pauses than it saves in rendering.
LINE_CACHE_SIZE = 256


class _RowMessage(Message):
    """About one row of a JobTable. Not a handler's target: Textual hands a
    message to the handlers of its base classes too."""

    def __init__(self, table: JobTable, key: str | None) -> None:
        self.table = table
        self.key = key
        super().__init__()

    @property
    def control(self) -> JobTable:
        return self.table


class JobTable(JobTableViewport, can_focus=True):
    """A table of up to tens of thousands of rows that renders only what is visible.

    Layout of the virtual canvas: line 0 is the header, line 1 + i is row i, so
    `virtual_size.height == len(rows) + 1`. `render_line(y)` draws the header at
    y == 0 whatever `scroll_y` is and row `scroll_y + y - 1` below it. With that
    mapping the largest scroll (`len(rows) + 1 - height`) shows the last row on
    the last line, so the header needs no offsets, gutters or second widget;
    the only cost is that the scrollbar's range counts the header line.
    """

    DEFAULT_CSS = """
    JobTable {
        height: 1fr;
        background: $surface;
        color: $foreground;

        & > .job-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .job-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .job-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .job-table--marked {
            color: $text-accent;
            text-style: bold;
        }
        & > .job-table--dim {
            color: $text-muted;
        }
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "job-table--header",
        "job-table--cursor",
        "job-table--marked",
        "job-table--dim",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="job_table.cursor_up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="job_table.cursor_down"),
        Binding("pageup,ctrl+b", "page_up", "Page up", show=False, id="job_table.page_up"),
        Binding("pagedown,ctrl+f", "page_down", "Page down", show=False, id="job_table.page_down"),
        Binding("home,g", "cursor_top", "Top", show=False, id="job_table.cursor_top"),
        Binding("end,G", "cursor_bottom", "Bottom", show=False, id="job_table.cursor_bottom"),
        Binding("enter", "select", "Open", id="job_table.select"),
        Binding("space", "toggle_mark", "Mark", id="job_table.toggle_mark"),
    ]

    class Highlighted(_RowMessage):
        """The cursor is on another row (or on none: `key` is None when empty)."""

    class Selected(_RowMessage):
        """Enter (or a double click) on the row with `key`."""

        key: str

        def __init__(self, table: JobTable, key: str) -> None:
            super().__init__(table, key)

    class MarksChanged(Message):
        """The set of marked row keys changed; `keys` is the whole new set."""

        def __init__(self, table: JobTable, keys: frozenset[str]) -> None:
            self.table = table
            self.keys = keys
            super().__init__()

        @property
        def control(self) -> JobTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column] = (),
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._columns: tuple[Column, ...] = ()
        self._content_width = GUTTER_WIDTH
        self._rows: tuple[TableRow, ...] = ()
        self._index_of: dict[str, int] = {}
        self._cursor = 0
        self._marks: frozenset[str] = frozenset()
        # (row key, line style, is marked) -> (row it was drawn from, strip).
        # The row is kept so a new but equal TableRow reuses the strip: screens
        # rebuild every row object on each refresh. The style is in the key
        # because focus and theme changes restyle component classes without
        # telling the widget (Textual only refreshes it).
        self._line_cache: LRUCache[tuple[str, Style, bool], tuple[TableRow, Strip]] = LRUCache(LINE_CACHE_SIZE)
        self._header_cache: tuple[Style, Strip] | None = None
        self._paint_style: Style | None = None
        self.set_columns(columns)

    # ----------------------------------------------------------------- public API

    @property
    def cursor_key(self) -> str | None:
        """Key of the row under the cursor, or None when the table is empty."""
        return self._rows[self._cursor].key if self._rows else None

    @property
    def cursor_index(self) -> int:
        """Index of the cursor row in the current rows (0 when empty)."""
        return self._cursor

    @property
    def marked(self) -> frozenset[str]:
        """Keys of the marked rows (only keys present in the current rows)."""
        return self._marks

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    @property
    def rows(self) -> tuple[TableRow, ...]:
        return self._rows

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Replace the columns; cells are matched to columns by position."""
        self._columns = tuple(columns)
        widths = [max(0, column.width) for column in self._columns]
        self._content_width = GUTTER_WIDTH + sum(widths) + max(0, len(widths) - 1)
        self._clear_render_caches()
        self._update_virtual_size()
        self.refresh()

    def set_rows(self, rows: Sequence[TableRow]) -> None:
        """Replace every row; the cursor stays on its key if that key is still present.

        O(n) in plain Python (one tuple and one dict); nothing is measured or
        rendered here, and only the visible lines that differ are repainted.
        Keys should be unique: with duplicates, the last one is the one found.
        """
        old_rows = self._rows
        old_cursor = self._cursor
        old_key = self.cursor_key
        old_marks = self._marks
        old_scroll = self.scroll_offset.y
        body = self._body_height()

        new_rows = tuple(rows)
        self._rows = new_rows
        self._index_of = dict(zip(map(row_key, new_rows), range(len(new_rows))))

        cursor = self._index_of.get(old_key) if old_key is not None else None
        if cursor is None:
            cursor = old_cursor
        self._cursor = max(0, min(cursor, len(new_rows) - 1))

        if old_marks:
            self._marks = frozenset(key for key in old_marks if key in self._index_of)

        scroll = self._scroll_after_update(old_cursor, old_scroll, body)
        self._update_virtual_size()
        self._scroll_to_line(scroll)
        if self.scroll_offset.y == old_scroll:
            self._refresh_changed_lines(old_rows, old_cursor, old_marks, old_scroll, body)
        # else: ScrollView's scroll watcher has already repainted every line.

        if self.cursor_key != old_key:
            self.post_message(self.Highlighted(self, self.cursor_key))
        if self._marks != old_marks:
            self.post_message(self.MarksChanged(self, self._marks))

    def update_rows(self, rows: Iterable[TableRow]) -> bool:
        """Replace rows in place, each one the current row with the same key.

        O(len(rows)), for a live table where a few rows change at a time: the
        order, cursor, marks and scroll stay, and only visible lines whose row
        differs are repainted. Returns False and changes nothing if a key is
        not in the table: adding or removing rows is `set_rows`'s job.
        """
        return self._replace_rows(rows, painting=None)

    def visible_rows(self) -> tuple[TableRow, ...]:
        """The rows on screen (the lines under the header), top to bottom."""
        top = self.scroll_offset.y
        return self._rows[top : top + self._body_height()]

    def freshen_rows(self, rows: Sequence[TableRow]) -> Iterable[TableRow]:
        """Called with the rows on screen just before they are painted; return
        new versions (same keys) of any that are out of date. None by default.

        A subclass can then leave rows off screen stale (a clock tick, a change
        to a job nobody is looking at) and pay for them only if they scroll
        into view: it keeps the rows on screen current with `update_rows`.
        """
        return ()

    def _replace_rows(self, rows: Iterable[TableRow], painting: Region | None) -> bool:
        """`update_rows`; lines inside `painting` are being painted already, so
        they are not asked to repaint."""
        updates: list[tuple[int, TableRow]] = []
        for row in rows:
            index = self._index_of.get(row.key)
            if index is None:
                return False
            updates.append((index, row))
        if not updates:
            return True
        new_rows = list(self._rows)
        top = self.scroll_offset.y
        bottom = top + self._body_height()
        for index, row in updates:
            # Only lines on screen are compared: the rest are drawn when scrolled to.
            if top <= index < bottom and not same_row(new_rows[index], row):
                line = index - top + HEADER_LINES
                if painting is None or not painting.y <= line < painting.bottom:
                    self._refresh_row(index)
            new_rows[index] = row
        self._rows = tuple(new_rows)
        return True

    def index_of(self, key: str) -> int | None:
        """Index of the row with `key` in the current rows, or None."""
        return self._index_of.get(key)

    def move_cursor_to_key(self, key: str) -> None:
        """Put the cursor on the row with `key` and scroll it into view; unknown keys are ignored."""
        index = self._index_of.get(key)
        if index is not None:
            self._move_cursor(index)

    def clear_marks(self) -> None:
        """Unmark every row."""
        if self._marks:
            self._marks = frozenset()
            self.refresh()
            self.post_message(self.MarksChanged(self, self._marks))

    # -------------------------------------------------------------------- actions

    def action_cursor_up(self) -> None:
        self._move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        self._move_cursor(self._cursor + 1)

    def action_page_up(self) -> None:
        self._page(-1)

    def action_page_down(self) -> None:
        self._page(1)

    def action_cursor_top(self) -> None:
        self._move_cursor(0)

    def action_cursor_bottom(self) -> None:
        self._move_cursor(len(self._rows) - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def action_toggle_mark(self) -> None:
        """Toggle the mark on the cursor row, then move down (as k9s's space does)."""
        key = self.cursor_key
        if key is None:
            return
        self._marks = self._marks - {key} if key in self._marks else self._marks | {key}
        self._refresh_row(self._cursor)
        self.post_message(self.MarksChanged(self, self._marks))
        self._move_cursor(self._cursor + 1)

    # ---------------------------------------------------------------- rendering

    def render_lines(self, crop: Region) -> list[Strip]:
        # `rich_style` walks up the DOM on every call; once per paint is enough.
        self._paint_style = self.rich_style
        if self._rows:
            self._replace_rows(self.freshen_rows(self.visible_rows()), painting=crop)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self._view_width()
        scroll_x, scroll_y = self.scroll_offset
        if y < HEADER_LINES:
            strip, fill = self._header_strip()
        else:
            index = scroll_y + y - HEADER_LINES
            if not 0 <= index < len(self._rows):
                return Strip.blank(width, self._base_style())
            strip, fill = self._row_strip(index)
        # Fill past the last column with the line's own style, so the cursor
        # and header bars span the whole width.
        return strip.crop_extend(scroll_x, scroll_x + width, fill)

    def _header_strip(self) -> tuple[Strip, Style]:
        style = self.get_component_rich_style("job-table--header")
        if self._header_cache is None or self._header_cache[0] != style:
            segments = [Segment(" " * GUTTER_WIDTH, style)]
            for position, column in enumerate(self._columns):
                if position:
                    segments.append(Segment(" ", style))
                segments.append(Segment(fit_plain(column.label, column.width, column.align), style))
            self._header_cache = (style, Strip(segments, self._content_width))
        return self._header_cache[1], style

    def _row_strip(self, index: int) -> tuple[Strip, Style]:
        row = self._rows[index]
        is_marked = row.key in self._marks
        # Full (not partial) component styles: only they blend translucent
        # theme colours ($text-muted, the blurred cursor) over the background.
        # Later ones win: the cursor over the mark over dim. Textual caches the
        # component styles and Rich caches Style.__add__, so this is cheap.
        style = self._base_style()
        if row.dim:
            style += self.get_component_rich_style("job-table--dim")
        if is_marked:
            style += self.get_component_rich_style("job-table--marked")
        if index == self._cursor:
            style += self.get_component_rich_style("job-table--cursor")

        cache_key = (row.key, style, is_marked)
        cached = self._line_cache.get(cache_key)
        if cached is not None and same_row(cached[0], row):
            return cached[1], style

        segments: list[Segment] = [Segment(MARK_GUTTER if is_marked else " " * GUTTER_WIDTH, style)]
        console = self.app.console
        cells = row.cells
        for position, column in enumerate(self._columns):
            if position:
                segments.append(Segment(" ", style))
            width = max(0, column.width)
            index = position if column.cell is None else column.cell
            cell: Cell = cells[index] if index < len(cells) else ""
            if position == 0 and row.indent and width > 0 and not starts_with_arrow(cell):
                prefix = INDENT_PREFIX[:width]
                segments.append(Segment(prefix, style))
                width -= len(prefix)
            if isinstance(cell, str):
                segments.append(Segment(fit_plain(cell, width, column.align), style))
            else:
                segments.extend(fit_text(cell, width, column.align, style, console))

        strip = Strip(segments, self._content_width)
        self._line_cache[cache_key] = (row, strip)
        return strip, style

    def _base_style(self) -> Style:
        """The widget's own style, as of the current paint."""
        if self._paint_style is None:
            self._paint_style = self.rich_style
        return self._paint_style

    def _clear_render_caches(self) -> None:
        self._line_cache.clear()
        self._header_cache = None

    # ----------------------------------------------------------- events

    def _on_resize(self, event: events.Resize) -> None:
        self._scroll_cursor_into_view()

    def _on_mount(self, event: events.Mount) -> None:
        # ScrollView.on_mount still runs: Textual calls each class's handler.
        self._scroll_cursor_into_view()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < HEADER_LINES:
            return
        index = self.scroll_offset.y + offset.y - HEADER_LINES
        if not 0 <= index < len(self._rows):
            return
        event.stop()
        if event.chain >= 2 and index == self._cursor:
            self.action_select()
        else:
            self._move_cursor(index)

    # ------------------------------------------------------------------ helpers

    def _move_cursor(self, index: int) -> None:
        if not self._rows:
            return
        index = max(0, min(index, len(self._rows) - 1))
        if index == self._cursor:
            return
        old = self._cursor
        self._cursor = index
        if not self._scroll_cursor_into_view():
            self._refresh_row(old)
            self._refresh_row(index)
        self.post_message(self.Highlighted(self, self.cursor_key))

    def _page(self, direction: int) -> None:
        """Move the cursor and the view by one screenful, keeping the cursor's line."""
        if not self._rows:
            return
        page = max(1, self._body_height())
        target_scroll = max(0, min(self.scroll_offset.y + direction * page, self._max_scroll(page)))
        self._scroll_to_line(target_scroll)
        self._move_cursor(self._cursor + direction * page)
