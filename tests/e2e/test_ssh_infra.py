"""The `ssh` infra end to end: the real CLI and controller against Debian's
real OpenSSH server, each test logging in as a throwaway user (`ssh_user`).

A node on `ssh` is a lease of a host with its own workspace there; every test
ends with no lease left in skytui's records and no workspace on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
from pathlib import Path
from shutil import rmtree
from typing import Any

import asyncssh
import pytest
from fixtures.env import Env, events, wait_for

pytestmark = pytest.mark.timeout(240)

FAST_RECOVERY = "jobs:\n  recovery: {backoff_initial_s: 0.5, backoff_max_s: 1.5}\n"


def ssh_config(user: Any, known_hosts: Path, *, resources: str | None = None) -> str:
    host = (
        f"{{name: box1, host: 127.0.0.1, port: {user.port}, user: {user.name}, "
        f"identity_file: {user.identity_file}" + (f", resources: {resources}" if resources else "") + "}"
    )
    return FAST_RECOVERY + f"infra:\n  ssh:\n    known_hosts_file: {known_hosts}\n    hosts:\n      - {host}\n"


def task_yaml(run: str, *, setup: str | None = None, extra: str = "", name: str = "job") -> str:
    lines = [f"name: {name}", "resources:", "  infra: ssh", *(f"  {line}" for line in extra.splitlines())]
    if setup:
        lines += ["setup: |", *(f"  {line}" for line in setup.splitlines())]
    lines += ["run: |", *(f"  {line}" for line in run.splitlines())]
    return "\n".join(lines) + "\n"


def workspaces(user: Any) -> list[str]:
    """Every lease workspace on the host, as `<install>/<cluster>-<rank>`."""
    root = user.home / ".skytui" / "leases"
    return sorted(f"{p.parent.name}/{p.name}" for p in root.glob("*/*")) if root.exists() else []


def leases(env: Env) -> list[dict[str, Any]]:
    path = env.home / "ssh_leases.json"
    return list(json.loads(path.read_text())["leases"]) if path.exists() else []


def job_processes(user: Any, word: str = "sleep") -> list[int]:
    found = []
    for pid in user.processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if word.encode() in cmdline:
            found.append(pid)
    return found


def assert_inventory_empty(env: Env, user: Any) -> None:
    wait_for(lambda: not leases(env) and not workspaces(user), 30, 0.1, "every lease and workspace to go")


def attempt_reasons(env: Env, job_id: int) -> list[str]:
    from skytui.client import Client
    from skytui.config import Paths

    client = Client(Paths(env.home))
    try:
        view = client.job(job_id)
        assert view is not None
        return [a.end_reason or "" for a in view.attempts]
    finally:
        client.close()


# ------------------------------------------------------------------- check


def test_check_reports_the_hosts_or_the_fix(env: Env) -> None:
    env.config(
        "infra:\n  ssh:\n    hosts:\n"
        "      - {name: box1, host: 127.0.0.1, resources: {cpus: 4, accelerators: {A100: 2}}}\n"
        "      - {name: box2, host: 127.0.0.2}\n"
    )
    shown = env.cli("check", check=True).stdout
    line = next(line for line in shown.splitlines() if line.startswith("ssh"))
    assert "enabled" in line and "2 hosts: box1, box2" in line and "A100:2" in line

    env.config("infra:\n  ssh:\n    hosts: []\n")
    report = {i["name"]: i for i in json.loads(env.cli("check", "--json", check=True).stdout)["infra"]}
    assert report["ssh"]["enabled"] is False
    assert report["ssh"]["fix"] == f"list your machines under infra.ssh.hosts in {env.home / 'config.yaml'}"


def test_a_hosts_file_is_read_and_a_bad_one_refused_with_its_path_and_field(env: Env, tmp_path: Path) -> None:
    from skytui.clouds import ssh
    from skytui.config import Paths, load_config

    paths = Paths(env.home)
    hosts_file = tmp_path / "hosts.yaml"
    env.config("infra:\n  ssh:\n    hosts_file: ../hosts.yaml\n")  # relative to config.yaml
    hosts_file.write_text("hosts:\n  - {name: box3, host: 10.0.0.3, port: twenty-two}\n")
    status = ssh.detect(paths, load_config(paths))
    assert not status.enabled and str(hosts_file) in status.reason and "hosts.0.port" in status.reason
    hosts_file.write_text("hosts:\n  - {name: box3, host: 10.0.0.3, resources: {accelerators: 'A100:x'}}\n")
    status = ssh.detect(paths, load_config(paths))
    assert not status.enabled and "hosts.0.resources.accelerators" in status.reason
    hosts_file.write_text("hosts:\n  - {name: box3, host: 10.0.0.3, port: 2222}\n")
    status = ssh.detect(paths, load_config(paths))
    assert status.enabled and status.reason == "1 host: box3"
    hosts_file.unlink()
    status = ssh.detect(paths, load_config(paths))
    assert not status.enabled and str(hosts_file) in status.reason


# -------------------------------------------------------------------- jobs


def test_job_runs_end_to_end_on_a_host_and_leaves_nothing(env: Env, ssh_user: Any, tmp_path: Path) -> None:
    env.config(ssh_config(ssh_user, tmp_path / "no_known_hosts"))
    (env.tmp / "project").mkdir()
    env.write("project/data.txt", "from the workdir\n")
    task = env.write("hello.yaml", "workdir: ./project\n" + task_yaml(
        'cat data.txt\necho "user=$(whoami) rank=$SKYPILOT_NODE_RANK nodes=$SKYPILOT_NUM_NODES"\n'
        'echo "task=$SKYPILOT_TASK_ID job=$SKYPILOT_JOB_ID"',
        setup="echo setup-ran", name="hello",
    ))
    job_id = env.launch(task)
    job = env.wait_status(job_id, "SUCCEEDED", "FAILED", "FAILED_SETUP", "FAILED_PRECHECKS", timeout=90)
    assert job["status"] == "SUCCEEDED", env.cli("jobs", "logs", str(job_id), "--controller", "--no-follow").stdout
    assert job["tasks"][0]["infra"] == "ssh/box1"
    logs = env.cli("jobs", "logs", str(job_id), "--no-follow", check=True).stdout
    assert "from the workdir" in logs, logs
    assert logs.index("setup-ran") < logs.index("from the workdir")
    assert f"user={ssh_user.name} rank=0 nodes=1" in logs
    assert f"job={job_id}" in logs and "task=" in logs and "task= " not in logs
    # The host key was pinned at first contact, owner-only.
    pinned = env.home / "known_hosts"
    assert pinned.read_text().split()[1:3] == ssh_user.host_key.split()
    assert stat.S_IMODE(pinned.stat().st_mode) == 0o600
    assert_inventory_empty(env, ssh_user)
    assert not job_processes(ssh_user, "bash")


def test_file_mounts_land_where_the_task_says_on_a_host(env: Env, ssh_user: Any, tmp_path: Path) -> None:
    """On a machine of its own, `/x` is /x (not inside a sandbox), a directory
    lands as that directory (not nested in it), and `~/x` is in the login's home."""
    env.config(ssh_config(ssh_user, tmp_path / "no_known_hosts"))
    (env.tmp / "shards" / "sub").mkdir(parents=True)
    env.write("shards/a.txt", "shard a\n")
    env.write("shards/sub/b.txt", "shard b\n")
    env.write("settings.yaml", "lr: 0.1\n")
    outside = ssh_user.home.parent / f"{ssh_user.name}-data"  # outside the home, writable by the login
    outside.mkdir()
    shutil.chown(outside, ssh_user.name)
    task = env.write("mounts.yaml", (
        f"file_mounts:\n  {outside}/shards: ./shards\n  {outside}/conf/settings.yaml: ./settings.yaml\n"
        "  ~/cfg/settings.yaml: ./settings.yaml\n"
    ) + task_yaml(f"cat {outside}/shards/a.txt {outside}/shards/sub/b.txt {outside}/conf/settings.yaml "
                  "~/cfg/settings.yaml", name="mounts"))
    job_id = env.launch(task)
    env.wait_status(job_id, "SUCCEEDED", timeout=90)
    assert env.log(job_id).decode().split("\n")[:4] == ["shard a", "shard b", "lr: 0.1", "lr: 0.1"]
    assert sorted(p.name for p in (outside / "shards").iterdir()) == ["a.txt", "sub"]
    assert (ssh_user.home / "cfg" / "settings.yaml").read_text() == "lr: 0.1\n"
    shutil.rmtree(outside)


