"""A real OpenSSH server (Debian's openssh-server) on 127.0.0.1 for tests.

It logs in throwaway users whose homes are in the test's temporary folder, so
no job ever writes to a real home directory, and it never logs in root (whose
sessions would also ignore SSH channel signals). scripts/install-test-deps
installs the package; creating users needs root, as CI has.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RELAY = Path(__file__).with_name("relay.py")


def sshd_path() -> Path:
    """Debian's sshd; SKYTUI_TEST_SSHD points elsewhere (the missing-package check's own test)."""
    return Path(os.environ.get("SKYTUI_TEST_SSHD", "/usr/sbin/sshd"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SSHUser:
    """A throwaway login on the test sshd."""

    name: str
    home: Path
    keys_file: Path
    port: int
    host_key: str  # the server's public host key line (`ssh-ed25519 AAAA…`)
    identity_file: Path = field(init=False)

    def __post_init__(self) -> None:
        # A key of the user's own, as `identity_file` in the ssh infra config.
        self.identity_file = self.home.parent / f"{self.name}.key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.identity_file)], check=True)
        self.authorize(self.identity_file.with_suffix(".key.pub").read_text())

    def authorize(self, public_key_line: str) -> None:
        with self.keys_file.open("a") as f:
            f.write(public_key_line.strip() + "\n")

    @property
    def proxy_command(self) -> str:
        """An ssh_proxy_command that reaches this sshd whatever address a cloud gave its node."""
        return f"{sys.executable} {RELAY} 127.0.0.1 {self.port}"

    def processes(self) -> list[int]:
        out = subprocess.run(["pgrep", "-u", self.name], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def command_lines(self) -> list[bytes]:
        """The command lines of this user's processes (those that ended
        between the listing and the read are left out)."""
        found = []
        for pid in self.processes():
            try:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                continue
        return found


class RealSSHD:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.users: list[SSHUser] = []
        (root / "keys").mkdir(parents=True)
        (root / "homes").mkdir()
        for directory in (root, root / "keys", root / "homes"):
            os.chmod(directory, 0o755)  # sshd reads a user's keys file as that user
        host_key = root / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        self.host_key = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
        (root / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {host_key}\nPidFile {root}/sshd.pid\n"
            f"AuthorizedKeysFile {root}/keys/%u\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin no\nMaxSessions 100\nMaxStartups 100:30:200\n"
            "Subsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        subprocess.run([str(sshd_path()), "-f", str(root / "sshd_config"), "-E", str(root / "sshd.log")], check=True)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()}")
            time.sleep(0.05)

    def new_user(self) -> SSHUser:
        name = f"skyt{secrets.token_hex(3)}"
        home = self.root / "homes" / name
        # "*" and not the default "!": sshd refuses key logins to a locked account when PAM is off.
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/bash", "-p", "*", name], check=True)
        home.mkdir()
        shutil.chown(home, name, name)
        keys_file = self.root / "keys" / name
        keys_file.touch()
        shutil.chown(keys_file, name, name)
        user = SSHUser(name, home, keys_file, self.port, self.host_key)
        self.users.append(user)
        return user

    def remove_user(self, user: SSHUser) -> None:
        subprocess.run(["pkill", "-KILL", "-u", user.name], capture_output=True)
        for _ in range(50):
            if not user.processes():
                break
            time.sleep(0.05)
        subprocess.run(["userdel", user.name], capture_output=True)

    def stop(self) -> None:
        for user in self.users:
            self.remove_user(user)
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.kill(int((self.root / "sshd.pid").read_text()), signal.SIGTERM)
        shutil.rmtree(self.root, ignore_errors=True)


def skip_reason() -> str | None:
    if not sshd_path().exists():
        return "openssh-server is not installed (scripts/install-test-deps installs it)"
    if os.geteuid() != 0:
        return "creating throwaway login users for the real sshd needs root"
    return None
