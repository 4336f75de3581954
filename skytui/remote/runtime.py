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
# What the controller's processes import beyond the standard library (no
# Textual: the TUI runs on the client), as pyproject pins them.
RUNTIME_REQUIREMENTS = ("asyncssh>=2.14.2", "pydantic>=2.7,<3", "pyyaml>=6.0", "rich>=13.7", "sqlalchemy>=2.0.30,<3")


def _package_files() -> list[Path]:
    return sorted(
        path for path in PACKAGE_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    )


@functools.cache
def code_hash() -> str:
    """The content hash of `skytui/` (what names the runtime folder on the
    machine): read on every command, so without building the archive."""
    digest = hashlib.sha256()
    for path in _package_files():
        relative = path.relative_to(PACKAGE_DIR.parent).as_posix()
        digest.update(relative.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@functools.cache
def code_archive() -> tuple[str, bytes]:
    """(content hash, tar.gz of `skytui/`): sent once per version of the code."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in _package_files():
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(PACKAGE_DIR.parent).as_posix())
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return code_hash(), buffer.getvalue()
