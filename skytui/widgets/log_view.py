"""LogView: the line-API viewer for job output (ANSI colours, huge logs, live tail).

This module owns how a job's log looks and scrolls on screen: raw lines kept as
they arrived (bounded by `max_lines`), turned into Strips only when a row is
painted, follow/pause with a count of lines that arrived while paused, soft
wrap, per-line arrival timestamps and plain-text search. It knows nothing of
where lines come from: a screen polls a log follower and calls `append_lines`.

Why a ScrollView and not `Log`/`RichLog`: those render or measure every line
as it is written (reference/env.md §3.2); here a batch of 10,000 lines costs a
list extend and a width per line, and painting costs only the visible rows.
"""

from __future__ import annotations

import re
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate, islice
from typing import ClassVar

from rich.ansi import AnsiDecoder
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

TAB_SIZE = 8
TIMESTAMP_FORMAT = "%H:%M:%S"
TIMESTAMP_WIDTH = 9  # "HH:MM:SS" and a space

# Escape sequences after the ESC: CSI (cursor moves, erase line, SGR...), OSC
# (titles, hyperlinks; ended by BEL or ST, or cut off by the end of the line),
# DCS/SOS/PM/APC strings, two- and three-byte escapes (charsets, keypad
# modes), and nothing at all for a lone ESC. On a terminal these move the
# cursor or set a mode, none of which a scrollback can honour; only SGR
# (colours, bold...) is kept for the styled text.
_ESCAPE_BODY = r"\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[ -/]*[0-~]|"
_ESCAPE_RE = re.compile(r"\x1b(?:" + _ESCAPE_BODY + ")")
_NON_SGR_ESCAPE_RE = re.compile(r"\x1b(?!\[[0-9;:]*m)(?:" + _ESCAPE_BODY + ")")
_SGR_RE = re.compile(r"\x1b\[[0-9;:]*m")
_SGR_SPLIT_RE = re.compile(r"(\x1b\[[0-9;:]*m)")
# Control characters left after the escapes are gone (ESC itself survives only
# inside SGR; tab is expanded later). Rich's decoder would split a line on
# \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029, so those go as well.
_CONTROL_RE = re.compile("[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f-\x9f\u2028\u2029]")


def _expand_tabs(line: str) -> str:
    """Tabs to spaces by display column, SGR sequences taking no columns."""
    out: list[str] = []
    column = 0
    for index, part in enumerate(_SGR_SPLIT_RE.split(line)):
        if index % 2 or "\t" not in part:
            out.append(part)
            if not index % 2:
                column += cell_len(part)
            continue
        for chunk_index, chunk in enumerate(part.split("\t")):
            if chunk_index:
                spaces = TAB_SIZE - column % TAB_SIZE
                out.append(" " * spaces)
                column += spaces
            out.append(chunk)
            column += cell_len(chunk)
    return "".join(out)


def terminal_line(raw: str) -> str:
    """`raw` as a terminal would leave it: only SGR escapes, no controls, no tabs.

    A carriage return redraws the line, so only the text after the last one
    stays (a finished progress bar), keeping the colours set before it; a
    trailing one (CRLF files) is ignored.
    """
    line = raw
    if "\r" in line:
        line = line.rstrip("\r\n")
        head, separator, tail = line.rpartition("\r")
        if separator:
            line = "".join(_SGR_RE.findall(head)) + tail
    if "\x1b" in line:
        line = _NON_SGR_ESCAPE_RE.sub("", line)
    line = _CONTROL_RE.sub("", line)
    if "\t" in line:
        line = _expand_tabs(line)
    return line


def _is_plain(raw: str) -> bool:
    # Printable ASCII needs no cleaning and its width is its length: the
    # common case, checked in C.
    return raw.isascii() and raw.isprintable()


def plain_text(raw: str) -> str:
    """The characters of `raw` that show on screen, without any styling.

    The same as `terminal_line` without its SGR escapes, in one pass, because
    every line with an escape goes through here when it arrives.
    """
    if _is_plain(raw):
        return raw
    line = raw
    if "\r" in line:
        line = line.rstrip("\r\n").rpartition("\r")[2]
    if "\x1b" in line:
        line = _ESCAPE_RE.sub("", line)
    line = _CONTROL_RE.sub("", line)
    if "\t" in line:
        line = _expand_tabs(line)
    return line


def display_width(raw: str) -> int:
    """Cells `raw` takes on screen once cleaned."""
    if _is_plain(raw):
        return len(raw)
    plain = plain_text(raw)
    return len(plain) if plain.isascii() else cell_len(plain)


def styled_text(raw: str) -> Text:
    """A Text for `raw`: SGR colours become styles, nothing is read as markup."""
    if _is_plain(raw):
        return Text(raw, end="", no_wrap=True)
    line = terminal_line(raw)
    if "\x1b" not in line:
        return Text(line, end="", no_wrap=True)
    text = AnsiDecoder().decode_line(line)
    text.end = ""
    text.no_wrap = True
    return text


class LogView(ScrollView, can_focus=True, inherit_bindings=False):
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

    follow: Reactive[bool] = reactive(True, init=False)
    """Keep the last line in view as lines arrive. Off after any upward scroll; `G` turns it on."""

    wrap: Reactive[bool] = reactive(False, init=False)
    """Soft-wrap long lines to the width (off: crop them and scroll sideways)."""

    show_timestamps: Reactive[bool] = reactive(False, init=False)
    """Prefix each line with the time it was appended."""

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
            widths = [len(raw) if _is_plain(raw) else display_width(raw) for raw in batch]
            self._styled_lines.extend(first + i for i, raw in enumerate(batch) if not _is_plain(raw))
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
