"""skytui's own code, as sent to a controller machine: the client ships the
package it runs from, so the two ends always speak the same version.

Owns `code_archive` (a gzipped tar of the package, sources and catalogs, no
caches) and its content hash, which names the runtime folder on the machine.
Touches only the installed package's files.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
from pathlib import Path

import skytui

PACKAGE_DIR = Path(skytui.__file__).resolve().parent


def _package_files() -> list[Path]:
    return sorted(
        path for path in PACKAGE_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    )


@functools.cache
def code_archive() -> tuple[str, bytes]:
    """(content hash, tar.gz of `skytui/`). Stable across calls while the files are."""
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in _package_files():
            relative = path.relative_to(PACKAGE_DIR.parent).as_posix()
            data = path.read_bytes()
            digest.update(relative.encode() + b"\0" + hashlib.sha256(data).digest())
            info = tarfile.TarInfo(relative)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return digest.hexdigest()[:16], buffer.getvalue()
