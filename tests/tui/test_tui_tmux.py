"""The TUI in a real terminal: tmux runs `skytui`, keys are typed, the screen is read.

As a person would use it: wait for the queue, open a job's logs, go back,
cancel the job with the keyboard, and see CANCELLED.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from fixtures.env import Env

WIDTH, HEIGHT = 120, 40


class Tmux:
    def __init__(self, env: Env) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed (scripts/install-test-deps installs it)")
        self.socket = f"skytui-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, timeout=20
        ).stdout

    def start(self) -> None:
        command = f"{sys.executable} -m skytui.cli"
        environ = {**self.env.environ, "TERM": "xterm-256color"}
        environ.pop("NO_COLOR", None)
        # Textual takes COLUMNS (set for the CLI's tables) over the pane's real width.
        environ.pop("COLUMNS", None)
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-s", "ui", "-x", str(WIDTH), "-y", str(HEIGHT),
             command],
            env=environ, check=True, timeout=20, cwd=self.env.tmp,
        )

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "ui", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "ui")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def tmux(env: Env) -> Iterator[Tmux]:
    session = Tmux(env)
    yield session
    session.stop()


def test_queue_logs_and_cancel_in_a_real_terminal(env: Env, tmux: Tmux) -> None:
    task = env.write(
        "ticker.yaml", "name: ticker\nrun: |\n  for i in $(seq 1 3000); do echo tick $i; sleep 0.1; done\n"
    )
    job_id = env.launch(task)
    tmux.start()
    screen = tmux.wait_for("ticker")
    assert "ID" in screen and "STATUS" in screen
    tmux.wait_for("RUNNING")
    tmux.keys("l")
    screen = tmux.wait_for("(ticker, pid=")
    assert "Logs · job" in screen and "tick" in screen
    tmux.keys("Escape")
    tmux.wait_for("In progress tasks: 1 RUNNING")
    tmux.keys("C-d")
    tmux.wait_for("Keep running")
    tmux.keys("y")
    tmux.wait_for("CANCELLED", timeout=60)
    assert env.job(job_id)["status"] == "CANCELLED"
    tmux.keys("q")
    time.sleep(1.0)
    assert subprocess.run(["tmux", "-L", tmux.socket, "has-session", "-t", "ui"], capture_output=True).returncode != 0
