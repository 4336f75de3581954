"""A Kubernetes node's PID 1 (clouds/kubernetes/pods.py KEEPALIVE), run by the
image's /bin/sh as PID 1 of a PID namespace of its own (`unshare`), as in a
pod: on the kubelet's TERM it marks the pod as going, leaves the preemption
notice in each running phase's directory, passes TERM to the job once, and
waits for the job to end (its grace period at most) instead of leaving
after a fixed moment: a job checkpointing for longer is not cut short."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from skytui.clouds.kubernetes.pods import KEEPALIVE, TERMINATION_GRACE_S


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rpf", "--mount-proc", "sh", "-c", "echo $$"], capture_output=True,
                           text=True, timeout=10)
    return probe.returncode == 0 and probe.stdout.strip() == "1"


pytestmark = pytest.mark.skipif(not _namespaces_work(), reason="needs unprivileged PID namespaces (unshare -rpf)")

# Checkpointing takes 3 s: longer than the 2 s PID 1 used to give.
JOB = (
    "trap 'echo TERM >> \"$HOME/terms\"; sleep 3; echo saved > \"$HOME/ckpt\"; exit 0' TERM; "
    "touch \"$HOME/started\"; while :; do sleep 0.1; done"
)


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_pid1_gives_notice_passes_term_once_and_waits_for_the_job(tmp_path: Path) -> None:
    phase = tmp_path / ".skytui" / "phases" / "job1-task0-attempt1-run"
    phase.mkdir(parents=True)
    (phase / "pid").write_text("2\n")
    done = tmp_path / ".skytui" / "phases" / "job1-task0-attempt1-setup"
    done.mkdir()
    (done / "pid").write_text("3\n")
    (done / "exit_code").write_text("0\n")
    # The job starts first (setsid, as phases do), then this shell becomes PID 1's keepalive.
    boot = f"setsid bash -c {shlex.quote(JOB)} </dev/null >/dev/null 2>&1 & exec sh -c {shlex.quote(KEEPALIVE)}"
    pod = subprocess.Popen(["unshare", "-rpf", "--mount-proc", "sh", "-c", boot],
                           env={**os.environ, "HOME": str(tmp_path)}, start_new_session=True)
    try:
        _wait((tmp_path / "started").exists, 10, "the job to start")
        pid1 = int(subprocess.run(["pgrep", "-P", str(pod.pid)], capture_output=True, text=True).stdout.split()[0])
        asked = time.time()
        os.kill(pid1, signal.SIGTERM)  # the kubelet's
        pod.wait(timeout=TERMINATION_GRACE_S + 5)
        took = time.time() - asked
    finally:
        if pod.poll() is None:
            os.killpg(pod.pid, signal.SIGKILL)
    assert (tmp_path / ".skytui" / "terminating").exists()
    deadline = float((phase / "notice").read_text())
    assert asked + TERMINATION_GRACE_S - 2 <= deadline <= asked + TERMINATION_GRACE_S + 2
    assert not (done / "notice").exists()  # an ended phase gets none
    assert (tmp_path / "terms").read_text() == "TERM\n"
    assert (tmp_path / "ckpt").read_text() == "saved\n"  # its 3 s were given
    assert 3 <= took < TERMINATION_GRACE_S  # and PID 1 left when the job had
