"""Owner-only state, whatever the umask: everything skytui creates in
$SKYTUI_HOME is 0600 (files) or 0700 (folders), even for a user whose umask
is 000. The state holds secrets, job output and the keys of an SSH server
that runs commands as the user.

Excluded from the walk: what lives inside a node's sandbox
(`nodes/<node>/...`). That is the job's home; the job writes there with the
user's own umask, as it would on a VM. The sandbox folder itself is 0700,
which is what keeps its contents private.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from fixtures.env import Env, Result, wait_for

from skytui.config import write_private

NODE_MARKER = ".skytui-node.json"


def cli_with_umask(env: Env, umask: int, *args: str, timeout: float = 120.0) -> Result:
    """The real CLI started from a shell whose umask is `umask`."""
    proc = subprocess.run(
        [sys.executable, "-m", "skytui.cli", *args],
        capture_output=True, text=True, env=env.environ, timeout=timeout, cwd=env.tmp,
        stdin=subprocess.DEVNULL, umask=umask,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def sandboxes(home: Path) -> set[Path]:
    return {marker.parent for marker in (home / "nodes").glob(f"*/{NODE_MARKER}")}


def too_open(home: Path) -> list[str]:
    """Every path under `home` that its group or others may use, outside
    sandboxes' contents; each sandbox folder itself is checked."""
    inside_sandbox = sandboxes(home)
    found = []
    for root, dirs, files in os.walk(home):
        here = Path(root)
        if here in inside_sandbox:
            dirs[:] = []  # the job's own files
            continue
        for name in dirs + files:
            path = here / name
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue  # gone meanwhile (a phase's temporary)
            if stat.S_IMODE(mode) & 0o077:
                found.append(f"{path.relative_to(home)} {stat.filemode(mode)}")
    return sorted(found)


def test_everything_skytui_creates_is_owner_only_under_umask_000(env: Env) -> None:
    task = env.write(
        "modes.yaml",
        "name: modes\n"
        "run: |\n"
        "  echo \"job umask $(umask)\"\n"
        "  echo made > \"$HOME/made-by-the-job\"\n"
        "  sleep 3\n",
    )
    result = cli_with_umask(env, 0o000, "jobs", "launch", "-y", "-d", str(task))
    assert result.code == 0, result.stdout + result.stderr
    job_id = int(re.search(r"Managed job (\d+) submitted", result.stdout).group(1))  # type: ignore[union-attr]
    env.wait_status(job_id, "RUNNING")
    # While it runs: the node host, its keys and the job's sandbox exist.
    wait_for(lambda: sandboxes(env.home), timeout=30, what="the job's sandbox")
    assert (env.home / "keys" / "nodehost_authorized_keys").exists()
    assert too_open(env.home) == []
    env.wait_status(job_id, "SUCCEEDED", timeout=90)
    # The machine is given back: its sandbox goes, with the job's files.
    wait_for(lambda: not [p for p in (env.home / "nodes").iterdir() if p.is_dir()], timeout=30,
             what="the sandbox to be destroyed")
    assert cli_with_umask(env, 0o000, "jobs", "logs", str(job_id), "--no-follow").code == 0
    assert too_open(env.home) == []
    for path in (env.home, env.home / "logs" / "jobs" / str(job_id), env.home / "controller.pid"):
        assert stat.S_IMODE(path.stat().st_mode) in (0o700, 0o600), path
    # The job itself runs with the user's umask, as on a VM: skytui's own
    # tightening stops at its state.
    assert env.log(job_id).startswith(b"job umask 0000\n"), env.log(job_id)


def test_the_users_umask_is_remembered_for_the_processes_skytui_runs_for_them(tmp_path: Path) -> None:
    """The CLI and the daemon tighten their own umask; the node host hands the
    user's back to jobs, which it finds through `user_umask()`."""
    probe = (
        "import os\n"
        "from skytui.config import restrict_umask, user_umask\n"
        "restrict_umask()\n"
        "child = os.umask(0); os.umask(child)\n"
        "print(oct(child), oct(user_umask()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SKYTUI_USER_UMASK"}
    first = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                           umask=0o002, check=True)
    assert first.stdout.split() == ["0o77", "0o2"]
    # A process started by an already-restricted one (the daemon by the CLI,
    # the node host by the daemon) still knows the user's umask, not 077.
    nested = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**env, "SKYTUI_USER_UMASK": "0002"}, umask=0o077, check=True)
    assert nested.stdout.split() == ["0o77", "0o2"]


def test_a_private_file_replaces_a_wider_one(tmp_path: Path) -> None:
    target = tmp_path / "nodehost_authorized_keys"
    target.write_text("old\n")
    target.chmod(0o666)
    previous = os.umask(0)
    try:
        write_private(target, b"ssh-ed25519 AAAA\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"ssh-ed25519 AAAA\n"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left

