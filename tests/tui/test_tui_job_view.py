"""The job view in the user's language, and `?` help, at 120 columns.

A spot job written as a user would (accelerators set, use_spot, job_recovery),
preempted once and running again, from a DB written at frozen times (no
controller needed): the Resources panel reads as that YAML plus what was
chosen, the attempts tree keeps each attempt's duration and cost in view, and
`?` lists every key of the screen with its binding id.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.pilot import until
from textual.widgets import Static, Tree

from skytui.app import SkyTUI
from skytui.config import paths
from skytui.engine.status import TaskStatus as S
from skytui.engine.store import ClusterStatus, NewTask, Store
from skytui.screens.help import HelpScreen
from skytui.screens.job import JobScreen
from skytui.spec import load_pipeline_text, stored_job_spec

T0 = 1_800_000_000.0
NOW = T0 + 4000
SIZE = (120, 40)
PRICE = 98.32
TASK_YAML = """\
name: train
resources:
  infra: sim
  accelerators: {H100:8, H200:8}
  use_spot: true
  job_recovery: {strategy: failover, max_restarts_on_errors: 2}
run: python train.py
"""


@pytest.fixture
def spot_train(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Attempt 1 on us-east-1 for 30 minutes, preempted; attempt 2 on
    us-west-2 since, running."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    clock = {"now": T0}
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    store = Store(paths().db_url)
    try:
        spec = stored_job_spec(load_pipeline_text(TASK_YAML, "train.yaml"))
        job_id = store.submit_jobs(name="train", spec=spec, secrets={}, tasks=[
            NewTask("train", "sky-managed-2027-01-15-08-00-00-000000_train_{job_id}-0", "1x[H100:8]", 1)])[0]
        store.transition_task(job_id, 0, S.STARTING)
        for machine_at, up_at, end_at, region in ((0, 100, 1900, "aws/us-east-1"), (2000, 2100, None, "aws/us-west-2")):
            clock["now"] = T0 + machine_at
            cluster = store.insert_cluster(
                name=f"train-{machine_at}", cloud="sim", region=region, zone=None, instance_type="p5.48xlarge",
                use_spot=True, num_nodes=1, job_id=job_id, task_idx=0, attempt_no=1, price_per_hour=PRICE)
            clock["now"] = T0 + up_at
            attempt = store.start_attempt(job_id, 0, infra=f"sim:{region}", instance_type="p5.48xlarge",
                                          use_spot=True, price_per_hour=PRICE)
            store.set_attempt_cluster(job_id, 0, attempt, cluster)
            store.transition_task(job_id, 0, S.RUNNING)
            if end_at is not None:
                clock["now"] = T0 + end_at
                store.end_attempt(job_id, 0, attempt, reason="preempted in sim")
                store.update_cluster(cluster, status=ClusterStatus.TERMINATED)
                store.transition_task(job_id, 0, S.RECOVERING, recoveries=1)
    finally:
        store.close()
    monkeypatch.undo()
    monkeypatch.setenv("SKYTUI_HOME", str(home))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield job_id


def _app() -> SkyTUI:
    return SkyTUI(clock=lambda: NOW, follow=False)


async def _open_job(pilot: Any) -> JobScreen:
    app = pilot.app
    await until(pilot, lambda: app.loaded, 10, "the queue")
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, JobScreen), 5, "the job view")
    screen = app.screen
    assert isinstance(screen, JobScreen)
    panel = screen.query_one("#job-resources", Static)
    await until(pilot, lambda: "chosen:" in "".join(_visible_lines(panel)), 10, "the resources")
    return screen


def _visible_lines(widget: Any) -> list[str]:
    """The widget's lines as on screen: cut at its width, as a user sees them."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


