"""JobTable: rendering, cursor-follows-key, keys, marks, mouse and virtualisation.

Each test runs a tiny App around one JobTable and reads the rendered lines
back through `render_line(y).text` (what the compositor would paint).
Speed is measured by bench/tui_table.py, not asserted here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Input

from skytui.widgets.job_table import Column, JobTable, TableRow

M = TypeVar("M", bound=Message)

COLUMNS = (
    Column("id", "ID", 5, "right"),
    Column("name", "NAME", 10),
    Column("status", "STATUS", 9),
)


def job_rows(keys: Iterable[int | str], *, prefix: str = "job") -> list[TableRow]:
    return [TableRow(str(key), (str(key), f"{prefix}-{key}", "RUNNING")) for key in keys]


class CountingJobTable(JobTable):
    """Counts render_line calls, to prove only visible lines are rendered."""

    def __init__(self, columns: Sequence[Column] = COLUMNS) -> None:
        super().__init__(columns)
        self.render_calls = 0

    def render_line(self, y: int) -> Strip:
        self.render_calls += 1
        return super().render_line(y)


class TableApp(App[None]):
    def __init__(self, rows: Sequence[TableRow] = (), *, with_input: bool = False) -> None:
        super().__init__()
        self.initial_rows = list(rows)
        self.with_input = with_input
        self.messages: list[Message] = []

    def compose(self) -> ComposeResult:
        table = CountingJobTable()
        table.set_rows(self.initial_rows)
        yield table
        if self.with_input:
            yield Input()

    def on_mount(self) -> None:
        self.query_one(JobTable).focus()

    def on_job_table_highlighted(self, message: JobTable.Highlighted) -> None:
        self.messages.append(message)

    def on_job_table_selected(self, message: JobTable.Selected) -> None:
        self.messages.append(message)

    def on_job_table_marks_changed(self, message: JobTable.MarksChanged) -> None:
        self.messages.append(message)

    @property
    def table(self) -> CountingJobTable:
        return self.query_one(CountingJobTable)

    def take(self, kind: type[M]) -> list[M]:
        """The messages of `kind` received so far, removed from the log."""
        taken = [message for message in self.messages if isinstance(message, kind)]
        self.messages = [message for message in self.messages if not isinstance(message, kind)]
        return taken


def lines(table: JobTable) -> list[str]:
    height = table.scrollable_content_region.height
    return [table.render_line(y).text for y in range(height)]


def body_keys(table: JobTable) -> list[str]:
    """The first cell (ID) of every visible row, top to bottom."""
    return [line[1:6].strip() for line in lines(table)[1:] if line.strip()]


def cursor_line(table: JobTable) -> int:
    """The line (0 = header) the cursor row is drawn on."""
    return table.cursor_index - table.scroll_offset.y + 1


SIZE = (100, 30)
BODY = SIZE[1] - 1  # lines for rows: the table is narrower than 100, so no horizontal scrollbar


async def test_rows_render_in_order_with_crop_ellipsis_and_alignment() -> None:
    rows = [
        TableRow("1", ("1", "short", "RUNNING")),
        TableRow("22", ("22", "exactly-10", "SUCCEEDED")),
        TableRow("333", ("333", "much-too-long-name", "FAILED_SETUP")),
        TableRow("4", ("123456", "日本語テキスト", "PENDING")),
    ]
    app = TableApp(rows)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rendered = lines(app.table)
        # Gutter, right-aligned ID (5), space, NAME (10), space, STATUS (9).
        assert rendered[0].rstrip() == "    ID NAME       STATUS"
        assert rendered[1].rstrip() == "     1 short      RUNNING"
        assert rendered[2].rstrip() == "    22 exactly-10 SUCCEEDED"
        assert rendered[3].rstrip() == "   333 much-too-… FAILED_S…"
        # Too-long right-aligned cell keeps its head; wide characters never split.
        assert rendered[4].startswith(" 1234… 日本語テ…  PENDING")
        assert all(cell_len(line) == app.table.scrollable_content_region.width for line in rendered[:5])
        assert rendered[5].strip() == ""


async def test_markup_in_strings_is_literal() -> None:
    rows = [
        TableRow("1", ("1", "a[/]b", "[bold]x")),
        TableRow("2", ("2", "train[gpu=8]", "[red]R[/]")),
    ]
    app = TableApp(rows)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rendered = lines(app.table)
        assert rendered[1].rstrip() == "     1 a[/]b      [bold]x"
        assert rendered[2].rstrip() == "     2 train[gpu… [red]R[/]"
        # The real paint path (the whole screen, through Rich) must not choke either.
        assert "a[/]b" in app.export_screenshot()


async def test_text_cells_keep_their_styles_and_control_chars_are_neutralised() -> None:
    status = Text("RUNNING", style="green")
    name = Text.assemble(("tr", "bold"), "ain")
    rows = [
        TableRow("1", ("1", name, status)),
        TableRow("2", ("2", "two\nlines\x1b[31m", Text("A\tB", style="red"))),
    ]
    app = TableApp(rows)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        strip = app.table.render_line(1)
        styles = {segment.text: segment.style for segment in strip if segment.text.strip()}
        assert styles["RUNNING"] is not None and styles["RUNNING"].color is not None
        assert styles["RUNNING"].color.name == "green"
        assert styles["tr"] is not None and styles["tr"].bold
        second = app.table.render_line(2).text
        assert "\n" not in second and "\x1b" not in second and "\t" not in second
        assert second.startswith("     2 two lines… A B ")


async def test_header_stays_on_top_while_scrolled() -> None:
    app = TableApp(job_rows(range(1000)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("end")
        await pilot.pause()
        rendered = lines(app.table)
        assert rendered[0].startswith("    ID NAME")
        assert body_keys(app.table)[-1] == "999"
        assert app.table.cursor_key == "999"
        assert cursor_line(app.table) == BODY


async def test_empty_table_shows_header_and_empty_body() -> None:
    app = TableApp([])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "enter", "space", "G", "pagedown")
        await pilot.pause()
        assert app.table.cursor_key is None
        assert app.table.marked == frozenset()
        rendered = lines(app.table)
        assert rendered[0].startswith("    ID NAME")
        assert all(not line.strip() for line in rendered[1:])
        assert app.take(JobTable.Selected) == []
        assert app.take(JobTable.MarksChanged) == []


async def test_cursor_follows_its_key_when_rows_are_inserted_above() -> None:
    app = TableApp(job_rows(range(100)))
    async with app.run_test(size=SIZE) as pilot:
        app.table.move_cursor_to_key("40")  # scrolled: the cursor on the last line
        await pilot.pause()
        assert app.table.cursor_key == "40"
        line_before = cursor_line(app.table)
        app.take(JobTable.Highlighted)

        app.table.set_rows(job_rows([*range(1000, 1005), *range(100)]))
        await pilot.pause()
        assert app.table.cursor_key == "40"
        assert app.table.cursor_index == 45
        # The cursor row keeps its screen line, so nothing appears to jump.
        assert cursor_line(app.table) == line_before
        assert lines(app.table)[line_before][1:6].strip() == "40"
        assert app.take(JobTable.Highlighted) == []


async def test_at_the_top_new_rows_above_come_into_view() -> None:
    app = TableApp(job_rows(range(100)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j", "j")
        app.table.set_rows(job_rows([1000, 1001, *range(100)]))
        await pilot.pause()
        assert app.table.cursor_key == "2"
        assert app.table.scroll_offset.y == 0
        assert body_keys(app.table)[:4] == ["1000", "1001", "0", "1"]


async def test_rows_unchanged_above_keep_the_scroll_position() -> None:
    app = TableApp(job_rows(range(200)))
    async with app.run_test(size=SIZE) as pilot:
        app.table.move_cursor_to_key("60")
        await pilot.pause()
        scroll = app.table.scroll_offset.y
        rows = job_rows(range(200))
        rows[120] = TableRow("120", ("120", "renamed", "FAILED"))
        app.table.set_rows([*rows, *job_rows(range(500, 510))])
        await pilot.pause()
        assert app.table.scroll_offset.y == scroll
        assert app.table.cursor_key == "60"


async def test_cursor_follows_its_key_when_rows_are_reordered_and_updated() -> None:
    app = TableApp(job_rows(range(50)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j", "j", "j")  # "3"
        app.table.set_rows(job_rows(reversed(range(50)), prefix="new"))
        await pilot.pause()
        assert app.table.cursor_key == "3"
        assert app.table.cursor_index == 46
        rendered = lines(app.table)
        line = rendered[cursor_line(app.table)]
        assert line[1:6].strip() == "3" and "new-3" in line


async def test_updated_cells_are_repainted() -> None:
    app = TableApp(job_rows(range(10)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "RUNNING" in lines(app.table)[1]
        rows = job_rows(range(10))
        rows[0] = TableRow("0", ("0", "job-0", Text("SUCCEEDED", style="green")), dim=True)
        app.table.set_rows(rows)
        await pilot.pause()
        assert "SUCCEEDED" in lines(app.table)[1]
        # Same words, new colour: Text equality ignores the base style, the table must not.
        rows[0] = TableRow("0", ("0", "job-0", Text("SUCCEEDED", style="red")), dim=True)
        app.table.set_rows(rows)
        await pilot.pause()
        styles = {segment.text: segment.style for segment in app.table.render_line(1)}
        assert styles["SUCCEEDED"] is not None and styles["SUCCEEDED"].color is not None
        assert styles["SUCCEEDED"].color.name == "red"


async def test_cursor_stays_in_range_when_its_key_disappears() -> None:
    app = TableApp(job_rows(range(100)))
    async with app.run_test(size=SIZE) as pilot:
        app.table.move_cursor_to_key("50")
        await pilot.pause()
        app.take(JobTable.Highlighted)

        app.table.set_rows([row for row in job_rows(range(100)) if row.key != "50"])
        await pilot.pause()
        assert app.table.cursor_index == 50
        assert app.table.cursor_key == "51"
        assert [m.key for m in app.take(JobTable.Highlighted)] == ["51"]

        app.table.set_rows(job_rows(range(10)))
        await pilot.pause()
        assert app.table.cursor_key == "9"
        assert "9" in body_keys(app.table)

        app.table.set_rows([])
        await pilot.pause()
        assert app.table.cursor_key is None
        assert [m.key for m in app.take(JobTable.Highlighted)] == ["9", None]

        app.table.set_rows(job_rows(range(3)))
        await pilot.pause()
        assert app.table.cursor_key == "0"


async def test_keys_move_the_cursor_and_post_highlighted() -> None:
    app = TableApp(job_rows(range(10)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.take(JobTable.Highlighted)
        await pilot.press("down", "j", "j", "up", "k")
        await pilot.pause()
        assert app.table.cursor_key == "1"
        keys = [m.key for m in app.take(JobTable.Highlighted)]
        assert keys == ["1", "2", "3", "2", "1"]
        await pilot.press("k", "k", "k")  # clamps at the top: only one move
        await pilot.pause()
        assert app.table.cursor_key == "0"
        assert [m.key for m in app.take(JobTable.Highlighted)] == ["0"]


async def test_cursor_row_is_highlighted_and_dimmer_when_unfocused() -> None:
    app = TableApp(job_rows(range(10)), with_input=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.table
        focused = table.render_line(1)
        plain = table.render_line(2)
        focused_bg = next(iter(focused)).style.bgcolor  # type: ignore[union-attr]
        assert focused_bg != next(iter(plain)).style.bgcolor  # type: ignore[union-attr]
        assert focused_bg == table.get_component_rich_style("job-table--cursor").bgcolor

        app.query_one(Input).focus()
        await pilot.pause()
        blurred_bg = next(iter(table.render_line(1))).style.bgcolor  # type: ignore[union-attr]
        assert blurred_bg not in (focused_bg, next(iter(plain)).style.bgcolor)  # type: ignore[union-attr]


async def test_enter_posts_selected() -> None:
    app = TableApp(job_rows(range(10)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j", "j", "enter")
        await pilot.pause()
        assert [m.key for m in app.take(JobTable.Selected)] == ["2"]


async def test_space_marks_moves_down_and_posts_marks_changed() -> None:
    app = TableApp(job_rows(range(10)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space", "space", "k", "space")
        await pilot.pause()
        assert app.table.marked == frozenset({"0"})
        assert app.table.cursor_key == "2"
        changes = [m.keys for m in app.take(JobTable.MarksChanged)]
        assert changes == [frozenset({"0"}), frozenset({"0", "1"}), frozenset({"0"})]
        rendered = lines(app.table)
        assert rendered[1].startswith("▌")
        assert rendered[2].startswith(" ")
        assert next(iter(app.table.render_line(1))).style == app.table.render_line(1)._segments[1].style

        # Marks of rows that vanish are dropped.
        await pilot.press("space")
        app.table.set_rows([row for row in job_rows(range(10)) if row.key != "0"])
        await pilot.pause()
        assert app.table.marked == frozenset({"2"})
        assert app.take(JobTable.MarksChanged)[-1].keys == frozenset({"2"})

        app.table.clear_marks()
        await pilot.pause()
        assert app.table.marked == frozenset()
        assert [m.keys for m in app.take(JobTable.MarksChanged)] == [frozenset()]
        assert not any(line.startswith("▌") for line in lines(app.table))


async def test_paging_top_and_bottom() -> None:
    app = TableApp(job_rows(range(1000)))
    async with app.run_test(size=SIZE) as pilot:
        table = app.table
        await pilot.press("pagedown")
        await pilot.pause()
        assert table.cursor_index == BODY
        assert table.scroll_offset.y == BODY
        assert cursor_line(table) == 1  # the cursor kept its line
        await pilot.press("ctrl+f", "j", "j")
        await pilot.pause()
        assert table.cursor_index == 2 * BODY + 2
        assert cursor_line(table) == 3
        await pilot.press("pageup")
        await pilot.pause()
        assert table.cursor_index == BODY + 2
        assert cursor_line(table) == 3
        await pilot.press("ctrl+b", "ctrl+b")
        await pilot.pause()
        assert table.cursor_index == 0 and table.scroll_offset.y == 0
        await pilot.press("G")
        await pilot.pause()
        assert table.cursor_key == "999"
        assert body_keys(table)[-1] == "999"
        await pilot.press("pagedown")  # already at the bottom: stays
        await pilot.pause()
        assert table.cursor_key == "999"
        await pilot.press("g")
        await pilot.pause()
        assert table.cursor_key == "0" and table.scroll_offset.y == 0
        await pilot.press("end", "home")
        await pilot.pause()
        assert table.cursor_key == "0"


async def test_bindings_have_ids_and_can_be_remapped() -> None:
    app = TableApp(job_rows(range(10)))
    async with app.run_test(size=SIZE) as pilot:
        ids = {binding.id for binding in JobTable.BINDINGS if not isinstance(binding, tuple)}
        assert {
            "job_table.cursor_up",
            "job_table.cursor_down",
            "job_table.page_up",
            "job_table.page_down",
            "job_table.cursor_top",
            "job_table.cursor_bottom",
            "job_table.select",
            "job_table.toggle_mark",
        } <= ids
        app.set_keymap({"job_table.cursor_down": "n"})
        await pilot.press("n", "n")
        await pilot.pause()
        assert app.table.cursor_key == "2"


async def test_move_cursor_to_key_scrolls_it_into_view() -> None:
    app = TableApp(job_rows(range(1000)))
    async with app.run_test(size=SIZE) as pilot:
        app.table.move_cursor_to_key("500")
        await pilot.pause()
        assert app.table.cursor_key == "500"
        assert "500" in body_keys(app.table)
        app.table.move_cursor_to_key("no-such-job")
        assert app.table.cursor_key == "500"
        assert [m.key for m in app.take(JobTable.Highlighted)][-1] == "500"


async def test_click_moves_the_cursor_and_double_click_selects() -> None:
    app = TableApp(job_rows(range(100)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click(JobTable, offset=(10, 5))  # line 5 = row 4
        await pilot.pause()
        assert app.table.cursor_key == "4"
        await pilot.click(JobTable, offset=(10, 0))  # the header: nothing happens
        await pilot.pause()
        assert app.table.cursor_key == "4"
        await pilot.double_click(JobTable, offset=(10, 5))
        await pilot.pause()
        assert [m.key for m in app.take(JobTable.Selected)] == ["4"]


async def test_scroll_wheel_scrolls_without_moving_the_cursor() -> None:
    app = TableApp(job_rows(range(100)))
    async with app.run_test(size=SIZE) as pilot:
        table = app.table
        for _ in range(3):
            table.post_message(events.MouseScrollDown(table, 10, 5, 0, 1, 0, False, False, False))
        await pilot.pause()
        assert table.scroll_offset.y > 0
        assert table.cursor_key == "0"
        assert lines(table)[0].startswith("    ID NAME")
        # The next key brings the cursor back into view.
        await pilot.press("j")
        await pilot.pause()
        assert table.cursor_key == "1"
        assert "1" in body_keys(table)


async def test_resize_keeps_the_cursor_visible() -> None:
    app = TableApp(job_rows(range(100)))
    async with app.run_test(size=SIZE) as pilot:
        app.table.move_cursor_to_key("25")
        await pilot.resize_terminal(100, 10)
        await pilot.pause()
        assert app.table.cursor_key == "25"
        assert "25" in body_keys(app.table)


async def test_indent_and_dim_rows() -> None:
    rows = [
        TableRow("7", ("7", "pipeline", "RUNNING")),
        TableRow("7/0", ("", "train", "SUCCEEDED"), dim=True, indent=True),
        TableRow("7/1", ("", "eval", "RUNNING"), indent=True),
    ]
    app = TableApp(rows)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rendered = lines(app.table)
        assert rendered[2].startswith(" ↳     train      SUCCEEDED")
        assert rendered[3].startswith(" ↳     eval       RUNNING")
        # A first cell that already carries the arrow (the headless queue's ID column) gets no second one.
        rows.append(TableRow("7/2", (" ↳", "test", "PENDING"), indent=True))
        app.table.set_rows(rows)
        await pilot.pause()
        assert lines(app.table)[4].startswith("     ↳ test       PENDING")
        dim_style = app.table.render_line(2)._segments[1].style
        plain_style = app.table.render_line(3)._segments[1].style
        assert dim_style is not None and plain_style is not None
        assert dim_style.color == app.table.get_component_rich_style("job-table--dim").color
        assert dim_style.color != plain_style.color


async def test_only_visible_lines_are_rendered() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.table
        await pilot.pause()
        table.render_calls = 0
        table.set_rows(job_rows(range(10_000)))
        table.refresh()
        await pilot.pause()
        assert table.virtual_size.height == 10_001
        assert 0 < table.render_calls <= 3 * SIZE[1]
        await pilot.press("G")
        await pilot.pause()
        assert table.cursor_key == "9999"
        assert table.render_calls <= 6 * SIZE[1]


async def test_an_unchanged_refresh_repaints_nothing_and_a_change_one_line() -> None:
    app = TableApp(job_rows(range(10_000)))
    async with app.run_test(size=SIZE) as pilot:
        table = app.table
        await pilot.pause()
        table.render_calls = 0
        table.set_rows(job_rows(range(10_000)))  # new but equal row objects
        await pilot.pause()
        assert table.render_calls == 0
        rows = job_rows(range(10_000))
        rows[5] = TableRow("5", ("5", "job-5", "FAILED"))
        rows[5000] = TableRow("5000", ("5000", "job-5000", "FAILED"))  # off screen
        table.set_rows(rows)
        await pilot.pause()
        assert table.render_calls == 1
        assert "FAILED" in table.render_line(6).text


@pytest.mark.parametrize("width", [1, 2])
async def test_tiny_columns_do_not_crash(width: int) -> None:
    app = TableApp(job_rows(range(3)))
    async with app.run_test(size=SIZE) as pilot:
        app.table.set_columns([Column("id", "ID", width, "right"), Column("name", "NAME", 0)])
        app.table.set_rows([TableRow("0", ("12345", "x"), indent=True), TableRow("1", ())])
        await pilot.pause()
        rendered = lines(app.table)
        assert rendered[1][1 : 1 + width] in ("…", "↳", "↳ ")


async def test_header_scrolls_sideways_with_the_rows() -> None:
    app = TableApp(job_rows(range(50)))
    async with app.run_test(size=(20, 10)) as pilot:
        table = app.table
        await pilot.pause()
        assert table.virtual_size.width == 27
        table.scroll_to(x=7, animate=False)
        await pilot.pause()
        rendered = lines(table)
        assert rendered[0].startswith("NAME       STATUS")
        assert rendered[1].startswith("job-0      RUNNING")
        # The horizontal scrollbar takes the last line: 8 lines of rows remain.
        await pilot.press("G")
        await pilot.pause()
        assert lines(table)[8].startswith("job-49")


async def test_long_text_cells_are_cropped_with_their_styles() -> None:
    status = Text.assemble(("FAILED", "red"), ("_NO_RESOURCE", "bold"))
    app = TableApp([TableRow("1", ("1", "x", status))])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        strip = app.table.render_line(1)
        assert strip.text.rstrip().endswith(" FAILED_N…")
        styles = {segment.text: segment.style for segment in strip}
        assert styles["FAILED"] is not None and styles["FAILED"].color is not None
        assert styles["FAILED"].color.name == "red"
        assert styles["_N"] is not None and styles["_N"].bold


class BorderedApp(TableApp):
    CSS = "JobTable { border: round red; padding: 0 1; }"


async def test_borders_and_padding_do_not_shift_lines_clicks_or_repaints() -> None:
    app = BorderedApp(job_rows(range(100)))
    async with app.run_test(size=SIZE) as pilot:
        table = app.table
        await pilot.pause()
        assert table.scrollable_content_region.height == SIZE[1] - 2
        # Outer offset (x, y) = content (x - 2, y - 1): line 5 of the content is row 4.
        await pilot.click(JobTable, offset=(10, 6))
        await pilot.pause()
        assert table.cursor_key == "4"
        rows = job_rows(range(100))
        rows[2] = TableRow("2", ("2", "job-2", "FAILED"))
        table.render_calls = 0
        table.set_rows(rows)
        await pilot.pause()
        assert table.render_calls == 1
        screen_lines = app.export_screenshot()
        assert "FAILED" in screen_lines
        await pilot.press("G")
        await pilot.pause()
        assert body_keys(table)[-1] == "99"


class FreshenedTable(CountingJobTable):
    """Rows on screen are freshened before painting: their status becomes FRESH."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def freshen_rows(self, rows: Sequence[TableRow]) -> Iterable[TableRow]:
        self.asked.append([row.key for row in rows])
        return [TableRow(row.key, (*row.cells[:2], "FRESH")) for row in rows if row.cells[2] != "FRESH"]


