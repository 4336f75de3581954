"""Reaching a fresh VM over SSH: skytui's key for VMs, and the host key
learned at first contact (the VM is ours and brand new, so trust on first use
is the only evidence there is; it is pinned in the cluster record from then on,
and a changed key is refused like any other)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncssh

from skytui.clouds.base import NodeError
from skytui.clouds.keys import ensure_keypair, public_key_line
from skytui.config import Paths


def vm_key_path(paths: Paths) -> Path:
    """The key pair skytui logs in to its cloud VMs with (created on first use, 0600)."""
    path = paths.keys / "vm_ed25519"
    ensure_keypair(path)
    return path


def vm_public_key(paths: Paths) -> str:
    """`ssh-ed25519 AAAA…` for a key pair import or an ssh-keys metadata entry."""
    return public_key_line(ensure_keypair(vm_key_path(paths)))


def proxy_for(proxy_command: str | None, host: str, port: int) -> str | None:
    if not proxy_command:
        return None
    return proxy_command.replace("%h", host).replace("%p", str(port))


async def wait_for_host_key(
    host: str, port: int = 22, *, proxy_command: str | None = None, timeout_s: float = 300.0,
) -> str:
    """Wait until the VM's sshd answers; its host key as `type base64`."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(host, port, proxy_command=proxy_for(proxy_command, host, port)),
                timeout=min(20.0, max(1.0, deadline - time.monotonic())),
            )
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            last = exc
            await asyncio.sleep(2.0)
            continue
        if key is not None:
            return public_key_line(key)
    raise NodeError(f"{host}:{port} did not answer SSH within {timeout_s:g}s: {last}")
