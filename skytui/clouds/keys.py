"""SSH key pairs skytui owns: created once, owner-only from the first byte."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh


def ensure_keypair(private_path: Path) -> asyncssh.SSHKey:
    """Load an ed25519 key, creating it (0600, whatever the umask) if missing."""
    if private_path.exists():
        return asyncssh.read_private_key(str(private_path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment="skytui")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    os.replace(tmp, private_path)
    pub = private_path.with_name(private_path.name + ".pub")
    pub.write_bytes(key.export_public_key())
    return key


def public_key_line(key: asyncssh.SSHKey) -> str:
    """The `ssh-ed25519 AAAA...` form used for pinning."""
    key_type, data = key.export_public_key().decode().split()[:2]
    return f"{key_type} {data}"