async def test_resources_read_as_the_yaml_the_user_wrote(spot_train: int) -> None:
    async with _app().run_test(size=SIZE) as pilot:
        screen = await _open_job(pilot)
        panel = screen.query_one("#job-resources", Static)
        lines = _visible_lines(panel)
        # A long value wraps under itself at 120 columns: read the panel as one run of words.
        words = re.sub(r"\s+", " ", " ".join(lines))
        for expected in (
            "resources: infra: sim accelerators: {H100: 8, H200: 8} use_spot: true "
            "job_recovery: {strategy: FAILOVER, max_restarts_on_errors: 2} "
            "chosen: sim:aws/us-west-2 · p5.48xlarge · spot · $98.32/h",
        ):
            assert expected in words, (expected, lines)
        assert any(line.strip() == "accelerators: {H100: 8, H200: 8}" for line in lines), lines
        # Not the stored dump: no JSON keys, nulls or float counts.
        for dump_word in ('"count"', "null", "8.0", "min_memory_gb", "accelerators_ordered"):
            assert dump_word not in words, lines


async def test_each_attempt_keeps_its_duration_and_cost_in_view_at_120_columns(spot_train: int) -> None:
    async with _app().run_test(size=SIZE) as pilot:
        screen = await _open_job(pilot)
        tree = screen.query_one(Tree)
        await until(pilot, lambda: "$" in "".join(_visible_lines(tree)), 10, "the attempts' spend")
        lines = _visible_lines(tree)
        text = "\n".join(lines)
        # 30 minutes preempted, all of it lost; 31m 40s and counting since.
        assert re.search(r"attempt 1 · 30m 0s · \$\d+\.\d\d \(lost\)", text), text
        assert re.search(r"attempt 2 · 31m 40s · \$\d+\.\d\d", text), text
        assert "sim:aws/us-east-1 · p5.48xlarge · spot" in text, text
        assert "sim:aws/us-west-2 · p5.48xlarge · spot" in text, text


def test_job_view_at_120_columns(spot_train: int, snap_compare: Any) -> None:
    """`enter` on a spot job at 120 columns: each attempt's duration and cost
    on its first line, where it ran below; resources as the user wrote them."""
    async def open_job(pilot: Any) -> None:
        await _open_job(pilot)
        await pilot.pause(0.3)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_job)


# ---------------------------------------------------------------------- help


def _help_lines(screen: HelpScreen) -> list[str]:
    """The help's sections as on screen, one line per key."""
    return [line for section in screen.query(".help-section").results(Static) for line in _visible_lines(section)]


def _row_of(lines: list[str], binding_id: str) -> str:
    rows = [line for line in lines if re.search(rf"\s{re.escape(binding_id)}\s*$", line)]
    assert len(rows) == 1, (binding_id, lines)
    return rows[0]


async def test_help_lists_every_key_of_the_screen_with_its_id(spot_train: int) -> None:
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded, 10, "the queue")
        active = [a.binding for a in app.screen.active_bindings.values() if a.binding.id]
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help")
        assert isinstance(app.screen, HelpScreen)
        lines = _help_lines(app.screen)
        assert {b.id for b in active} >= {"jobs.cancel", "jobs.filter", "jobs.sort_name", "app.help", "app.command"}
        for binding in active:
            row = _row_of(lines, str(binding.id))
            assert binding.description in row, (binding.id, row)
            assert app.get_key_display(binding) in row, (binding.id, row)
        assert re.search(r"\^d\s+Cancel job\s+jobs\.cancel", "\n".join(lines))
        await pilot.press("question_mark")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), 5, "the help closed by ?")


async def test_help_shows_a_remapped_key_under_its_id(spot_train: int) -> None:
    paths().config_file.write_text("tui:\n  keymap: {jobs.cancel: ctrl+x}\n")
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded, 10, "the queue")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help")
        assert isinstance(app.screen, HelpScreen)
        assert re.match(r"\s*\^x\s+Cancel job\s+jobs\.cancel", _row_of(_help_lines(app.screen), "jobs.cancel"))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), 5, "the help closed by escape")


async def test_help_on_the_job_view_lists_its_keys(spot_train: int) -> None:
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _open_job(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help")
        assert isinstance(app.screen, HelpScreen)
        lines = _help_lines(app.screen)
        assert re.search(r"l\s+Full logs\s+job\.logs", _row_of(lines, "job.logs"))
        assert re.search(r"\^d\s+Cancel job\s+job\.cancel", _row_of(lines, "job.cancel"))
        assert re.search(r"esc\s+Back\s+job\.back", _row_of(lines, "job.back"))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, JobScreen), 5, "back on the job view")
