"""LogSearch: plain-text search over a LogView's lines and moving between matches.

This module owns which held lines match the search pattern (kept current as
lines arrive and go) and the current match the view scrolls to. It touches only
its own widget's state, which `log_lines.LogLines` sets up; painting the
highlights is `log_view`'s.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from rich.cells import cell_len

from skytui.widgets.log_lines import LogLines
from skytui.widgets.log_text import plain_text


class LogSearch(LogLines):
    """Search and match navigation for a LogView; never used alone."""

    def search(self, pattern: str) -> int:
        """Highlight `pattern` (plain text, any case), go to its first match from the top line.

        Returns the number of matching lines; an empty pattern clears the search.
        """
        self._strips.clear()
        self._current_match = None
        if not pattern:
            self._search = None
            self._matches = []
            self.refresh()
            return 0
        self._search = re.compile(re.escape(pattern), re.IGNORECASE)
        self._needle = pattern.lower() if pattern.isascii() else None
        self._matches = self._matching_lines(self._lines, self._dropped)
        if self._matches:
            top = self._top_position()[0]
            index = bisect_left(self._matches, top)
            self._go_to_match(self._matches[index % len(self._matches)])
        self.refresh()
        return len(self._matches)

    def _matching_lines(self, lines: Sequence[str], first: int) -> list[int]:
        """Absolute indices of the lines in `lines` (the first being line `first`) that match."""
        assert self._search is not None
        search = self._search.search
        if self._needle is None:
            return [first + i for i, raw in enumerate(lines) if search(plain_text(raw))]
        # Printable ASCII lines are what they show, and for ASCII text and
        # pattern lower() agrees with IGNORECASE: a substring test in C. The
        # other lines (escapes that may split a word, tabs, non-ASCII) are
        # decided on their cleaned text.
        needle = self._needle
        end = first + len(lines)
        styled = self._styled_lines[bisect_left(self._styled_lines, first) : bisect_left(self._styled_lines, end)]
        hits = [first + i for i, raw in enumerate(lines) if needle in raw.lower()]
        if not styled:
            return hits
        styled_set = set(styled)
        exact = [line for line in styled if search(plain_text(lines[line - first]))]
        return sorted([line for line in hits if line not in styled_set] + exact)

    def next_match(self) -> None:
        """Go to the match after the current one (or after the top line), wrapping around."""
        if not self._matches:
            return
        if self._current_match is not None and self._is_visible(self._current_match):
            index = bisect_right(self._matches, self._current_match)
        else:
            index = bisect_left(self._matches, self._top_position()[0])
        self._go_to_match(self._matches[index % len(self._matches)])

    def previous_match(self) -> None:
        """Go to the match before the current one (or before the top line), wrapping around."""
        if not self._matches:
            return
        anchor = self._current_match
        if anchor is None or not self._is_visible(anchor):
            anchor = self._top_position()[0]
        index = bisect_left(self._matches, anchor) - 1
        self._go_to_match(self._matches[index % len(self._matches)])

    def _go_to_match(self, line: int) -> None:
        self._current_match = line
        self._strips.clear()
        self.follow = False
        index = line - self._dropped
        plain = plain_text(self._lines[index])
        found = self._search.search(plain) if self._search is not None else None
        column = cell_len(plain[: found.start()]) if found else 0
        end_column = cell_len(plain[: found.end()]) if found else 0
        if self.wrap and self._wrap_cum is not None:
            width = max(1, self._wrap_width)
            row = self._first_row(index) + column // width
            top = round(self.scroll_y)
            if not top <= row < top + self._view_height():
                self._scroll_quietly(y=row)
        else:
            if not self._is_visible(line):
                self._scroll_quietly(y=index)
            content_width = self._content_width()
            if not (self.scroll_x <= column and end_column <= self.scroll_x + content_width):
                self._scroll_quietly(x=max(0, column - content_width // 4))
        self.refresh()
