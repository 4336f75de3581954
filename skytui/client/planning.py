"""Where a launch would go, as the faces show it: the plan types and the
"Considered resources" rows, from the optimizer.

Importing this loads the optimizer; the faces do so only where they plan a
launch (`jobs launch`, `validate --here`, the TUI's launch screen), never
for a read (tests/unit/test_imports.py). The client reaches the optimizer only
through here too, so an InfeasibleError can only have been raised once this
module is loaded. Touches nothing but the optimizer.
"""

from __future__ import annotations

from skytui.engine.optimizer import (
    InfeasibleError,
    Plan,
    considered_rows,
    plan_task,
    requested_str,
)

__all__ = ["InfeasibleError", "Plan", "considered_rows", "plan_task", "requested_str"]
