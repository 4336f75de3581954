"""The TUI while the queue changes under it, against a state DB written
directly (no controller): what a person would notice of the queue's
incremental updates, the narrowing filter and the reused job view.

The cursor stays on its job as rows are patched; a job changed off screen
shows its news when scrolled to; a job that starts matching the filter
appears; opening one job after another never shows the first one's data;
the footer's keys come back the same after the filter closes.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.widgets import Static, Tree
from textual.widgets._footer import FooterKey

import skytui.app
from skytui.app import SkyTUI
from skytui.config import paths
from skytui.engine.status import TaskStatus as S
from skytui.engine.store import NewTask, Store
from skytui.logs.store import task_log_path
from skytui.screens.job import JobScreen
from skytui.screens.jobs import JobsScreen
from skytui.widgets.footer import QuietFooter
from skytui.widgets.job_table import JobTable
from skytui.widgets.log_view import LogView

SIZE = (140, 30)
POLL = 0.05


def visible_text(widget: JobTable | LogView) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def row_text(table: JobTable, key: str) -> str:
    """The rendered line of the row with `key` (it must be on screen)."""
    index = table.index_of(key)
    assert index is not None, key
    return table.render_line(index - table.scroll_offset.y + 1).text


async def until(pilot: Any, predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


# These tests play the controller themselves, writing through `store`: the
# app must not start a real one (`supervise=False`) that would run their jobs.
def submit(store: Store, name: str, count: int = 1) -> list[int]:
    task = NewTask(name, f"sky-managed-2027-01-15-08-00-00-000000_{name}_{{job_id}}-0", "1x[CPU:1+]", 1)
    return store.submit_jobs(name=name, tasks=[task], spec={"name": name, "tasks": [{}]}, secrets={},
                             num_jobs=count)


def start(store: Store, job_id: int) -> None:
    store.transition_task(job_id, 0, S.STARTING)
    store.start_attempt(job_id, 0, infra="local", instance_type="local", use_spot=False)
    store.transition_task(job_id, 0, S.RUNNING)


def queue(app: SkyTUI) -> tuple[JobsScreen, JobTable]:
    screen = app.screen_stack[0]
    assert isinstance(screen, JobsScreen)
    return screen, screen.query_one(JobTable)


async def test_cursor_stays_on_its_job_while_rows_are_patched(store: Store) -> None:
    ids = submit(store, "job", 80)
    app = SkyTUI(poll_interval=POLL, supervise=False)
    async with app.run_test(size=SIZE) as pilot:
        screen, table = queue(app)
        await until(pilot, lambda: len(table.rows) == 80, "the queue")
        await pilot.press(*["down"] * 5)
        chosen = table.cursor_key
        assert chosen == str(ids[-6])
        full_redraws = []
        screen._redraw = lambda: full_redraws.append(1)  # type: ignore[method-assign]
        # Jobs above the cursor, one far below (off screen), then the cursor's
        # job: once its row updates, the feed has seen all of them.
        far = ids[2]
        for job_id in (ids[-1], ids[-3], far, int(chosen)):
            start(store, job_id)
        await until(pilot, lambda: "RUNNING" in row_text(table, chosen), "the cursor's row to update")
        assert table.cursor_key == chosen and table.cursor_index == 5
        assert "RUNNING" in row_text(table, str(ids[-1]))
        assert not full_redraws, "the feed's changes should be patched in, not redrawn"
        # The job changed off screen shows its news once scrolled to.
        await pilot.press("end")
        await pilot.pause()
        assert "RUNNING" in row_text(table, str(far))


async def test_a_job_appears_when_it_starts_matching_the_filter(store: Store) -> None:
    ids = submit(store, "alpha", 5) + submit(store, "bravo", 5)
    app = SkyTUI(poll_interval=POLL, supervise=False)
    async with app.run_test(size=SIZE) as pilot:
        _screen, table = queue(app)
        await until(pilot, lambda: len(table.rows) == 10, "the queue")
        await pilot.press("slash", *"runn")  # one keystroke at a time: each narrows the last
        await pilot.pause()
        assert table.rows == ()
        start(store, ids[7])  # a bravo
        await until(pilot, lambda: [row.key for row in table.rows] == [str(ids[7])], "the job to match")
        assert "bravo" in visible_text(table)
        assert "1 of 10 jobs" in str(app.screen.query_one("#jobs-view", Static).render())
        store.transition_task(ids[7], 0, S.SUCCEEDED, exit_code=0)
        await until(pilot, lambda: table.rows == (), "the job to stop matching")


async def test_typing_a_filter_keeps_exactly_the_matching_jobs(store: Store) -> None:
    names = ["eval-a", "sweep", "eval-b", "evolve", "data"]
    for name in names:
        submit(store, name)
    app = SkyTUI(poll_interval=POLL, supervise=False)
    async with app.run_test(size=SIZE) as pilot:
        _screen, table = queue(app)
        await until(pilot, lambda: len(table.rows) == 5, "the queue")

        def shown() -> set[str]:
            return {name for name in names if name in visible_text(table)}

        await pilot.press("slash", "e")
        assert shown() == set(names)  # PENDING has an e
        await pilot.press("v")
        assert shown() == {"eval-a", "eval-b", "evolve"}
        await pilot.press("a")
        assert shown() == {"eval-a", "eval-b"}
        await pilot.press(*"l-b")
        assert shown() == {"eval-b"}
        await pilot.press(*["backspace"] * 5)  # widening searches every job again
        assert shown() == set(names)
        await pilot.press(*"v|sw")  # a regex: searched in full, not narrowed
        assert shown() == {"eval-a", "eval-b", "evolve", "sweep"}


def _running_with_log(store: Store, name: str, lines: list[str]) -> int:
    (job_id,) = submit(store, name)
    start(store, job_id)
    segment = store.open_segment(job_id, 0, 1, 0, "run", 0)
    store.update_segment(segment.id, pid=4242)
    path = task_log_path(paths().job_logs, job_id, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return job_id


class FrameLog(SkyTUI):
    """Records what every frame of the job view shows."""

    CSS_PATH = str(Path(skytui.app.__file__).parent / SkyTUI.CSS_PATH)  # else relative to this file

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_frames: list[str] = []

    def _display(self, screen: Any, renderable: Any) -> None:
        super()._display(screen, renderable)
        if renderable is not None and isinstance(screen, JobScreen):
            title = str(screen.query_one("#job-title", Static).render())
            tree = " ".join(str(node.label) for node in screen.query_one(Tree).root.children)
            log = visible_text(screen.query_one("#job-log", LogView))
            self.job_frames.append(f"{title}\n{tree}\n{log}")


async def test_opening_one_job_then_another_never_shows_the_first(store: Store) -> None:
    apple = _running_with_log(store, "apple", ["apple says hi"])
    banana = _running_with_log(store, "banana", ["banana says hi"])
    app = FrameLog(poll_interval=POLL, supervise=False)
    async with app.run_test(size=SIZE) as pilot:
        _screen, table = queue(app)
        await until(pilot, lambda: len(table.rows) == 2, "the queue")
        table.move_cursor_to_key(str(apple))
        await pilot.press("enter")
        job_view = app.screen
        assert isinstance(job_view, JobScreen)
        await until(pilot, lambda: "apple says hi" in visible_text(job_view.query_one("#job-log", LogView)),
                    "apple's log")
        await pilot.press("escape")
        table.move_cursor_to_key(str(banana))
        app.job_frames.clear()
        await pilot.press("enter")
        assert app.screen is job_view  # the same screen, re-pointed
        await until(pilot, lambda: app.job_frames and "banana says hi" in app.job_frames[-1], "banana's log")
        assert app.job_frames, "no frame of the job view"
        assert f"Job {banana} · banana" in app.job_frames[0], "the first frame shows the job opened"
        assert not [frame for frame in app.job_frames if "apple" in frame]


def footer_keys(app: SkyTUI) -> list[tuple[str, str]]:
    """The keys the footer shows, left to right."""
    footer = app.screen.query_one(QuietFooter)
    return [(key.key, key.description) for key in footer.query(FooterKey) if key.display]


def footer_key_objects() -> int:
    gc.collect()
    return sum(isinstance(obj, FooterKey) for obj in gc.get_objects())


async def test_the_footer_keys_come_back_after_the_filter_closes(store: Store) -> None:
    submit(store, "job", 3)
    app = SkyTUI(poll_interval=POLL, supervise=False)
    async with app.run_test(size=SIZE) as pilot:
        _screen, table = queue(app)
        await until(pilot, lambda: len(table.rows) == 3, "the queue")
        await pilot.pause()
        before = footer_keys(app)
        assert ("space", "Mark") in before
        await pilot.press("slash")
        await pilot.pause()
        assert ("space", "Mark") not in footer_keys(app)  # the table's keys go with its focus
        await pilot.press("escape")
        await pilot.pause()
        assert footer_keys(app) == before
        # Textual keeps removed footer keys bound to the footer: none may pile up.
        alive = footer_key_objects()
        for _ in range(5):
            await pilot.press("slash")
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
        assert footer_key_objects() <= alive
        assert footer_keys(app) == before


async def test_the_app_hands_back_pythons_gc_settings(store: Store) -> None:
    """The app schedules full GC collections itself while it runs (between
    keys); whatever runs after it in the process gets Python's own back."""
    submit(store, "job")
    before = gc.get_threshold()
    app = SkyTUI(poll_interval=POLL, supervise=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded, "the queue")
        assert gc.get_threshold()[2] > before[2]
    assert gc.get_threshold() == before
