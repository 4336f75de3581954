"""The host keys of ssh hosts: checked against the user's known_hosts, else
pinned at first contact in `$SKYTUI_HOME/known_hosts`; a changed key is refused.

Owns reading known_hosts files, asking a host for its key, and pinning it.
May touch clouds.base, clouds.keys and the network (one key exchange).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path

import asyncssh

from skytui.clouds.base import CapacityError, PrecheckError
from skytui.clouds.keys import public_key_line
from skytui.config import SSHHost

log = logging.getLogger("skytui.clouds.ssh")

PROBE_TIMEOUT_S = 10.0


def _known_hosts_name(host: SSHHost) -> str:
    return host.host if host.port == 22 else f"[{host.host}]:{host.port}"


def _fingerprint(key: asyncssh.SSHKey) -> str:
    return str(key.get_fingerprint("sha256"))


def _keys_in(path: Path, host: SSHHost) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """(trusted, revoked) keys of `host` in one known_hosts file."""
    if not path.exists():
        return [], []
    try:
        known = asyncssh.read_known_hosts(str(path))
        trusted, _, revoked, *_ = known.match(host.host, "", host.port if host.port != 22 else None)
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        raise PrecheckError(f"{path}: cannot read known hosts: {exc}") from None
    return list(trusted), list(revoked)


class HostKeys:
    """The keys trusted for ssh hosts: the user's known_hosts first, then the
    ones skytui pinned."""

    def __init__(self, known_hosts: Path, pinned: Path) -> None:
        self.known_hosts = known_hosts
        self.pinned = pinned

    async def _server_key(self, host: SSHHost, algs: list[str]) -> asyncssh.SSHKey | None:
        """The key the host presents (of one of `algs` when given); None when
        it has no key of those types."""
        try:
            return await asyncio.wait_for(
                asyncssh.get_server_host_key(host.host, host.port, server_host_key_algs=algs or (), config=[]),
                timeout=PROBE_TIMEOUT_S,
            )
        except asyncssh.KeyExchangeFailed:
            if algs:
                return None
            raise CapacityError(f"{host.name} ({host.host}:{host.port}): SSH key exchange failed") from None
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise CapacityError(f"{host.name} ({host.host}:{host.port}) is unreachable: {exc}") from None

    async def verify(self, host: SSHHost) -> str:
        """The host's key as `type base64`, checked against known_hosts or the
        key pinned at first contact (pinned now if neither knows the host)."""
        trusted, revoked, source = await asyncio.to_thread(self._trusted_keys, host)
        algs = [alg.decode() for key in trusted for alg in key.sig_algorithms]
        received = await self._server_key(host, algs)
        if received is None:  # it no longer has a key of the type we know
            received = await self._server_key(host, [])
        if received is None:
            raise CapacityError(f"{host.name} ({host.host}:{host.port}) presented no host key")
        line = public_key_line(received)
        if any(public_key_line(key) == line for key in revoked):
            raise PrecheckError(f"host key {_fingerprint(received)} of ssh host {host.name} is marked revoked")
        if not trusted:
            return await asyncio.to_thread(self._pin, host, received)
        if any(public_key_line(key) == line for key in trusted):
            return line
        raise PrecheckError(self._changed(host, trusted[0], received, source))

    def trusted_lines(self, host: SSHHost) -> list[str]:
        """The keys already trusted for `host` (`type base64`), none revoked;
        empty when it was never met (then `verify` pins it). Reads files only."""
        trusted, revoked, _ = self._trusted_keys(host)
        banned = {public_key_line(key) for key in revoked}
        return [line for line in map(public_key_line, trusted) if line not in banned]

    def _trusted_keys(self, host: SSHHost) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], Path]:
        revoked_all: list[asyncssh.SSHKey] = []
        for source in (self.known_hosts, self.pinned):
            trusted, revoked = _keys_in(source, host)
            revoked_all += revoked
            if trusted:
                return trusted, revoked_all, source
        return [], revoked_all, self.pinned

    def _changed(self, host: SSHHost, expected: asyncssh.SSHKey, received: asyncssh.SSHKey, source: Path) -> str:
        return (
            f"the host key of ssh host {host.name} ({host.host}:{host.port}) has changed: expected "
            f"{_fingerprint(expected)} (from {source}), received {_fingerprint(received)}. Someone may be "
            f"intercepting the connection. If the machine was reinstalled, remove its line "
            f"({_known_hosts_name(host)}) from {source} and launch again."
        )

    def _pin(self, host: SSHHost, key: asyncssh.SSHKey) -> str:
        """Pin a first-contact key (0600), unless another process just did."""
        pinned = self.pinned
        pinned.parent.mkdir(parents=True, exist_ok=True)
        with open(pinned.with_name(pinned.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            trusted, _ = _keys_in(pinned, host)
            line = public_key_line(key)
            if trusted:
                if any(public_key_line(k) == line for k in trusted):
                    return line
                raise PrecheckError(self._changed(host, trusted[0], key, pinned))
            fd = os.open(pinned, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(f"{_known_hosts_name(host)} {line}\n")
            os.chmod(pinned, 0o600)
        log.info("pinned the host key %s of ssh host %s in %s", _fingerprint(key), host.name, pinned)
        return line
