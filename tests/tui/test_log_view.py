"""LogView: what shows, follow and pause, wrap, timestamps, search, ANSI, limits, scale.

Each test runs a tiny app holding one LogView at 100x30 (98 columns of text
beside the vertical scrollbar) and reads back what the rows would paint
through `render_line`, which is what the compositor calls.
"""

from __future__ import annotations

import time
from typing import ClassVar

import pytest
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.scrollbar import ScrollTo
from textual.strip import Strip

from skytui.widgets import log_view as log_view_module
from skytui.widgets.log_view import LogView, display_width, plain_text, terminal_line

SIZE = (100, 30)
TEXT_WIDTH = 98  # 100 columns minus the 2-column vertical scrollbar


class LogApp(App[None]):
    def __init__(self, view: LogView | None = None) -> None:
        super().__init__()
        self.view = view or LogView()
        self.follow_messages: list[tuple[bool, int]] = []

    def compose(self) -> ComposeResult:
        yield self.view

    def on_log_view_follow_changed(self, message: LogView.FollowChanged) -> None:
        self.follow_messages.append((message.follow, message.pending))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def height(view: LogView) -> int:
    return view.scrollable_content_region.height


def rows(view: LogView) -> list[str]:
    """The text of every visible row, trailing padding removed."""
    return [view.render_line(y).text.rstrip() for y in range(height(view))]


def numbered(count: int, start: int = 0, prefix: str = "line") -> list[str]:
    return [f"{prefix} {i}" for i in range(start, start + count)]


def segment_styles(strip: Strip, text: str) -> list[Style]:
    return [segment.style for segment in strip if segment.text == text and segment.style is not None]


class TestShowing:
    async def test_appended_lines_show_in_order(self) -> None:
        """Lines appear top-down; the rest of the view is blank."""
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(["first", "second"])
            app.view.append_lines(["third"])
            await pilot.pause()
            assert app.view.line_count == 3
            assert rows(app.view)[:4] == ["first", "second", "third", ""]

    async def test_text_with_newlines_becomes_several_lines(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(["a\nb", "c\n", "d"])
            await pilot.pause()
            assert app.view.line_count == 4
            assert rows(app.view)[:4] == ["a", "b", "c", "d"]

    async def test_lines_appended_before_mounting_show_at_the_end(self) -> None:
        view = LogView()
        view.append_lines(numbered(500))
        app = LogApp(view)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert rows(view)[-1] == "line 499"

    async def test_clear_forgets_everything(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(100))
            await pilot.pause()
            app.view.clear()
            await pilot.pause()
            assert app.view.line_count == 0
            assert set(rows(app.view)) == {""}
            app.view.append_lines(["again"])
            await pilot.pause()
            assert rows(app.view)[0] == "again"


class TestFollow:
    async def test_follow_keeps_the_last_line_visible_as_batches_arrive(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            for batch in range(10):
                app.view.append_lines(numbered(50, batch * 50))
                await pilot.pause()
                assert rows(app.view)[-1] == f"line {batch * 50 + 49}"
            assert app.view.follow and app.view.pending == 0
            assert app.follow_messages == []

    @pytest.mark.parametrize("key", ["up", "k", "pageup", "home", "g"])
    async def test_scrolling_up_pauses_counts_pending_and_G_resumes(self, key: str) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(200))
            await pilot.pause()
            await pilot.press(key)
            assert not app.view.follow
            shown = rows(app.view)
            app.view.append_lines(numbered(120, 200))
            app.view.append_lines(numbered(3, 320))
            await pilot.pause()
            assert rows(app.view) == shown  # new lines do not move the view
            assert app.view.pending == 123
            assert app.follow_messages[0] == (False, 0)
            assert app.follow_messages[-1] == (False, 123)
            await pilot.press("G")
            await pilot.pause()
            assert app.view.follow and app.view.pending == 0
            assert rows(app.view)[-1] == "line 322"
            assert app.follow_messages[-1] == (True, 0)

    async def test_end_resumes_too(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(200))
            await pilot.pause()
            await pilot.press("g")
            app.view.append_lines(["later"])
            await pilot.press("end")
            await pilot.pause()
            assert app.view.follow
            assert rows(app.view)[-1] == "later"

    async def test_wheel_and_scrollbar_pause_too(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(200))
            await pilot.pause()
            app.view.post_message(events.MouseScrollUp(app.view, 5, 5, 0, -1, 0, False, False, False))
            await pilot.pause()
            assert not app.view.follow
            await pilot.press("G")
            assert app.view.follow
            app.view.post_message(ScrollTo(y=10, animate=False))  # what dragging the scrollbar sends
            await pilot.pause()
            assert not app.view.follow
            assert rows(app.view)[0] == "line 10"

    async def test_scrolling_down_does_not_resume(self) -> None:
        """Only G/end resume: reaching the bottom by hand keeps the view still."""
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(40))
            await pilot.pause()
            await pilot.press("k", "j", "j")
            assert not app.view.follow
            app.view.append_lines(["more"])
            await pilot.pause()
            assert app.view.pending == 1
            assert "more" not in rows(app.view)

    async def test_a_taller_view_keeps_following(self) -> None:
        """The scroll position shrinks when the view grows: that is not the user scrolling up."""
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(200))
            await pilot.pause()
            await pilot.resize_terminal(100, 45)
            await pilot.pause()
            assert app.view.follow
            app.view.append_lines(["after"])
            await pilot.pause()
            assert rows(app.view)[-1] == "after"
            assert len(rows(app.view)) == 45


