"""Copy a phase's output from its node into the local log store, by offset.

The offset into the node's file is the local file's size minus where the
phase's segment starts, so a copy interrupted anywhere (an SSH drop, a
controller killed mid-write) resumes exactly where it stopped: no duplicate
and no missing byte.

A secret's value that the job printed is masked as it is stored, with as many
`*` as it has bytes: offsets stay exact, and no log on disk, and so nothing
that shows one, ever holds a secret (the secrets themselves are erased from
the state once the job ends).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from skytui.clouds.base import Node
from skytui.logs.store import append_bytes, file_size

CHUNK_BYTES = 1 << 20
MIN_MASKED_BYTES = 3
"""Shorter secret values are not masked: "1" or "on" would blot out the log."""


def maskable(secrets: Iterable[str]) -> tuple[bytes, ...]:
    """The secret values to mask in logs, longest first (one containing
    another is masked whole)."""
    values = {value.encode() for value in secrets if len(value.encode()) >= MIN_MASKED_BYTES}
    return tuple(sorted(values, key=len, reverse=True))


def _mask(data: bytearray, secrets: Sequence[bytes]) -> None:
    for secret in secrets:
        start = data.find(secret)
        while start >= 0:
            data[start:start + len(secret)] = b"*" * len(secret)
            start = data.find(secret, start + len(secret))


def _append(path: Path, data: bytes, secrets: Sequence[bytes] = ()) -> None:
    if not secrets:
        append_bytes(path, data)
        return
    append_bytes(path, b"")  # it exists (its folder too) before it is opened in place
    # A secret may straddle the previous chunk and this one: the stored tail
    # that could hold its beginning is masked again together with the chunk,
    # and written back in place (same length: no offset moves).
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        keep = min(size, max(map(len, secrets)) - 1)
        f.seek(size - keep)
        window = bytearray(f.read(keep) + data)
        _mask(window, secrets)
        f.seek(size - keep)
        f.write(window)


async def sync_phase_output(
    node: Node, phase_id: str, local_path: Path, segment_start: int, *, drain: bool = False,
    secrets: Sequence[bytes] = (), size: int | None = None,
) -> int:
    """Append what is new, masking `secrets` (see `maskable`); with `drain`,
    keep going until the node has no more. When the node said how much
    output there is (`size`), copy up to that much: nothing is read when it
    is all here already.

    Returns the number of bytes copied.
    """
    copied = 0
    while True:
        offset = file_size(local_path) - segment_start
        if offset < 0:  # pragma: no cover - a truncated local log; never resume before the segment
            raise RuntimeError(f"{local_path} is shorter than its segment start {segment_start}")
        if size is not None and offset >= size:
            return copied
        data = await node.read_phase_output(phase_id, offset, CHUNK_BYTES)
        if not data:
            return copied
        await asyncio.to_thread(_append, local_path, data, secrets)
        copied += len(data)
        if not drain and len(data) < CHUNK_BYTES:
            return copied
