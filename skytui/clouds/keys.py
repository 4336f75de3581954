"""SSH key pairs skytui owns: created once, owner-only from the first byte."""

from __future__ import annotations

from pathlib import Path

import asyncssh

from skytui.config import write_private


def ensure_keypair(private_path: Path) -> asyncssh.SSHKey:
    """Load an ed25519 key, creating it (0600, whatever the umask) if missing."""
    if private_path.exists():
        return asyncssh.read_private_key(str(private_path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment="skytui")
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(private_path, key.export_private_key())
    # Public, but it names the key that opens the node host: owner-only too,
    # so nobody else can swap it.
    write_private(private_path.with_name(private_path.name + ".pub"), key.export_public_key())
    return key


def public_key_line(key: asyncssh.SSHKey) -> str:
    """The `ssh-ed25519 AAAA...` form used for pinning."""
    key_type, data = key.export_public_key().decode().split()[:2]
    return f"{key_type} {data}"
