"""A controller nobody has to babysit: any client contact brings a dead one
back while it has work, the TUI says when it is down and freezes what it
shows, and durations come from the node's own clock, not from when a
controller happened to look."""

from __future__ import annotations

import os
import signal
import time

from fixtures.env import Env, wait_for

from skytui.app import SkyTUI
from skytui.widgets.controller_banner import ControllerBanner

TICKS_YAML = """\
name: ticks
resources: {infra: local}
run: |
  for i in $(seq 1 %(ticks)d); do echo "tick $i"; sleep %(pause)s; done
"""


def _kill_controller(env: Env) -> int:
    pid = env.controller_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "not running" in env.cli("controller", "status").stdout, 10, what="controller gone")
    return pid


def test_the_next_command_restarts_a_killed_controller_and_says_so(env: Env) -> None:
    job = env.launch(env.write("t.yaml", TICKS_YAML % {"ticks": 30, "pause": 0.1}))
    wait_for(lambda: b"tick 3\n" in env.log(job), 30, what="the job's first ticks")
    old = _kill_controller(env)

    queue = env.cli("jobs", "queue", check=True)
    assert "restarted" in queue.stderr and "controller" in queue.stderr, queue.stderr
    new = env.controller_pid()
    assert new is not None and new != old

    done = env.wait_status(job, "SUCCEEDED", "FAILED", "FAILED_CONTROLLER", timeout=60)
    assert done["status"] == "SUCCEEDED"
    assert env.log(job) == "".join(f"tick {i}\n" for i in range(1, 31)).encode()


def test_no_restart_without_work(env: Env) -> None:
    job = env.launch(env.write("t.yaml", TICKS_YAML % {"ticks": 1, "pause": 0}))
    env.wait_status(job, "SUCCEEDED", timeout=60)
    _kill_controller(env)
    queue = env.cli("jobs", "queue", check=True)
    assert "restarted" not in queue.stderr
    assert "not running" in env.cli("controller", "status").stdout


def test_a_run_that_ended_while_the_controller_was_down_keeps_its_true_duration(env: Env) -> None:
    # The job runs about 2 s; the controller is down for about 8 s around its end.
    job = env.launch(env.write("t.yaml", TICKS_YAML % {"ticks": 4, "pause": 0.5}))
    wait_for(lambda: b"tick 1\n" in env.log(job), 30, what="the job running")
    _kill_controller(env)
    time.sleep(8)
    env.cli("controller", "start", check=True)
    done = env.wait_status(job, "SUCCEEDED", timeout=60)
    duration = done["tasks"][0]["job_duration_s"]
    assert 1.5 <= duration < 5, f"the run took ~2 s on its node, shown as {duration} s"


async def test_the_tui_shows_a_down_controller_and_freezes_its_clocks(env: Env) -> None:
    job = env.launch(env.write("t.yaml", TICKS_YAML % {"ticks": 600, "pause": 0.1}))
    wait_for(lambda: b"tick 2\n" in env.log(job), 30, what="the job running")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=(150, 30)) as pilot:
        banner = app.screen.query_one(ControllerBanner)
        assert not banner.has_class("-shown")
        # A controller that cannot start: its config is broken.
        _kill_controller(env)
        (env.home / "config.yaml").write_text("jobs: {controller: {max_launching: -1}}\n")
        for _ in range(200):
            await pilot.pause(0.1)
            if app.controller.phase == "down":
                break
        assert app.controller.phase == "down", app.controller
        assert banner.has_class("-shown") and "Controller down since" in str(banner.render())
        frozen = app.clock()
        await pilot.pause(1.5)
        assert app.clock() == frozen  # no RUNNING clock ticks on as if it were live

        # Fixed: the TUI brings it back by itself and the banner goes.
        (env.home / "config.yaml").unlink()
        for _ in range(200):
            await pilot.pause(0.1)
            if app.controller.phase == "up":
                break
        assert app.controller.phase == "up" and not banner.has_class("-shown")
        assert env.controller_pid() is not None
        assert app.clock() > frozen + 1
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    env.wait_status(job, "CANCELLED", timeout=60)
