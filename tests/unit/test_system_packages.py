"""A missing system package stops the run with one line, before any test.

Real pytest runs (a subprocess, as a user types it) of a tiny test file with
the suite's own plugins, on a machine made to lack sshd (SKYTUI_TEST_SSHD
points at nothing) and tmux (not on PATH): the check is
tests/fixtures/system_packages.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent

TINY = '''\
import pytest


def test_over_ssh(ssh_user):  # needs sshd through ssh_user's own fixture, real_sshd
    pass


@pytest.mark.needs("tmux")
def test_in_a_terminal():
    pass


def test_pure():
    assert 1 + 1 == 2
'''


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (folder / "test_tiny.py").write_text(TINY)
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]),
        "SKYTUI_TEST_SSHD": str(folder / "no-sshd-here"),
        "PATH": str(folder / "no-binaries-here"),  # no tmux; pytest runs by its full path
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "fixtures.sshd",
         "-p", "fixtures.system_packages", "--rootdir", str(folder), "test_tiny.py", *args],
        cwd=folder, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )


def lines_naming_the_script(output: str) -> list[str]:
    return [line for line in output.splitlines() if "scripts/install-test-deps" in line]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "two-workers"])
def test_missing_packages_stop_the_run_with_one_line(tmp_path: Path, workers: list[str]) -> None:
    result = run_pytest(tmp_path, *workers)
    output = result.stdout + result.stderr
    assert result.returncode == 6, output
    [line] = lines_naming_the_script(output)
    assert "openssh-server" in line and "tmux" in line, line
    assert "postgresql" not in line and "libnss-wrapper" not in line, line  # no selected test needs them
    assert "passed" not in output and "error" not in output.lower(), output  # no test ran, none erred


def test_tests_that_need_no_missing_package_still_run(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, "-k", "pure or terminal")
    output = result.stdout + result.stderr
    assert result.returncode == 6, output
    [line] = lines_naming_the_script(output)
    assert "tmux" in line and "openssh-server" not in line, line

    result = run_pytest(tmp_path, "-k", "pure")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 deselected" in result.stdout
    assert not lines_naming_the_script(result.stdout + result.stderr)


def test_the_script_installs_every_package_the_check_names() -> None:
    from fixtures.system_packages import NEEDS, SCRIPT

    script = (REPO / SCRIPT).read_text()
    installed = set(re.findall(r"missing\+=\(([a-z0-9-]+)\)", script))
    assert installed == {need.package for need in NEEDS}
    assert os.access(REPO / SCRIPT, os.X_OK)