class TestWrap:
    LONG = "".join(chr(ord("a") + i % 26) for i in range(250))

    async def test_wrap_on_and_off_changes_rows(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(["first", self.LONG, "last"])
            await pilot.pause()
            assert app.view.virtual_size.height == 3
            assert rows(app.view)[:3] == ["first", self.LONG[:TEXT_WIDTH], "last"]
            await pilot.press("right")
            await pilot.pause()
            assert rows(app.view)[1] == self.LONG[4 : 4 + TEXT_WIDTH]

            await pilot.press("w")
            await pilot.pause()
            assert app.view.wrap
            assert app.view.virtual_size.height == 5
            shown = rows(app.view)
            assert shown[0] == "first"
            assert "".join(shown[1:4]) == self.LONG
            assert shown[4] == "last"

            await pilot.press("w")
            await pilot.pause()
            assert app.view.virtual_size.height == 3

    async def test_wrapped_follow_lands_on_the_last_row(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("w")
            lines = [f"{i:04d}" + self.LONG for i in range(300)]
            for start in range(0, 300, 100):
                app.view.append_lines(lines[start : start + 100])
                await pilot.pause()
                last = lines[start + 99]
                assert rows(app.view)[-1] == last[2 * TEXT_WIDTH :]
            assert app.view.virtual_size.height == 300 * 3

    async def test_resize_rewraps_and_keeps_the_top_line(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines([f"{i:04d}" + self.LONG for i in range(100)])
            await pilot.press("w", "g", "pagedown")  # 30 rows down: line 10, 3 rows a line
            await pilot.pause()
            assert rows(app.view)[0].startswith("0010")
            await pilot.resize_terminal(60, 30)  # 58 columns of text: 5 rows a line
            await pilot.pause()
            assert app.view.virtual_size.height == 100 * 5
            assert rows(app.view)[0].startswith("0010")
            await pilot.press("w")
            await pilot.pause()
            assert rows(app.view)[0].startswith("0010")

    async def test_last_line_shows_above_a_horizontal_scrollbar(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(100) + [self.LONG, "end"])
            await pilot.pause()
            assert app.view.show_horizontal_scrollbar
            assert rows(app.view)[-1] == "end"


class TestTimestamps:
    async def test_timestamps_toggle_and_are_kept_per_line(self) -> None:
        clock = Clock(1_700_000_000.0)
        app = LogApp(LogView(clock=clock))
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(["first", "second"])
            clock.now += 61
            app.view.append_lines(["third"])
            await pilot.pause()
            await pilot.press("t")
            await pilot.pause()
            early = time.strftime("%H:%M:%S", time.localtime(1_700_000_000.0))
            late = time.strftime("%H:%M:%S", time.localtime(1_700_000_061.0))
            assert early != late
            assert rows(app.view)[:3] == [f"{early} first", f"{early} second", f"{late} third"]
            stamp_style = app.view.get_component_rich_style("log-view--timestamp")
            assert stamp_style.color is not None
            first_segment = next(iter(app.view.render_line(0)))
            assert first_segment.style is not None and first_segment.style.color == stamp_style.color
            await pilot.press("t")
            await pilot.pause()
            assert rows(app.view)[:3] == ["first", "second", "third"]

    async def test_wrapped_rows_indent_under_the_timestamp(self) -> None:
        clock = Clock(1_700_000_000.0)
        app = LogApp(LogView(clock=clock))
        async with app.run_test(size=SIZE) as pilot:
            long = "x" * 100
            app.view.append_lines([long])
            await pilot.press("t", "w")
            await pilot.pause()
            stamp = time.strftime("%H:%M:%S", time.localtime(clock.now))
            assert rows(app.view)[:2] == [f"{stamp} " + "x" * 89, " " * 9 + "x" * 11]


class TestSearch:
    LINES: ClassVar[list[str]] = [f"{i:04d} " + ("ERROR disk full" if i % 100 == 50 else "ok") for i in range(1000)]

    async def test_search_highlights_and_n_N_move(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            view = app.view
            view.append_lines(self.LINES)
            await pilot.press("g")
            assert view.search("error") == 10
            await pilot.pause()
            assert not view.follow
            assert "0050 ERROR disk full" in rows(view)
            row = rows(view).index("0050 ERROR disk full")
            current = view.get_component_rich_style("log-view--match-current")
            [style] = segment_styles(view.render_line(row), "ERROR")
            assert style.bgcolor == current.bgcolor

            await pilot.press("n")
            assert rows(view)[0] == "0150 ERROR disk full"
            await pilot.press("N")
            assert rows(view)[0] == "0050 ERROR disk full"
            await pilot.press("N")  # wraps around to the last match
            assert rows(view)[0] == "0950 ERROR disk full"
            await pilot.press("n")
            assert rows(view)[0] == "0050 ERROR disk full"

    async def test_search_starts_at_the_top_line(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(self.LINES)
            await pilot.press("g")
            for _ in range(4):
                await pilot.press("pagedown")  # top line 120
            assert rows(app.view)[0] == "0120 ok"
            assert app.view.search("Error") == 10
            assert "0150 ERROR disk full" in rows(app.view)

    async def test_every_visible_match_is_highlighted(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(["an error", "fine", "Error again ERROR", "\x1b[31mERR\x1b[0mOR split by colour"])
            assert app.view.search("error") == 3
            await pilot.pause()
            match = app.view.get_component_rich_style("log-view--match")
            current = app.view.get_component_rich_style("log-view--match-current")
            assert match.bgcolor != current.bgcolor
            assert [s.bgcolor for s in segment_styles(app.view.render_line(0), "error")] == [current.bgcolor]
            assert segment_styles(app.view.render_line(1), "fine")[0].bgcolor != match.bgcolor
            again = app.view.render_line(2)
            assert [s.bgcolor for s in segment_styles(again, "Error")] == [match.bgcolor]
            assert [s.bgcolor for s in segment_styles(again, "ERROR")] == [match.bgcolor]
            split = app.view.render_line(3)
            assert [s.bgcolor for s in segment_styles(split, "ERR")] == [match.bgcolor]
            assert [s.bgcolor for s in segment_styles(split, "OR")] == [match.bgcolor]

    async def test_new_lines_are_searched_and_an_empty_pattern_clears(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(10))
            assert app.view.search("boom") == 0
            app.view.append_lines(["boom"])
            await pilot.pause()
            await pilot.press("n")
            match = app.view.get_component_rich_style("log-view--match-current")
            assert [s.bgcolor for s in segment_styles(app.view.render_line(10), "boom")] == [match.bgcolor]
            assert app.view.search("") == 0
            assert all(s.bgcolor != match.bgcolor for s in segment_styles(app.view.render_line(10), "boom"))

    async def test_only_shown_text_matches(self) -> None:
        """Text inside escape sequences or overwritten by a carriage return is not found."""
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(["\x1b]0;error in title\x07fine", "error 10%\rdone", "tab\terror"])
            assert app.view.search("error") == 1
            await pilot.pause()
            assert app.view.search("tab     error") == 1
            app.view.search("")
            await pilot.press("G", "n", "N")  # nothing to go to: nothing happens
            assert app.view.follow

    async def test_a_match_off_to_the_right_scrolls_into_view(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(["x" * 300 + "needle" + "y" * 50])
            await pilot.pause()
            app.view.search("needle")
            await pilot.pause()
            assert "needle" in rows(app.view)[0]


class TestAnsi:
    @pytest.mark.parametrize(
        ("raw", "shown"),
        [
            ("plain", "plain"),
            ("\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[m", "red and bold green"),
            ("\x1b[2K\x1b[1Gcursor moved", "cursor moved"),
            ("\x1b[?25lhidden cursor\x1b[?25h", "hidden cursor"),
            ("\x1b]0;window title\x07after title", "after title"),
            ("\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", "link"),
            ("10%\r50%\r100% done", "100% done"),
            ("crlf line\r\n", "crlf line"),
            ("crlf line\r", "crlf line"),
            ("bell\x07 and back\x08space", "bell and backspace"),
            ("a lone escape\x1b", "a lone escape"),
            ("\x1b(Bcharset", "charset"),
            ("tab\there", "tab     here"),
            ("\x1b[31mab\x1b[0m\tc", "ab      c"),
            ("[bold]not markup[/bold] a[/]b", "[bold]not markup[/bold] a[/]b"),
            ("wide 日本\tx", "wide 日本       x"),
        ],
    )
    def test_terminal_text(self, raw: str, shown: str) -> None:
        assert plain_text(raw) == shown
        assert display_width(raw) == display_width(shown)

    def test_progress_bar_keeps_the_colour_set_before_the_last_return(self) -> None:
        assert terminal_line("\x1b[32m10%\r100%") == "\x1b[32m100%"

    async def test_colours_become_styles_and_escapes_never_show(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines([
                "\x1b[31mred\x1b[0m plain",
                "\x1b[1;38;5;208mbold orange\x1b[0m",
                "\x1b[2K\x1b[1A\x1b]0;title\x07\rprogress\r\x1b[44mdone\x1b[0m",
            ])
            await pilot.pause()
            assert rows(app.view)[:3] == ["red plain", "bold orange", "done"]
            [red] = segment_styles(app.view.render_line(0), "red")
            assert red.color is not None and red.color.number == 1
            [plain] = segment_styles(app.view.render_line(0), " plain")
            assert plain.color != red.color
            [orange] = segment_styles(app.view.render_line(1), "bold orange")
            assert orange.bold and orange.color is not None and orange.color.number == 208
            [done] = segment_styles(app.view.render_line(2), "done")
            assert done.bgcolor is not None and done.bgcolor.number == 4
            for y in range(3):
                text = app.view.render_line(y).text
                assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text)

    async def test_markup_is_literal(self) -> None:
        app = LogApp()
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(["[bold]x[/bold]", "a[/]b", "[red]\x1b[31m[/]\x1b[0m"])
            await pilot.pause()
            assert rows(app.view)[:3] == ["[bold]x[/bold]", "a[/]b", "[red][/]"]


class TestLimits:
    async def test_max_lines_drops_the_oldest(self) -> None:
        app = LogApp(LogView(max_lines=100))
        async with app.run_test(size=SIZE) as pilot:
            for start in range(0, 250, 50):
                app.view.append_lines(numbered(50, start))
            await pilot.pause()
            assert app.view.line_count == 100
            assert rows(app.view)[-1] == "line 249"
            await pilot.press("g")
            assert rows(app.view)[0] == "line 150"

    async def test_a_batch_larger_than_max_lines_keeps_its_end(self) -> None:
        app = LogApp(LogView(max_lines=100))
        async with app.run_test(size=SIZE) as pilot:
            app.view.append_lines(numbered(10, prefix="old"))
            app.view.append_lines(numbered(250))
            await pilot.pause()
            assert app.view.line_count == 100
            await pilot.press("g")
            assert rows(app.view)[0] == "line 150"

    @pytest.mark.parametrize("wrap", [False, True])
    async def test_a_paused_view_stays_on_its_lines_while_old_ones_drop(self, wrap: bool) -> None:
        app = LogApp(LogView(max_lines=100))
        filler = " " + "z" * 150 if wrap else ""
        async with app.run_test(size=SIZE) as pilot:
            app.view.wrap = wrap
            app.view.append_lines([line + filler for line in numbered(100)])
            await pilot.press("g", "pagedown")
            top = rows(app.view)[0]
            app.view.append_lines([line + filler for line in numbered(10, 100)])
            await pilot.pause()
            assert rows(app.view)[0] == top
            assert app.view.pending == 10
            await pilot.press("g")
            assert rows(app.view)[0].startswith("line 10")


class TestScale:
    async def test_200k_lines_in_batches_render_only_visible_rows(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Appending converts nothing; the one paint after it renders one screenful."""
        converted: list[str] = []
        real_styled_text = log_view_module.styled_text

        def counting_styled_text(raw: str) -> Text:
            converted.append(raw)
            return real_styled_text(raw)

        monkeypatch.setattr(log_view_module, "styled_text", counting_styled_text)
        rendered: list[int] = []

        class CountingLogView(LogView):
            def render_line(self, y: int) -> Strip:
                rendered.append(y)
                return super().render_line(y)

        app = LogApp(CountingLogView())
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            rendered.clear()
            for batch in range(20):
                app.view.append_lines([f"{batch * 10_000 + i:07d} " + "x" * 80 for i in range(10_000)])
            assert converted == []
            await pilot.pause()
            visible = height(app.view)
            assert rendered, "nothing was painted"
            assert all(0 <= y < visible for y in rendered)
            assert len(rendered) <= 2 * visible  # one paint (two at most if a frame was already due)
            assert len(set(converted)) <= visible
            assert app.view.line_count == 200_000
            assert rows(app.view)[-1].startswith("0199999")
            await pilot.press("k")  # still answering keys
            assert not app.view.follow
