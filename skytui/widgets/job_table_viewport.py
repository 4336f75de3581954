"""JobTableViewport: which rows of a JobTable are on screen, and scrolling to them.

This module owns the table's geometry (the header line above the rows, the
body's height, the virtual size), where the view goes when the rows are
replaced or the cursor moves, and repainting single row lines. It reads the
rows, cursor and marks that `JobTable` keeps and changes only the scroll.
"""

from __future__ import annotations

from textual.geometry import Region, Size
from textual.scroll_view import ScrollView

from skytui.widgets.job_table_rows import TableRow, same_row

# One cell on the left of every line holds the mark gutter, so a marked row is
# visible even when the cursor or the row's own colours sit on top of it.
GUTTER_WIDTH = 1
# The header is line 0 of the content; rows start on line 1.
HEADER_LINES = 1


class JobTableViewport(ScrollView):
    """The scrolling half of a JobTable; never used alone."""

    # Kept by JobTable (set in its __init__, replaced by set_rows and the cursor moves).
    _rows: tuple[TableRow, ...]
    _cursor: int
    _marks: frozenset[str]
    _content_width: int

    def _view_width(self) -> int:
        # `size` of a ScrollView includes its scrollbars; the viewport does not.
        return self.scrollable_content_region.width

    def _body_height(self) -> int:
        """Lines available for rows: the viewport (without a horizontal scrollbar) minus the header."""
        return max(0, self.scrollable_content_region.height - HEADER_LINES)

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self._content_width, len(self._rows) + HEADER_LINES)

    def _max_scroll(self, body: int) -> int:
        return max(0, len(self._rows) - body)

    def _scroll_after_update(self, old_cursor: int, old_scroll: int, body: int) -> int:
        """Where the view should start after the rows were replaced.

        The cursor row keeps its line on screen, so the rows around it don't
        appear to jump when rows are added or removed above it. At the very
        top the view stays at the top instead (while the cursor still fits),
        so jobs that sort to the top come into view rather than scrolling off
        above. A cursor the user had scrolled out of view leaves the scroll alone.
        """
        if body <= 0:
            return 0
        line = old_cursor - old_scroll
        if not 0 <= line < body:
            return max(0, min(old_scroll, self._max_scroll(body)))
        if old_scroll == 0 and self._cursor < body:
            return 0
        return max(0, min(self._cursor - line, self._max_scroll(body)))

    def _scroll_to_line(self, scroll: int) -> bool:
        """Scroll so row `scroll` is the first body line; True if that moved the view."""
        if scroll == self.scroll_offset.y or not self.is_mounted:
            return False
        # force: the scroll must happen even before layout shows the scrollbar.
        self.scroll_to(y=scroll, animate=False, force=True)
        return True

    def _scroll_cursor_into_view(self) -> bool:
        body = self._body_height()
        if body <= 0 or not self._rows:
            return False
        top = self.scroll_offset.y
        if self._cursor < top:
            return self._scroll_to_line(self._cursor)
        if self._cursor >= top + body:
            return self._scroll_to_line(self._cursor - body + 1)
        return False

    def _refresh_row(self, index: int) -> None:
        line = index - self.scroll_offset.y + HEADER_LINES
        if HEADER_LINES <= line < HEADER_LINES + self._body_height():
            self.refresh(Region(0, line, self._view_width(), 1))

    def _refresh_changed_lines(
        self,
        old_rows: tuple[TableRow, ...],
        old_cursor: int,
        old_marks: frozenset[str],
        scroll: int,
        body: int,
    ) -> None:
        """Repaint only the visible lines whose row, cursor or mark state changed."""
        if len(old_rows) != len(self._rows):
            # The scrollbar changes too; a single full refresh is simplest.
            self.refresh()
            return
        rows = self._rows
        for index in range(scroll, min(scroll + body, len(rows))):
            old, new = old_rows[index], rows[index]
            if (
                not same_row(old, new)
                or (index == old_cursor) != (index == self._cursor)
                or (old.key in old_marks) != (new.key in self._marks)
            ):
                self._refresh_row(index)
