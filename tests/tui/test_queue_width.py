"""The TUI's queue fits its terminal: at 120 columns ID, NAME, STATUS, JOB
DURATION, #RECOVERIES, COST and INFRA are whole, the least important columns
hide first, at 150 and more every column shows, and a resize re-fits.

A real app on a DB written at a frozen time (no controller needed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.pilot import until
from textual.widgets import Static

from skytui.app import SkyTUI
from skytui.config import paths
from skytui.engine.status import TaskStatus as S
from skytui.engine.store import NewTask, Store
from skytui.format import QUEUE_COLUMNS
from skytui.screens.jobs import JobsScreen
from skytui.widgets.job_table import JobTable

T0 = 1_800_000_000.0
NOW = T0 + 4000
CORE = ("ID", "NAME", "STATUS", "JOB DURATION", "#RECOVERIES", "COST", "INFRA")


@pytest.fixture
def priced_job(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A job running on sim:aws/us-east-1 at $3.60/h for 3,000 s: $3.00 so far."""
    monkeypatch.setattr(time, "time", lambda: T0 + 1000)
    store = Store(paths().db_url)
    try:
        store.cancel_unstarted(store.submit_jobs(name="done", spec={}, secrets={}, num_jobs=3, tasks=[
            NewTask("done", "sky-managed-x_{job_id}-0", "1x[CPU:1+]", 1)]))
        job_id = store.submit_jobs(name="train-resnet50", spec={}, secrets={}, tasks=[
            NewTask("train-resnet50", "sky-managed-x_{job_id}-0", "1x[T4:1]", 1)])[0]
        store.transition_task(job_id, 0, S.STARTING)
        store.start_attempt(job_id, 0, infra="sim:aws/us-east-1", instance_type="g4dn.xlarge", use_spot=True,
                            price_per_hour=3.6)
        store.transition_task(job_id, 0, S.RUNNING)
    finally:
        store.close()
    monkeypatch.undo()
    monkeypatch.setenv("SKYTUI_HOME", str(home))
    yield job_id


def _lines(table: JobTable) -> tuple[str, str]:
    """The header line and the first row's line, as drawn."""
    return table.render_line(0).text, table.render_line(1).text


def _shown(header: str) -> list[str]:
    return [name for name in QUEUE_COLUMNS if name in header]


async def _queue(pilot: Any) -> JobTable:
    app = pilot.app
    await until(pilot, lambda: app.loaded, 10, "the queue")
    await pilot.pause()
    screen = app.screen_stack[0]
    assert isinstance(screen, JobsScreen)
    return screen.query_one(JobTable)


@pytest.mark.parametrize("width", [80, 120, 150, 200])
async def test_the_queue_fits_and_keeps_what_matters_whole(priced_job: int, width: int) -> None:
    app = SkyTUI(clock=lambda: NOW, follow=False)
    async with app.run_test(size=(width, 30)) as pilot:
        table = await _queue(pilot)
        header, row = _lines(table)
        # Nothing to scroll sideways to: every column shown is on screen.
        assert table.virtual_size.width <= table.scrollable_content_region.width
        shown = _shown(header)
        assert shown[:3] == ["ID", "NAME", "JOB DURATION"] or shown[:2] == ["ID", "TASK"], header
        assert {"ID", "NAME", "STATUS", "JOB DURATION", "#RECOVERIES"} <= set(shown), header
        assert f"{priced_job} " in row and "train-resnet50" in row and "RUNNING" in row
        if width >= 120:
            assert set(CORE) <= set(shown), header
            assert "sim:aws/us-east-1" in row and "$3.00" in row and "…" not in row, row
        if width >= 150:
            assert shown == list(QUEUE_COLUMNS), header
        else:
            assert "POOL" not in shown and "REQUESTED" not in shown, header


async def test_a_resize_refits_the_columns(priced_job: int) -> None:
    app = SkyTUI(clock=lambda: NOW, follow=False)
    async with app.run_test(size=(200, 30)) as pilot:
        table = await _queue(pilot)
        assert _shown(_lines(table)[0]) == list(QUEUE_COLUMNS)
        await pilot.resize_terminal(90, 30)
        await until(pilot, lambda: "INFRA" not in _lines(table)[0], 5, "the narrow columns")
        assert "train-resnet50" in _lines(table)[1]
        await pilot.resize_terminal(160, 30)
        await until(pilot, lambda: _shown(_lines(table)[0]) == list(QUEUE_COLUMNS), 5, "every column again")


async def test_the_header_says_when_the_view_leaves_jobs_out(priced_job: int) -> None:
    app = SkyTUI(clock=lambda: NOW, follow=False)
    async with app.run_test(size=(160, 30)) as pilot:
        table = await _queue(pilot)
        label = app.screen.query_one("#jobs-view", Static)
        assert str(label.render()).startswith("4 jobs · all")
        await pilot.press("1")
        await until(pilot, lambda: len(table.rows) == 1, 5, "active jobs only")
        assert str(label.render()).startswith("showing 1 of 4 jobs · active only · 0 for all")
