"""LogLines: the lines a LogView holds and the rows of the view they take.

This module owns the LogView's state (set up in `__init__`): the raw lines,
their widths and arrival times, the strip cache, the wrap index that maps
lines to rows, the follow/wrap/timestamps settings, and the geometry and quiet
scrolling built on them. It touches only its own widget; painting, search,
keys and messages are the subclasses' (`log_search`, `log_view`).
"""

from __future__ import annotations

import re
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import accumulate

from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import Reactive, reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

TIMESTAMP_FORMAT = "%H:%M:%S"
TIMESTAMP_WIDTH = 9  # "HH:MM:SS" and a space


class LogLines(ScrollView):
    """The held lines of a LogView and where they sit on its rows; never used alone."""

    follow: Reactive[bool] = reactive(True, init=False)
    """Keep the last line in view as lines arrive. Off after any upward scroll; `G` turns it on."""

    wrap: Reactive[bool] = reactive(False, init=False)
    """Soft-wrap long lines to the width (off: crop them and scroll sideways)."""

    show_timestamps: Reactive[bool] = reactive(False, init=False)
    """Prefix each line with the time it was appended."""

    def __init__(
        self,
        *,
        max_lines: int = 200_000,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock` stamps arriving lines (default `time.time`); tests and snapshots fix it."""
        if max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, not {max_lines}")
        super().__init__(name=name, id=id, classes=classes)
        self.max_lines = max_lines
        self._clock = clock or time.time
        # Lines are numbered from the first ever appended ("absolute"), so the
        # caches, matches and timestamps stay valid when the oldest are dropped:
        # the absolute index of _lines[i] is _dropped + i.
        self._lines: list[str] = []
        self._widths = array("i")  # display cells per line, without the timestamp
        self._dropped = 0
        self._max_width = 0
        # One run per second of arrivals: lines from _stamp_starts[i] on came at _stamp_times[i].
        self._stamp_starts: list[int] = []
        self._stamp_times: list[float] = []
        self._pending = 0
        # Wrap index: _wrap_cum[i] - _wrap_base is the row just after line i, at
        # content width _wrap_width; None until wrap first needs it (or stale).
        self._wrap_cum: array[int] | None = None
        self._wrap_base = 0
        self._wrap_width = 0
        # Strips per line: key (absolute line, content width, wrap); the width is
        # 0 without wrap, where one uncropped strip serves every width and scroll_x.
        self._strips: LRUCache[tuple[int, int, bool], list[Strip]] = LRUCache(1024)
        self._search: re.Pattern[str] | None = None
        self._needle: str | None = None  # the pattern in lower case, when it is ASCII
        # Lines that are not printable ASCII (escapes, tabs, wide text), ascending:
        # the only ones a search must clean before looking.
        self._styled_lines: list[int] = []
        self._matches: list[int] = []  # absolute lines, ascending
        self._current_match: int | None = None
        self._programmatic_scroll = 0
        self._rich_style: Style | None = None

    # ------------------------------------------------------------------ public API

    @property
    def line_count(self) -> int:
        """Lines held now (at most `max_lines`)."""
        return len(self._lines)

    @property
    def pending(self) -> int:
        """Lines that arrived since following paused (0 while following)."""
        return self._pending

    # ------------------------------------------------------------------ geometry

    def _view_width(self) -> int:
        # The same arithmetic Textual uses for max_scroll_x: valid inside _size_updated.
        return max(0, self.container_size.width - self.scrollbar_size_vertical)

    def _view_height(self) -> int:
        return max(1, self.container_size.height - self.scrollbar_size_horizontal)

    def _content_width(self) -> int:
        """Cells left for the text itself, beside the timestamps."""
        return max(0, self._view_width() - (TIMESTAMP_WIDTH if self.show_timestamps else 0))

    def _ensure_wrap_index(self) -> bool:
        """Build the wrap index for the current width if stale; False while there is no width yet."""
        width = self._content_width()
        if width <= 0:
            return False
        if self._wrap_cum is None or self._wrap_width != width:
            self._wrap_cum = array("q", accumulate((w + width - 1) // width or 1 for w in self._widths))
            self._wrap_base = 0
            self._wrap_width = width
        return True

    def _row_count(self) -> int:
        if self.wrap and self._wrap_cum is not None:
            return (self._wrap_cum[-1] - self._wrap_base) if self._wrap_cum else 0
        return len(self._lines)

    def _locate(self, row: int, *, wrap: bool | None = None) -> tuple[int, int]:
        """(index into the held lines, row within that line) of a row of the view."""
        wrap = self.wrap if wrap is None else wrap
        cum = self._wrap_cum
        if not wrap or cum is None or not cum:
            return min(row, max(0, len(self._lines) - 1)), 0
        target = self._wrap_base + row
        index = min(bisect_right(cum, target), len(cum) - 1)
        start = cum[index - 1] if index else self._wrap_base
        return index, max(0, target - start)

    def _first_row(self, index: int) -> int:
        if self.wrap and self._wrap_cum is not None and index > 0:
            return self._wrap_cum[index - 1] - self._wrap_base
        return index

    def _top_position(self, *, wrap: bool | None = None) -> tuple[int, int]:
        """(absolute line, row within it) at the top of the view."""
        index, sub_row = self._locate(round(self.scroll_y), wrap=wrap)
        return self._dropped + index, sub_row

    def _is_visible(self, line: int) -> bool:
        index = line - self._dropped
        if not 0 <= index < len(self._lines):
            return False
        top = round(self.scroll_y)
        return top <= self._first_row(index) < top + self._view_height()

    def _update_virtual_size(self) -> None:
        if self.wrap and self._ensure_wrap_index():
            self.virtual_size = Size(0, self._row_count())
        else:
            prefix = TIMESTAMP_WIDTH if self.show_timestamps else 0
            width = 0 if self.wrap else prefix + self._max_width
            self.virtual_size = Size(width, len(self._lines))

    def _relayout(self, top: tuple[int, int]) -> None:
        """Rows changed shape (wrap, width, timestamps): keep the same line at the top."""
        self._strips.clear()
        self._update_virtual_size()
        if self.follow:
            self._scroll_to_end()
            return
        line, sub_row = top
        index = line - self._dropped
        if not 0 <= index < len(self._lines):
            self._scroll_quietly(y=0)
            return
        first = self._first_row(index)
        rows = self._first_row(index + 1) - first if index + 1 < len(self._lines) else self._row_count() - first
        self._scroll_quietly(y=first + (min(sub_row, max(0, rows - 1)) if self.wrap else 0))
        self.refresh()

    def _drop_oldest(self, count: int) -> int:
        """Forget the `count` oldest lines; how many rows of the view they took."""
        if count <= 0:
            return 0
        if self._wrap_cum is not None and self.wrap and len(self._wrap_cum) >= count:
            new_base = self._wrap_cum[count - 1]
            rows = new_base - self._wrap_base
            self._wrap_base = new_base
            del self._wrap_cum[:count]
        else:
            rows = count
            self._wrap_cum = None
        if max(self._widths[:count]) >= self._max_width:
            del self._widths[:count]
            self._max_width = max(self._widths, default=0)
        else:
            del self._widths[:count]
        del self._lines[:count]
        self._dropped += count
        run = bisect_right(self._stamp_starts, self._dropped) - 1
        if run > 0:
            del self._stamp_starts[:run]
            del self._stamp_times[:run]
        for indices in (self._matches, self._styled_lines):
            gone = bisect_left(indices, self._dropped)
            if gone:
                del indices[:gone]
        if self._current_match is not None and self._current_match < self._dropped:
            self._current_match = None
        return rows

    # ------------------------------------------------------------------ scrolling

    def _scroll_quietly(self, *, x: float | None = None, y: float | None = None) -> None:
        """Scroll without it counting as the user scrolling (never pauses the tail)."""
        if not self.is_mounted:
            return  # the first layout (_size_updated) puts a following view at the end
        self._programmatic_scroll += 1
        try:
            self.scroll_to(x=x, y=y, animate=False, immediate=True)
        finally:
            self._programmatic_scroll -= 1

    def _scroll_to_end(self) -> None:
        self._scroll_quietly(y=self.max_scroll_y)
