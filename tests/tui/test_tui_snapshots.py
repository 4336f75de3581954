"""Snapshots of every screen, from a fixed world: a DB written at frozen times,
a frozen clock, UTC, a 140×40 terminal. The SVGs live in snapshots/."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skytui.app import SkyTUI
from skytui.config import paths
from skytui.engine.status import TaskStatus as S
from skytui.engine.store import NewTask, Store
from skytui.logs.store import controller_log_path, task_log_path

T0 = 1_800_000_000.0  # a fixed "now" minus an hour: 2027-01-15 08:00 UTC
NOW = T0 + 3600
SIZE = (160, 40)


@pytest.fixture
def world(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    clock = {"now": T0}
    monkeypatch.setattr(time, "time", lambda: clock["now"])

    def at(offset: float) -> None:
        clock["now"] = T0 + offset

    store = Store(paths().db_url)
    try:
        _fill(store, at)
    finally:
        store.close()
    monkeypatch.undo()  # the app runs on the real time module, with its own frozen clock
    monkeypatch.setenv("SKYTUI_HOME", str(home))
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield


def _task(name: str, idx: int = 0, requested: str = "1x[CPU:1+]") -> NewTask:
    return NewTask(name, f"sky-managed-2027-01-15-08-00-00-000000_{name}_{{job_id}}-{idx}", requested, 1)


def _run(store: Store, job_id: int, idx: int, at: Any, start: float, *, end: float | None, final: S,
         reason: str | None = None, exit_code: int | None = None) -> None:
    at(start)
    store.transition_task(job_id, idx, S.STARTING)
    attempt = store.start_attempt(job_id, idx, infra="local", instance_type="local", use_spot=False)
    at(start + 5)
    store.transition_task(job_id, idx, S.RUNNING)
    if end is not None:
        at(end)
        store.end_attempt(job_id, idx, attempt, reason=reason or final.value.lower(), exit_code=exit_code)
        store.transition_task(job_id, idx, final, failure_reason=reason if final.is_failure else None,
                              exit_code=exit_code, message=reason)


def _fill(store: Store, at: Any) -> None:
    job_logs = paths().job_logs
    done = store.submit_jobs(name="hello", tasks=[_task("hello")], spec={"name": "hello", "tasks": [{}]}, secrets={})[0]
    _run(store, done, 0, at, 10, end=20, final=S.SUCCEEDED, exit_code=0)
    pipe = store.submit_jobs(
        name="pipeline", tasks=[_task("prepare", 0), _task("train", 1, "1x[CPU:2+]"), _task("eval", 2)],
        spec={"name": "pipeline", "tasks": [{"resources": {"cpus": "2+"}}] * 3}, secrets={},
    )[0]
    _run(store, pipe, 0, at, 30, end=90, final=S.SUCCEEDED, exit_code=0)
    _run(store, pipe, 1, at, 95, end=None, final=S.RUNNING)
    failed = store.submit_jobs(name="broken", tasks=[_task("broken")], spec={"name": "broken", "tasks": [{}]}, secrets={})[0]
    _run(store, failed, 0, at, 200, end=230, final=S.FAILED, reason="job exited with exit code 7", exit_code=7)
    at(3000)
    store.submit_jobs(name="queued-sweep", tasks=[_task("queued-sweep")], spec={"name": "q", "tasks": [{}]}, secrets={})
    for idx, lines in ((0, ["preparing shard 1/3", "preparing shard 2/3", "preparing shard 3/3"]),
                       (1, [f"train step {i}/100 loss=0.{90 - i:02d}" for i in range(1, 30)])):
        segment = store.open_segment(pipe, idx, 1, 0, "run", 0)
        store.update_segment(segment.id, pid=4242 + idx, finished=idx == 0)
        path = task_log_path(job_logs, pipe, idx)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in lines))
    controller_log_path(job_logs, pipe).write_text("2027-01-15 08:00:30 task 0: provisioning prepare-2-0-1 on local\n")


def _app() -> SkyTUI:
    return SkyTUI(clock=lambda: NOW, follow=False)


async def _loaded(pilot: Any) -> None:
    for _ in range(100):
        if pilot.app.loaded:
            break
        await pilot.pause(0.02)
    await pilot.pause(0.2)


def test_jobs_screen(world: None, snap_compare: Any) -> None:
    """The queue: pipeline rows under their job, statuses coloured, newest first."""
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_loaded)


@pytest.mark.parametrize("width", [120, 150])
def test_jobs_screen_at_width(world: None, snap_compare: Any, width: int) -> None:
    """The queue at 120 columns (the less important columns hidden) and 150 (all of them)."""
    assert snap_compare(_app(), terminal_size=(width, 20), run_before=_loaded)


def test_jobs_screen_filtered(world: None, snap_compare: Any) -> None:
    """`/` with a regex keeps only matching jobs, and says so in the header."""
    async def filter_(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("slash", *"pipe", "enter")
        await pilot.pause(0.2)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=filter_)


def test_job_screen(world: None, snap_compare: Any) -> None:
    """`enter` on the pipeline: tasks and attempts, timeline, resources, log."""
    async def open_pipeline(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("down", "down", "enter")
        await pilot.pause(0.6)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_pipeline)


def test_logs_screen(world: None, snap_compare: Any) -> None:
    """`l`: the job's output with its `(task, pid=N)` prefixes."""
    async def open_logs(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("down", "down", "l")
        await pilot.pause(0.6)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_logs)


def test_cancel_dialog(world: None, snap_compare: Any) -> None:
    """`ctrl+d`: the safe answer is focused."""
    async def ask(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("ctrl+d")
        await pilot.pause(0.3)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=ask)


def test_help_panel(world: None, snap_compare: Any) -> None:
    """`?`: every binding of the screen."""
    async def help_(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=help_)


def test_pools_screen(world: None, snap_compare: Any) -> None:
    """`:` switches to the pools view."""
    async def pools(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("colon")
        await pilot.pause(0.3)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=pools)


def test_launch_screen(
    world: None, snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`n`: the plan for a YAML, the chosen row marked, before anything is submitted."""
    from skytui.clouds.base import InstanceOffer
    from skytui.clouds.local import LocalCloud

    # This machine's size would make the snapshot differ from machine to machine.
    fixed = InstanceOffer(cloud="local", instance_type="local", cpus=8, memory_gb=32.0)
    monkeypatch.setattr(LocalCloud, "machine", property(lambda _self: fixed))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hello.yaml").write_text("name: hello\nresources:\n  cpus: 1+\nrun: echo hello\n")

    async def launch(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("colon", *"launch hello.yaml", "enter")
        await pilot.pause(0.8)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=launch)
