"""LogView: the line-API viewer for job output (ANSI colours, huge logs, live tail).

This module owns the widget a screen uses: appending and clearing lines,
follow/pause with a count of lines that arrived while paused (the
FollowChanged message), the keys, and painting rows into Strips (search
highlights, timestamps) only when a row is painted. It knows nothing of where
lines come from: a screen polls a log follower and calls `append_lines`.
The lines and their rows are `log_lines`', the search `log_search`', and the
cleaning of one raw line `log_text`'s; their public names are re-exported here.

Why a ScrollView and not `Log`/`RichLog`: those render or measure every line
as it is written (reference/env.md §3.2); here a batch of 10,000 lines costs a
list extend and a width per line, and painting costs only the visible rows.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate, islice
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip

from skytui.widgets.log_lines import TIMESTAMP_FORMAT, TIMESTAMP_WIDTH
from skytui.widgets.log_search import LogSearch
# Painting calls `styled_text` by this module's name, so a test can count
# the lines converted by patching `log_view.styled_text`.
from skytui.widgets.log_text import TAB_SIZE, display_width, is_plain, plain_text, styled_text, terminal_line

__all__ = [
    "TAB_SIZE",
    "TIMESTAMP_FORMAT",
    "TIMESTAMP_WIDTH",
    "LogView",
    "display_width",
    "plain_text",
    "styled_text",
    "terminal_line",
]


class LogView(LogSearch, can_focus=True, inherit_bindings=False):
    """A scrolling, following view of log lines that renders only what is visible."""

    ALLOW_SELECT = False  # the inherited selection would copy the debug render of ScrollView
    COMPONENT_CLASSES: ClassVar[set[str]] = {"log-view--match", "log-view--match-current", "log-view--timestamp"}
    # The vertical scrollbar is always there so that the width lines wrap to
    # never depends on how many rows the wrapped lines take. The component
    # colours are theme variables, to be overridden in the app's stylesheet.
    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        overflow-x: auto;
        overflow-y: scroll;
        & > .log-view--timestamp { color: $text-muted; }
        & > .log-view--match { background: $warning 40%; color: $text; }
        & > .log-view--match-current { background: $accent; color: $text; text-style: bold; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("G,end", "follow", "Follow", id="log_view.follow"),
        Binding("g,home", "top", "Top", id="log_view.top"),
        Binding("up,k", "line_up", "Up", show=False, id="log_view.line_up"),
        Binding("down,j", "line_down", "Down", show=False, id="log_view.line_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="log_view.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="log_view.page_down"),
        Binding("left", "column_left", "Left", show=False, id="log_view.left"),
        Binding("right", "column_right", "Right", show=False, id="log_view.right"),
        Binding("w", "toggle_wrap", "Wrap", id="log_view.wrap"),
        Binding("t", "toggle_timestamps", "Timestamps", id="log_view.timestamps"),
        Binding("n", "next_match", "Next match", show=False, id="log_view.next_match"),
        Binding("N", "previous_match", "Previous match", show=False, id="log_view.previous_match"),
    ]

    class FollowChanged(Message):
        """Following turned on or off, or lines arrived while it is off."""

        def __init__(self, log_view: LogView, follow: bool, pending: int) -> None:
            super().__init__()
            self.log_view = log_view
            self.follow = follow
            self.pending = pending
            """Lines that arrived since following paused (0 while following)."""

        @property
        def control(self) -> LogView:
            return self.log_view

        def can_replace(self, message: Message) -> bool:
            # Only the newest count matters to a status line.
            return isinstance(message, LogView.FollowChanged) and message.log_view is self.log_view
    def append_lines(self, lines: Sequence[str]) -> None:
        """Add lines (raw, possibly with ANSI escapes) at the end; no rendering happens here."""
        if not lines:
            return
        batch = list(lines)
        joined = "".join(batch)
        if "\n" in joined:
            # Someone handed over text with newlines inside: one entry per line,
            # a final newline ending its line rather than adding an empty one.
            batch = [part for entry in batch for part in entry.removesuffix("\n").split("\n")]
            joined = "".join(batch)
        arrived = len(batch)
        rows_removed = 0
        if len(batch) > self.max_lines:
            rows_removed += self._drop_oldest(len(self._lines))
            skipped = len(batch) - self.max_lines
            self._dropped += skipped
            batch = batch[skipped:]
        first = self._dropped + len(self._lines)
        now = self._clock()
        if not self._stamp_times or int(now) != int(self._stamp_times[-1]):
            self._stamp_starts.append(first)
            self._stamp_times.append(now)
        if joined.isascii() and joined.isprintable():
            # The whole batch is printable ASCII (most logs, most of the time):
            # widths are lengths, computed in C.
            widths = list(map(len, batch))
        else:
            widths = [len(raw) if is_plain(raw) else display_width(raw) for raw in batch]
            self._styled_lines.extend(first + i for i, raw in enumerate(batch) if not is_plain(raw))
        self._lines.extend(batch)
        self._widths.extend(widths)
        self._max_width = max(self._max_width, max(widths))
        if self._wrap_cum is not None and self.wrap and self._wrap_width == self._content_width():
            width = self._wrap_width
            last = self._wrap_cum[-1] if self._wrap_cum else self._wrap_base
            rows = accumulate(((w + width - 1) // width or 1 for w in widths), initial=last)
            self._wrap_cum.extend(islice(rows, 1, None))
        else:
            self._wrap_cum = None
        if self._search is not None:
            self._matches.extend(self._matching_lines(batch, first))
        excess = len(self._lines) - self.max_lines
        if excess > 0:
            rows_removed += self._drop_oldest(excess)
        self._update_virtual_size()
        if self.follow:
            self._scroll_to_end()
        else:
            if rows_removed:
                # What is on screen stays on screen: the rows above it went.
                self._scroll_quietly(y=self.scroll_y - rows_removed)
            self._pending += arrived
            self.post_message(self.FollowChanged(self, False, self._pending))
        self.refresh()

    def clear(self) -> None:
        """Forget every line (the search pattern stays, for lines to come)."""
        self._dropped += len(self._lines)
        self._lines.clear()
        self._widths = array("i")
        self._max_width = 0
        self._stamp_starts.clear()
        self._stamp_times.clear()
        self._wrap_cum = None
        self._strips.clear()
        self._styled_lines.clear()
        self._matches.clear()
        self._current_match = None
        had_pending = self._pending
        self._pending = 0
        self._update_virtual_size()
        self._scroll_quietly(x=0, y=0)
        if had_pending:
            self.post_message(self.FollowChanged(self, self.follow, 0))
        self.refresh()
    # ------------------------------------------------------------------ actions

    def action_follow(self) -> None:
        self.follow = True
        self._scroll_to_end()

    def action_top(self) -> None:
        self.follow = False
        self._scroll_quietly(y=0)

    def action_line_up(self) -> None:
        self.scroll_relative(y=-1, animate=False)

    def action_line_down(self) -> None:
        self.scroll_relative(y=1, animate=False)

    def action_page_up(self) -> None:
        self.scroll_relative(y=-self._view_height(), animate=False)

    def action_page_down(self) -> None:
        self.scroll_relative(y=self._view_height(), animate=False)

    def action_column_left(self) -> None:
        self.scroll_relative(x=-4, animate=False)

    def action_column_right(self) -> None:
        self.scroll_relative(x=4, animate=False)

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    def action_toggle_timestamps(self) -> None:
        self.show_timestamps = not self.show_timestamps

    def action_next_match(self) -> None:
        self.next_match()

    def action_previous_match(self) -> None:
        self.previous_match()

    # ------------------------------------------------------------------ watchers

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._pending = 0
            self._scroll_to_end()
        self.post_message(self.FollowChanged(self, follow, self._pending))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Any move up that the user made (keys, wheel, scrollbar) pauses the
        # tail; a clamp after the view grew taller leaves it at the end, so it
        # does not count.
        if (
            new_value < old_value
            and not self._programmatic_scroll
            and self.follow
            and round(new_value) < self.max_scroll_y
        ):
            self.follow = False

    def watch_wrap(self, old_wrap: bool, wrap: bool) -> None:
        self._relayout(self._top_position(wrap=old_wrap))

    def watch_show_timestamps(self) -> None:
        self._relayout(self._top_position())

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._rich_style = None
        self._strips.clear()  # the base and component styles are baked into the strips

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        top = self._top_position()
        resized = super()._size_updated(size, virtual_size, container_size, layout)
        if self.wrap and (self._wrap_cum is None or self._wrap_width != self._content_width()):
            self._relayout(top)
        elif self.follow and self.scroll_y != self.max_scroll_y:
            # A horizontal scrollbar that just appeared hides the last row.
            self._scroll_to_end()
        return resized

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        base_style = self._base_style()
        width = self._view_width()
        content_width = self._content_width()
        if row >= self._row_count():
            return Strip.blank(width, base_style)
        index, sub_row = self._locate(row)
        line = self._dropped + index
        if self.wrap and self._wrap_cum is not None:
            strips = self._wrapped_strips(line, content_width)
            body = strips[min(sub_row, len(strips) - 1)].extend_cell_length(content_width, base_style)
        else:
            body = self._line_strip(line).crop_extend(scroll_x, scroll_x + content_width, base_style)
        if not self.show_timestamps:
            return body
        if sub_row:
            prefix = Strip.blank(TIMESTAMP_WIDTH, base_style)
        else:
            prefix = self._timestamp_strip(line, base_style)
        return Strip.join([prefix, body])

    def _base_style(self) -> Style:
        # DOMNode.rich_style walks every ancestor: too slow to ask once per row.
        if self._rich_style is None:
            self._rich_style = self.rich_style
        return self._rich_style

    def _line_strip(self, line: int) -> Strip:
        """The whole line, uncropped, with search highlights."""
        key = (line, 0, False)
        cached = self._strips.get(key)
        if cached is None:
            cached = [self._build_strip(line)]
            self._strips[key] = cached
        return cached[0]

    def _wrapped_strips(self, line: int, width: int) -> list[Strip]:
        """The line cut into rows of `width` cells (as many as the wrap index counts)."""
        key = (line, width, True)
        cached = self._strips.get(key)
        if cached is None:
            strip = self._build_strip(line)
            length = strip.cell_length
            if length <= width:
                cached = [strip]
            else:
                cached = list(strip.divide([*range(width, length, width), length]))
            self._strips[key] = cached
        return cached

    def _build_strip(self, line: int) -> Strip:
        raw = self._lines[line - self._dropped]
        text = styled_text(raw)
        if self._search is not None:
            matches = list(self._search.finditer(text.plain))
            if matches:
                component = "log-view--match-current" if line == self._current_match else "log-view--match"
                # The full style: a translucent background is blended only there.
                style = self.get_component_rich_style(component)
                for match in matches:
                    text.stylize(style, match.start(), match.end())
        return Strip(list(text.render(self.app.console))).apply_style(self._base_style())

    def _timestamp_strip(self, line: int, base_style: Style) -> Strip:
        run = bisect_right(self._stamp_starts, line) - 1
        stamp = time.strftime(TIMESTAMP_FORMAT, time.localtime(self._stamp_times[run])) if run >= 0 else ""
        style = base_style + self.get_component_rich_style("log-view--timestamp")
        return Strip([Segment(f"{stamp:<{TIMESTAMP_WIDTH - 1}} ", style)], TIMESTAMP_WIDTH)
