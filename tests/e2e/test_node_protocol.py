"""The local infra and the node protocol, through the real node host and asyncssh.

A local node is a sandbox served by the node host process; the controller
drives it over SSH exactly as it drives a VM. What a user relies on: commands
report their exit status and output, a job phase starts exactly once and
outlives the node host (and so the controller), its output can be resumed by
byte offset, cancelling kills everything the job started, secrets never show
up on a command line or linger on disk, a node with the wrong host key or an
unknown name is refused, and terminating a cluster leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest
from fixtures.env import processes_in

from skytui.clouds.base import (
    PHASES_DIR,
    ClusterHandle,
    ClusterState,
    NodeError,
    PhaseState,
)
from skytui.clouds.keys import ensure_keypair, public_key_line
from skytui.clouds.local import LocalCloud
from skytui.clouds.nodes.sshnode import SSHNode
from skytui.config import paths

T = TypeVar("T")


# ------------------------------------------------------------------ helpers


async def until(probe: Callable[[], Awaitable[T]], timeout: float = 30.0, what: str = "") -> T:
    """Poll an async probe until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def eventually(predicate: Callable[[], T], timeout: float = 30.0, what: str = "") -> T:
    """Poll a plain predicate without blocking the event loop."""

    async def probe() -> T:
        return predicate()

    return await until(probe, timeout, what)


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may contain spaces.
    return raw[raw.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as dead)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def dead(pid: int) -> bool:
    return not alive(pid)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def all_cmdlines() -> dict[int, bytes]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
    return found


async def wait_finished(node: SSHNode, phase_id: str, timeout: float = 30.0) -> int:
    """The phase's exit code, once the node has recorded it."""

    async def finished() -> PhaseState | None:
        state = await node.phase_state(phase_id)
        return state if state.finished else None

    state = await until(finished, timeout, f"phase {phase_id} to finish")
    assert state.exit_code is not None
    return state.exit_code


async def read_all(node: SSHNode, phase_id: str) -> bytes:
    return await node.read_phase_output(phase_id, 0, 1 << 24)


