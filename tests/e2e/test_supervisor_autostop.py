"""The remote controller's supervisor, run as it runs on a controller
machine (`python -m skytui.remote.supervisor run`, its own SKYTUI_HOME):
idle past `autostop`, it stops the controller and then the machine, with the
command site.json names (a VM's shutdown; here a marker file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skytui.config import Paths
from skytui.engine.daemon import controller_info

pytestmark = pytest.mark.timeout(120)


def supervise(home: Path, stop_command: str | None) -> subprocess.CompletedProcess[str]:
    (home / "config.yaml").write_text("jobs:\n  controller:\n    autostop: {idle_minutes: 0.02}\n")
    (home / "site.json").write_text(json.dumps({"config": "x", "autostop_command": stop_command}))
    return subprocess.run([sys.executable, "-m", "skytui.remote.supervisor", "run"], capture_output=True, text=True,
                          env={**os.environ, "SKYTUI_HOME": str(home)}, timeout=90)


def test_an_idle_controller_stops_and_then_its_machine(home: Path) -> None:
    marker = home.parent / "machine-stopped"
    done = supervise(home, f"touch {marker}")
    assert done.returncode == 0, done.stderr
    assert marker.exists()  # the machine was told to stop, after the controller
    assert not controller_info(Paths(home)).running
    assert "autostop: idle for 0.02 minutes; stopping the controller" in done.stderr
    assert f"autostop: stopping this machine (touch {marker})" in done.stderr


def test_a_machine_that_cannot_stop_itself_is_said_so(home: Path) -> None:
    done = supervise(home, "exit 7")
    assert done.returncode == 0 and "autostop: the machine did not stop (exit 7)" in done.stderr


def test_a_host_or_a_pod_stays_up(home: Path) -> None:
    done = supervise(home, None)
    assert done.returncode == 0 and "stopping this machine" not in done.stderr
    assert not controller_info(Paths(home)).running
