"""A node used by several coroutines while it connects (real OpenSSH).

A job group's tasks share nodes: one task's coroutine publishes the group's
names to every node, including one whose own task is still connecting to it.
The node must hand both the one connection it makes, whole (SSH, SFTP and the
watch stream): a half-made connection thrown away under the connecting task
killed that task (seen as a job group whose server task never started, and a
client waiting for it until it gave up).
"""

from __future__ import annotations

import asyncio
from typing import Any

from skytui.clouds.base import NodeInfo
from skytui.clouds.nodes.sshnode import SSHNode


def _node(ssh_user: Any) -> SSHNode:
    info = NodeInfo(rank=0, host="127.0.0.1", port=ssh_user.port, user=ssh_user.name, internal_ip="127.0.0.1",
                    host_key=ssh_user.host_key, instance_id="vm")
    return SSHNode(info, ssh_user.identity_file)


def _sessions(ssh_user: Any) -> int:
    """The user's SSH connections, as the server counts them (one `sshd: user@notty` each)."""
    return sum(1 for line in ssh_user.command_lines() if line.startswith(f"sshd: {ssh_user.name}@notty".encode()))


async def test_commands_sent_while_a_node_connects_share_its_one_connection(ssh_user: Any) -> None:
    node = _node(ssh_user)
    try:
        connecting = asyncio.create_task(node.connect())
        # A command every few milliseconds for as long as the connect takes:
        # some arrive before the SSH handshake ends, some while SFTP starts.
        commands = []
        while not connecting.done():
            commands.append(asyncio.create_task(node.run("echo hi", timeout=30)))
            await asyncio.sleep(0.002)
        await connecting
        results = await asyncio.gather(*commands)
        assert len(commands) > 5
        assert all(result == (0, "hi\n", "") for result in results)
        assert _sessions(ssh_user) == 1
        # Its SFTP session and watch stream are the ones kept: a phase is
        # read and watched on them, with no new connection.
        assert (await node.phase_state("never-started")).exit_code is None
        await node.watch_phase("never-started")
        assert _sessions(ssh_user) == 1
    finally:
        await node.close()
