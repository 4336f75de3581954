"""Copy a phase's output from its node into the local log store, by offset.

The offset into the node's file is the local file's size minus where the
phase's segment starts, so a copy interrupted anywhere (an SSH drop, a
controller killed mid-write) resumes exactly where it stopped: no duplicate
and no missing byte.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from skytui.clouds.base import Node
from skytui.logs.store import file_size

CHUNK_BYTES = 1 << 20


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(data)


async def sync_phase_output(
    node: Node, phase_id: str, local_path: Path, segment_start: int, *, drain: bool = False
) -> int:
    """Append what is new; with `drain`, keep going until the node has no more.

    Returns the number of bytes copied.
    """
    copied = 0
    while True:
        offset = file_size(local_path) - segment_start
        if offset < 0:  # pragma: no cover - a truncated local log; never resume before the segment
            raise RuntimeError(f"{local_path} is shorter than its segment start {segment_start}")
        data = await node.read_phase_output(phase_id, offset, CHUNK_BYTES)
        if not data:
            return copied
        await asyncio.to_thread(_append, local_path, data)
        copied += len(data)
        if not drain and len(data) < CHUNK_BYTES:
            return copied
