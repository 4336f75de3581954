"""Where a launch would go, as the faces show it: the plan types and the
"Considered resources" rows, from the optimizer.

Importing this loads the optimizer; the faces do so only where they plan a
launch (`jobs launch`, `validate --here`, the TUI's launch screen), never
for a read (tests/test_imports.py). Touches nothing but the optimizer.
"""

from __future__ import annotations

from skytui.engine.optimizer import InfeasibleError, Plan, considered_rows

__all__ = ["InfeasibleError", "Plan", "considered_rows"]