def test_cancel_kills_the_job_on_the_host(env: Env, ssh_user: Any, tmp_path: Path) -> None:
    # The user's own known_hosts knows the host: nothing gets pinned.
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{ssh_user.port} {ssh_user.host_key}\n")
    env.config(ssh_config(ssh_user, known))
    job_id = env.launch(env.write("long.yaml", task_yaml("echo started\nsleep 600")))
    wait_for(lambda: b"started" in env.log(job_id), 60, what="job output")
    assert job_processes(ssh_user), "the job's sleep runs on the host as the host's user"
    env.cli("jobs", "cancel", "-y", str(job_id), check=True)
    env.wait_status(job_id, "CANCELLED", timeout=60)
    wait_for(lambda: not job_processes(ssh_user), 30, what="the job's processes to end on the host")
    assert_inventory_empty(env, ssh_user)
    assert not (env.home / "known_hosts").exists()


def test_a_full_host_makes_the_next_job_wait(env: Env, ssh_user: Any, tmp_path: Path) -> None:
    env.config(ssh_config(ssh_user, tmp_path / "no_known_hosts", resources="{cpus: 2}"))
    trace, release = ssh_user.home / "trace", ssh_user.home / "release"
    run = (
        'echo "start $SKYPILOT_JOB_ID" >> ~/trace\n'
        "while [ ! -f ~/release ]; do sleep 0.1; done\n"
        'echo "end $SKYPILOT_JOB_ID" >> ~/trace'
    )
    task = env.write("two.yaml", task_yaml(run, extra="cpus: 2"))
    first = env.launch(task)
    env.wait_status(first, "RUNNING", timeout=60)
    second = env.launch(task)
    # Its round of capacity search says why (a refused place leaves no attempt).
    wait_for(lambda: any("box1 is busy: 2 of 2 CPUs leased" in e for e in events(env, second)), 60,
             what="the second job to find box1 busy")
    assert env.job(second)["status"] == "PENDING" and not attempt_reasons(env, second)
    assert trace.read_text().split("\n")[:-1] == [f"start {first}"]
    release.write_text("")
    env.wait_status(first, "SUCCEEDED", timeout=60)
    env.wait_status(second, "SUCCEEDED", timeout=60)
    assert trace.read_text().split("\n")[:-1] == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"]
    assert_inventory_empty(env, ssh_user)