class FreshenApp(TableApp):
    def compose(self) -> ComposeResult:
        table = FreshenedTable()
        table.set_rows(self.initial_rows)
        yield table


async def test_update_rows_replaces_rows_in_place() -> None:
    app = TableApp(job_rows(range(100)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("down", "down", "down")
        table = app.table
        before_scroll = table.scroll_offset.y
        assert table.update_rows([TableRow("3", ("3", "renamed", "FAILED")), TableRow("90", ("90", "far", "FAILED"))])
        await pilot.pause()
        assert table.cursor_key == "3" and table.cursor_index == 3 and table.scroll_offset.y == before_scroll
        assert "renamed" in lines(table)[4] and "FAILED" in lines(table)[4]
        assert table.rows[90].cells[1] == "far"
        assert [row.key for row in table.rows] == [str(i) for i in range(100)]
        # An unknown key changes nothing: adding rows is set_rows's job.
        assert not table.update_rows([TableRow("4", ("4", "x", "FAILED")), TableRow("nope", ("?", "?", "?"))])
        assert table.rows[4].cells[1] == "job-4"


async def test_rows_are_freshened_just_before_they_are_painted() -> None:
    app = FreshenApp(job_rows(range(200)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.query_one(FreshenedTable)
        on_screen = [str(i) for i in range(BODY)]
        assert table.asked and table.asked[0] == on_screen
        assert all("FRESH" in line for line in lines(table)[1:])
        assert table.rows[BODY].cells[2] == "RUNNING"  # off screen: left alone
        await pilot.press("pagedown")
        await pilot.pause()
        assert table.asked[-1][0] == str(BODY) and all("FRESH" in line for line in lines(table)[1:])
