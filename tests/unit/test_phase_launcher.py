"""The detached-phase launcher, run by a real bash as on a node, and served
natively as the local node host does: a phase starts exactly once whatever
dies when. A channel cut mid-input leaves nothing behind; a launcher that
died holding the start, or a wrapper killed before the user's script began,
is taken over by the next start; a phase that runs or ran answers with its
pid. Both launchers must pass every case alike."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from skytui.clouds.nodehost_launch import NativeLauncher, WrapperReaper
from skytui.clouds.phase_scripts import (
    ENV_FILE_HEAD,
    launch_request_of,
    launcher_command,
    launcher_input,
)

DEAD_PID = "999999999"  # above pid_max: never a live process

Launch = Callable[[Path, str, str], subprocess.CompletedProcess[str]]


@pytest.fixture
def node_home(tmp_path: Path) -> Path:
    return tmp_path


def _bash_launch(home: Path, phase: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", launcher_command(".skytui/phases", phase, None)], input=stdin, capture_output=True,
        text=True, env={**os.environ, "HOME": str(home)}, timeout=30,
    )


def _native_launch(home: Path, phase: str, stdin: str) -> subprocess.CompletedProcess[str]:
    command = launcher_command(".skytui/phases", phase, None)
    request = launch_request_of(command)
    assert request is not None, "the node host would not recognise the launcher"

    async def launch() -> subprocess.CompletedProcess[str]:
        launcher = NativeLauncher(0o022, WrapperReaper())
        result = await launcher.launch(request, stdin.encode(), home, {**os.environ, "HOME": str(home)})
        return subprocess.CompletedProcess(command, result.status, result.stdout, result.stderr)

    return asyncio.run(launch())


@pytest.fixture(params=["bash", "node host"])
def launch(request: pytest.FixtureRequest) -> Launch:
    return _bash_launch if request.param == "bash" else _native_launch


def _phase(home: Path, phase: str) -> Path:
    return home / ".skytui" / "phases" / phase


def _wait_exit(directory: Path) -> str:
    deadline = time.monotonic() + 20
    while not (directory / "exit_code").exists():
        assert time.monotonic() < deadline, "the phase never ended"
        time.sleep(0.05)
    return (directory / "out.log").read_text()


@pytest.mark.parametrize("cut", [0, 10, -20])
def test_input_cut_short_starts_nothing_and_a_retry_runs_it_once(node_home: Path, cut: int, launch: Launch) -> None:
    payload = launcher_input("echo ran", {"TOKEN": "x"})
    result = launch(node_home, "p", payload[:cut] if cut else "")
    assert result.returncode == 3 and "cut short" in result.stderr
    directory = _phase(node_home, "p")
    assert sorted(p.name for p in directory.iterdir()) == []  # no script, no env, no owner: nothing half-done
    retry = launch(node_home, "p", payload)
    assert retry.returncode == 0 and retry.stdout.strip().isdigit()
    assert _wait_exit(directory) == "ran\n"


def test_a_second_start_answers_with_the_first_ones_pid(node_home: Path, launch: Launch) -> None:
    first = launch(node_home, "p", launcher_input("echo once; sleep 1", {}))
    second = launch(node_home, "p", launcher_input("echo twice", {}))
    assert first.stdout.strip() == second.stdout.strip()
    assert _wait_exit(_phase(node_home, "p")) == "once\n"


def test_a_launcher_that_died_holding_the_start_is_taken_over(node_home: Path, launch: Launch) -> None:
    directory = _phase(node_home, "p")
    directory.mkdir(parents=True)
    os.symlink(DEAD_PID, directory / "owner")  # took the start, died before the wrapper ran
    result = launch(node_home, "p", launcher_input("echo took over", {}))
    assert result.returncode == 0 and result.stdout.strip().isdigit()
    assert _wait_exit(directory) == "took over\n"


def test_a_wrapper_killed_before_the_script_began_is_started_again(node_home: Path, launch: Launch) -> None:
    directory = _phase(node_home, "p")
    directory.mkdir(parents=True)
    os.symlink(DEAD_PID, directory / "owner")
    (directory / "pid").write_text(f"{DEAD_PID}\n")
    (directory / "env").write_text(ENV_FILE_HEAD + "A=1\n")  # never read: the user's script never began
    result = launch(node_home, "p", launcher_input("echo again", {}))
    assert result.stdout.strip() != DEAD_PID
    assert _wait_exit(directory) == "again\n"


@pytest.mark.parametrize("env_left", ["emptied", "deleted by an older skytui"])
def test_a_phase_that_began_is_never_started_twice(node_home: Path, launch: Launch, env_left: str) -> None:
    directory = _phase(node_home, "p")
    directory.mkdir(parents=True)
    os.symlink(DEAD_PID, directory / "owner")
    (directory / "pid").write_text(f"{DEAD_PID}\n")  # its env was read: the script ran, then vanished
    if env_left == "emptied":
        (directory / "env").write_text("")
    result = launch(node_home, "p", launcher_input("echo must not run", {}))
    assert result.stdout.strip() == DEAD_PID  # the controller's liveness check takes it from here
    assert not (directory / "out.log").exists()