def test_a_changed_host_key_is_refused(env: Env, ssh_user: Any, tmp_path: Path) -> None:
    env.config(ssh_config(ssh_user, tmp_path / "no_known_hosts"))
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    pinned = env.home / "known_hosts"
    pinned.write_bytes(f"[127.0.0.1]:{ssh_user.port} ".encode() + impostor.export_public_key())
    job_id = env.launch(env.write("j.yaml", task_yaml("echo RUN-RAN")))
    job = env.wait_status(job_id, "FAILED_PRECHECKS", "SUCCEEDED", timeout=60)
    assert job["status"] == "FAILED_PRECHECKS"
    reason = job["tasks"][0]["failure_reason"]
    real = asyncssh.import_public_key(ssh_user.host_key)
    assert "box1" in reason and impostor.get_fingerprint("sha256") in reason
    assert real.get_fingerprint("sha256") in reason and str(pinned) in reason
    assert env.log(job_id) == b""
    assert pinned.read_bytes().count(b"\n") == 1  # the pin was left as it was
    assert_inventory_empty(env, ssh_user)


def test_leak_sweep_removes_a_lease_no_job_owns(env: Env, ssh_user: Any, tmp_path: Path) -> None:
    from skytui.clouds import ssh
    from skytui.config import Paths, load_config
    from skytui.spec import Resources

    env.config(ssh_config(ssh_user, tmp_path / "no_known_hosts"))
    paths = Paths(env.home)
    paths.ensure()
    cloud = ssh.make(paths, load_config(paths))
    [offer] = cloud.offers(Resources.model_validate({"infra": "ssh"}))

    async def orphan() -> None:
        handle = await cloud.provision("orphan-9-0-1", offer, 1, labels={"skytui-job": "9", "skytui-task": "0"})
        node = cloud.node(handle.nodes[0])
        try:
            await node.start_phase("stray", "sleep 600", {})
        finally:
            await node.close()

    asyncio.run(orphan())
    assert workspaces(ssh_user) == [f"{paths.install_id}/orphan-9-0-1-0"]
    assert asyncio.run(cloud.list_clusters()) == ["orphan-9-0-1"]
    wait_for(lambda: job_processes(ssh_user), 10, what="the stray process to run")
    env.cli("controller", "start", check=True)
    assert_inventory_empty(env, ssh_user)
    wait_for(lambda: not job_processes(ssh_user), 30, what="the stray process to be killed")
    assert os.path.exists(ssh_user.home)