def node_host_pid(cloud: LocalCloud) -> int:
    return int(json.loads((cloud.paths.nodes / "nodehost.json").read_text())["pid"])


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def trace(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the node host (started after this) writes each request it serves."""
    path = home / "trace.txt"
    monkeypatch.setenv("SKYTUI_NODEHOST_TRACE", str(path))
    return path


@pytest.fixture
def cloud(home: Path) -> Iterator[LocalCloud]:
    local = LocalCloud(paths())
    yield local
    local.stop_node_host()
    with contextlib.suppress(OSError, ValueError):
        os.kill(node_host_pid(local), signal.SIGTERM)
    for pid in processes_in(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Cluster:
    def __init__(self, cloud: LocalCloud, handle: ClusterHandle) -> None:
        self.cloud = cloud
        self.handle = handle
        self.nodes = [cloud.node(info) for info in handle.nodes]
        self.extra: list[SSHNode] = []

    def node(self, rank: int = 0) -> SSHNode:
        """A fresh connection to a node, as a restarted controller would make."""
        node = self.cloud.node(self.handle.nodes[rank])
        self.extra.append(node)
        return node

    def sandbox(self, rank: int = 0) -> Path:
        return self.cloud.paths.nodes / self.handle.nodes[rank].instance_id

    async def close(self) -> None:
        for node in self.nodes + self.extra:
            await node.close()


@pytest.fixture
async def c1(cloud: LocalCloud) -> AsyncIterator[Cluster]:
    handle = await cloud.provision("c1", cloud.machine, 2)
    cluster = Cluster(cloud, handle)
    yield cluster
    await cluster.close()


# ------------------------------------------------------------------ commands


async def test_phases_are_started_on_the_watch_stream_not_a_channel_each(
    trace: Path, cloud: LocalCloud, c1: Cluster
) -> None:
    # A pool worker runs job after job on one connection: each start on a
    # channel of its own cost a dozen packets each way and a session on both
    # ends. The node host starts them on the stream it already serves.
    node = c1.nodes[0]
    await node.connect()
    started = [await node.start_phase(f"p{i}", f"echo run {i}", {"N": str(i)}) for i in range(12)]
    assert len(set(started)) == 12
    for i in range(12):
        assert await wait_finished(node, f"p{i}") == 0
        assert await read_all(node, f"p{i}") == f"run {i}\n".encode()
    # Started again (a retry after a drop): the same process, not a second one.
    assert await node.start_phase("p3", "echo again", {}) == started[3]
    served = [line.split(" ", 2)[2] for line in trace.read_text().splitlines()]
    on_channels = served.count("launch")
    assert served.count("stream-launch") >= 12 and on_channels <= 1, served


async def test_a_start_the_node_host_refuses_on_the_stream_says_why(cloud: LocalCloud, c1: Cluster) -> None:
    node = c1.nodes[0]
    await node.connect()
    await node.start_phase("first", "true", {})  # the stream is in use from here on
    with pytest.raises(NodeError, match="outside the node"):
        await node.start_phase("../../escape", "true", {})


async def test_provision_makes_one_sandbox_per_node(cloud: LocalCloud, c1: Cluster) -> None:
    assert [n.rank for n in c1.handle.nodes] == [0, 1]
    assert len({n.user for n in c1.handle.nodes}) == 2
    assert all(n.host == "127.0.0.1" and n.host_key.startswith("ssh-ed25519 ") for n in c1.handle.nodes)
    for rank in (0, 1):
        assert c1.sandbox(rank).is_dir()
        assert stat.S_IMODE(c1.sandbox(rank).stat().st_mode) == 0o700
    assert await cloud.list_clusters() == ["c1"]
    assert await cloud.cluster_state(c1.handle) is ClusterState.UP


async def test_run_returns_status_output_and_env(c1: Cluster) -> None:
    node = c1.nodes[0]
    status, out, err = await node.run(
        'echo out; echo err >&2; echo "$GREETING"; echo "$HOME"; pwd; exit 3',
        env={"GREETING": "it's a \"quoted\" $value"},
    )
    assert status == 3
    assert out == f"out\nit's a \"quoted\" $value\n{c1.sandbox(0)}\n{c1.sandbox(0)}\n"
    assert err == "err\n"
    assert await node.run("true") == (0, "", "")


async def test_run_on_each_node_is_separate_and_gets_no_controller_env(c1: Cluster) -> None:
    # The controller's own environment (SKYTUI_HOME, credentials) never leaks to a node.
    status, out, _ = await c1.nodes[0].run('echo "${SKYTUI_HOME-unset}"; echo x > mine')
    assert (status, out) == (0, "unset\n")
    assert (c1.sandbox(0) / "mine").read_text() == "x\n"
    status, out, _ = await c1.nodes[1].run("cat mine 2>/dev/null || echo absent; whoami_=$USER; echo $whoami_")
    assert out == f"absent\n{c1.handle.nodes[1].user}\n"


# -------------------------------------------------------------------- phases


async def test_phase_runs_detached_and_records_its_exit_code(c1: Cluster) -> None:
    node = c1.nodes[0]
    script = (
        'echo "started $PHASE_VAR"; echo oops >&2; '
        'while [ ! -e "$HOME/go" ]; do sleep 0.05; done; exit 4'
    )
    pid = await node.start_phase("p-exit", script, {"PHASE_VAR": "v1"})
    assert pid > 0
    # start_phase returned: the phase is running on its own, no channel holds it.
    running = await node.phase_state("p-exit", check_alive=True)
    assert (running.started, running.pid, running.exit_code, running.alive) == (True, pid, None, True)
    assert not running.finished
    assert (await node.phase_state("p-exit")).exit_code is None
    (c1.sandbox(0) / "go").touch()
    assert await wait_finished(node, "p-exit") == 4
    for check_alive in (False, True):
        state = await node.phase_state("p-exit", check_alive=check_alive)
        assert (state.started, state.exit_code, state.finished) == (True, 4, True)
    assert await read_all(node, "p-exit") == b"started v1\noops\n"


async def test_phase_state_of_a_phase_never_started(c1: Cluster) -> None:
    state = await c1.nodes[0].phase_state("never", check_alive=True)
    assert (state.started, state.pid, state.exit_code, state.finished) == (False, None, None, False)
    assert await c1.nodes[0].read_phase_output("never", 0, 100) == b""


async def test_phase_runs_in_its_workdir_or_home(c1: Cluster) -> None:
    node = c1.nodes[0]
    assert (await node.run("mkdir -p work/dir"))[0] == 0
    await node.start_phase("in-workdir", "pwd", {}, cwd="work/dir")
    await node.start_phase("no-workdir", "pwd", {}, cwd="missing")
    assert await wait_finished(node, "in-workdir") == 0
    assert await wait_finished(node, "no-workdir") == 0
    assert await read_all(node, "in-workdir") == f"{c1.sandbox(0)}/work/dir\n".encode()
    assert await read_all(node, "no-workdir") == f"{c1.sandbox(0)}\n".encode()


async def test_start_phase_is_exactly_once(c1: Cluster) -> None:
    node = c1.nodes[0]
    script = 'echo ran >> "$HOME/runs"; while [ ! -e "$HOME/go" ]; do sleep 0.05; done; echo done'
    first = await node.start_phase("once", script, {})
    # Again while it runs, from this connection and from a new one (a restarted
    # controller), even with a different script: nothing new starts.
    assert await node.start_phase("once", script, {}) == first
    assert await c1.node(0).start_phase("once", "echo SECOND >> \"$HOME/runs\"", {}) == first
    (c1.sandbox(0) / "go").touch()
    assert await wait_finished(node, "once") == 0
    # And again once it has finished.
    assert await node.start_phase("once", script, {}) == first
    assert (c1.sandbox(0) / "runs").read_text() == "ran\n"
    assert await read_all(node, "once") == b"done\n"


async def test_concurrent_starts_run_the_phase_once(c1: Cluster) -> None:
    script = 'echo ran >> "$HOME/runs"; echo hi'
    pids = await asyncio.gather(*(c1.node(0).start_phase("race", script, {}) for _ in range(4)))
    assert len(set(pids)) == 1
    assert await wait_finished(c1.nodes[0], "race") == 0
    assert (c1.sandbox(0) / "runs").read_text() == "ran\n"


async def test_read_phase_output_by_offset_returns_exactly_the_rest(c1: Cluster) -> None:
    node = c1.nodes[0]
    # ~300 KB, bigger than one SFTP read, so that long reads are exercised too.
    await node.start_phase("big", 'for i in $(seq 1 20000); do echo "line $i of the output"; done', {})
    assert await wait_finished(node, "big") == 0
    expected = b"".join(f"line {i} of the output\n".encode() for i in range(1, 20001))
    assert len(expected) > 256 * 1024
    assert await read_all(node, "big") == expected
    for offset in (0, 1, 7, 65536, 100_003, len(expected) - 1):
        assert await node.read_phase_output("big", offset, 1 << 24) == expected[offset:], offset
    assert await node.read_phase_output("big", 5, 10) == expected[5:15]
    assert await node.read_phase_output("big", len(expected), 1000) == b""
    assert await node.read_phase_output("big", len(expected) + 50, 1000) == b""


async def test_following_output_by_offset_loses_and_duplicates_nothing(c1: Cluster) -> None:
    node = c1.nodes[0]
    script = (
        'for i in $(seq 1 3000); do echo "tick $i"; '
        'if [ $((i % 300)) -eq 0 ]; then sleep 0.05; fi; done; printf "no newline at end"'
    )
    await node.start_phase("follow", script, {})
    got = b""
    while True:
        state = await node.phase_state("follow")
        # As the controller does: read after looking at the exit code, so a
        # finished phase's output is complete.
        while chunk := await node.read_phase_output("follow", len(got), 4096):
            got += chunk
        if state.finished:
            break
        await asyncio.sleep(0.02)
    expected = b"".join(f"tick {i}\n".encode() for i in range(1, 3001)) + b"no newline at end"
    assert got == expected


async def test_secrets_travel_in_an_env_file_that_is_deleted_and_never_on_a_command_line(
    c1: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = c1.nodes[0]
    # Every command this node sends to run remotely (a `bash -c` command line there).
    sent: list[str] = []
    real_run = node.run

    async def spying_run(command: str, **kwargs: Any) -> tuple[int, str, str]:
        sent.append(command + repr(kwargs))
        return await real_run(command, **kwargs)

    monkeypatch.setattr(node, "run", spying_run)
    secret = "s3cr3t-Value-with 'quotes' and $dollars"
    script = (
        'printf %s "$MY_SECRET" | sha256sum > "$HOME/secret.sha"; '
        'printf %s "$KEY_PEM" | sha256sum > "$HOME/pem.sha"; '
        'echo "plain=$PLAIN"; '
        'sleep 300 & '
        ': > "$HOME/ready"; '
        'while [ ! -e "$HOME/go" ]; do sleep 0.05; done'
    )
    pem = "-----BEGIN KEY-----\nAAAA=b64==\n-----END KEY-----\n"  # multi-line, trailing newline
    pid = await node.start_phase(
        "secret", script, {"MY_SECRET": secret, "KEY_PEM": pem, "PLAIN": "visible"}
    )
    phase_dir = c1.sandbox(0) / PHASES_DIR / "secret"
    await eventually(lambda: (c1.sandbox(0) / "ready").is_file(), what="the phase to read its secrets")
    # The phase got the secret intact, and the env file is emptied once read.
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert (c1.sandbox(0) / "secret.sha").read_text().split()[0] == digest
    pem_digest = hashlib.sha256(pem.encode()).hexdigest()
    assert (c1.sandbox(0) / "pem.sha").read_text().split()[0] == pem_digest
    assert (phase_dir / "env").stat().st_size == 0
    # Nothing on disk in the phase's directory holds the secret either.
    for path in phase_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
            assert b"AAAA=b64==" not in path.read_bytes(), path

    members = group_members(pid)
    assert len(members) >= 2, "the phase and its children should be running"
    cmdlines = all_cmdlines()
    for member in members:
        assert secret.encode() not in cmdlines.get(member, b""), member
    leaking = [p for p, cmd in cmdlines.items() if secret.encode() in cmd or b"AAAA=b64==" in cmd]
    assert leaking == [], "a secret is on a command line"
    assert sent, "start_phase should launch through a remote command"
    assert not [c for c in sent if secret in c or "AAAA=b64==" in c or "s3cr3t" in c]
    (c1.sandbox(0) / "go").touch()
    assert await wait_finished(node, "secret") == 0
    assert await read_all(node, "secret") == b"plain=visible\n"


async def test_env_file_is_never_written_through_a_planted_link(c1: Cluster) -> None:
    """The env file (secrets) is written 0600 into a fresh folder of the
    launcher's own and moved into place: a symlink planted where it goes is
    replaced, never written through, and the phase still gets its env."""
    phase_dir = c1.sandbox(0) / PHASES_DIR / "observed"
    phase_dir.mkdir(parents=True)
    target = c1.sandbox(0) / "env-as-written"
    (phase_dir / "env").symlink_to(target)
    await c1.nodes[0].start_phase("observed", 'echo "token=$TOKEN"; umask', {"TOKEN": "abc"})
    await wait_finished(c1.nodes[0], "observed")
    assert not target.exists()
    output = (await c1.nodes[0].read_phase_output("observed", 0, 100)).decode()
    assert "token=abc" in output
    # The job itself runs with the login's usual umask, not the env file's.
    assert output.splitlines()[-1].strip() != "0077"


async def test_kill_phase_ends_the_whole_process_group(c1: Cluster) -> None:
    node = c1.nodes[0]
    script = 'sleep 300 & echo $! > "$HOME/child.pid"; echo waiting; sleep 300'
    pid = await node.start_phase("victim", script, {})
    child = await eventually(lambda: read_pid_file(c1.sandbox(0) / "child.pid"), what="the child")
    assert alive(child) and child in group_members(pid)
    running = await node.phase_state("victim", check_alive=True)
    assert running.alive is True and running.exit_code is None

    await node.kill_phase("victim", grace_s=5)
    assert await wait_finished(node, "victim") == 143  # 128 + SIGTERM
    await eventually(lambda: not alive(child), 10, "the child to die")
    await eventually(lambda: not group_members(pid), 10, "the group to end")
    assert (await node.phase_state("victim")).exit_code == 143
    # Killing a finished phase is a no-op.
    await node.kill_phase("victim", grace_s=1)
    assert (await node.phase_state("victim")).exit_code == 143


async def test_kill_phase_of_a_process_ignoring_term_still_records_an_exit_code(c1: Cluster) -> None:
    """A job that ignores SIGTERM is killed after the grace period, and the node
    still says how it ended (137, killed), rather than nothing forever."""
    node = c1.nodes[0]
    pid = await node.start_phase("stubborn", "trap '' TERM; echo up; sleep 300", {})
    await until(lambda: read_all(node, "stubborn"), what="the phase to start")
    await node.kill_phase("stubborn", grace_s=0.5)
    await eventually(lambda: not group_members(pid), 10, "the group to end")
    assert await wait_finished(node, "stubborn", timeout=10) == 137


async def test_phase_survives_node_host_restart_on_another_port(cloud: LocalCloud, c1: Cluster) -> None:
    node = c1.nodes[0]
    script = 'echo before; while [ ! -e "$HOME/go" ]; do sleep 0.05; done; echo after; exit 5'
    pid = await node.start_phase("survivor", script, {})
    await until(lambda: read_all(node, "survivor"), what="first output")
    old_port = c1.handle.nodes[0].port
    old_host = node_host_pid(cloud)

    cloud.stop_node_host()
    await eventually(lambda: not alive(old_host), 20, "the node host to stop")
    assert alive(pid), "the phase died with the node host"
    # Nobody serves the old port now; keep it taken so the new host must move.
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("127.0.0.1", old_port))
        blocker.listen()

        new_port = await cloud.ensure_node_host()
        assert new_port != old_port
        again = c1.node(0)  # built from the stale NodeInfo: resolves the current port
        # Re-attached to the very process, still running.
        state = await again.phase_state("survivor", check_alive=True)
        assert (state.pid, state.alive, state.exit_code) == (pid, True, None)
        assert await read_all(again, "survivor") == b"before\n"
        (c1.sandbox(0) / "go").touch()
        assert await wait_finished(again, "survivor") == 5
        assert await read_all(again, "survivor") == b"before\nafter\n"
        assert (await again.run("echo back"))[:2] == (0, "back\n")
    finally:
        blocker.close()


# ------------------------------------------------------------------ security


async def test_a_different_host_key_is_refused(cloud: LocalCloud, c1: Cluster) -> None:
    impostor_key = public_key_line(asyncssh.generate_private_key("ssh-ed25519"))
    info = dataclasses.replace(c1.handle.nodes[0], host_key=impostor_key)
    node = cloud.node(info)
    try:
        with pytest.raises(NodeError):
            await node.run("echo should-not-run")
        with pytest.raises(NodeError):
            await node.start_phase("pinned", 'echo ran > "$HOME/pinned"', {})
    finally:
        await node.close()
    assert not (c1.sandbox(0) / "pinned").exists()
    assert not (c1.sandbox(0) / PHASES_DIR / "pinned").exists()
    # The genuine key still works.
    assert await c1.nodes[0].run("echo ok") == (0, "ok\n", "")


@pytest.mark.parametrize("user", ["nosuch", "c1", "c1-2", "..", ".skytui", "keys", "nodehost.lock"])
async def test_an_unknown_node_is_refused(cloud: LocalCloud, c1: Cluster, user: str) -> None:
    node = cloud.node(dataclasses.replace(c1.handle.nodes[0], user=user))
    try:
        with pytest.raises(NodeError):
            await node.run("echo should-not-run")
    finally:
        await node.close()


async def test_another_client_key_is_refused(cloud: LocalCloud, c1: Cluster, home: Path) -> None:
    other = home / "other_key"
    ensure_keypair(other)
    node = SSHNode(c1.handle.nodes[0], other, resolve_port=cloud.ensure_node_host)
    try:
        with pytest.raises(NodeError):
            await node.run("echo should-not-run")
    finally:
        await node.close()


# ------------------------------------------------------------------ clusters


async def test_terminate_kills_every_node_and_removes_the_sandboxes(
    cloud: LocalCloud, c1: Cluster
) -> None:
    other = Cluster(cloud, await cloud.provision("c2", cloud.machine, 1))
    try:
        script = 'sleep 300 & echo $! > "$HOME/child.pid"; sleep 300'
        groups = [await node.start_phase("run", script, {}) for node in c1.nodes]
        bystander = await other.nodes[0].start_phase("run", script, {})
        children = []
        for rank in (0, 1):
            pid_file = c1.sandbox(rank) / "child.pid"
            children.append(await eventually(functools.partial(read_pid_file, pid_file), what="a child"))
        assert all(alive(p) for p in groups + children)
        assert sorted(await cloud.list_clusters()) == ["c1", "c2"]

        await cloud.terminate("c1", c1.handle)

        for pid in groups + children:
            await eventually(functools.partial(dead, pid), 10, f"process {pid} to die")
        assert not c1.sandbox(0).exists() and not c1.sandbox(1).exists()
        assert await cloud.list_clusters() == ["c2"]
        assert await cloud.cluster_state(c1.handle) is ClusterState.GONE
        # The gone machine can no longer be reached; the other cluster is untouched.
        with pytest.raises(NodeError):
            await c1.node(0).run("true")
        assert alive(bystander) and group_members(bystander)
        assert await cloud.cluster_state(other.handle) is ClusterState.UP
        # Terminating again is not an error.
        await cloud.terminate("c1", c1.handle)
        await cloud.terminate("c1", None)
    finally:
        await other.close()


async def test_terminate_also_kills_processes_that_left_the_phase_group(c1: Cluster) -> None:
    """Terminating a VM ends every process on it, daemons a job started too."""
    node = c1.nodes[0]
    script = (
        'setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $! > "$HOME/daemon.pid"; sleep 300'
    )
    await node.start_phase("run", script, {})
    daemon = await eventually(lambda: read_pid_file(c1.sandbox(0) / "daemon.pid"), what="the daemon")
    assert alive(daemon)
    await c1.cloud.terminate("c1", c1.handle)
    assert not c1.sandbox(0).exists()
    await eventually(lambda: not alive(daemon), 10, "the job's daemon to die")


async def test_cluster_state_up_partial_gone(cloud: LocalCloud, c1: Cluster) -> None:
    assert await cloud.cluster_state(c1.handle) is ClusterState.UP
    shutil.rmtree(c1.sandbox(1))  # one machine vanishes (preempted)
    assert await cloud.cluster_state(c1.handle) is ClusterState.PARTIAL
    assert await cloud.list_clusters() == ["c1"]
    await cloud.terminate("c1", c1.handle)
    assert await cloud.cluster_state(c1.handle) is ClusterState.GONE
    assert await cloud.list_clusters() == []
