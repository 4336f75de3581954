"""The node-side preemption notice watcher (the phase wrapper's, see
clouds/phase_scripts.py), run by a real bash with curl as on a VM, against a
fake instance metadata server on 127.0.0.1 (tests/infra/fake_metadata.py):
on AWS's spot interruption notice (IMDSv2) or GCP's preemption, the phase's
processes get the signal, the notice is written with its deadline, and the
phase's end is held until the machine would be gone; without one, the
watcher leaves with the phase."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.fake_metadata import FakeMetadata

from skytui.clouds.phase_scripts import NOTICE_FILE, launcher_command, launcher_input
from skytui.clouds.preemption_notices import notice_env

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the watcher uses the VM's curl")

CHECKPOINTING = (
    "trap 'echo \"$SKYTUI_NOTICE_URL\" > ~/ckpt; exit 0' TERM\n"
    "touch ~/started; while :; do sleep 0.05; done\n"
)


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    server = FakeMetadata()
    yield server
    server.stop()


def _start(home: Path, script: str, env: dict[str, str]) -> tuple[Path, int]:
    result = subprocess.run(
        ["bash", "-c", launcher_command(".skytui/phases", "p", None)], input=launcher_input(script, env),
        capture_output=True, text=True, env={**os.environ, "HOME": str(home)}, timeout=30, check=True,
    )
    return home / ".skytui" / "phases" / "p", int(result.stdout.split()[-1])


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
    return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _env(cloud: str, url: str, monkeypatch: pytest.MonkeyPatch, signal_name: str = "TERM") -> dict[str, str]:
    monkeypatch.setenv(f"SKYTUI_{cloud.upper()}_METADATA_URL", url)
    env = notice_env(cloud, True, signal_name)
    return {**env, "SKYTUI_NOTICE_EVERY_S": "0.2", "SKYTUI_NOTICE_LINGER_S": "1"}


def test_no_watcher_on_demand_or_off_aws_and_gcp() -> None:
    assert notice_env("aws", False, "TERM") == {}
    assert notice_env("kubernetes", True, "TERM") == {}
    assert notice_env("aws", True, "TERM")["SKYTUI_NOTICE_URL"] == "http://169.254.169.254"


def test_aws_spot_interruption_signals_the_job_records_the_deadline_and_holds_its_end(
    tmp_path: Path, metadata: FakeMetadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase, pgid = _start(tmp_path, CHECKPOINTING, _env("aws", metadata.url, monkeypatch))
    try:
        _wait((tmp_path / "started").exists, 20, "the job to start")
        time.sleep(0.6)  # a few polls: 404, no notice
        assert not (phase / NOTICE_FILE).exists() and not (tmp_path / "ckpt").exists()
        at = metadata.interrupt_spot(in_s=2)
        _wait((phase / NOTICE_FILE).exists, 10, "the notice")
        assert float((phase / NOTICE_FILE).read_text()) == at
        _wait((tmp_path / "ckpt").exists, 10, "the job's checkpoint on SIGTERM")
        # The watcher's variables are its own: the job never sees them.
        assert (tmp_path / "ckpt").read_text() == "\n"
        # The job exited 0 at once; its end is recorded only once the machine
        # would be gone (deadline + linger), so it never reads as done.
        assert not (phase / "exit_code").exists()
        _wait((phase / "exit_code").exists, 15, "the phase's end")
        assert float((phase / "ended_at").read_text()) >= at + 1
        assert metadata.refused == 0  # every request carried its IMDSv2 token
    finally:
        _kill_group(pgid)


def test_gcp_preemption_signals_the_job(tmp_path: Path, metadata: FakeMetadata,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    phase, pgid = _start(tmp_path, CHECKPOINTING, _env("gcp", metadata.url, monkeypatch))
    try:
        _wait((tmp_path / "started").exists, 20, "the job to start")
        metadata.preempted = True
        _wait((tmp_path / "ckpt").exists, 10, "the job's checkpoint on SIGTERM")
        deadline = float((phase / NOTICE_FILE).read_text())
        assert 25 <= deadline - time.time() <= 31  # GCP gives about 30 s
        assert metadata.refused == 0
    finally:
        _kill_group(pgid)


def test_signal_none_records_the_notice_and_leaves_the_job_alone(
    tmp_path: Path, metadata: FakeMetadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase, pgid = _start(tmp_path, CHECKPOINTING, _env("aws", metadata.url, monkeypatch, "none"))
    try:
        _wait((tmp_path / "started").exists, 20, "the job to start")
        metadata.interrupt_spot(in_s=60)
        _wait((phase / NOTICE_FILE).exists, 10, "the notice")
        time.sleep(0.5)
        assert not (tmp_path / "ckpt").exists()
    finally:
        _kill_group(pgid)


def test_without_a_notice_the_watcher_leaves_with_the_phase(
    tmp_path: Path, metadata: FakeMetadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase, pgid = _start(tmp_path, "sleep 0.5; echo done", _env("aws", metadata.url, monkeypatch))
    _wait((phase / "exit_code").exists, 20, "the phase's end")
    assert (phase / "exit_code").read_text().strip() == "0"
    assert not (phase / NOTICE_FILE).exists()
    _wait(lambda: not _group_alive(pgid), 5, "the watcher to leave")
