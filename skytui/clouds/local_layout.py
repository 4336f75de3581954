"""File names, and a process check, shared by the local infra (local.py,
sandboxes.py) and its node host (nodehost*.py).

Both processes read the nodes directory; neither may import the other's
heavy dependencies, so the layout lives here on its own.
"""

import contextlib
import os
from pathlib import Path

NODE_MARKER = ".skytui-node.json"  # in each sandbox: {"cluster", "rank", "created_at"}
STATE_FILE = "nodehost.json"  # {"pid", "port", "host"}, written once the node host listens
LOCK_FILE = "nodehost.lock"  # held by the running node host
TERMINATING_FLAG = ".skytui-terminating"  # in a sandbox being destroyed: no longer up
# How long after a change of the nodes directory a listing of it is not
# trusted from its mtime alone: file times move in kernel ticks, so two
# changes a few milliseconds apart can leave the same mtime.
MTIME_SETTLE_NS = 100_000_000


def pid_exists(pid: int) -> bool:
    """As `kill -0`: the process exists (a zombie included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_exists(pgid: int) -> bool:
    """As `kill -0 -- -PGID`: a process of the group exists (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_running(pid: int) -> bool:
    """The process exists and is neither a zombie nor dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def touch_nodes_dir(root: Path) -> None:
    """A sandbox came up or is going down: the nodes directory's mtime says
    so to every UpSandboxes (a marker or flag inside a sandbox does not
    change its parent's mtime by itself)."""
    with contextlib.suppress(OSError):
        os.utime(root)