# ------------------------------------------------------- hosts that go away


def drop_connections(user: Any) -> None:
    """Close every SSH connection of the user (its job processes live on:
    they run in their own session, without a terminal)."""
    import signal

    for pid in job_processes(user, "sshd:"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not job_processes(user, "sshd:"), 10, what="the user's SSH connections to close")


def test_a_lease_is_gone_only_when_its_workspace_is_or_after_the_grace(
    env: Env, ssh_user: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from skytui.clouds import ssh
    from skytui.clouds.base import ClusterState
    from skytui.config import Paths, load_config
    from skytui.spec import Resources

    env.config(ssh_config(ssh_user, tmp_path / "no_known_hosts") + "    unreachable_grace_s: 1\n")
    paths = Paths(env.home)
    paths.ensure()
    cloud = ssh.make(paths, load_config(paths))
    [offer] = cloud.offers(Resources.model_validate({"infra": "ssh"}))
    authorized = ssh_user.keys_file.read_text()

    async def scenario() -> None:
        first = await cloud.provision("a-1-0-1", offer, 1)
        assert await cloud.cluster_state(first) is ClusterState.UP
        # Removed from a host that answers: gone at once.
        rmtree(ssh_user.home / first.nodes[0].workspace)
        assert await cloud.cluster_state(first) is ClusterState.GONE
        await cloud.terminate("a-1-0-1", first)

        second = await cloud.provision("b-1-0-2", offer, 1)
        ssh_user.keys_file.write_text("")  # the host stops letting us in
        drop_connections(ssh_user)
        assert await cloud.cluster_state(second) is ClusterState.UP  # one failure is not a loss
        await asyncio.sleep(1.2)
        assert await cloud.cluster_state(second) is ClusterState.GONE  # the grace is over
        await cloud.terminate("b-1-0-2", second)  # unreachable: the record goes, with a warning

    asyncio.run(scenario())
    assert not leases(env)
    assert any("processes may remain" in r.getMessage() for r in caplog.records)
    ssh_user.keys_file.write_text(authorized)
    assert workspaces(ssh_user) == [f"{paths.install_id}/b-1-0-2-0"]  # left behind, as warned
    rmtree(ssh_user.home / ".skytui")


def test_a_host_that_stops_answering_keeps_its_job(env: Env, ssh_user: Any, tmp_path: Path) -> None:
    env.config(ssh_config(ssh_user, tmp_path / "no_known_hosts"))
    run = "echo started\nwhile [ ! -f ~/release ]; do sleep 0.2; done\necho finished"
    job_id = env.launch(env.write("j.yaml", task_yaml(run)))
    wait_for(lambda: b"started" in env.log(job_id), 60, what="job output")
    authorized = ssh_user.keys_file.read_text()
    ssh_user.keys_file.write_text("")
    drop_connections(ssh_user)
    controller_log = env.home / "logs" / "controller.log"
    wait_for(lambda: "ssh host box1 does not answer" in controller_log.read_text(), 60, 0.2,
             "the controller to find box1 unreachable")
    assert env.job(job_id)["status"] == "RUNNING"
    assert job_processes(ssh_user, "script.sh"), "the job runs on, unseen"
    ssh_user.keys_file.write_text(authorized)
    (ssh_user.home / "release").write_text("")
    job = env.wait_status(job_id, "SUCCEEDED", "FAILED", "RECOVERING", timeout=60)
    assert job["status"] == "SUCCEEDED" and job["recoveries"] == 0
    assert b"finished" in env.log(job_id)
    assert_inventory_empty(env, ssh_user)


# --------------------------------------------------------- offers and nodes


def test_offers_fit_the_declared_resources_and_nodes_take_several_hosts(
    env: Env, ssh_user: Any, tmp_path: Path,
) -> None:
    from skytui.clouds import ssh
    from skytui.clouds.base import CapacityError
    from skytui.config import Paths, load_config
    from skytui.spec import Resources

    # Two names for the one test sshd: two hosts as far as skytui knows.
    hosts = "".join(
        f"      - {{name: {name}, host: 127.0.0.1, port: {ssh_user.port}, user: {ssh_user.name}, "
        f"identity_file: {ssh_user.identity_file}, resources: {{cpus: 8, memory: 32, accelerators: A100:2}}}}\n"
        for name in ("box1", "box2")
    )
    env.config(f"infra:\n  ssh:\n    known_hosts_file: {tmp_path / 'none'}\n    hosts:\n{hosts}")
    paths = Paths(env.home)
    paths.ensure()
    cloud = ssh.make(paths, load_config(paths))

    def offers(**request: Any) -> list[tuple[str | None, float, float, dict[str, float]]]:
        found = cloud.offers(Resources.model_validate(request))
        return [(o.region, o.cpus, o.memory_gb, o.accelerators) for o in found]

    assert offers(infra="ssh") == [("box1", 8, 32, {"A100": 2}), ("box2", 8, 32, {"A100": 2})]  # whole hosts
    assert offers(infra="ssh/box2", accelerators="a100:1") == [("box2", 0, 0, {"A100": 1})]
    assert offers(infra="ssh", cpus="4", memory="16+")[0][1:] == (4, 16, {})
    assert offers(accelerators="H100:1") == [] and offers(accelerators="A100:4") == []
    assert offers(cpus="16") == [] and offers(infra="ssh", use_spot=True) == []
    assert [o.infra for o in cloud.offers(Resources.model_validate({"infra": "ssh"}))] == ["ssh/box1", "ssh/box2"]

    gpu = cloud.offers(Resources.model_validate({"infra": "ssh/box1", "accelerators": "A100:2"}))[0]

    async def scenario() -> None:
        both = await cloud.provision("multi-1-0-1", gpu, 2)
        assert [(n.rank, n.instance_id.split("/")[0]) for n in both.nodes] == [(0, "box1"), (1, "box2")]
        assert all(n.host_key == ssh_user.host_key for n in both.nodes)
        # Every GPU is leased: the next GPU job finds no room, on either host.
        with pytest.raises(CapacityError, match="box1 is busy: 2 of 2 A100 GPUs leased"):
            await cloud.provision("more-2-0-1", gpu, 1)
        # A CPU job fits beside it: the hosts declare enough CPUs.
        cpu = cloud.offers(Resources.model_validate({"infra": "ssh/box2", "cpus": "4"}))[0]
        beside = await cloud.provision("cpu-3-0-1", cpu, 1)
        assert sorted(await cloud.list_clusters()) == ["cpu-3-0-1", "multi-1-0-1"]
        for name, handle in (("multi-1-0-1", both), ("cpu-3-0-1", beside)):
            await cloud.terminate(name, handle)
        await cloud.terminate("multi-1-0-1", both)  # again: nothing left, no error

    asyncio.run(scenario())
    assert_inventory_empty(env, ssh_user)
