"""The TUI tests' setting: snapshot SVGs in the repo's top-level snapshots/.

pytest-textual-snapshot would keep them in tests/tui/__snapshots__/; every
SVG stays at snapshots/<test module>/<test>.svg, whatever folder the test
module lives in (the module's name, not its path, picks the folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import pytest_textual_snapshot as _pts  # type: ignore[import-untyped]

    SNAPSHOT_ROOT = Path(__file__).resolve().parent.parent.parent / "snapshots"

    def _snapshot_dirname(cls: Any, *, test_location: Any) -> str:
        return str(SNAPSHOT_ROOT / test_location.basename)

    _pts.SVGImageExtension.dirname = classmethod(_snapshot_dirname)
except ImportError:  # pragma: no cover - the snapshot plugin is a test dependency
    pass
