"""Nodes push what changed: an idle running job costs its node nothing, and
the pushed stream picks up again after an SSH drop, byte-exact.

The local node host writes one line per request it serves when
SKYTUI_NODEHOST_TRACE names a file: that is what is counted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from fixtures.env import Env, wait_for
from infra.tcp_relay import TCPRelay

from skytui.clouds.base import NodeInfo
from skytui.clouds.local import LocalCloud
from skytui.clouds.nodes.sshnode import SSHNode
from skytui.config import paths

IDLE_WINDOW_S = 10.0


def _requests(trace: Path, since: float = 0.0) -> list[str]:
    if not trace.exists():
        return []
    return [line for line in trace.read_text().splitlines() if float(line.split(" ", 1)[0]) >= since]


def test_an_idle_running_job_makes_no_requests_to_its_node(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = env.tmp / "trace.txt"
    monkeypatch.setenv("SKYTUI_NODEHOST_TRACE", str(trace))
    gate = env.tmp / "gate"
    job_id = env.launch(env.write("idle.yaml", (
        "name: idle\n"
        "run: |\n"
        "  echo started\n"
        f"  while [ ! -e {gate} ]; do sleep 0.2; done\n"
        "  echo finished\n"
    )))
    wait_for(lambda: b"started\n" in env.log(job_id), 60, what="the job to start")
    time.sleep(1.0)  # the look that read "started" may still be answering
    window_start = time.time()
    time.sleep(IDLE_WINDOW_S)
    during = [line for line in _requests(trace, window_start) if float(line.split(" ", 1)[0]) < window_start + IDLE_WINDOW_S]
    assert during == [], f"an idle job cost its node {len(during)} request(s) in {IDLE_WINDOW_S:g}s: {during[:5]}"
    # Not idle for want of watching: the end is noticed at once.
    gate.touch()
    job = env.wait_status(job_id, "SUCCEEDED", "FAILED", "FAILED_CONTROLLER", timeout=30)
    assert job["status"] == "SUCCEEDED"
    assert env.log(job_id) == b"started\nfinished\n"
    assert any(line.endswith(" watch") for line in _requests(trace)), "the controller never opened a watch stream"
    # Started by the node host itself, not by a bash launcher it forked.
    assert any(line.endswith((" launch", " stream-launch")) for line in _requests(trace)), \
        "the phase was not launched natively"


def test_a_cancelled_job_is_stopped_by_the_node_host_without_a_shell(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kill's bash version polls `ps` over every process of the machine:
    # with thousands of sandboxes on one node host, a bulk cancel waited
    # minutes on it. The node host stops the phase itself; the job still
    # gets its SIGTERM first and ends CANCELLED.
    trace = env.tmp / "trace.txt"
    monkeypatch.setenv("SKYTUI_NODEHOST_TRACE", str(trace))
    job_id = env.launch(env.write("stoppable.yaml", (
        "name: stoppable\n"
        "run: |\n"
        "  trap 'echo got TERM; exit 7' TERM\n"
        "  echo started\n"
        "  while true; do sleep 0.1; done\n"
    )))
    wait_for(lambda: b"started\n" in env.log(job_id), 60, what="the job to start")
    before = time.time()
    env.cli("jobs", "cancel", str(job_id), "-y", check=True)
    assert env.wait_status(job_id, "CANCELLED", timeout=60)["status"] == "CANCELLED"
    served = [line.rsplit(" ", 1)[1] for line in _requests(trace, before)]
    assert "kill" in served, f"the node host was not asked to kill natively: {served}"
    assert "exec" not in served, f"a shell was forked to stop the job: {served}"
    assert b"got TERM\n" in env.log(job_id)


def _through_relay(env: Env, *, delay_s: float = 0.0) -> TCPRelay:
    """A relay between the controller and the node host: the node host is
    started by a first job, then advertised at the relay."""
    first = env.launch(env.write("first.yaml", "name: first\nrun: echo up\n"))
    env.wait_status(first, "SUCCEEDED", timeout=60)
    state_file = env.home / "nodes" / "nodehost.json"
    state = json.loads(state_file.read_text())
    relay = TCPRelay(state["port"], delay_s=delay_s)
    state_file.write_text(json.dumps({**state, "port": relay.port}))
    return relay


def test_a_job_that_never_pauses_shows_its_output_while_it_runs(env: Env) -> None:
    # A training loop printing a step every 10 ms on a node 40 ms away: the
    # file grows under every read, and what it printed must still arrive as
    # it goes, not once it pauses.
    relay = _through_relay(env, delay_s=0.02)
    gate = env.tmp / "gate"
    try:
        job_id = env.launch(env.write("busy.yaml", (
            "name: busy\n"
            "run: |\n"
            f"  i=0; while [ ! -e {gate} ]; do i=$((i+1)); echo \"step $i\"; sleep 0.01; done\n"
            "  echo finished\n"
        )))
        wait_for(lambda: b"step 1\n" in env.log(job_id), 60, what="the first line")
        for _ in range(3):
            lines = env.log(job_id).count(b"\n")
            wait_for(lambda: env.log(job_id).count(b"\n") >= lines + 20, 10,
                     what=f"more output while the job prints (had {lines} lines)")
        assert env.job(job_id)["status"] == "RUNNING"
        gate.touch()
        assert env.wait_status(job_id, "SUCCEEDED", "FAILED", timeout=30)["status"] == "SUCCEEDED"
    finally:
        relay.close()
    assert env.log(job_id).endswith(b"finished\n")


LINES = 150


def test_the_pushed_stream_resumes_after_ssh_drops_with_no_byte_lost_or_doubled(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = env.tmp / "trace.txt"
    monkeypatch.setenv("SKYTUI_NODEHOST_TRACE", str(trace))
    # The controller reaches the node host through a relay that the test cuts.
    relay = _through_relay(env)
    try:
        job_id = env.launch(env.write("chatty.yaml", (
            "name: chatty\n"
            "run: |\n"
            f"  for i in $(seq 1 {LINES}); do echo \"line $i\"; sleep 0.04; done\n"
        )))
        wait_for(lambda: b"line 10\n" in env.log(job_id), 60, what="output")
        watches_before = sum(line.endswith(" watch") for line in _requests(trace))
        for _ in range(3):
            relay.cut()
            time.sleep(1.0)
        job = env.wait_status(job_id, "SUCCEEDED", "FAILED", "FAILED_CONTROLLER", timeout=90)
    finally:
        relay.close()
    assert job["status"] == "SUCCEEDED" and job["recoveries"] == 0, job
    assert env.log(job_id) == "".join(f"line {i}\n" for i in range(1, LINES + 1)).encode()
    # Re-attached to a new stream, not left polling.
    assert sum(line.endswith(" watch") for line in _requests(trace)) > watches_before


def test_the_pushed_stream_resumes_after_the_controller_is_killed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = env.tmp / "trace.txt"
    monkeypatch.setenv("SKYTUI_NODEHOST_TRACE", str(trace))
    gate = env.tmp / "gate"
    job_id = env.launch(env.write("gated.yaml", (
        "name: gated\n"
        "run: |\n"
        "  for i in $(seq 1 20); do echo \"before $i\"; done\n"
        f"  while [ ! -e {gate} ]; do sleep 0.1; done\n"
        "  for i in $(seq 1 20); do echo \"after $i\"; sleep 0.02; done\n"
    )))
    wait_for(lambda: b"before 20\n" in env.log(job_id), 60, what="output")
    pid = env.controller_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "not running" in env.cli("controller", "status").stdout, 10, what="controller gone")
    watches_before = sum(line.endswith(" watch") for line in _requests(trace))
    env.cli("controller", "start", check=True)
    wait_for(lambda: sum(line.endswith(" watch") for line in _requests(trace)) > watches_before, 30,
             what="the new controller to watch the phase")
    gate.touch()
    job = env.wait_status(job_id, "SUCCEEDED", "FAILED", "FAILED_CONTROLLER", timeout=60)
    assert job["status"] == "SUCCEEDED" and job["recoveries"] == 0
    expected = "".join(f"before {i}\n" for i in range(1, 21)) + "".join(f"after {i}\n" for i in range(1, 21))
    assert env.log(job_id) == expected.encode()


# ----------------------------------------------------- the node's two watchers


async def _signalled(event: asyncio.Event, timeout: float = 5.0) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def _exercise_watch(node: SSHNode, gate: str) -> None:
    """What the controller relies on, on any node: a notice when output grows,
    none while nothing happens, one at the exit, and `gone` for a process
    killed before it could write its exit code."""
    await node.start_phase("w1", f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second", {})
    event = await node.watch_phase("w1")
    assert await _signalled(event), "no `seen` notice"
    await asyncio.sleep(1.5)  # output written before the watch began comes as `seen`, not later
    event.clear()
    assert not await _signalled(event, 1.5), "a notice while the phase printed nothing"
    Path(gate).touch()
    assert await _signalled(event), "no notice when the phase printed and ended"
    state = await node.phase_state("w1")
    for _ in range(50):  # a node that polls may tell of the output before the exit
        if state.finished:
            break
        event.clear()
        await _signalled(event)
        state = await node.phase_state("w1")
    assert state.exit_code == 0
    # The exit notice itself says how the phase ended (code, end time, output
    # size), so a thousand jobs ending at once cost their nodes no reads.
    for _ in range(5):
        if state.output_size is not None:
            break
        event.clear()
        await _signalled(event, 2.0)
        state = await node.phase_state("w1")
    assert (state.exit_code, state.output_size) == (0, len(b"first\nsecond\n"))
    assert state.ended_at is not None and abs(state.ended_at - time.time()) < 60
    assert await node.read_phase_output("w1", 0, 1 << 16) == b"first\nsecond\n"
    node.unwatch_phase("w1")

    pid = await node.start_phase("w2", "sleep 60", {})
    event = await node.watch_phase("w2")
    await _signalled(event)
    event.clear()
    await node.run(f"kill -KILL -- -{pid}")
    assert await _signalled(event), "no notice when the phase's process was killed"
    state = await node.phase_state("w2")
    assert state.exit_code is None and state.alive is False


async def test_the_node_host_pushes_changes_natively(home: Path, tmp_path: Path) -> None:
    cloud = LocalCloud(paths())
    handle = await cloud.provision("wn", cloud.machine, 1)
    node = cloud.node(handle.nodes[0])
    try:
        await _exercise_watch(node, str(tmp_path / "gate"))
    finally:
        await node.close()
        await cloud.terminate("wn", handle)
        cloud.stop_node_host()


async def test_a_vm_pushes_changes_from_its_bash_watcher(ssh_user: Any, tmp_path: Path) -> None:
    info = NodeInfo(rank=0, host="127.0.0.1", port=ssh_user.port, user=ssh_user.name, internal_ip="127.0.0.1",
                    host_key=ssh_user.host_key, instance_id="vm")
    node = SSHNode(info, ssh_user.identity_file)
    try:
        await _exercise_watch(node, f"{ssh_user.home}/gate")
    finally:
        await node.close()


async def test_a_vm_says_a_preemption_notice_on_its_watch_stream(ssh_user: Any) -> None:
    """A spot VM's notice (the `notice` file its phase wrapper's watcher
    writes from the instance metadata) comes on the watch stream the
    phase's follow already holds: the controller waits for it, asking the
    node nothing, and hears it within the watcher's half-second look. A
    notice given before the watch began is said at once."""
    info = NodeInfo(rank=0, host="127.0.0.1", port=ssh_user.port, user=ssh_user.name, internal_ip="127.0.0.1",
                    host_key=ssh_user.host_key, instance_id="vm")
    node = SSHNode(info, ssh_user.identity_file)
    phases = f"{ssh_user.home}/{info.phases_dir}"

    def give_notice(phase: str, deadline: float) -> None:  # as the wrapper's watcher does: tmp, then mv
        Path(f"{phases}/{phase}/notice.tmp").write_text(f"{deadline}\n")
        os.replace(f"{phases}/{phase}/notice.tmp", f"{phases}/{phase}/notice")

    try:
        first = await node.start_phase("n1", "sleep 60", {})
        assert await node.wait_phase_notice("n1") is None  # not watched yet: the caller reads the file
        await node.watch_phase("n1")
        told = asyncio.create_task(node.wait_phase_notice("n1"))
        await asyncio.sleep(1.5)
        assert not told.done(), "a notice nobody gave"
        deadline = time.time() + 120
        give_notice("n1", deadline)
        assert await asyncio.wait_for(told, 3) == pytest.approx(deadline)

        second = await node.start_phase("n2", "sleep 60", {})
        early = time.time() + 30
        give_notice("n2", early)
        await node.watch_phase("n2")
        assert await asyncio.wait_for(node.wait_phase_notice("n2"), 3) == pytest.approx(early)
    finally:
        for phase in ("n1", "n2"):
            with contextlib.suppress(Exception):
                await node.kill_phase(phase, grace_s=0.5)
        await node.close()
    assert first and second


@pytest.mark.parametrize("how", ["its parent (SIGCHLD)", "a pidfd", "a sweep (no pidfd left)"])
async def test_the_node_host_tells_when_a_phase_process_is_gone(tmp_path: Path, how: str) -> None:
    """However the node host learns that a process ended (its own child, a
    pidfd, or, past its pidfd budget, a sweep), a phase whose process dies
    without an exit code is told `gone`, and one that ends with a code is
    told its `exit`: 10,000 running phases must not take every descriptor."""
    from skytui.clouds.nodehost_launch import WrapperReaper
    from skytui.clouds.nodehost_watch import PhaseWatcher, WatchStream

    reaper = WrapperReaper()
    watcher = PhaseWatcher(reaper if how.startswith("its parent") else None,
                           pidfd_budget=0 if how.startswith("a sweep") else None)
    said: list[str] = []
    stream = WatchStream(watcher, lambda data: said.extend(data.decode().splitlines()), tmp_path)
    phases = {}
    for name, script in (("dies", "sleep 30"), ("ends", "sleep 0.5; exit 3")):
        directory = tmp_path / name
        directory.mkdir()
        wrapper = f'sh -c \'{script}\'; rc=$?; echo $rc > "{directory}/exit.tmp"; mv "{directory}/exit.tmp" "{directory}/exit_code"'
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", wrapper], dict(os.environ), setsid=True)
        if how.startswith("its parent"):
            reaper.adopt(pid)
        (directory / "pid").write_text(f"{pid}\n")
        phases[name] = pid
        watcher.subscribe(stream, name)
    try:
        os.killpg(phases["dies"], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            "dies gone" in said and any(line.startswith("ends exit 3") for line in said)
        ):
            await asyncio.sleep(0.05)
        assert "dies gone" in said, said
        assert any(line.startswith("ends exit 3") for line in said), said
    finally:
        stream.close()
        watcher.close()
        reaper.close()
        for pid in phases.values():
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


async def test_an_exit_code_being_written_is_not_taken_for_one(tmp_path: Path) -> None:
    """The wrapper writes `exit_code` in place (a thousand phases ending
    together must not fork a thousand `mv`): an empty one is being written,
    and the node host tells the exit only once the code is there."""
    from skytui.clouds.nodehost_watch import PhaseWatcher, WatchStream

    watcher = PhaseWatcher(None)
    said: list[str] = []
    stream = WatchStream(watcher, lambda data: said.extend(data.decode().splitlines()), tmp_path)
    directory = tmp_path / "p"
    directory.mkdir()
    sleeper = await asyncio.create_subprocess_exec("sleep", "30")
    (directory / "pid").write_text(f"{sleeper.pid}\n")
    try:
        (directory / "exit_code").touch()  # opened by `echo $rc >`, not yet written
        watcher.subscribe(stream, "p")
        await asyncio.sleep(0.3)
        assert said == ["p seen 0"], said
        with open(directory / "exit_code", "a") as f:
            f.write("0\n")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(line.startswith("p exit 0") for line in said):
            await asyncio.sleep(0.02)
        assert any(line.startswith("p exit 0") for line in said), said
    finally:
        stream.close()
        watcher.close()
        sleeper.kill()
        await sleeper.wait()
