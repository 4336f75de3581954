"""Linux inotify through ctypes: the node host's way to hear that a phase
wrote output or ended without looking at thousands of sandboxes in a loop.

One `Inotify` per process; its fd goes on the event loop (`loop.add_reader`)
and `read_events` drains what the kernel queued. Only what the node host
needs: add and remove a watch, and decode events.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from dataclasses import dataclass

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len


@dataclass(frozen=True)
class Event:
    wd: int
    mask: int
    name: str


class InotifyUnavailable(OSError):
    """No inotify here (not Linux, or the kernel's limits are reached)."""


class Inotify:
    def __init__(self) -> None:
        path = ctypes.util.find_library("c")
        if path is None:  # pragma: no cover - every Linux has a libc
            raise InotifyUnavailable(errno.ENOSYS, "no libc to call inotify through")
        self._libc = ctypes.CDLL(path, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise InotifyUnavailable(err, f"inotify_init1: {os.strerror(err)}")
        self.fd: int = fd

    def add_watch(self, path: str, mask: int) -> int:
        """The watch descriptor; the same path added twice gives the same one."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), ctypes.c_uint32(mask))
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                raise InotifyUnavailable(err, "inotify watch limit reached (fs.inotify.max_user_watches)")
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        return int(wd)

    def remove_watch(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, ctypes.c_int(wd))  # a watch already gone is not an error

    def read_events(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return events
            offset = 0
            while offset < len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = data[offset:offset + length].split(b"\0", 1)[0].decode(errors="replace")
                offset += length
                events.append(Event(wd, mask, name))

    def close(self) -> None:
        os.close(self.fd)
