"""The local node host looks after itself: nobody has to stop it.

It serves local and sim nodes from its own process. What a user relies on:
it exits once its directory is gone (a deleted throwaway SKYTUI_HOME leaves no
server behind), and once it has served no node for the configured idle time;
a node host with a node on it (even one whose job runs detached with nobody
connected) keeps serving; the next launch starts a fresh one transparently,
even while the old one is still shutting down; `controller stop` can stop an
idle one; and its files are owner-only whatever the umask, while jobs keep
the user's own umask.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtures.env import Env, processes_in, wait_for

from skytui.clouds import nodehost
from skytui.clouds.keys import ensure_keypair, public_key_line
from skytui.clouds.local import LocalCloud, stop_nodehost_if_idle
from skytui.config import USER_UMASK_ENV, paths


def alive(pid: int) -> bool:
    """Running; a zombie (exited, not yet reaped by this test process) is not."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return raw[raw.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def node_host_pid(home: Path) -> int | None:
    try:
        return int(json.loads((home / "nodes" / "nodehost.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


async def eventually(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def idle_exit_after(home: Path, seconds: float) -> None:
    (home / "config.yaml").write_text(f"infra:\n  local: {{nodehost_idle_exit_s: {seconds}}}\n")


@pytest.fixture
def cloud(home: Path) -> Iterator[LocalCloud]:
    local = LocalCloud(paths())
    started: list[int] = []
    original = local.sandboxes._spawn_node_host

    def spawn_and_remember() -> None:
        original()
        # Remember each node host, so that teardown stops it even if the test
        # deleted its directory (and with it the state file naming it).
        wait_for(lambda: node_host_pid(home), 20, what="the node host's state file")
        started.append(node_host_pid(home) or 0)

    local.sandboxes._spawn_node_host = spawn_and_remember  # type: ignore[method-assign]
    yield local
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in processes_in(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------ exits by itself


async def test_node_host_exits_once_its_directory_is_gone(cloud: LocalCloud, home: Path) -> None:
    handle = await cloud.provision("c1", cloud.machine, 1)  # a node: it would never idle out
    pid = node_host_pid(home)
    assert pid is not None and alive(pid)
    node = cloud.node(handle.nodes[0])
    assert (await node.run("echo up"))[:2] == (0, "up\n")
    # Keep the log readable after its folder is gone, to see how it ended.
    with open(home / "logs" / "nodehost.log", "rb") as log:
        shutil.rmtree(home)
        await eventually(lambda: not alive(pid), 30, "the node host to exit")
        ending = log.read().decode()
    await node.close()
    assert "is gone" in ending
    assert "Traceback" not in ending


async def test_idle_node_host_exits_and_a_live_sandbox_keeps_it(cloud: LocalCloud, home: Path) -> None:
    idle_exit_after(home, 1)
    handle = await cloud.provision("c1", cloud.machine, 1)
    first = node_host_pid(home)
    assert first is not None
    node = cloud.node(handle.nodes[0])
    pid = await node.start_phase("long", "sleep 30", {})
    await node.close()  # the job runs detached; nobody is connected any more
    await asyncio.sleep(4)  # four idle periods
    assert alive(first), "the node host left a node with a running job"
    again = cloud.node(handle.nodes[0])
    state = await again.phase_state("long", check_alive=True)
    assert (state.pid, state.alive) == (pid, True)
    await again.close()

    await cloud.terminate("c1", handle)
    await eventually(lambda: not alive(first), 15, "the idle node host to exit")
    assert not (home / "nodes" / "nodehost.json").exists()


async def test_successor_waits_for_a_node_host_still_shutting_down(cloud: LocalCloud, home: Path) -> None:
    """The race of a node host exiting just as the controller reconnects: the
    one started then must wait for the old one's lock, not give up on it."""
    await cloud.ensure_node_host()
    first = node_host_pid(home)
    assert first is not None
    cloud.stop_node_host()
    await eventually(lambda: not alive(first), 15, "the node host to stop")
    # Stand in for a predecessor that still holds the lock while shutting down.
    lock = os.open(home / "nodes" / "nodehost.lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        starting = asyncio.create_task(cloud.ensure_node_host())
        await asyncio.sleep(1.5)
        assert not starting.done()
    finally:
        os.close(lock)  # the predecessor is gone
    port = await asyncio.wait_for(starting, 15)
    handle = await cloud.provision("c1", cloud.machine, 1)
    assert handle.nodes[0].port == port
    node = cloud.node(handle.nodes[0])
    assert (await node.run("echo served"))[:2] == (0, "served\n")
    await node.close()
    await cloud.terminate("c1", handle)


async def test_a_failing_watcher_takes_the_server_down(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No loop may die and leave the SSH server up: the process ends instead."""
    p = paths()
    ensure_keypair(p.keys / "nodehost_host_key")
    client = ensure_keypair(p.keys / "id_ed25519")
    (p.keys / "authorized").write_text(public_key_line(client) + "\n")
    seen_ports: list[int] = []

    async def broken(self: nodehost.Reclaimer, nodes: list[Path]) -> None:
        seen_ports.append(int(json.loads((p.nodes / "nodehost.json").read_text())["port"]))
        raise RuntimeError("the sim clock broke")

    monkeypatch.setattr(nodehost.Reclaimer, "reclaim_due", broken)
    args = argparse.Namespace(
        root=str(p.nodes), host_key=str(p.keys / "nodehost_host_key"),
        authorized_keys=str(p.keys / "authorized"), port=0, idle_exit_s=600.0,
    )
    assert await asyncio.wait_for(nodehost._serve(args, 0o022), 15) == 1
    assert "the sim clock broke" in capsys.readouterr().out
    assert not (p.nodes / "nodehost.json").exists()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", seen_ports[0])


def node_hosts_in_log(home: Path) -> tuple[list[int], list[int]]:
    """Pids of the node hosts that started, and of those that exited idle."""
    text = (home / "logs" / "nodehost.log").read_text()
    started = [int(m) for m in re.findall(r"node host pid (\d+) serving", text)]
    idled = [int(m) for m in re.findall(r"node host pid (\d+) exiting: served no node", text)]
    return started, idled


def test_idle_node_host_exits_and_the_next_launch_starts_a_new_one(env: Env) -> None:
    env.config("infra:\n  local: {nodehost_idle_exit_s: 2}\n")
    task = env.write("hello.yaml", "name: hello\nrun: echo hello from $SKYPILOT_TASK_ID\n")
    first_job = env.launch(task)
    env.wait_status(first_job, "SUCCEEDED", timeout=60)
    wait_for(lambda: node_hosts_in_log(env.home)[1], 20, what="the idle node host to exit")
    started, _ = node_hosts_in_log(env.home)
    wait_for(lambda: not any(alive(pid) for pid in started), 20, what="the node host's process to end")
    assert not (env.home / "nodes" / "nodehost.json").exists()

    second_job = env.launch(task)
    env.wait_status(second_job, "SUCCEEDED", timeout=60)
    assert b"hello from" in env.log(second_job)
    now_serving = node_host_pid(env.home)
    if now_serving is not None:  # it may have gone idle again already
        assert now_serving not in started
    assert len(node_hosts_in_log(env.home)[0]) > len(started)


# --------------------------------------------------------- controller stop


async def test_stop_if_idle_spares_a_node_host_with_nodes(cloud: LocalCloud, home: Path) -> None:
    assert not stop_nodehost_if_idle(cloud.paths), "nothing was running"
    handle = await cloud.provision("c1", cloud.machine, 1)
    pid = node_host_pid(home)
    assert pid is not None
    assert not await asyncio.to_thread(stop_nodehost_if_idle, cloud.paths, 2.0)
    assert alive(pid)

    await cloud.terminate("c1", handle)
    assert await asyncio.to_thread(stop_nodehost_if_idle, cloud.paths)
    assert not alive(pid)


# ------------------------------------------------------------------- modes


@pytest.mark.parametrize(
    ("process_umask", "recorded", "user_umask"),
    [(0o000, None, 0o000), (0o022, None, 0o022), (0o077, "002", 0o002)],
    ids=["umask-000", "umask-022", "restricted-daemon"],
)
async def test_node_host_files_are_owner_only_and_jobs_keep_the_umask(
    cloud: LocalCloud, home: Path, monkeypatch: pytest.MonkeyPatch,
    process_umask: int, recorded: str | None, user_umask: int,
) -> None:
    """Whoever starts the node host may have restricted its own umask (the
    daemon does) after recording the user's: jobs get the user's."""
    if recorded is None:
        monkeypatch.delenv(USER_UMASK_ENV, raising=False)
    else:
        monkeypatch.setenv(USER_UMASK_ENV, recorded)
    log = home / "logs" / "nodehost.log"
    log.write_text("from an older skytui\n")
    os.chmod(log, 0o644)
    old = os.umask(process_umask)
    try:
        handle = await cloud.provision("c1", cloud.machine, 1)
    finally:
        os.umask(old)
    node = cloud.node(handle.nodes[0])
    status, out, _ = await node.run("umask; touch made-by-job")
    await node.close()
    assert (status, out) == (0, f"{user_umask:04o}\n")
    sandbox = home / "nodes" / handle.nodes[0].instance_id
    assert stat.S_IMODE((sandbox / "made-by-job").stat().st_mode) == 0o666 & ~user_umask

    owner_only = {
        "nodes/nodehost.json": 0o600,
        "nodes/nodehost.lock": 0o600,
        "keys/nodehost_authorized_keys": 0o600,
        "keys/nodehost_host_key": 0o600,
        "logs/nodehost.log": 0o600,
        f"nodes/{sandbox.name}/.skytui-node.json": 0o600,
        f"nodes/{sandbox.name}": 0o700,
        "nodes": 0o700,
    }
    modes = {name: stat.S_IMODE((home / name).stat().st_mode) for name in owner_only}
    assert modes == owner_only
    await cloud.terminate("c1", handle)
